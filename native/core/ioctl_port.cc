#include "core/ioctl_port.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "core/errors.h"

namespace kmip_agent {

DeviceIoctlPort::DeviceIoctlPort(const std::string& path, const std::string& code_prefix) {
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd_ < 0) {
    int err = errno;
    if (err == ENOENT || err == ENXIO || err == ENODEV)
      throw CodedError(code_prefix + "_DEVICE_NOT_FOUND", path + ": no such device", err);
    if (err == EACCES || err == EPERM)
      throw CodedError(code_prefix + "_PERMISSION_DENIED", path + ": permission denied (run as root)", err);
    throw CodedError(code_prefix + "_OPEN_FAILED", path + ": " + std::strerror(err), err);
  }
  struct stat st {};
  if (::fstat(fd_, &st) == 0) {
    is_block_ = S_ISBLK(st.st_mode);
    is_char_ = S_ISCHR(st.st_mode);
  }
}

DeviceIoctlPort::~DeviceIoctlPort() {
  if (fd_ >= 0) ::close(fd_);
}

int DeviceIoctlPort::Ioctl(unsigned long request, void* arg, size_t /*size*/) {
  int ret;
  do {
    ret = ::ioctl(fd_, request, arg);
  } while (ret < 0 && errno == EINTR);
  return ret < 0 ? -errno : ret;
}

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
