// The seam between native code and the kernel for ioctl-driven backends (sed-opal, SG_IO, NVMe
// admin): one ioctl at a time. The device port calls ioctl(2) on an open device; the test addon's
// scripted port (native/test/scripted_ioctl_port.h) records every request with the bytes of its
// argument struct and replays scripted answers, so command blocks and struct layouts are checked
// byte for byte without hardware.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace kmip_agent {

class IoctlPort {
 public:
  virtual ~IoctlPort() = default;
  // Returns what ioctl(2) would: 0 (or a positive count) on success, -errno on failure, or a
  // positive status a driver passes up (sed-opal: TCG status). `arg` points at `size` bytes.
  virtual int Ioctl(unsigned long request, void* arg, size_t size) = 0;
};

// A real device opened O_RDONLY | O_NONBLOCK | O_CLOEXEC for the port's lifetime. Open failures
// throw CodedError with codes `<prefix>_DEVICE_NOT_FOUND`, `<prefix>_PERMISSION_DENIED`,
// `<prefix>_OPEN_FAILED`.
class DeviceIoctlPort : public IoctlPort {
 public:
  DeviceIoctlPort(const std::string& path, const std::string& code_prefix);
  ~DeviceIoctlPort() override;
  DeviceIoctlPort(const DeviceIoctlPort&) = delete;
  DeviceIoctlPort& operator=(const DeviceIoctlPort&) = delete;
  int Ioctl(unsigned long request, void* arg, size_t size) override;
  bool IsBlockDevice() const { return is_block_; }
  bool IsCharDevice() const { return is_char_; }

 private:
  int fd_ = -1;
  bool is_block_ = false;
  bool is_char_ = false;
};

}  // namespace kmip_agent
