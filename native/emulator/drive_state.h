// The emulated drive's persistent state: the SP tables (life cycle, authorities, C_PIN, locking
// ranges with their ACEs, MBR control) and the key hierarchy. Nothing here is a secret in the
// clear: PINs are kept as salted PBKDF2 verifiers, each authority's private key is wrapped under
// a key derived from its PIN, and each range's media key is sealed to the public keys of the
// authorities allowed to unlock it (plus wrapped under the MSID while locking is not enabled).
// The one exception is the MSID, which every Opal drive hands to Anybody by design.
#pragma once
#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/secure.h"
#include "tcg/uids.h"

namespace kmip_agent {
namespace emulator {

using Uid = uint64_t;  // an 8-byte TCG UID read as a big-endian integer

constexpr int kNumAdmins = 4;
constexpr int kNumUsers = 8;
constexpr int kNumRanges = 8;  // numbered ranges besides the global range
constexpr uint8_t kLifeCycleManufacturedInactive = 0x08;
constexpr uint8_t kLifeCycleManufactured = 0x09;
constexpr uint32_t kDefaultTryLimit = 5;
constexpr int kPinIterations = 10000;
constexpr uint64_t kMaxBlocks = (4ULL << 40) / 512;  // 4 TiB of 512-byte blocks

// LockOnReset / DoneOnReset values (Core spec reset_types).
constexpr uint32_t kResetPowerCycle = 0;
constexpr uint32_t kResetHardware = 1;
constexpr uint32_t kResetHotPlug = 2;
constexpr uint32_t kResetProgrammatic = 3;

struct PinRow {
  Uid uid = 0;
  Uid authority = 0;
  std::string common_name;
  bool has_pin = false;
  std::vector<uint8_t> salt;      // per-PIN random salt
  std::vector<uint8_t> verifier;  // SHA-256 of the first half of PBKDF2(PIN)
  std::vector<uint8_t> public_key;    // X25519, empty when no PIN is set
  std::vector<uint8_t> wrapped_private;  // private key wrapped under the second half of PBKDF2(PIN)
  uint32_t try_limit = kDefaultTryLimit;
  uint32_t tries = 0;
  bool persistence = false;
};

struct AuthorityRow {
  Uid uid = 0;
  std::string name;
  std::string common_name;
  bool is_class = false;
  Uid cls = 0;
  bool enabled = false;
  Uid credential = 0;  // C_PIN row
};

struct RangeRow {
  int number = 0;  // 0 = global range
  std::string common_name;
  uint64_t start = 0;
  uint64_t length = 0;
  bool read_lock_enabled = false;
  bool write_lock_enabled = false;
  bool read_locked = false;
  bool write_locked = false;
  std::vector<uint32_t> lock_on_reset{kResetPowerCycle};
  std::vector<Uid> ace_read;   // ACE_Locking_RangeN_Set_RdLocked BooleanExpr (authorities, OR-ed)
  std::vector<Uid> ace_write;  // ACE_Locking_RangeN_Set_WrLocked
  std::vector<uint8_t> msid_wrap;            // media key under the MSID key (only while locking is off)
  std::map<Uid, std::vector<uint8_t>> seals;  // media key sealed to each allowed authority's public key
  uint64_t key_generation = 0;               // bumped by GenKey / Erase

  bool LockingEnabled() const { return read_lock_enabled || write_lock_enabled; }
  Uid LockingUid() const { return tcg::uid::LockingRange(static_cast<uint32_t>(number)); }
  Uid KeyUid() const { return tcg::uid::KAes256Range(static_cast<uint32_t>(number)); }
};

struct MbrControl {
  bool enable = false;
  bool done = false;
  std::vector<uint32_t> done_on_reset{kResetPowerCycle};
};

struct DriveState {
  static constexpr int kFormatVersion = 1;
  std::string serial;
  std::string drive_id;       // random hex; names the volatile key cache
  std::string power_epoch;    // random hex; changes at each power cycle
  uint64_t blocks = 0;        // 512-byte logical blocks
  std::vector<uint8_t> salt;  // per-drive PIN derivation salt
  std::string msid;           // factory PIN, public by design
  uint8_t locking_sp_life_cycle = kLifeCycleManufacturedInactive;
  std::vector<AuthorityRow> admin_authorities;    // AdminSP
  std::vector<PinRow> admin_pins;                 // AdminSP C_PIN (SID, MSID, PSID)
  std::vector<AuthorityRow> locking_authorities;  // LockingSP (empty while inactive)
  std::vector<PinRow> locking_pins;
  std::vector<RangeRow> ranges;  // global + numbered
  MbrControl mbr;

  PinRow* FindPin(Uid row);
  PinRow* PinOfAuthority(Uid authority);
  AuthorityRow* FindAuthority(bool locking_sp, Uid authority);
  RangeRow* FindRangeByLockingUid(Uid uid);
  RangeRow* FindRangeByKeyUid(Uid uid);
  // The range whose extent covers `lba` (numbered ranges first, else the global range).
  const RangeRow& RangeForLba(uint64_t lba) const;
  // The Locking SP is activated (Manufactured), so range locks apply.
  bool LockingActive() const { return locking_sp_life_cycle == kLifeCycleManufactured; }
  // The shadow MBR answers reads of the first blocks instead of the media.
  bool MbrShadowing() const { return LockingActive() && mbr.enable && !mbr.done; }
};

std::string Serialize(const DriveState& state);
// Throws CodedError EMU_STATE_CORRUPT on any inconsistency (including a checksum mismatch).
DriveState Deserialize(const std::string& text);

}  // namespace emulator
}  // namespace kmip_agent
