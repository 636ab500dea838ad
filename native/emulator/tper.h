// The emulated TPer: answers IF-SEND/IF-RECV like an Opal 2 drive. Level 0 discovery (protocol 1,
// ComID 1), the supported-protocols list (protocol 0), and ComPackets on the base ComID: the
// session manager (Properties, StartSession with host challenge -> SyncSession, CloseSession) and
// the AdminSP / LockingSP methods (Get, Set, Next, Authenticate, Activate, Revert, RevertSP,
// GenKey, Erase, Random) with the Opal ACE rules. One session at a time, as most drives.
#pragma once
#include <cstdint>
#include <optional>
#include <set>
#include <vector>

#include "emulator/drive.h"
#include "tcg/tokens.h"

namespace kmip_agent {
namespace emulator {

constexpr uint16_t kBaseComId = 0x07FE;
constexpr uint32_t kMaxComPacketSize = 65536;

class TPer {
 public:
  explicit TPer(Drive& drive) : drive_(drive) {}

  // Throws CodedError: TRANSPORT_NOT_SUPPORTED (protocol/ComID the drive does not serve),
  // EMU_MALFORMED_COMPACKET (framing the drive cannot read), EMU_NO_SUCH_SESSION.
  void IfSend(uint8_t protocol, uint16_t com_id, const std::vector<uint8_t>& data);
  std::vector<uint8_t> IfRecv(uint8_t protocol, uint16_t com_id, size_t length);

  std::vector<uint8_t> Discovery() const;

 private:
  struct Session {
    uint32_t tsn = 0;
    uint32_t hsn = 0;
    Uid sp = 0;
    bool write = false;
    std::set<Uid> authorities;  // Anybody plus every authority authenticated in this session
    Keyring keyring;
  };
  struct Reply {
    uint8_t status = 0;
    std::vector<tcg::Value> results;  // the result list's items
    bool close_session = false;       // the method ends the session (Revert, RevertSP)
  };

  std::vector<uint8_t> HandleSessionManager(const std::vector<tcg::Value>& values);
  std::vector<uint8_t> HandleSessionPayload(const std::vector<uint8_t>& payload);
  Reply Dispatch(Uid invoking, Uid method, const std::vector<tcg::Value>& args);

  Reply Get(Uid invoking, const std::vector<tcg::Value>& args);
  Reply Set(Uid invoking, const std::vector<tcg::Value>& args);
  Reply GetMbr(const tcg::Value& cell_block);
  Reply SetMbr(const std::vector<tcg::Value>& args);
  Reply Next(Uid invoking, const std::vector<tcg::Value>& args);
  Reply Authenticate(const std::vector<tcg::Value>& args);
  Reply Activate(Uid invoking, const std::vector<tcg::Value>& args);
  Reply Revert(Uid invoking);
  Reply RevertSp(const std::vector<tcg::Value>& args);
  Reply GenKey(Uid invoking);
  Reply Erase(Uid invoking);
  Reply Random(const std::vector<tcg::Value>& args);

  // Checks a PIN for an authority with Tries/TryLimit bookkeeping; returns a method status.
  uint8_t CheckCredential(Uid authority, const std::vector<uint8_t>& pin, Session& session);
  bool Has(Uid authority_or_class) const;
  bool IsAdmin() const;  // any Locking SP Admin in a Locking SP session
  bool InLockingSp() const { return session_ && session_->sp == tcg::uid::kLockingSp; }
  bool InAdminSp() const { return session_ && session_->sp == tcg::uid::kAdminSp; }

  void Respond(uint32_t tsn, uint32_t hsn, const std::vector<uint8_t>& payload);

  Drive& drive_;
  std::optional<Session> session_;
  uint32_t next_tsn_ = 0x1001;
  std::vector<uint8_t> pending_;  // the next response ComPacket (unpadded)
};

}  // namespace emulator
}  // namespace kmip_agent
