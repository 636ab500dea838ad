// The seam between native code and the kernel for ioctl-driven backends (sed-opal, SG_IO, NVMe
// admin): one ioctl at a time. The device port calls ioctl(2) on an open device; the scripted
// port (tests) records every request with the bytes of its argument struct and replays scripted
// answers, so command blocks and struct layouts are checked byte for byte without hardware.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
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

// Test seam: answers come from a script; every call is recorded (argument bytes as sent).
class ScriptedIoctlPort : public IoctlPort {
 public:
  struct Answer {
    int ret = 0;
    // Bytes copied over the argument struct at `struct_out_offset`, if any.
    std::vector<uint8_t> struct_out;
    size_t struct_out_offset = 0;
    // Bytes written to the data buffer the argument points at (found by the buffer locator).
    std::vector<uint8_t> buffer_out;
    // Bytes written to a second buffer (SG_IO sense data), if any.
    std::vector<uint8_t> sense_out;
  };
  struct Call {
    unsigned long request;
    std::vector<uint8_t> struct_in;
    // The data buffer's bytes as sent (for commands that carry data to the device).
    std::vector<uint8_t> buffer_in;
    // The command block an argument points at (SG_IO CDB), if any.
    std::vector<uint8_t> command_in;
  };
  struct Buffers {
    void* data = nullptr;
    size_t data_size = 0;
    void* sense = nullptr;
    size_t sense_size = 0;
    const void* command = nullptr;
    size_t command_size = 0;
  };
  // Finds the user buffers inside an argument struct for a request (none by default).
  using BufferLocator = std::function<Buffers(unsigned long request, void* arg)>;

  explicit ScriptedIoctlPort(std::vector<Answer> answers, BufferLocator locator = nullptr)
      : answers_(std::move(answers)), locator_(std::move(locator)) {}
  int Ioctl(unsigned long request, void* arg, size_t size) override;
  const std::vector<Call>& calls() const { return calls_; }

 private:
  std::vector<Answer> answers_;
  BufferLocator locator_;
  size_t next_ = 0;
  std::vector<Call> calls_;
};

}  // namespace kmip_agent
