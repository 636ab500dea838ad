// TEST SEAM (test addon only): an IoctlPort whose answers come from a script; every call is
// recorded (argument bytes as sent), so command blocks and struct layouts are checked byte for byte.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

#include "core/ioctl_port.h"

namespace kmip_agent {

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
