// TEST ADDON ONLY: a transport (a fake TPer) that answers IF-RECV from a script of canned responses
// and records IF-SEND. Exposed as testSeams.openScriptedDrive so malformed TPer responses can be fed
// to the host stack; never used for real drives.
#pragma once
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "transport/transport.h"

namespace kmip_agent {
namespace transport {

class ScriptedTransport : public Transport {
 public:
  // `discovery` answers every protocol 1 / ComID 1 read; `responses` answer other reads in order
  // (when exhausted, an all-zero ComPacket header meaning "nothing to return" is sent).
  ScriptedTransport(std::vector<uint8_t> discovery, std::deque<std::vector<uint8_t>> responses)
      : discovery_(std::move(discovery)), responses_(std::move(responses)) {}

  void SecuritySend(uint8_t protocol, uint16_t com_id, const std::vector<uint8_t>& data) override;
  std::vector<uint8_t> SecurityReceive(uint8_t protocol, uint16_t com_id, size_t length) override;
  std::string Describe() const override { return "scripted test transport"; }
  std::string Serial() const override { return "SCRIPTED0001"; }

  // Every IF-SEND payload, in order (test inspection; may hold test PINs).
  std::shared_ptr<std::vector<std::vector<uint8_t>>> sent() const { return sent_; }

 private:
  std::vector<uint8_t> discovery_;
  std::deque<std::vector<uint8_t>> responses_;
  std::shared_ptr<std::vector<std::vector<uint8_t>>> sent_ = std::make_shared<std::vector<std::vector<uint8_t>>>();
};

}  // namespace transport
}  // namespace kmip_agent
