#include "test/scripted_ioctl_port.h"

#include <errno.h>

#include <algorithm>
#include <cstring>

namespace kmip_agent {

int ScriptedIoctlPort::Ioctl(unsigned long request, void* arg, size_t size) {
  const auto* bytes = static_cast<const uint8_t*>(arg);
  Call call{request, std::vector<uint8_t>(bytes, bytes + size), {}, {}};
  Buffers buffers = locator_ ? locator_(request, arg) : Buffers{};
  if (buffers.data != nullptr) {
    const auto* data = static_cast<const uint8_t*>(buffers.data);
    call.buffer_in.assign(data, data + buffers.data_size);
  }
  if (buffers.command != nullptr) {
    const auto* command = static_cast<const uint8_t*>(buffers.command);
    call.command_in.assign(command, command + buffers.command_size);
  }
  calls_.push_back(std::move(call));
  if (next_ >= answers_.size()) return -ENOTTY;  // unscripted: like a device that knows no such ioctl
  const Answer& answer = answers_[next_++];
  if (!answer.struct_out.empty() && answer.struct_out_offset < size) {
    std::memcpy(static_cast<uint8_t*>(arg) + answer.struct_out_offset, answer.struct_out.data(),
                std::min(size - answer.struct_out_offset, answer.struct_out.size()));
  }
  if (!answer.buffer_out.empty() && buffers.data != nullptr) {
    std::memcpy(buffers.data, answer.buffer_out.data(), std::min(buffers.data_size, answer.buffer_out.size()));
  }
  if (!answer.sense_out.empty() && buffers.sense != nullptr) {
    std::memcpy(buffers.sense, answer.sense_out.data(), std::min(buffers.sense_size, answer.sense_out.size()));
  }
  return answer.ret;
}

}  // namespace kmip_agent
