// Scripted test transport (see scripted.h).
#include "test/scripted_transport.h"

#include <algorithm>

namespace kmip_agent {
namespace transport {

void ScriptedTransport::SecuritySend(uint8_t, uint16_t, const std::vector<uint8_t>& data) { sent_->push_back(data); }

std::vector<uint8_t> ScriptedTransport::SecurityReceive(uint8_t protocol, uint16_t com_id, size_t length) {
  std::vector<uint8_t> out;
  if (protocol == 1 && com_id == 1) {
    out = discovery_;
  } else if (!responses_.empty()) {
    out = std::move(responses_.front());
    responses_.pop_front();
  } else {
    out.assign(20, 0);
  }
  if (out.size() > length) out.resize(length);
  return out;
}

}  // namespace transport
}  // namespace kmip_agent
