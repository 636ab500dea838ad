#include "core/ioctl_port.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

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

}  // namespace kmip_agent
