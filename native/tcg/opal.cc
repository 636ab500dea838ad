// Opal flows (Opal SSC 2.01 section 5; TCG Storage Application Note "Encrypting Drives
// Compliant with Opal SSC": take ownership, activate, configure, lock/unlock, erase, revert).
#include "tcg/opal.h"

#include <algorithm>

#include "core/errors.h"
#include "tcg/status.h"
#include "tcg/uids.h"

namespace kmip_agent {
namespace tcg {
namespace {

SecretBytes BytesColumn(const Value& row, uint32_t column) {
  const auto& b = Column(row, column).AsBytes();
  return SecretBytes(b.data(), b.size());
}

bool BoolColumn(const Value& row, uint32_t column) {
  const Value* v = row.FindNamed(column);
  return v != nullptr && v->IsUint() && v->AsUint() != 0;
}

uint64_t UintColumn(const Value& row, uint32_t column) {
  const Value* v = row.FindNamed(column);
  return v != nullptr && v->IsUint() ? v->AsUint() : 0;
}

Value PinValue(const SecretBytes& pin) { return Value::MakeBytes(pin.vec()); }

void WipeValues(std::vector<std::pair<uint32_t, Value>>& values) {
  for (auto& [column, value] : values) value.Wipe();
}

}  // namespace

uint64_t Authority::Uid() const {
  switch (kind) {
    case Kind::kSid: return uid::kAuthoritySid;
    case Kind::kPsid: return uid::kAuthorityPsid;
    case Kind::kAdmin: return uid::LockingAdmin(index);
    case Kind::kUser: return uid::LockingUser(index);
    case Kind::kAnybody: return uid::kAuthorityAnybody;
  }
  return 0;
}

uint64_t Authority::CPinUid() const {
  switch (kind) {
    case Kind::kSid: return uid::kCPinSid;
    case Kind::kPsid: return uid::kCPinPsid;
    case Kind::kAdmin: return uid::CPinAdmin(index);
    case Kind::kUser: return uid::CPinUser(index);
    case Kind::kAnybody: break;
  }
  throw CodedError("TCG_INVALID_ARGUMENT", "Anybody has no PIN");
}

uint64_t Authority::Sp() const {
  return kind == Kind::kSid || kind == Kind::kPsid || kind == Kind::kAnybody ? uid::kAdminSp : uid::kLockingSp;
}

std::string Authority::Describe() const {
  switch (kind) {
    case Kind::kSid: return "SID";
    case Kind::kPsid: return "PSID";
    case Kind::kAdmin: return "Admin" + std::to_string(index);
    case Kind::kUser: return "User" + std::to_string(index);
    case Kind::kAnybody: return "Anybody";
  }
  return "?";
}

OpalDrive::OpalDrive(std::unique_ptr<transport::Transport> transport, ExchangeLimits limits)
    : device_(std::move(transport), limits) {}

void OpalDrive::EnsureProperties() {
  if (properties_done_) return;
  device_.ComId();
  device_.Properties();
  properties_done_ = true;
}

SecretBytes OpalDrive::ReadMsid() {
  EnsureProperties();
  Session s(device_, uid::kAdminSp, std::nullopt, nullptr, false);
  Value row = s.Get(uid::kCPinMsid, column::kCPinPin, column::kCPinPin);
  SecretBytes msid = BytesColumn(row, column::kCPinPin);
  row.Wipe();
  s.Close();
  return msid;
}

OpalStatus OpalDrive::Status(bool probe_sid) {
  OpalStatus st;
  st.discovery = device_.Discover();
  if (st.discovery.locking) {
    st.locking_supported = st.discovery.locking->locking_supported;
    st.locking_enabled = st.discovery.locking->locking_enabled;
    st.locked = st.discovery.locking->locked;
    st.mbr_enabled = st.discovery.locking->mbr_enabled;
    st.mbr_done = st.discovery.locking->mbr_done;
  }
  for (const FeatureDescriptor& f : st.discovery.features) {
    // Block SID Authentication feature, byte 4 bit 0: SID Value State (0: C_PIN_SID == C_PIN_MSID).
    if (f.code == feature::kBlockSid && !f.data.empty()) {
      st.sid_is_msid = (f.data[0] & 1) == 0;
      st.sid_state_source = "block-sid-feature";
    }
  }
  if (st.discovery.PrimarySsc() == nullptr) return st;
  EnsureProperties();
  try {
    Session s(device_, uid::kAdminSp, std::nullopt, nullptr, false);
    Value row = s.Get(uid::kLockingSp, column::kSpLifeCycleState, column::kSpLifeCycleState);
    const Value* v = row.FindNamed(column::kSpLifeCycleState);
    if (v != nullptr && v->IsUint()) st.locking_sp_lifecycle = static_cast<uint32_t>(v->AsUint());
    s.Close();
  } catch (const CodedError& e) {
    // A method status (not authorized, no Locking SP on a Pyrite drive, ...) leaves it unknown;
    // transport and protocol faults still fail the call.
    if (e.status() == 0) throw;
  }
  if (st.locking_sp_lifecycle == kLifeCycleManufactured) {
    // How many ranges exist, so a range the drive lacks is refused before any PIN is sent.
    try {
      Session s(device_, uid::kLockingSp, std::nullopt, nullptr, false);
      Value info = s.Get(uid::kLockingInfo, column::kLockingInfoMaxRanges, column::kLockingInfoMaxRanges);
      const Value* v = info.FindNamed(column::kLockingInfoMaxRanges);
      if (v != nullptr && v->IsUint()) st.max_ranges = static_cast<uint32_t>(std::min<uint64_t>(v->AsUint(), 0xFFFF));
      s.Close();
    } catch (const CodedError& e) {
      if (e.status() == 0) throw;
    }
  }
  if (probe_sid && !st.sid_is_msid) {
    SecretBytes msid = ReadMsid();
    try {
      Session s(device_, uid::kAdminSp, uid::kAuthoritySid, &msid, false);
      s.Close();
      st.sid_is_msid = true;
    } catch (const CodedError& e) {
      if (e.code() != "TCG_NOT_AUTHORIZED" && e.code() != "TCG_AUTHORITY_LOCKED_OUT") throw;
      st.sid_is_msid = false;
    }
    st.sid_state_source = "probe";
  }
  return st;
}

void OpalDrive::TakeOwnership(const SecretBytes& new_sid_pin) {
  if (new_sid_pin.empty()) throw CodedError("TCG_INVALID_ARGUMENT", "the new SID PIN is empty");
  SecretBytes msid = ReadMsid();
  Session s(device_, uid::kAdminSp, uid::kAuthoritySid, &msid, true);
  std::vector<std::pair<uint32_t, Value>> values;
  values.emplace_back(column::kCPinPin, PinValue(new_sid_pin));
  s.Set(uid::kCPinSid, values);
  WipeValues(values);
  s.Close();
}

void OpalDrive::ActivateLockingSp(const SecretBytes& sid_pin) {
  EnsureProperties();
  Session s(device_, uid::kAdminSp, uid::kAuthoritySid, &sid_pin, true);
  Value row = s.Get(uid::kLockingSp, column::kSpLifeCycleState, column::kSpLifeCycleState);
  const Value* v = row.FindNamed(column::kSpLifeCycleState);
  if (v != nullptr && v->IsUint() && v->AsUint() == kLifeCycleManufactured) {
    s.Close();
    return;  // already active: activation is idempotent for callers
  }
  s.Activate(uid::kLockingSp);
  s.Close();
}

void OpalDrive::SetPin(const Authority& who, const SecretBytes& pin, const Authority& target,
                       const SecretBytes& new_pin) {
  if (new_pin.empty()) throw CodedError("TCG_INVALID_ARGUMENT", "the new PIN is empty");
  if (who.Sp() != target.Sp())
    throw CodedError("TCG_INVALID_ARGUMENT", who.Describe() + " cannot set the PIN of " + target.Describe() +
                                                 " (different SPs)");
  EnsureProperties();
  Session s(device_, who.Sp(), who.Uid(), &pin, true);
  std::vector<std::pair<uint32_t, Value>> values;
  values.emplace_back(column::kCPinPin, PinValue(new_pin));
  s.Set(target.CPinUid(), values);
  WipeValues(values);
  s.Close();
}

void OpalDrive::EnableUser(const SecretBytes& admin_pin, uint32_t user, bool enabled,
                           const std::vector<uint32_t>& ranges) {
  if (user == 0) throw CodedError("TCG_INVALID_ARGUMENT", "users are numbered from 1");
  EnsureProperties();
  Session s(device_, uid::kLockingSp, uid::kAuthorityAdmin1, &admin_pin, true);
  s.Set(uid::LockingUser(user), {{column::kAuthorityEnabled, Value::MakeUint(enabled ? 1 : 0)}});
  if (enabled) {
    // BooleanExpr: Admin1 OR User<n> may set ReadLocked / WriteLocked of each range.
    auto auth_ref = [](uint64_t authority) {
      return Value::MakeName(Value::MakeBytes({0x00, 0x00, 0x0C, 0x05}), Value::MakeUid(authority));
    };
    Value expr = Value::MakeList({auth_ref(uid::kAuthorityAdmin1), auth_ref(uid::LockingUser(user)),
                                  Value::MakeName(Value::MakeBytes({0x00, 0x00, 0x04, 0x0E}), Value::MakeUint(1))});
    for (uint32_t range : ranges) {
      s.Set(uid::AceLockingRangeSetRdLocked(range), {{column::kAceBooleanExpr, expr}});
      s.Set(uid::AceLockingRangeSetWrLocked(range), {{column::kAceBooleanExpr, expr}});
    }
  }
  s.Close();
}

void OpalDrive::SetupRange(const SecretBytes& admin_pin, uint32_t range, std::optional<uint64_t> start,
                           std::optional<uint64_t> length, bool read_lock_enabled, bool write_lock_enabled) {
  if (range == 0 && (start || length))
    throw CodedError("TCG_INVALID_ARGUMENT", "the global range has no start or length to set");
  EnsureProperties();
  Session s(device_, uid::kLockingSp, uid::kAuthorityAdmin1, &admin_pin, true);
  std::vector<std::pair<uint32_t, Value>> values;
  if (start) values.emplace_back(column::kLockingRangeStart, Value::MakeUint(*start));
  if (length) values.emplace_back(column::kLockingRangeLength, Value::MakeUint(*length));
  values.emplace_back(column::kLockingReadLockEnabled, Value::MakeUint(read_lock_enabled ? 1 : 0));
  values.emplace_back(column::kLockingWriteLockEnabled, Value::MakeUint(write_lock_enabled ? 1 : 0));
  s.Set(uid::LockingRange(range), values);
  s.Close();
}

std::vector<RangeInfo> OpalDrive::Ranges(const Authority& who, const SecretBytes& pin) {
  EnsureProperties();
  Session s(device_, uid::kLockingSp, who.Uid(), &pin, false);
  // The Locking table's rows, by Next (Core 5.3.3.11); LockingInfo.MaxRanges if Next is refused.
  std::vector<uint32_t> numbers;
  try {
    for (uint64_t row : s.Next(uid::kLockingTable, 0, 256)) {
      if (row == uid::kLockingGlobalRange) numbers.push_back(0);
      else if ((row & 0xFFFFFFFFFFFF0000ull) == 0x0000080200030000ull) numbers.push_back(static_cast<uint32_t>(row & 0xFFFF));
    }
  } catch (const CodedError& e) {
    if (e.code() == "TCG_SESSION_CLOSED") throw;
  }
  if (numbers.empty()) {
    uint32_t max_ranges = 0;
    try {
      Value info = s.Get(uid::kLockingInfo, column::kLockingInfoMaxRanges, column::kLockingInfoMaxRanges);
      max_ranges = static_cast<uint32_t>(std::min<uint64_t>(UintColumn(info, column::kLockingInfoMaxRanges), 64));
    } catch (const CodedError& e) {
      if (e.code() == "TCG_SESSION_CLOSED") throw;
    }
    for (uint32_t n = 0; n <= max_ranges; ++n) numbers.push_back(n);
  }
  std::vector<RangeInfo> out;
  for (uint32_t n : numbers) {
    Value row;
    try {
      row = s.Get(uid::LockingRange(n), column::kLockingRangeStart, column::kLockingWriteLocked);
    } catch (const CodedError& e) {
      // Ranges a user may not read, or that do not exist, are left out.
      if (e.code() == "TCG_NOT_AUTHORIZED" || e.code() == "TCG_INVALID_PARAMETER") continue;
      throw;
    }
    RangeInfo r;
    r.range = n;
    r.start = UintColumn(row, column::kLockingRangeStart);
    r.length = UintColumn(row, column::kLockingRangeLength);
    r.read_lock_enabled = BoolColumn(row, column::kLockingReadLockEnabled);
    r.write_lock_enabled = BoolColumn(row, column::kLockingWriteLockEnabled);
    r.read_locked = BoolColumn(row, column::kLockingReadLocked);
    r.write_locked = BoolColumn(row, column::kLockingWriteLocked);
    out.push_back(r);
  }
  s.Close();
  return out;
}

void OpalDrive::SetLock(const Authority& who, const SecretBytes& pin, uint32_t range, LockState state) {
  EnsureProperties();
  Session s(device_, uid::kLockingSp, who.Uid(), &pin, true);
  const bool read_locked = state == LockState::kLocked;
  const bool write_locked = state != LockState::kUnlocked;
  s.Set(uid::LockingRange(range), {{column::kLockingReadLocked, Value::MakeUint(read_locked ? 1 : 0)},
                                   {column::kLockingWriteLocked, Value::MakeUint(write_locked ? 1 : 0)}});
  s.Close();
}

void OpalDrive::RevertTPer(const SecretBytes& sid_pin) {
  EnsureProperties();
  Session s(device_, uid::kAdminSp, uid::kAuthoritySid, &sid_pin, true);
  s.Revert(uid::kAdminSp);
}

void OpalDrive::PsidRevert(const SecretBytes& psid) {
  EnsureProperties();
  Session s(device_, uid::kAdminSp, uid::kAuthorityPsid, &psid, true);
  s.Revert(uid::kAdminSp);
}

void OpalDrive::RevertLockingSp(const SecretBytes& admin_pin, bool keep_global_range_key) {
  EnsureProperties();
  Session s(device_, uid::kLockingSp, uid::kAuthorityAdmin1, &admin_pin, true);
  s.RevertSp(keep_global_range_key);
}

void OpalDrive::EraseRange(const SecretBytes& admin_pin, uint32_t range, bool use_erase_method) {
  EnsureProperties();
  Session s(device_, uid::kLockingSp, uid::kAuthorityAdmin1, &admin_pin, true);
  if (use_erase_method) {
    s.Erase(uid::LockingRange(range));
  } else {
    // The range's ActiveKey names its K_AES_128/256 object; fall back to the AES-256 row.
    uint64_t key = uid::KAes256Range(range);
    try {
      Value row = s.Get(uid::LockingRange(range), column::kLockingActiveKey, column::kLockingActiveKey);
      const Value* v = row.FindNamed(column::kLockingActiveKey);
      if (v != nullptr && v->IsBytes() && v->AsBytes().size() == 8) key = v->AsUid();
    } catch (const CodedError& e) {
      if (e.code() == "TCG_SESSION_CLOSED") throw;
    }
    s.GenKey(key);
  }
  s.Close();
}

void OpalDrive::SetMbr(const SecretBytes& admin_pin, std::optional<bool> enable, std::optional<bool> done) {
  std::vector<std::pair<uint32_t, Value>> values;
  if (enable) values.emplace_back(column::kMbrControlEnable, Value::MakeUint(*enable ? 1 : 0));
  if (done) values.emplace_back(column::kMbrControlDone, Value::MakeUint(*done ? 1 : 0));
  if (values.empty()) throw CodedError("TCG_INVALID_ARGUMENT", "nothing to set in MBRControl");
  EnsureProperties();
  Session s(device_, uid::kLockingSp, uid::kAuthorityAdmin1, &admin_pin, true);
  s.Set(uid::kMbrControl, values);
  s.Close();
}

std::optional<Tries> OpalDrive::ReadTries(const Authority& target, const Authority* who, const SecretBytes* pin) {
  EnsureProperties();
  auto read = [&](Session& s) {
    Value row = s.Get(target.CPinUid(), column::kCPinTryLimit, column::kCPinTries);
    Tries t;
    t.try_limit = static_cast<uint32_t>(UintColumn(row, column::kCPinTryLimit));
    t.tries = static_cast<uint32_t>(UintColumn(row, column::kCPinTries));
    if (row.FindNamed(column::kCPinTries) == nullptr) throw CodedError("TCG_NOT_AUTHORIZED", "Tries not returned");
    return t;
  };
  try {
    Session s(device_, target.Sp(), std::nullopt, nullptr, false);
    Tries t = read(s);
    s.Close();
    return t;
  } catch (const CodedError& e) {
    if (e.code() != "TCG_NOT_AUTHORIZED") throw;
  }
  if (who == nullptr || pin == nullptr) return std::nullopt;
  // A failing StartSession here (wrong PIN) propagates: the caller must know a try was spent.
  Session s(device_, who->Sp(), who->Uid(), pin, false);
  try {
    Tries t = read(s);
    s.Close();
    return t;
  } catch (const CodedError& e) {
    if (e.code() == "TCG_NOT_AUTHORIZED") return std::nullopt;
    throw;
  }
}

void OpalDrive::Verify(const Authority& who, const SecretBytes& pin) {
  EnsureProperties();
  Session s(device_, who.Sp(), who.Uid(), &pin, false);
  s.Close();
}

}  // namespace tcg
}  // namespace kmip_agent
