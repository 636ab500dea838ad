// Host side of TCG sessions (Core Spec 2.01, 3.2.4 "Methods", 3.3.7 "Sessions", 5.2 "Session
// Manager"): a Device wraps a Transport (Level 0 discovery, Properties, ComPacket exchange with
// bounded IF-RECV polling), a Session is one StartSession/SyncSession ... CloseSession, and
// method calls return typed results or throw CodedError("TCG_<STATUS>", ..., status).
#pragma once
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/secure.h"
#include "tcg/discovery.h"
#include "tcg/tokens.h"
#include "transport/transport.h"

namespace kmip_agent {
namespace tcg {

// The result of one method call: the results list (the values before EndOfData) and the status.
struct MethodResult {
  Value results;  // a list (possibly empty)
  uint32_t status = 0;
};

// Parses a method response token stream: [Call SMUID method] <results list> EndOfData
// [status 0 0]. A lone EndOfSession throws TCG_SESSION_CLOSED; anything else malformed throws
// TCG_MALFORMED_RESPONSE. Exposed for tests and for the emulator's own checks.
MethodResult ParseMethodResponse(const std::vector<uint8_t>& payload);

struct ExchangeLimits {
  size_t initial_receive = 2048;   // first IF-RECV transfer length
  size_t max_receive = 1 << 20;    // bound on MinTransfer-driven growth
  unsigned max_polls = 5000;       // IF-RECVs while the TPer says "not ready"
  unsigned poll_sleep_us_max = 2000;
  // StartSession refused with SP_BUSY / NO_SESSIONS_AVAILABLE (another host's session): retries
  // with doubling sleeps from busy_sleep_us. No PIN is checked on such a refusal, so no try is spent.
  unsigned busy_retries = 4;
  unsigned busy_sleep_us = 50000;
};

class Device {
 public:
  explicit Device(std::unique_ptr<transport::Transport> transport, ExchangeLimits limits = {});

  transport::Transport& transport() { return *transport_; }
  // Level 0 discovery (IF-RECV protocol 1, ComID 1); caches the ComID to use.
  const Discovery& Discover();
  const Discovery* LastDiscovery() const { return discovery_ ? &*discovery_ : nullptr; }
  uint16_t ComId();  // the primary SSC's base ComID (discovers first if needed)

  // Session manager Properties exchange; records the TPer's MaxComPacketSize etc.
  std::vector<std::pair<std::string, uint64_t>> Properties();

  // Sends one ComPacket (one Packet, one data SubPacket, SeqNumber 0 as hosts and drives use it,
  // zero-padded to whole transfer blocks) and returns the response Packet's payload, after
  // checking it is addressed to (tsn, hsn). IF-RECV lengths are whole transfer blocks too. Throws TCG_SESSION_MISMATCH,
  // TCG_MALFORMED_COMPACKET, TCG_TIMEOUT (TPer never answered within the poll bound).
  std::vector<uint8_t> Exchange(uint32_t tsn, uint32_t hsn, const std::vector<uint8_t>& payload);

  uint32_t NextHostSessionId() { return ++host_session_counter_; }
  const ExchangeLimits& limits() const { return limits_; }

  // How sessions authenticate: false (default) = at StartSession (HostChallenge +
  // HostSigningAuthority, one round trip); true = StartSession, then ThisSP.Authenticate.
  void set_authenticate_with_method(bool v) { authenticate_with_method_ = v; }
  bool authenticate_with_method() const { return authenticate_with_method_; }

 private:
  std::unique_ptr<transport::Transport> transport_;
  ExchangeLimits limits_;
  std::optional<Discovery> discovery_;
  uint16_t com_id_ = 0;
  uint32_t host_session_counter_ = 0x4B41;  // arbitrary; incremented per session
  size_t tper_max_compacket_ = 2048;
  bool authenticate_with_method_ = false;
};

class Session {
 public:
  // StartSession on `sp`. With an authority and PIN the session authenticates, at start
  // (HostSigningAuthority + HostChallenge) or with the Authenticate method per the Device's
  // setting; a wrong PIN throws TCG_NOT_AUTHORIZED marked auth_refused (a locked-out authority:
  // TCG_AUTHORITY_LOCKED_OUT, marked too).
  Session(Device& device, uint64_t sp, std::optional<uint64_t> authority = std::nullopt,
          const SecretBytes* pin = nullptr, bool write = true);
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;
  ~Session();  // closes the session if still open (errors ignored)

  uint32_t host_session() const { return hsn_; }
  uint32_t tper_session() const { return tsn_; }
  bool open() const { return open_; }

  // Generic method call: Call <invoking> <method> [args...] EndOfData [0 0 0]. `args` are the
  // already-encoded parameter tokens. Throws TCG_<STATUS> for a failing status.
  MethodResult Call(uint64_t invoking, uint64_t method, const std::vector<uint8_t>& args,
                    const std::string& what);

  // Get columns [first, last] of a row: returns the list of {column=value} names.
  Value Get(uint64_t row, uint32_t first_column, uint32_t last_column);
  // Set columns of a row. Values are encoded tokens per column.
  void Set(uint64_t row, const std::vector<std::pair<uint32_t, Value>>& values);
  // Authenticate an authority inside the session; false when the TPer says the proof is wrong. A
  // refusing status throws marked auth_refused.
  bool Authenticate(uint64_t authority, const SecretBytes& proof);
  // Next on a table: up to `count` row UIDs after `where` (0 = from the start).
  std::vector<uint64_t> Next(uint64_t table, uint64_t where, uint32_t count);
  void GenKey(uint64_t key_object);
  void Erase(uint64_t range_object);
  void Activate(uint64_t sp);
  // Revert / RevertSP end the session on success (the TPer closes it).
  void Revert(uint64_t sp);
  void RevertSp(bool keep_global_range_key);

  void Close();

 private:
  // One method call and its response, status not checked (Call and Authenticate check it).
  MethodResult Invoke(uint64_t invoking, uint64_t method, const std::vector<uint8_t>& args, const std::string& what);

  Device& device_;
  uint32_t hsn_ = 0;
  uint32_t tsn_ = 0;
  bool open_ = false;
};

// Column lookup in a Get result: the value named `column`, or throws TCG_MISSING_COLUMN.
const Value& Column(const Value& get_result, uint32_t column);

}  // namespace tcg
}  // namespace kmip_agent
