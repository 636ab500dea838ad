// The seam between the sed-opal flows and the kernel: one ioctl at a time. The device port calls
// ioctl(2) on an open block device; the scripted port (tests) records every request with the
// bytes of its struct and replays scripted answers, so struct layouts are checked byte for byte.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace kmip_agent {
namespace kernel_opal {

class IoctlPort {
 public:
  virtual ~IoctlPort() = default;
  // Returns what ioctl(2) would: 0 on success, -errno on failure, or a positive TCG status the
  // kernel passes up from the drive. `arg` points at a struct of `size` bytes, in and out.
  virtual int Ioctl(unsigned long request, void* arg, size_t size) = 0;
};

// A real block device, opened O_RDONLY | O_CLOEXEC (what sed-opal needs) for the port's lifetime.
class DeviceIoctlPort : public IoctlPort {
 public:
  explicit DeviceIoctlPort(const std::string& path);
  ~DeviceIoctlPort() override;
  DeviceIoctlPort(const DeviceIoctlPort&) = delete;
  DeviceIoctlPort& operator=(const DeviceIoctlPort&) = delete;
  int Ioctl(unsigned long request, void* arg, size_t size) override;

 private:
  int fd_ = -1;
};

// Test seam: answers come from a script; every call is recorded.
class ScriptedIoctlPort : public IoctlPort {
 public:
  struct Answer {
    int ret = 0;
    // Bytes copied over the start of the struct (for ioctls that return data), if any.
    std::vector<uint8_t> struct_out;
    // Bytes written to the user buffer an opal_discovery points at, if any.
    std::vector<uint8_t> buffer_out;
  };
  struct Call {
    unsigned long request;
    std::vector<uint8_t> struct_in;
  };

  explicit ScriptedIoctlPort(std::vector<Answer> answers) : answers_(std::move(answers)) {}
  int Ioctl(unsigned long request, void* arg, size_t size) override;
  const std::vector<Call>& calls() const { return calls_; }

 private:
  std::vector<Answer> answers_;
  size_t next_ = 0;
  std::vector<Call> calls_;
};

}  // namespace kernel_opal
}  // namespace kmip_agent
