#include "emulator/tper.h"

#include <algorithm>
#include <map>

#include "core/errors.h"
#include "emulator/emu_crypto.h"
#include "tcg/discovery.h"
#include "tcg/packet.h"
#include "tcg/status.h"
#include "tcg/uids.h"

namespace kmip_agent {
namespace emulator {
namespace {

using tcg::Value;
namespace st = tcg::status;
namespace col = tcg::column;

constexpr uint8_t kProtocolList = 0x00;
constexpr size_t kMaxPinSize = 32;  // C_PIN PIN is max_bytes_32 (Opal SSC)
constexpr uint32_t kKeyModeMediaEncryption = 23;

Value U(uint64_t v) { return Value::MakeUint(v); }
Value B(const std::string& s) { return Value::MakeBytes(std::vector<uint8_t>(s.begin(), s.end())); }
Value UidV(Uid u) { return Value::MakeUid(u); }
Value UintList(const std::vector<uint32_t>& v) {
  std::vector<Value> items;
  for (uint32_t x : v) items.push_back(U(x));
  return Value::MakeList(std::move(items));
}

// A method that fails with `status` and no results.
struct Status {
  uint8_t code;
};

[[noreturn]] void Fail(uint8_t code) { throw Status{code}; }

uint64_t UintArg(const Value& v) {
  if (!v.IsUint()) Fail(st::kInvalidParameter);
  return v.AsUint();
}
bool BoolArg(const Value& v) {
  uint64_t x = UintArg(v);
  if (x > 1) Fail(st::kInvalidParameter);
  return x == 1;
}
Uid UidArg(const Value& v) {
  if (!v.IsBytes() || v.AsBytes().size() != 8) Fail(st::kInvalidParameter);
  return v.AsUid();
}
const std::vector<uint8_t>& BytesArg(const Value& v) {
  if (!v.IsBytes()) Fail(st::kInvalidParameter);
  return v.AsBytes();
}
// A Name whose key is an unsigned integer.
bool NamedUint(const Value& v, uint64_t* name) {
  if (!v.IsName() || !v.NameKey().IsUint()) return false;
  *name = v.NameKey().AsUint();
  return true;
}
std::vector<uint32_t> ResetList(const Value& v) {
  if (!v.IsList()) Fail(st::kInvalidParameter);
  std::vector<uint32_t> out;
  for (const Value& item : v.Items()) {
    uint64_t x = UintArg(item);
    if (x > kResetProgrammatic) Fail(st::kInvalidParameter);
    if (std::find(out.begin(), out.end(), x) == out.end()) out.push_back(static_cast<uint32_t>(x));
  }
  return out;
}

bool IsLockingAdmin(Uid a) {
  return a >= tcg::uid::kAuthorityAdmin1 && a < tcg::uid::kAuthorityAdmin1 + kNumAdmins;
}
bool IsLockingUser(Uid a) { return a >= tcg::uid::kAuthorityUser1 && a < tcg::uid::kAuthorityUser1 + kNumUsers; }

// ACE row for a range: RdLocked rows are the global range's RdLocked ACE + n, WrLocked likewise.
bool AceRange(Uid ace, int* range, bool* write) {
  constexpr Uid kRdLocked = tcg::uid::kAceLockingGlobalRangeSetRdLocked;
  constexpr Uid kWrLocked = tcg::uid::kAceLockingGlobalRangeSetWrLocked;
  if (ace >= kRdLocked && ace <= kRdLocked + kNumRanges) {
    *range = static_cast<int>(ace - kRdLocked);
    *write = false;
    return true;
  }
  if (ace >= kWrLocked && ace <= kWrLocked + kNumRanges) {
    *range = static_cast<int>(ace - kWrLocked);
    *write = true;
    return true;
  }
  return false;
}

std::string RangeName(int n) { return n == 0 ? "Locking_GlobalRange" : "Locking_Range" + std::to_string(n); }

// BooleanExpr in postfix form: ref ref OR ref OR ... (Core 5.1.3.3).
Value BooleanExpr(const std::vector<Uid>& authorities) {
  std::vector<Value> items;
  for (size_t i = 0; i < authorities.size(); ++i) {
    items.push_back(Value::MakeName(Value::MakeBytes({0, 0, 0x0C, 0x05}), UidV(authorities[i])));
    if (i > 0) items.push_back(Value::MakeName(Value::MakeBytes({0, 0, 0x04, 0x0E}), U(1)));
  }
  return Value::MakeList(std::move(items));
}

std::vector<Uid> ParseBooleanExpr(const Value& v) {
  if (!v.IsList()) Fail(st::kInvalidParameter);
  std::vector<Uid> out;
  for (const Value& item : v.Items()) {
    if (!item.IsName() || !item.NameKey().IsBytes()) Fail(st::kInvalidParameter);
    const std::vector<uint8_t>& half = item.NameKey().AsBytes();
    if (half.size() != 4) Fail(st::kInvalidParameter);
    uint32_t h = tcg::ReadBe32(half.data());
    if (h == tcg::uid::kHalfUidAuthorityObjectRef) {
      Uid a = UidArg(item.NameValue());
      bool known = a == tcg::uid::kAuthorityAdmins || a == tcg::uid::kAuthorityUsers ||
                   a == tcg::uid::kAuthorityAnybody || IsLockingAdmin(a) || IsLockingUser(a);
      if (!known) Fail(st::kInvalidParameter);
      if (std::find(out.begin(), out.end(), a) == out.end()) out.push_back(a);
    } else if (h == tcg::uid::kHalfUidBooleanAce) {
      if (UintArg(item.NameValue()) != 1) Fail(st::kInvalidParameter);  // only OR is supported
    } else {
      Fail(st::kInvalidParameter);
    }
  }
  if (out.empty()) Fail(st::kInvalidParameter);
  return out;
}

struct Cell {
  Value value;
  bool readable;
};
using Row = std::map<uint32_t, Cell>;

std::vector<uint8_t> StatusOnly(uint8_t status) {
  tcg::TokenWriter w;
  w.StartList().EndList().StatusList(status);
  return w.Take();
}

}  // namespace

std::vector<uint8_t> TPer::Discovery() const {
  const DriveState& s = drive_.state();
  bool active = s.LockingActive();
  tcg::LockingFeature locking;
  locking.locking_supported = true;
  locking.media_encryption = true;
  if (active) {
    // Opal SSC 3.1.1.3: LockingEnabled means the Locking SP is activated (not Manufactured-Inactive).
    locking.locking_enabled = true;
    for (const auto& r : s.ranges) {
      if ((r.read_lock_enabled && r.read_locked) || (r.write_lock_enabled && r.write_locked)) locking.locked = true;
    }
    locking.mbr_enabled = s.mbr.enable;
    locking.mbr_done = s.mbr.done;
  }
  tcg::TPerFeature tper;
  tper.sync = true;
  tper.streaming = true;
  tcg::GeometryFeature geometry;
  geometry.align = false;
  geometry.logical_block_size = kBlockSize;
  geometry.alignment_granularity = 8;
  geometry.lowest_aligned_lba = 0;
  tcg::SscFeature opal2;
  opal2.code = tcg::feature::kOpal2;
  opal2.base_com_id = kBaseComId;
  opal2.num_com_ids = 1;
  opal2.range_crossing = false;
  opal2.num_locking_admins = kNumAdmins;
  opal2.num_locking_users = kNumUsers;
  opal2.initial_c_pin_sid_indicator = 0x00;  // C_PIN_SID starts as C_PIN_MSID
  opal2.c_pin_sid_revert_behavior = 0x00;    // and returns to it on revert
  return tcg::DiscoveryBuilder().TPer(tper).Locking(locking).Geometry(geometry).Ssc(opal2).Build();
}

void TPer::IfSend(uint8_t protocol, uint16_t com_id, const std::vector<uint8_t>& data) {
  if (protocol != tcg::kProtocolTcg || com_id != kBaseComId)
    throw CodedError("TRANSPORT_NOT_SUPPORTED",
                     "the emulated drive accepts IF-SEND only on protocol 1, ComID 0x07FE", 0);
  tcg::ComPacket packet;
  try {
    packet = tcg::ParseComPacket(data);
  } catch (const CodedError& e) {
    throw CodedError("EMU_MALFORMED_COMPACKET", std::string("IF-SEND rejected: ") + e.what());
  }
  // Payloads may carry PINs: wipe the parsed copies however this call ends.
  struct WipePayloads {
    tcg::ComPacket& packet;
    ~WipePayloads() {
      for (auto& p : packet.packets)
        for (auto& sp : p.subpackets) SecureWipe(sp.payload.data(), sp.payload.size());
    }
  } wipe{packet};
  if (packet.com_id != kBaseComId) throw CodedError("EMU_MALFORMED_COMPACKET", "ComPacket names a different ComID");
  if (packet.packets.size() != 1 || packet.packets[0].subpackets.size() != 1 ||
      packet.packets[0].subpackets[0].kind != tcg::kSubPacketData)
    throw CodedError("EMU_MALFORMED_COMPACKET", "expected one Packet with one data SubPacket");
  const tcg::Packet& p = packet.packets[0];
  const std::vector<uint8_t>& payload = p.subpackets[0].payload;
  if (p.tper_session == 0 && p.host_session == 0) {
    std::vector<Value> values;
    try {
      values = tcg::ParseValues(payload.data(), payload.size());
    } catch (const CodedError&) {
      Respond(0, 0, StatusOnly(st::kInvalidParameter));
      return;
    }
    Respond(0, 0, HandleSessionManager(values));
    return;
  }
  if (!session_ || p.tper_session != session_->tsn || p.host_session != session_->hsn)
    throw CodedError("EMU_NO_SUCH_SESSION", "no open session with TSN " + std::to_string(p.tper_session) +
                                                " / HSN " + std::to_string(p.host_session));
  uint32_t tsn = session_->tsn, hsn = session_->hsn;
  Respond(tsn, hsn, HandleSessionPayload(payload));
}

std::vector<uint8_t> TPer::IfRecv(uint8_t protocol, uint16_t com_id, size_t length) {
  if (protocol == kProtocolList && com_id == 0) {
    // Supported security protocols: 6 reserved bytes, a 2-byte count, then the list.
    std::vector<uint8_t> out(std::max<size_t>(length, 10), 0);
    out[7] = 2;
    out[8] = 0x00;
    out[9] = 0x01;
    out.resize(length);
    return out;
  }
  if (protocol == tcg::kProtocolTcg && com_id == tcg::kComIdDiscovery) {
    std::vector<uint8_t> out = Discovery();
    out.resize(length, 0);
    return out;
  }
  if (protocol != tcg::kProtocolTcg || com_id != kBaseComId)
    throw CodedError("TRANSPORT_NOT_SUPPORTED", "the emulated drive serves IF-RECV on protocol 0 and 1 only");
  std::vector<uint8_t> out;
  if (pending_.empty()) {
    tcg::ComPacket empty;
    empty.com_id = kBaseComId;
    out = tcg::BuildComPacket(empty);
  } else if (pending_.size() > length) {
    // Too small a buffer: say how much is waiting (Core 3.3.10.4), keep the response.
    tcg::ComPacket note;
    note.com_id = kBaseComId;
    note.outstanding_data = static_cast<uint32_t>(pending_.size());
    note.min_transfer = static_cast<uint32_t>(pending_.size());
    out = tcg::BuildComPacket(note);
  } else {
    out.swap(pending_);
    pending_.clear();
  }
  out.resize(std::max(length, out.size()), 0);
  out.resize(length);
  return out;
}

void TPer::Respond(uint32_t tsn, uint32_t hsn, const std::vector<uint8_t>& payload) {
  SecureWipe(pending_.data(), pending_.size());
  pending_ = tcg::BuildComPacket(kBaseComId, tsn, hsn, payload);
}

std::vector<uint8_t> TPer::HandleSessionManager(const std::vector<Value>& values) {
  // Call SMUID <method> [args] EndOfData [status list]
  auto sm_reply = [](uint64_t method, const std::vector<Value>& args, uint8_t status) {
    tcg::TokenWriter w;
    w.Call().Uid(tcg::uid::kSessionManager).Uid(method).StartList();
    for (const Value& a : args) tcg::EncodeValue(a, w);
    w.EndList().StatusList(status);
    return w.Take();
  };
  if (values.size() < 5 || values[0].kind() != Value::Kind::kCall || !values[1].IsBytes() ||
      !values[2].IsBytes() || !values[3].IsList() || values[1].AsBytes().size() != 8 ||
      values[2].AsBytes().size() != 8 || values[1].AsUid() != tcg::uid::kSessionManager)
    return StatusOnly(st::kInvalidParameter);
  Uid method = values[2].AsUid();
  const std::vector<Value>& args = values[3].Items();
  if (method == tcg::uid::kProperties) {
    std::vector<Value> tper;
    auto prop = [&](const char* name, uint64_t v) { tper.push_back(Value::MakeName(B(name), U(v))); };
    prop("MaxComPacketSize", kMaxComPacketSize);
    prop("MaxResponseComPacketSize", kMaxComPacketSize);
    prop("MaxPacketSize", kMaxComPacketSize - 20);
    prop("MaxIndTokenSize", kMaxComPacketSize - 56);
    prop("MaxPackets", 1);
    prop("MaxSubpackets", 1);
    prop("MaxMethods", 1);
    prop("MaxSessions", 1);
    prop("MaxAuthentications", 2);
    prop("MaxTransactionLimit", 1);
    prop("DefSessionTimeout", 0);
    std::vector<Value> host;
    for (const Value& a : args) {
      uint64_t name;
      if (NamedUint(a, &name) && name == tcg::param::kHostProperties && a.NameValue().IsList()) host = a.NameValue().Items();
    }
    if (host.empty()) {
      host.push_back(Value::MakeName(B("MaxComPacketSize"), U(2048)));
      host.push_back(Value::MakeName(B("MaxPacketSize"), U(2028)));
      host.push_back(Value::MakeName(B("MaxIndTokenSize"), U(1992)));
      host.push_back(Value::MakeName(B("MaxPackets"), U(1)));
      host.push_back(Value::MakeName(B("MaxSubpackets"), U(1)));
      host.push_back(Value::MakeName(B("MaxMethods"), U(1)));
    }
    return sm_reply(tcg::uid::kProperties,
                    {Value::MakeList(std::move(tper)),
                     Value::MakeName(U(tcg::param::kHostProperties), Value::MakeList(std::move(host)))},
                    st::kSuccess);
  }
  if (method != tcg::uid::kStartSession) return sm_reply(method, {}, st::kInvalidParameter);

  auto fail = [&](uint8_t status) { return sm_reply(tcg::uid::kSyncSession, {}, status); };
  if (args.size() < 3 || !args[0].IsUint() || !args[1].IsBytes() || args[1].AsBytes().size() != 8 ||
      !args[2].IsUint() || args[2].AsUint() > 1 || args[0].AsUint() > 0xFFFFFFFFu)
    return fail(st::kInvalidParameter);
  Session s;
  s.hsn = static_cast<uint32_t>(args[0].AsUint());
  s.sp = args[1].AsUid();
  s.write = args[2].AsUint() == 1;
  std::vector<uint8_t> challenge;
  bool has_challenge = false;
  Uid authority = tcg::uid::kAuthorityAnybody;
  for (size_t i = 3; i < args.size(); ++i) {
    uint64_t name;
    if (!NamedUint(args[i], &name)) return fail(st::kInvalidParameter);
    const Value& v = args[i].NameValue();
    if (name == tcg::param::kHostChallenge && v.IsBytes()) {
      challenge = v.AsBytes();
      has_challenge = true;
    } else if (name == tcg::param::kHostSigningAuthority && v.IsBytes() && v.AsBytes().size() == 8) {
      authority = v.AsUid();
    } else if (name == tcg::param::kSessionTimeout && v.IsUint()) {
      // accepted, sessions here do not time out
    } else {
      return fail(st::kInvalidParameter);
    }
  }
  const DriveState& state = drive_.state();
  if (s.sp != tcg::uid::kAdminSp && s.sp != tcg::uid::kLockingSp) return fail(st::kInvalidParameter);
  if (s.sp == tcg::uid::kLockingSp && !state.LockingActive())
    return fail(st::kInvalidParameter);
  if (session_) return fail(st::kSpBusy);
  s.authorities.insert(tcg::uid::kAuthorityAnybody);
  if (authority != tcg::uid::kAuthorityAnybody) {
    if (!has_challenge) {
      SecureWipe(challenge.data(), challenge.size());
      return fail(st::kNotAuthorized);
    }
    uint8_t status = CheckCredential(authority, challenge, s);
    SecureWipe(challenge.data(), challenge.size());
    if (status != st::kSuccess) return fail(status);
  }
  SecureWipe(challenge.data(), challenge.size());
  s.tsn = next_tsn_++;
  std::vector<Value> sync = {U(s.hsn), U(s.tsn)};
  session_ = std::move(s);
  return sm_reply(tcg::uid::kSyncSession, sync, st::kSuccess);
}

uint8_t TPer::CheckCredential(Uid authority, const std::vector<uint8_t>& pin, Session& session) {
  DriveState& state = drive_.state();
  bool locking = session.sp == tcg::uid::kLockingSp;
  AuthorityRow* a = state.FindAuthority(locking, authority);
  if (a == nullptr || a->is_class || a->credential == 0) return st::kNotAuthorized;
  if (!a->enabled) return st::kNotAuthorized;
  PinRow* row = state.FindPin(a->credential);
  if (row == nullptr) return st::kNotAuthorized;
  if (row->try_limit != 0 && row->tries >= row->try_limit) return st::kAuthorityLockedOut;
  AuthorityKeys keys;
  if (pin.size() > kMaxPinSize * 8 || !drive_.VerifyPin(*row, pin.data(), pin.size(), &keys)) {
    if (row->try_limit != 0) row->tries++;
    drive_.Commit();
    return st::kNotAuthorized;
  }
  if (row->tries != 0) {
    row->tries = 0;
    drive_.Commit();
  }
  session.authorities.insert(authority);
  session.keyring[authority] = std::move(keys);
  return st::kSuccess;
}

std::vector<uint8_t> TPer::HandleSessionPayload(const std::vector<uint8_t>& payload) {
  std::vector<Value> values;
  try {
    values = tcg::ParseValues(payload.data(), payload.size());
  } catch (const CodedError&) {
    return StatusOnly(st::kInvalidParameter);
  }
  if (values.size() == 1 && values[0].kind() == Value::Kind::kEndOfSession) {
    session_.reset();
    tcg::TokenWriter w;
    w.EndOfSession();
    return w.Take();
  }
  // Call <invoking> <method> [args] EndOfData [0 0 0]
  if (values.size() != 5 || values[0].kind() != Value::Kind::kCall || !values[1].IsBytes() ||
      values[1].AsBytes().size() != 8 || !values[2].IsBytes() || values[2].AsBytes().size() != 8 ||
      !values[3].IsList() || values[4].kind() != Value::Kind::kEndOfData) {
    // Core 3.2.4.2 also allows a trailing status list; accept that form too.
    bool with_status = values.size() == 6 && values[0].kind() == Value::Kind::kCall && values[1].IsBytes() &&
                       values[1].AsBytes().size() == 8 && values[2].IsBytes() && values[2].AsBytes().size() == 8 &&
                       values[3].IsList() && values[4].kind() == Value::Kind::kEndOfData && values[5].IsList();
    if (!with_status) {
      for (auto& v : values) v.Wipe();
      return StatusOnly(st::kInvalidParameter);
    }
  }
  Reply reply;
  try {
    reply = Dispatch(values[1].AsUid(), values[2].AsUid(), values[3].Items());
  } catch (const Status& s) {
    reply = Reply();
    reply.status = s.code;
  } catch (const CodedError& e) {
    // A value of the wrong kind inside the arguments.
    reply = Reply();
    reply.status = e.code() == "TCG_UNEXPECTED_VALUE" ? st::kInvalidParameter : st::kFail;
  }
  for (auto& v : values) v.Wipe();
  tcg::TokenWriter w;
  w.StartList();
  for (const Value& r : reply.results) tcg::EncodeValue(r, w);
  w.EndList().StatusList(reply.status);
  if (reply.close_session) session_.reset();
  return w.Take();
}

TPer::Reply TPer::Dispatch(Uid invoking, Uid method, const std::vector<Value>& args) {
  namespace m = tcg::uid;
  if (method == m::kMethodGet) return Get(invoking, args);
  if (method == m::kMethodSet) return Set(invoking, args);
  if (method == m::kMethodNext) return Next(invoking, args);
  if (method == m::kMethodAuthenticate) {
    if (invoking != tcg::uid::kThisSp) Fail(st::kInvalidParameter);
    return Authenticate(args);
  }
  if (method == m::kMethodActivate) return Activate(invoking, args);
  if (method == m::kMethodRevert) return Revert(invoking);
  if (method == m::kMethodRevertSp) {
    if (invoking != tcg::uid::kThisSp) Fail(st::kInvalidParameter);
    return RevertSp(args);
  }
  if (method == m::kMethodGenKey) return GenKey(invoking);
  if (method == m::kMethodErase) return Erase(invoking);
  if (method == m::kMethodRandom) {
    if (invoking != tcg::uid::kThisSp) Fail(st::kInvalidParameter);
    return Random(args);
  }
  Fail(st::kInvalidParameter);  // a method this SP does not have
}

bool TPer::Has(Uid a) const {
  if (!session_) return false;
  if (a == tcg::uid::kAuthorityAnybody) return true;
  if (a == tcg::uid::kAuthorityAdmins) return IsAdmin();
  if (a == tcg::uid::kAuthorityUsers) {
    for (Uid x : session_->authorities)
      if (IsLockingUser(x)) return true;
    return false;
  }
  return session_->authorities.count(a) != 0;
}

bool TPer::IsAdmin() const {
  if (!InLockingSp()) return false;
  for (Uid x : session_->authorities)
    if (IsLockingAdmin(x)) return true;
  return false;
}

// ---- Get --------------------------------------------------------------------------------------

namespace {

struct RowBuilder {
  Row row;
  void Put(uint32_t c, Value v, bool readable = true) { row[c] = Cell{std::move(v), readable}; }
};

}  // namespace

TPer::Reply TPer::Get(Uid invoking, const std::vector<Value>& args) {
  // Get [ CellBlock ]; CellBlock = list of names startRow 1 / endRow 2 / startColumn 3 / endColumn 4.
  if (args.size() != 1 || !args[0].IsList()) Fail(st::kInvalidParameter);
  if (invoking == tcg::uid::kMbrTable && InLockingSp()) return GetMbr(args[0]);
  uint64_t start_col = 0, end_col = UINT32_MAX;
  bool single = false;
  bool has_start = false, has_end = false;
  for (const Value& n : args[0].Items()) {
    uint64_t name;
    if (!NamedUint(n, &name)) Fail(st::kInvalidParameter);
    if (name == tcg::param::kStartColumn) {
      start_col = UintArg(n.NameValue());
      has_start = true;
    } else if (name == tcg::param::kEndColumn) {
      end_col = UintArg(n.NameValue());
      has_end = true;
    } else {
      Fail(st::kInvalidParameter);  // rows are for byte tables, which this drive does not expose
    }
  }
  if (start_col > end_col) Fail(st::kInvalidParameter);
  single = has_start && has_end && start_col == end_col;

  DriveState& s = drive_.state();
  RowBuilder b;
  bool known = false;
  if (InAdminSp()) {
    if (invoking == tcg::uid::kAdminSp || invoking == tcg::uid::kLockingSp) {
      known = true;
      bool admin = invoking == tcg::uid::kAdminSp;
      b.Put(0, UidV(invoking));
      b.Put(1, B(admin ? "Admin" : "Locking"));
      b.Put(6, U(admin ? kLifeCycleManufactured : s.locking_sp_life_cycle));
      b.Put(7, U(0));
    }
  }
  bool locking = InLockingSp();
  if (!known && locking && invoking == tcg::uid::kTableTableMbr) {
    // The MBR table's descriptor in the Table table: hosts read Rows to size their writes.
    known = true;
    b.Put(0, UidV(invoking));
    b.Put(1, B("MBR"));
    b.Put(4, U(2));  // Kind: byte table
    b.Put(7, U(Drive::kMbrTableSize));
  }
  if (!known) {
    AuthorityRow* a = s.FindAuthority(locking, invoking);
    if (a != nullptr) {
      known = true;
      b.Put(0, UidV(a->uid));
      b.Put(1, B(a->name));
      b.Put(2, B(a->common_name));
      b.Put(3, U(a->is_class));
      b.Put(4, a->cls ? UidV(a->cls) : Value::MakeBytes({}));
      b.Put(5, U(a->enabled));
      b.Put(6, U(0));
      b.Put(7, U(0));
      b.Put(8, U(0));
      b.Put(9, U(a->credential ? 1 : 0));  // Operation: Password when it has a C_PIN
      b.Put(10, a->credential ? UidV(a->credential) : Value::MakeBytes({}));
    }
  }
  if (!known) {
    std::vector<PinRow>& pins = locking ? s.locking_pins : s.admin_pins;
    for (PinRow& p : pins) {
      if (p.uid != invoking) continue;
      known = true;
      bool msid = p.uid == tcg::uid::kCPinMsid;
      bool meta = msid || p.uid == tcg::uid::kCPinPsid || Has(tcg::uid::kAuthoritySid) || IsAdmin() || Has(p.authority);
      if (!meta) Fail(st::kNotAuthorized);
      b.Put(0, UidV(p.uid));
      b.Put(1, B("C_PIN_" + p.common_name));
      b.Put(2, B(p.common_name));
      b.Put(3, msid ? B(s.msid) : Value::MakeBytes({}), msid);
      b.Put(4, Value::MakeBytes({}));
      b.Put(5, U(p.try_limit));
      b.Put(6, U(p.tries));
      b.Put(7, U(p.persistence));
    }
  }
  if (!known && locking) {
    RangeRow* r = s.FindRangeByLockingUid(invoking);
    int ace_range;
    bool ace_write;
    if (r != nullptr) {
      known = true;
      bool allowed = IsAdmin();
      for (Uid a : r->ace_read) allowed = allowed || Has(a);
      for (Uid a : r->ace_write) allowed = allowed || Has(a);
      if (!allowed) Fail(st::kNotAuthorized);
      b.Put(0, UidV(r->LockingUid()));
      b.Put(1, B(RangeName(r->number)));
      b.Put(2, B(r->common_name));
      b.Put(3, U(r->start));
      b.Put(4, U(r->length));
      b.Put(5, U(r->read_lock_enabled));
      b.Put(6, U(r->write_lock_enabled));
      b.Put(7, U(r->read_locked));
      b.Put(8, U(r->write_locked));
      b.Put(9, UintList(r->lock_on_reset));
      b.Put(10, UidV(r->KeyUid()));
    } else if (invoking == tcg::uid::kLockingInfo) {
      known = true;
      b.Put(0, UidV(invoking));
      b.Put(1, B("LockingInfo"));
      b.Put(2, U(1));
      b.Put(3, U(1));
      b.Put(4, U(kNumRanges));
      b.Put(5, U(0));
      b.Put(6, U(0));
      b.Put(7, U(0));
      b.Put(8, U(kBlockSize));
      b.Put(9, U(8));
      b.Put(10, U(0));
    } else if (invoking == tcg::uid::kMbrControl) {
      known = true;
      b.Put(0, UidV(invoking));
      b.Put(1, U(s.mbr.enable));
      b.Put(2, U(s.mbr.done));
      b.Put(3, UintList(s.mbr.done_on_reset));
    } else if ((r = s.FindRangeByKeyUid(invoking)) != nullptr) {
      known = true;
      if (!IsAdmin()) Fail(st::kNotAuthorized);
      b.Put(0, UidV(invoking));
      b.Put(1, B("K_AES_256_" + RangeName(r->number).substr(8) + "_Key"));
      b.Put(3, Value::MakeBytes({}), false);
      b.Put(4, U(kKeyModeMediaEncryption));
    } else if (AceRange(invoking, &ace_range, &ace_write)) {
      known = true;
      if (!IsAdmin()) Fail(st::kNotAuthorized);
      const RangeRow& rr = s.ranges[ace_range];
      b.Put(0, UidV(invoking));
      b.Put(3, BooleanExpr(ace_write ? rr.ace_write : rr.ace_read));
    }
  }
  if (!known) Fail(st::kInvalidParameter);  // no such object in this SP
  std::vector<Value> cells;
  for (auto& [c, cell] : b.row) {
    if (c < start_col || c > end_col) continue;
    if (!cell.readable) {
      if (single) Fail(st::kNotAuthorized);
      continue;
    }
    cells.push_back(Value::MakeName(U(c), std::move(cell.value)));
  }
  Reply reply;
  reply.results.push_back(Value::MakeList(std::move(cells)));
  return reply;
}

TPer::Reply TPer::GetMbr(const Value& cell_block) {
  if (!IsAdmin()) Fail(st::kNotAuthorized);
  uint64_t start = 0, end = 0;
  bool has_end = false;
  for (const Value& n : cell_block.Items()) {
    uint64_t name;
    if (!NamedUint(n, &name)) Fail(st::kInvalidParameter);
    if (name == tcg::param::kStartRow) {
      start = UintArg(n.NameValue());
    } else if (name == tcg::param::kEndRow) {
      end = UintArg(n.NameValue());
      has_end = true;
    } else {
      Fail(st::kInvalidParameter);
    }
  }
  if (!has_end || end < start || end >= Drive::kMbrTableSize || end - start >= kMaxComPacketSize / 2)
    Fail(st::kInvalidParameter);
  Reply reply;
  reply.results.push_back(Value::MakeBytes(drive_.ReadMbr(start, static_cast<size_t>(end - start + 1))));
  return reply;
}

// ---- Set --------------------------------------------------------------------------------------

TPer::Reply TPer::Set(Uid invoking, const std::vector<Value>& args) {
  if (!session_->write) Fail(st::kNotAuthorized);
  if (invoking == tcg::uid::kMbrTable && InLockingSp()) return SetMbr(args);
  const Value* values = nullptr;
  for (const Value& a : args) {
    uint64_t name;
    if (!NamedUint(a, &name)) Fail(st::kInvalidParameter);
    if (name == tcg::param::kSetValues && a.NameValue().IsList() && values == nullptr) {
      values = &a.NameValue();
    } else {
      Fail(st::kInvalidParameter);  // Where is for byte tables, not exposed here
    }
  }
  if (values == nullptr) Fail(st::kInvalidParameter);
  std::map<uint32_t, const Value*> cols;
  for (const Value& v : values->Items()) {
    uint64_t c;
    if (!NamedUint(v, &c) || c > 64 || cols.count(static_cast<uint32_t>(c))) Fail(st::kInvalidParameter);
    cols[static_cast<uint32_t>(c)] = &v.NameValue();
  }
  DriveState& s = drive_.state();
  Session& session = *session_;
  Reply ok;

  // C_PIN: only the PIN column is writable.
  PinRow* pin = nullptr;
  for (PinRow& p : InLockingSp() ? s.locking_pins : s.admin_pins)
    if (p.uid == invoking) pin = &p;
  if (pin != nullptr) {
    for (auto& [c, v] : cols) {
      if (c != col::kCPinPin) Fail(c <= 7 ? st::kNotAuthorized : st::kInvalidParameter);
    }
    bool allowed;
    if (InAdminSp()) {
      allowed = pin->uid == tcg::uid::kCPinSid && Has(tcg::uid::kAuthoritySid);
    } else {
      allowed = IsAdmin() || (IsLockingUser(pin->authority) && Has(pin->authority));
    }
    if (!allowed) Fail(st::kNotAuthorized);
    auto it = cols.find(col::kCPinPin);
    if (it == cols.end()) return ok;
    const std::vector<uint8_t>& value = BytesArg(*it->second);
    if (value.size() > kMaxPinSize) Fail(st::kInvalidParameter);
    drive_.SetPin(*pin, value.data(), value.size(), &session.keyring);
    // The authority's key pair may be new: seal every range key this session can open to it again.
    for (auto& r : s.ranges) {
      SecretBytes key;
      if (drive_.MediaKey(r, session.keyring, &key)) drive_.GrantRange(r, key);
    }
    drive_.Commit();
    return ok;
  }

  if (InAdminSp()) Fail(s.FindAuthority(false, invoking) ? st::kNotAuthorized : st::kInvalidParameter);

  // Authority: Enabled (Admins).
  AuthorityRow* a = s.FindAuthority(true, invoking);
  if (a != nullptr) {
    if (!IsAdmin()) Fail(st::kNotAuthorized);
    for (auto& [c, v] : cols)
      if (c != col::kAuthorityEnabled) Fail(c <= 18 ? st::kNotAuthorized : st::kInvalidParameter);
    if (a->is_class || a->uid == tcg::uid::kAuthorityAnybody) Fail(st::kNotAuthorized);
    auto it = cols.find(col::kAuthorityEnabled);
    if (it != cols.end()) a->enabled = BoolArg(*it->second);
    drive_.Commit();
    return ok;
  }

  // Locking ranges.
  RangeRow* found = s.FindRangeByLockingUid(invoking);
  if (found != nullptr) {
    RangeRow r = *found;
    bool admin = IsAdmin();
    for (auto& [c, v] : cols) {
      switch (c) {
        case col::kLockingRangeStart:
        case col::kLockingRangeLength:
          if (!admin) Fail(st::kNotAuthorized);
          if (r.number == 0) Fail(st::kInvalidParameter);  // the global range covers what is left
          (c == col::kLockingRangeStart ? r.start : r.length) = UintArg(*v);
          break;
        case col::kLockingReadLockEnabled:
          if (!admin) Fail(st::kNotAuthorized);
          r.read_lock_enabled = BoolArg(*v);
          break;
        case col::kLockingWriteLockEnabled:
          if (!admin) Fail(st::kNotAuthorized);
          r.write_lock_enabled = BoolArg(*v);
          break;
        case col::kLockingReadLocked: {
          bool allowed = false;
          for (Uid x : r.ace_read) allowed = allowed || Has(x);
          if (!allowed) Fail(st::kNotAuthorized);
          r.read_locked = BoolArg(*v);
          break;
        }
        case col::kLockingWriteLocked: {
          bool allowed = false;
          for (Uid x : r.ace_write) allowed = allowed || Has(x);
          if (!allowed) Fail(st::kNotAuthorized);
          r.write_locked = BoolArg(*v);
          break;
        }
        case col::kLockingLockOnReset:
          if (!admin) Fail(st::kNotAuthorized);
          r.lock_on_reset = ResetList(*v);
          break;
        default:
          Fail(c <= 19 ? st::kNotAuthorized : st::kInvalidParameter);
      }
    }
    if (r.number != 0) {
      if (r.start > s.blocks || r.length > s.blocks - r.start) Fail(st::kInvalidParameter);
      for (const RangeRow& other : s.ranges) {
        if (other.number == 0 || other.number == r.number || other.length == 0 || r.length == 0) continue;
        if (r.start < other.start + other.length && other.start < r.start + r.length) Fail(st::kInvalidParameter);
      }
    }
    // The media key must be in hand before the range changes: from the session's authorities,
    // the MSID (locking off) or the cache (already unlocked).
    SecretBytes key;
    bool have_key = drive_.MediaKey(*found, session.keyring, &key);
    bool needs_key = r.LockingEnabled() && !((r.read_lock_enabled && r.read_locked) &&
                                             (r.write_lock_enabled && r.write_locked));
    bool regrant = r.LockingEnabled() != found->LockingEnabled();  // the MSID wrap comes or goes
    if ((needs_key || regrant) && !have_key) Fail(st::kFail);           // nothing changed yet
    *found = r;
    if (regrant) drive_.GrantRange(*found, key);
    if (needs_key) {
      drive_.CacheKey(found->number, key);
    } else {
      drive_.DropCachedKey(found->number);
    }
    drive_.Commit();
    return ok;
  }

  if (invoking == tcg::uid::kMbrControl) {
    if (!IsAdmin()) Fail(st::kNotAuthorized);
    MbrControl m = s.mbr;
    for (auto& [c, v] : cols) {
      if (c == col::kMbrControlEnable) {
        m.enable = BoolArg(*v);
      } else if (c == col::kMbrControlDone) {
        m.done = BoolArg(*v);
      } else if (c == col::kMbrControlDoneOnReset) {
        m.done_on_reset = ResetList(*v);
      } else {
        Fail(c == 0 ? st::kNotAuthorized : st::kInvalidParameter);
      }
    }
    s.mbr = m;
    drive_.Commit();
    return ok;
  }

  int ace_range;
  bool ace_write;
  if (AceRange(invoking, &ace_range, &ace_write)) {
    if (!IsAdmin()) Fail(st::kNotAuthorized);
    std::vector<Uid> expr;
    for (auto& [c, v] : cols) {
      if (c != col::kAceBooleanExpr) Fail(c <= 4 ? st::kNotAuthorized : st::kInvalidParameter);
      expr = ParseBooleanExpr(*v);
    }
    if (expr.empty()) return ok;
    RangeRow& r = s.ranges[ace_range];
    SecretBytes key;
    bool have_key = drive_.MediaKey(r, session.keyring, &key);
    (ace_write ? r.ace_write : r.ace_read) = expr;
    if (have_key) drive_.GrantRange(r, key);
    drive_.Commit();
    return ok;
  }

  if (invoking == tcg::uid::kLockingInfo || s.FindRangeByKeyUid(invoking) != nullptr) Fail(st::kNotAuthorized);
  Fail(st::kInvalidParameter);
}

// The MBR byte table: Set [Where = offset, Values = bytes] (what sedutil's loadpba and the
// kernel's WRITE_SHADOW_MBR send), Admins only.
TPer::Reply TPer::SetMbr(const std::vector<Value>& args) {
  if (!IsAdmin()) Fail(st::kNotAuthorized);
  uint64_t where = 0;
  const std::vector<uint8_t>* bytes = nullptr;
  for (const Value& a : args) {
    uint64_t name;
    if (!NamedUint(a, &name)) Fail(st::kInvalidParameter);
    if (name == tcg::param::kSetWhere) {
      where = UintArg(a.NameValue());
    } else if (name == tcg::param::kSetValues) {
      bytes = &BytesArg(a.NameValue());
    } else {
      Fail(st::kInvalidParameter);
    }
  }
  if (bytes == nullptr || where > Drive::kMbrTableSize || bytes->size() > Drive::kMbrTableSize - where)
    Fail(st::kInvalidParameter);
  drive_.WriteMbr(where, bytes->data(), bytes->size());
  return Reply();
}

// ---- Next -------------------------------------------------------------------------------------

TPer::Reply TPer::Next(Uid invoking, const std::vector<Value>& args) {
  DriveState& s = drive_.state();
  std::vector<Uid> rows;
  bool locking = InLockingSp();
  if (invoking == tcg::uid::kAuthorityTable) {
    for (const auto& a : locking ? s.locking_authorities : s.admin_authorities) rows.push_back(a.uid);
  } else if (invoking == tcg::uid::kCPinTable) {
    if (!(IsAdmin() || Has(tcg::uid::kAuthoritySid))) Fail(st::kNotAuthorized);
    for (const auto& p : locking ? s.locking_pins : s.admin_pins) rows.push_back(p.uid);
  } else if (invoking == tcg::uid::kLockingTable && locking) {
    if (!IsAdmin()) Fail(st::kNotAuthorized);
    for (const auto& r : s.ranges) rows.push_back(r.LockingUid());
  } else if (invoking == tcg::uid::kSpTable && !locking) {
    rows = {tcg::uid::kAdminSp, tcg::uid::kLockingSp};
  } else {
    Fail(st::kInvalidParameter);
  }
  Uid where = 0;
  uint64_t count = rows.size();
  for (const Value& a : args) {
    uint64_t name;
    if (!NamedUint(a, &name)) Fail(st::kInvalidParameter);
    if (name == tcg::param::kNextWhere) {
      where = UidArg(a.NameValue());
    } else if (name == tcg::param::kNextCount) {
      count = UintArg(a.NameValue());
    } else {
      Fail(st::kInvalidParameter);
    }
  }
  size_t first = 0;
  if (where != 0) {
    auto it = std::find(rows.begin(), rows.end(), where);
    if (it == rows.end()) Fail(st::kInvalidParameter);
    first = static_cast<size_t>(it - rows.begin()) + 1;
  }
  std::vector<Value> out;
  for (size_t i = first; i < rows.size() && out.size() < count; ++i) out.push_back(UidV(rows[i]));
  Reply reply;
  reply.results.push_back(Value::MakeList(std::move(out)));
  return reply;
}

// ---- Authenticate, Activate, Revert, RevertSP, GenKey, Erase, Random ---------------------------

TPer::Reply TPer::Authenticate(const std::vector<Value>& args) {
  if (args.empty() || args.size() > 2) Fail(st::kInvalidParameter);
  Uid authority = UidArg(args[0]);
  std::vector<uint8_t> proof;
  if (args.size() == 2) {
    uint64_t name;
    if (!NamedUint(args[1], &name) || name != tcg::param::kProof) Fail(st::kInvalidParameter);
    proof = BytesArg(args[1].NameValue());
  }
  Reply reply;
  if (authority == tcg::uid::kAuthorityAnybody) {
    reply.results.push_back(U(1));
    return reply;
  }
  uint8_t status = CheckCredential(authority, proof, *session_);
  SecureWipe(proof.data(), proof.size());
  if (status == st::kAuthorityLockedOut) Fail(status);
  // A wrong proof is a successful method call whose result is False (Core 5.3.4.1.1).
  reply.results.push_back(U(status == st::kSuccess ? 1 : 0));
  return reply;
}

TPer::Reply TPer::Activate(Uid invoking, const std::vector<Value>& args) {
  if (!InAdminSp()) Fail(st::kInvalidParameter);
  if (invoking != tcg::uid::kLockingSp) Fail(st::kInvalidParameter);  // only the Locking SP can be activated
  if (!Has(tcg::uid::kAuthoritySid)) Fail(st::kNotAuthorized);
  if (!args.empty()) Fail(st::kInvalidParameter);  // Single User Mode is not offered
  if (!session_->write) Fail(st::kNotAuthorized);
  Reply ok;
  if (drive_.state().LockingActive()) return ok;  // no effect (Opal 5.1.1.2)
  drive_.ActivateLockingSp(&session_->keyring);
  drive_.Commit();
  return ok;
}

TPer::Reply TPer::Revert(Uid invoking) {
  if (!InAdminSp()) Fail(st::kInvalidParameter);
  if (!session_->write) Fail(st::kNotAuthorized);
  Reply ok;
  if (invoking == tcg::uid::kAdminSp) {
    if (!Has(tcg::uid::kAuthoritySid) && !Has(tcg::uid::kAuthorityPsid)) Fail(st::kNotAuthorized);
    drive_.FactoryReset();
    drive_.Commit();
    ok.close_session = true;  // the TPer ends the session after reverting its own SP
    return ok;
  }
  if (invoking == tcg::uid::kLockingSp) {
    if (!Has(tcg::uid::kAuthoritySid)) Fail(st::kNotAuthorized);
    if (drive_.state().LockingActive()) {
      drive_.RevertLockingSp(false, session_->keyring);
      drive_.Commit();
    }
    return ok;
  }
  Fail(st::kInvalidParameter);
}

TPer::Reply TPer::RevertSp(const std::vector<Value>& args) {
  if (!InLockingSp()) Fail(st::kInvalidParameter);
  if (!IsAdmin()) Fail(st::kNotAuthorized);
  if (!session_->write) Fail(st::kNotAuthorized);
  bool keep = false;
  for (const Value& a : args) {
    uint64_t name;
    if (!NamedUint(a, &name) || name != tcg::param::kKeepGlobalRangeKey) Fail(st::kInvalidParameter);
    keep = BoolArg(a.NameValue());
  }
  drive_.RevertLockingSp(keep, session_->keyring);
  drive_.Commit();
  Reply ok;
  ok.close_session = true;
  return ok;
}

TPer::Reply TPer::GenKey(Uid invoking) {
  if (!InLockingSp()) Fail(st::kInvalidParameter);
  RangeRow* r = drive_.state().FindRangeByKeyUid(invoking);
  if (r == nullptr) Fail(st::kInvalidParameter);
  if (!IsAdmin() || !session_->write) Fail(st::kNotAuthorized);
  drive_.NewMediaKey(*r);
  drive_.Commit();
  return Reply();
}

TPer::Reply TPer::Erase(Uid invoking) {
  if (!InLockingSp()) Fail(st::kInvalidParameter);
  RangeRow* r = drive_.state().FindRangeByLockingUid(invoking);
  if (r == nullptr) Fail(st::kInvalidParameter);
  if (!IsAdmin() || !session_->write) Fail(st::kNotAuthorized);
  drive_.NewMediaKey(*r);
  drive_.Commit();
  return Reply();
}

TPer::Reply TPer::Random(const std::vector<Value>& args) {
  if (args.size() != 1) Fail(st::kInvalidParameter);
  uint64_t count = UintArg(args[0]);
  if (count > 32) Fail(st::kInvalidParameter);
  Reply reply;
  reply.results.push_back(Value::MakeBytes(RandomBytes(static_cast<size_t>(count))));
  return reply;
}

}  // namespace emulator
}  // namespace kmip_agent
