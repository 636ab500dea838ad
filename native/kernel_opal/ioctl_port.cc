#include "kernel_opal/ioctl_port.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "core/errors.h"
#include "kernel_opal/sed_opal_abi.h"

namespace kmip_agent {
namespace kernel_opal {

DeviceIoctlPort::DeviceIoctlPort(const std::string& path) {
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd_ < 0) {
    int err = errno;
    if (err == ENOENT) throw CodedError("KOPAL_DEVICE_NOT_FOUND", path + ": no such device", err);
    if (err == EACCES || err == EPERM)
      throw CodedError("KOPAL_PERMISSION_DENIED", path + ": permission denied (run as root)", err);
    throw CodedError("KOPAL_OPEN_FAILED", path + ": " + std::strerror(err), err);
  }
  struct stat st {};
  if (::fstat(fd_, &st) == 0 && !S_ISBLK(st.st_mode)) {
    ::close(fd_);
    fd_ = -1;
    throw CodedError("KOPAL_NOT_SUPPORTED", path + " is not a block device: sed-opal needs a drive", ENOTTY);
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
  calls_.push_back({request, std::vector<uint8_t>(bytes, bytes + size)});
  if (next_ >= answers_.size()) return -ENOTTY;  // an unscripted call behaves like a kernel without sed-opal
  const Answer& answer = answers_[next_++];
  if (!answer.struct_out.empty()) std::memcpy(arg, answer.struct_out.data(), std::min(size, answer.struct_out.size()));
  if (!answer.buffer_out.empty() && request == kIocDiscovery) {
    auto* discovery = static_cast<OpalDiscovery*>(arg);
    size_t n = std::min<size_t>(discovery->size, answer.buffer_out.size());
    std::memcpy(reinterpret_cast<void*>(static_cast<uintptr_t>(discovery->data)), answer.buffer_out.data(), n);
  }
  return answer.ret;
}

}  // namespace kernel_opal
}  // namespace kmip_agent
