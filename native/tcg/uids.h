// UIDs, method UIDs, column numbers and ComID constants of TCG Storage (Core Spec 2.01) and the
// Opal SSC 2.01 (section 4 "Opal SSC-specific tables"; Opal 2 method UIDs). 8-byte UIDs as uint64.
#pragma once
#include <cstdint>

namespace kmip_agent {
namespace tcg {

namespace uid {
// Special invoking IDs (Core 5.1.3 / 3.2.4).
constexpr uint64_t kSessionManager = 0x00000000000000FFull;  // SMUID
constexpr uint64_t kThisSp = 0x0000000000000001ull;

// Session manager methods (Core 5.2.3).
constexpr uint64_t kProperties = 0x000000000000FF01ull;
constexpr uint64_t kStartSession = 0x000000000000FF02ull;
constexpr uint64_t kSyncSession = 0x000000000000FF03ull;
constexpr uint64_t kStartTrustedSession = 0x000000000000FF04ull;
constexpr uint64_t kSyncTrustedSession = 0x000000000000FF05ull;
constexpr uint64_t kCloseSession = 0x000000000000FF06ull;

// Methods (Opal SSC 2.01 Table 241 "Method UIDs").
constexpr uint64_t kMethodNext = 0x0000000600000008ull;
constexpr uint64_t kMethodGetAcl = 0x000000060000000Dull;
constexpr uint64_t kMethodGenKey = 0x0000000600000010ull;
constexpr uint64_t kMethodRevertSp = 0x0000000600000011ull;
constexpr uint64_t kMethodGet = 0x0000000600000016ull;
constexpr uint64_t kMethodSet = 0x0000000600000017ull;
constexpr uint64_t kMethodAuthenticate = 0x000000060000001Cull;
constexpr uint64_t kMethodRandom = 0x0000000600000601ull;
constexpr uint64_t kMethodRevert = 0x0000000600000202ull;
constexpr uint64_t kMethodActivate = 0x0000000600000203ull;
constexpr uint64_t kMethodReactivate = 0x0000000600000801ull;  // Single User Mode
constexpr uint64_t kMethodErase = 0x0000000600000803ull;       // Single User Mode

// SPs (SP table rows in the Admin SP).
constexpr uint64_t kSpTable = 0x0000020500000000ull;
constexpr uint64_t kAdminSp = 0x0000020500000001ull;
constexpr uint64_t kLockingSp = 0x0000020500000002ull;

// Authorities.
constexpr uint64_t kAuthorityAnybody = 0x0000000900000001ull;
constexpr uint64_t kAuthorityAdmins = 0x0000000900000002ull;
constexpr uint64_t kAuthorityMakers = 0x0000000900000003ull;
constexpr uint64_t kAuthoritySid = 0x0000000900000006ull;
constexpr uint64_t kAuthorityAdminSpAdmin1 = 0x0000000900000201ull;
constexpr uint64_t kAuthorityPsid = 0x000000090001FF01ull;
// Locking SP: Admin<n> = 0x00000009_0001_00nn, User<n> = 0x00000009_0003_00nn (n from 1).
constexpr uint64_t kAuthorityAdmin1 = 0x0000000900010001ull;
constexpr uint64_t kAuthorityUser1 = 0x0000000900030001ull;
constexpr uint64_t kAuthorityUsers = 0x0000000900030000ull;  // the Users class (Opal SSC 4.3.1.3)
constexpr uint64_t LockingAdmin(uint32_t n) { return kAuthorityAdmin1 + (n - 1); }
constexpr uint64_t LockingUser(uint32_t n) { return kAuthorityUser1 + (n - 1); }

// C_PIN rows.
constexpr uint64_t kCPinTable = 0x0000000B00000000ull;
constexpr uint64_t kCPinSid = 0x0000000B00000001ull;
constexpr uint64_t kCPinMsid = 0x0000000B00008402ull;
constexpr uint64_t kCPinPsid = 0x0000000B0001FF01ull;  // TCG PSID feature set
constexpr uint64_t kCPinAdmin1 = 0x0000000B00010001ull;  // Locking SP
constexpr uint64_t kCPinUser1 = 0x0000000B00030001ull;   // Locking SP
constexpr uint64_t CPinAdmin(uint32_t n) { return kCPinAdmin1 + (n - 1); }
constexpr uint64_t CPinUser(uint32_t n) { return kCPinUser1 + (n - 1); }

// Locking SP tables.
constexpr uint64_t kLockingInfoTable = 0x0000080100000000ull;
constexpr uint64_t kLockingInfo = 0x0000080100000001ull;
constexpr uint64_t kLockingTable = 0x0000080200000000ull;
constexpr uint64_t kLockingGlobalRange = 0x0000080200000001ull;
// Range<n> (n >= 1) = 0x00000802_0003_00nn; range 0 means the global range.
constexpr uint64_t LockingRange(uint32_t n) { return n == 0 ? kLockingGlobalRange : 0x0000080200030000ull + n; }
constexpr uint64_t kMbrControl = 0x0000080300000001ull;
constexpr uint64_t kMbrTable = 0x0000080400000000ull;
constexpr uint64_t kTableTableMbr = 0x0000000100000804ull;  // the MBR table's row in the Table table
constexpr uint64_t kKAes128GlobalRange = 0x0000080500000001ull;
constexpr uint64_t kKAes256GlobalRange = 0x0000080600000001ull;
constexpr uint64_t KAes256Range(uint32_t n) { return n == 0 ? kKAes256GlobalRange : 0x0000080600030000ull + n; }
constexpr uint64_t KAes128Range(uint32_t n) { return n == 0 ? kKAes128GlobalRange : 0x0000080500030000ull + n; }

// Authority table (Locking SP), for enabling users.
constexpr uint64_t kAuthorityTable = 0x0000000900000000ull;

// ACEs that let a user lock/unlock a range (Opal SSC 4.3.1.7, ACE table).
constexpr uint64_t kAceLockingGlobalRangeSetRdLocked = 0x000000080003E000ull;
constexpr uint64_t kAceLockingGlobalRangeSetWrLocked = 0x000000080003E800ull;
constexpr uint64_t AceLockingRangeSetRdLocked(uint32_t n) { return kAceLockingGlobalRangeSetRdLocked + n; }
constexpr uint64_t AceLockingRangeSetWrLocked(uint32_t n) { return kAceLockingGlobalRangeSetWrLocked + n; }
constexpr uint64_t kAceMbrControlSetDoneToDor = 0x000000080003F801ull;

// "Half UIDs" / boolean ACE expression operators used in ACE BooleanExpr (Core 5.1.3.3).
constexpr uint32_t kHalfUidAuthorityObjectRef = 0x00000C05u;
constexpr uint32_t kHalfUidBooleanAce = 0x0000040Eu;
}  // namespace uid

// Column numbers.
namespace column {
// C_PIN (Core 5.3.2.12).
constexpr uint32_t kCPinPin = 3;
constexpr uint32_t kCPinTryLimit = 5;
constexpr uint32_t kCPinTries = 6;
constexpr uint32_t kCPinPersistence = 7;
// Authority (Core 5.3.2.10).
constexpr uint32_t kAuthorityEnabled = 5;
// SP (Admin SP SP table, Core 5.3.2.x / Opal 4.2.6).
constexpr uint32_t kSpLifeCycleState = 6;
// Locking (Core 5.7.2.2).
constexpr uint32_t kLockingRangeStart = 3;
constexpr uint32_t kLockingRangeLength = 4;
constexpr uint32_t kLockingReadLockEnabled = 5;
constexpr uint32_t kLockingWriteLockEnabled = 6;
constexpr uint32_t kLockingReadLocked = 7;
constexpr uint32_t kLockingWriteLocked = 8;
constexpr uint32_t kLockingLockOnReset = 9;
constexpr uint32_t kLockingActiveKey = 10;
// MBRControl (Core 5.7.2.5).
constexpr uint32_t kMbrControlEnable = 1;
constexpr uint32_t kMbrControlDone = 2;
constexpr uint32_t kMbrControlDoneOnReset = 3;
// LockingInfo (Core 5.7.2.1).
constexpr uint32_t kLockingInfoMaxRanges = 4;
// ACE (Core 5.3.2.9).
constexpr uint32_t kAceBooleanExpr = 3;
}  // namespace column

// Named parameters.
namespace param {
// Get CellBlock (Core 5.3.3.6 / 5.1.4.2.1.2).
constexpr uint32_t kStartRow = 1;
constexpr uint32_t kEndRow = 2;
constexpr uint32_t kStartColumn = 3;
constexpr uint32_t kEndColumn = 4;
// Set (Core 5.3.3.7): Where = 0, Values = 1.
constexpr uint32_t kSetWhere = 0;
constexpr uint32_t kSetValues = 1;
// StartSession optional parameters (Core 5.2.3.1).
constexpr uint32_t kHostChallenge = 0;
constexpr uint32_t kHostExchangeAuthority = 1;
constexpr uint32_t kHostExchangeCert = 2;
constexpr uint32_t kHostSigningAuthority = 3;
constexpr uint32_t kSessionTimeout = 5;
// Properties (Core 5.2.2.1): HostProperties = 0.
constexpr uint32_t kHostProperties = 0;
// Authenticate: Proof = 0 (Core 5.3.4.1.1).
constexpr uint32_t kProof = 0;
// RevertSP: KeepGlobalRangeKey = 0x060000 (Opal SSC 5.1.3.1).
constexpr uint32_t kKeepGlobalRangeKey = 0x060000;
// Next: Where = 0, Count = 1.
constexpr uint32_t kNextWhere = 0;
constexpr uint32_t kNextCount = 1;
}  // namespace param

// SP life cycle states (Opal SSC 4.2.6 / 5.1.2).
constexpr uint32_t kLifeCycleManufacturedInactive = 8;
constexpr uint32_t kLifeCycleManufactured = 9;

// ComIDs.
constexpr uint16_t kComIdDiscovery = 0x0001;  // Level 0 discovery, protocol 1
constexpr uint8_t kProtocolTcg = 0x01;        // security protocol for TCG ComPackets / discovery
constexpr uint8_t kProtocolComIdMgmt = 0x02;  // ComID management (Core 3.3.4.3)
constexpr uint16_t kOpalDefaultBaseComId = 0x07FE;

}  // namespace tcg
}  // namespace kmip_agent
