// Sessions and method calls, Core Spec 3.2.4 (method encoding), 3.3.7 (sessions), 5.2 (Session
// Manager), 3.3.10 (IF-RECV responses: OutstandingData / MinTransfer).
#include "tcg/session.h"

#include <unistd.h>

#include <algorithm>

#include "core/errors.h"
#include "tcg/packet.h"
#include "tcg/status.h"
#include "tcg/uids.h"

namespace kmip_agent {
namespace tcg {
namespace {

[[noreturn]] void MalformedResponse(const std::string& what) {
  throw CodedError("TCG_MALFORMED_RESPONSE", "malformed method response: " + what);
}

// Wipes a byte vector that held a PIN on every path out of a scope.
struct WipeOnExit {
  std::vector<uint8_t>& bytes;
  ~WipeOnExit() { SecureWipe(bytes.data(), bytes.size()); }
};

std::vector<uint8_t> MethodCall(uint64_t invoking, uint64_t method, const std::vector<uint8_t>& args) {
  TokenWriter w;
  w.Call().Uid(invoking).Uid(method).StartList().Raw(args.data(), args.size()).EndList();
  w.EndOfData().StartList().Uint(0).Uint(0).Uint(0).EndList();
  return w.Take();
}

}  // namespace

MethodResult ParseMethodResponse(const std::vector<uint8_t>& payload) {
  std::vector<Value> values = ParseValues(payload.data(), payload.size());
  if (values.size() == 1 && values[0].kind() == Value::Kind::kEndOfSession)
    throw CodedError("TCG_SESSION_CLOSED", "the TPer closed the session");
  size_t eod = values.size();
  for (size_t i = 0; i < values.size(); ++i) {
    if (values[i].kind() == Value::Kind::kEndOfData) {
      eod = i;
      break;
    }
  }
  if (eod == values.size()) MalformedResponse("no EndOfData token");
  if (eod + 1 >= values.size() || !values[eod + 1].IsList()) MalformedResponse("no status list after EndOfData");
  const auto& status_list = values[eod + 1].Items();
  if (status_list.empty() || !status_list[0].IsUint()) MalformedResponse("status list does not start with a status");
  MethodResult r;
  r.status = static_cast<uint32_t>(status_list[0].AsUint());
  if (eod > 0 && values[eod - 1].IsList()) {
    r.results = std::move(values[eod - 1]);
  } else {
    r.results = Value::MakeList();
  }
  for (Value& v : values) v.Wipe();
  return r;
}

// ---- Device ----

Device::Device(std::unique_ptr<transport::Transport> transport, ExchangeLimits limits)
    : transport_(std::move(transport)), limits_(limits) {
  if (!transport_) throw CodedError("TCG_INVALID_ARGUMENT", "no transport");
}

const Discovery& Device::Discover() {
  std::vector<uint8_t> raw = transport_->SecurityReceive(kProtocolTcg, kComIdDiscovery, 2048);
  discovery_ = ParseDiscovery(raw);
  const SscFeature* ssc = discovery_->PrimarySsc();
  com_id_ = ssc != nullptr ? ssc->base_com_id : 0;
  return *discovery_;
}

uint16_t Device::ComId() {
  if (!discovery_) Discover();
  if (com_id_ == 0)
    throw CodedError("TCG_NOT_SUPPORTED", "the drive announces no TCG SSC (Opal/Enterprise/Pyrite) in discovery");
  return com_id_;
}

std::vector<uint8_t> Device::Exchange(uint32_t tsn, uint32_t hsn, const std::vector<uint8_t>& payload) {
  const uint16_t com_id = ComId();
  std::vector<uint8_t> request =
      BuildComPacket(com_id, tsn, hsn, payload, /*seq_number=*/0, transport::kTransferBlock);
  WipeOnExit wipe_request{request};
  // MaxComPacketSize bounds the ComPacket itself; the transfer padding after it does not count.
  const size_t compacket_size = kComPacketHeaderSize + ReadBe32(request.data() + 16);
  if (compacket_size > tper_max_compacket_ && tper_max_compacket_ >= 512)
    throw CodedError("TCG_VALUE_TOO_LONG", "request of " + std::to_string(compacket_size) +
                                               " bytes exceeds the TPer's MaxComPacketSize " +
                                               std::to_string(tper_max_compacket_));
  transport_->SecuritySend(kProtocolTcg, com_id, request);

  size_t want = transport::PaddedTransferLength(limits_.initial_receive);
  unsigned sleep_us = 50;
  for (unsigned attempt = 0; attempt < limits_.max_polls; ++attempt) {
    std::vector<uint8_t> raw = transport_->SecurityReceive(kProtocolTcg, com_id, want);
    WipeOnExit wipe_raw{raw};
    ComPacket cp = ParseComPacket(raw);
    if (cp.com_id != com_id && cp.com_id != 0)
      throw CodedError("TCG_MALFORMED_COMPACKET",
                       "response for ComID " + std::to_string(cp.com_id) + ", expected " + std::to_string(com_id));
    if (cp.packets.empty()) {
      // Nothing delivered. If the response waits for a larger transfer, ask for MinTransfer bytes;
      // otherwise the TPer is still working: poll again (bounded).
      if (cp.outstanding_data > 0 && cp.min_transfer > want) {
        if (cp.min_transfer > limits_.max_receive)
          throw CodedError("TCG_RESPONSE_TOO_LARGE", "TPer asks for a " + std::to_string(cp.min_transfer) +
                                                         "-byte transfer, above the limit");
        want = transport::PaddedTransferLength(cp.min_transfer);
        continue;
      }
      usleep(sleep_us);
      sleep_us = std::min<unsigned>(sleep_us * 2, limits_.poll_sleep_us_max);
      continue;
    }
    const Packet& p = cp.packets.front();
    if (p.tper_session != tsn || p.host_session != hsn)
      throw CodedError("TCG_SESSION_MISMATCH", "response addressed to session " + std::to_string(p.tper_session) + "/" +
                                                   std::to_string(p.host_session) + ", expected " +
                                                   std::to_string(tsn) + "/" + std::to_string(hsn));
    std::vector<uint8_t> out;
    for (const SubPacket& s : p.subpackets) {
      if (s.kind == kSubPacketData) out.insert(out.end(), s.payload.begin(), s.payload.end());
    }
    for (Packet& packet : cp.packets)
      for (SubPacket& s : packet.subpackets) SecureWipe(s.payload.data(), s.payload.size());
    return out;
  }
  throw CodedError("TCG_TIMEOUT", "the TPer sent no response after " + std::to_string(limits_.max_polls) + " polls");
}

std::vector<std::pair<std::string, uint64_t>> Device::Properties() {
  TokenWriter args;
  args.StartName().Uint(param::kHostProperties).StartList();
  const std::pair<const char*, uint64_t> host[] = {
      {"MaxComPacketSize", 2048}, {"MaxPacketSize", 2028}, {"MaxIndTokenSize", 1992},
      {"MaxPackets", 1},          {"MaxSubpackets", 1},    {"MaxMethods", 1},
  };
  for (const auto& [name, value] : host) args.StartName().String(name).Uint(value).EndName();
  args.EndList().EndName();
  std::vector<uint8_t> response =
      Exchange(0, 0, MethodCall(uid::kSessionManager, uid::kProperties, args.bytes()));
  MethodResult r = ParseMethodResponse(response);
  ThrowIfFailed(r.status, "Properties");
  std::vector<std::pair<std::string, uint64_t>> out;
  // Results: [ [TPer properties as names] , HostProperties=[...] ]
  for (const Value& item : r.results.Items()) {
    if (!item.IsList()) continue;
    for (const Value& prop : item.Items()) {
      if (!prop.IsName() || !prop.NameKey().IsBytes() || !prop.NameValue().IsUint()) continue;
      const auto& k = prop.NameKey().AsBytes();
      out.emplace_back(std::string(k.begin(), k.end()), prop.NameValue().AsUint());
    }
    break;  // the first list holds the TPer's properties
  }
  for (const auto& [name, value] : out)
    if (name == "MaxComPacketSize" && value >= 512) tper_max_compacket_ = std::min<uint64_t>(value, 1 << 20);
  return out;
}

// ---- Session ----

Session::Session(Device& device, uint64_t sp, std::optional<uint64_t> authority, const SecretBytes* pin, bool write)
    : device_(device) {
  const bool by_method = authority && pin != nullptr && device_.authenticate_with_method();
  hsn_ = device_.NextHostSessionId();
  TokenWriter args;
  args.Uint(hsn_).Uid(sp).Bool(write);
  if (authority && !by_method) {
    if (pin != nullptr) args.NamedBytes(param::kHostChallenge, pin->data(), pin->size());
    args.NamedUid(param::kHostSigningAuthority, *authority);
  }
  std::vector<uint8_t> call = MethodCall(uid::kSessionManager, uid::kStartSession, args.bytes());
  WipeOnExit wipe_call{call};
  MethodResult r;
  unsigned sleep_us = device_.limits().busy_sleep_us;
  for (unsigned attempt = 0;; ++attempt) {
    std::vector<uint8_t> response = device_.Exchange(0, 0, call);
    r = ParseMethodResponse(response);
    const bool busy = r.status == status::kSpBusy || r.status == status::kNoSessionsAvailable;
    if (!busy || attempt >= device_.limits().busy_retries) break;
    usleep(sleep_us);
    sleep_us *= 2;
  }
  // With a HostChallenge, StartSession is the authentication: a refusal is a refused PIN.
  if (authority && pin != nullptr && !by_method) {
    ThrowIfAuthenticationFailed(r.status, "StartSession");
  } else {
    ThrowIfFailed(r.status, "StartSession");
  }
  const auto& items = r.results.Items();
  if (items.size() < 2) MalformedResponse("SyncSession without HostSessionID and SPSessionID");
  if (items[0].AsUint() != hsn_)
    throw CodedError("TCG_SESSION_MISMATCH", "SyncSession for host session " + items[0].Describe() + ", expected " +
                                                 std::to_string(hsn_));
  tsn_ = static_cast<uint32_t>(items[1].AsUint());
  if (tsn_ == 0) MalformedResponse("SyncSession assigned TPer session number 0");
  open_ = true;
  if (by_method) {
    // The destructor does not run when a constructor throws: close here on failure.
    try {
      if (!Authenticate(*authority, *pin)) ThrowIfAuthenticationFailed(status::kNotAuthorized, "Authenticate");
    } catch (...) {
      try {
        Close();
      } catch (...) {
        // the TPer may already have dropped the session
      }
      throw;
    }
  }
}

Session::~Session() {
  try {
    Close();
  } catch (...) {
    // Best effort: the TPer drops sessions on its own timeout.
  }
}

void Session::Close() {
  if (!open_) return;
  open_ = false;
  TokenWriter w;
  w.EndOfSession();
  std::vector<uint8_t> response = device_.Exchange(tsn_, hsn_, w.bytes());
  std::vector<Value> values = ParseValues(response.data(), response.size());
  if (values.empty() || values.back().kind() != Value::Kind::kEndOfSession)
    MalformedResponse("CloseSession not answered with EndOfSession");
}

MethodResult Session::Call(uint64_t invoking, uint64_t method, const std::vector<uint8_t>& args,
                           const std::string& what) {
  MethodResult r = Invoke(invoking, method, args, what);
  ThrowIfFailed(r.status, what);
  return r;
}

MethodResult Session::Invoke(uint64_t invoking, uint64_t method, const std::vector<uint8_t>& args,
                             const std::string& what) {
  if (!open_) throw CodedError("TCG_SESSION_CLOSED", what + ": the session is closed");
  std::vector<uint8_t> call = MethodCall(invoking, method, args);
  WipeOnExit wipe_call{call};
  std::vector<uint8_t> response;
  try {
    response = device_.Exchange(tsn_, hsn_, call);
  } catch (...) {
    open_ = false;  // the exchange state is unknown; do not try to close politely
    throw;
  }
  WipeOnExit wipe_response{response};
  MethodResult r;
  try {
    r = ParseMethodResponse(response);
  } catch (const CodedError& e) {
    if (e.code() == "TCG_SESSION_CLOSED") open_ = false;
    throw;
  }
  return r;
}

Value Session::Get(uint64_t row, uint32_t first_column, uint32_t last_column) {
  TokenWriter args;
  args.StartList()
      .NamedUint(param::kStartColumn, first_column)
      .NamedUint(param::kEndColumn, last_column)
      .EndList();
  MethodResult r = Call(row, uid::kMethodGet, args.bytes(), "Get");
  // Results: [ [ column=value ... ] ]
  const auto& items = r.results.Items();
  if (items.empty() || !items[0].IsList()) MalformedResponse("Get result is not a list of columns");
  return items[0];
}

void Session::Set(uint64_t row, const std::vector<std::pair<uint32_t, Value>>& values) {
  TokenWriter args;
  args.StartName().Uint(param::kSetValues).StartList();
  for (const auto& [column, value] : values) {
    args.StartName().Uint(column);
    EncodeValue(value, args);
    args.EndName();
  }
  args.EndList().EndName();
  Call(row, uid::kMethodSet, args.bytes(), "Set");
}

bool Session::Authenticate(uint64_t authority, const SecretBytes& proof) {
  TokenWriter args;
  args.Uid(authority).NamedBytes(param::kProof, proof.data(), proof.size());
  MethodResult r = Invoke(uid::kThisSp, uid::kMethodAuthenticate, args.bytes(), "Authenticate");
  ThrowIfAuthenticationFailed(r.status, "Authenticate");
  const auto& items = r.results.Items();
  if (items.empty()) MalformedResponse("Authenticate returned no result");
  return items[0].AsUint() != 0;
}

std::vector<uint64_t> Session::Next(uint64_t table, uint64_t where, uint32_t count) {
  TokenWriter args;
  if (where != 0) args.StartName().Uint(param::kNextWhere).Uid(where).EndName();
  args.NamedUint(param::kNextCount, count);
  MethodResult r = Call(table, uid::kMethodNext, args.bytes(), "Next");
  std::vector<uint64_t> out;
  const auto& items = r.results.Items();
  if (!items.empty() && items[0].IsList())
    for (const Value& v : items[0].Items()) out.push_back(v.AsUid());
  return out;
}

void Session::GenKey(uint64_t key_object) { Call(key_object, uid::kMethodGenKey, {}, "GenKey"); }
void Session::Erase(uint64_t range_object) { Call(range_object, uid::kMethodErase, {}, "Erase"); }
void Session::Activate(uint64_t sp) { Call(sp, uid::kMethodActivate, {}, "Activate"); }

void Session::Revert(uint64_t sp) {
  Call(sp, uid::kMethodRevert, {}, "Revert");
  if (sp == uid::kAdminSp) open_ = false;  // reverting the SP of this session ends it
}

void Session::RevertSp(bool keep_global_range_key) {
  TokenWriter args;
  if (keep_global_range_key) args.NamedUint(param::kKeepGlobalRangeKey, 1);
  Call(uid::kThisSp, uid::kMethodRevertSp, args.bytes(), "RevertSP");
  open_ = false;
}

const Value& Column(const Value& get_result, uint32_t column) {
  const Value* v = get_result.FindNamed(column);
  if (v == nullptr) throw CodedError("TCG_MISSING_COLUMN", "the TPer did not return column " + std::to_string(column));
  return *v;
}

}  // namespace tcg
}  // namespace kmip_agent
