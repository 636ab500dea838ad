// How TCG Storage bytes reach a drive: IF-SEND / IF-RECV (Security Protocol Out / In). Every
// backend (SG_IO ATA pass-through, SCSI SECURITY PROTOCOL, NVMe admin, the emulated drive)
// implements this, so the host stack cannot tell them apart.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace kmip_agent {
namespace transport {

// IF-SEND / IF-RECV transfers are whole 512-byte blocks on every transport: ATA trusted commands
// count blocks, libata rounds SCSI SECURITY PROTOCOL lengths up to them, and drives expect the
// padded lengths the kernel and other hosts send. Zero padding follows the ComPacket's Length.
constexpr size_t kTransferBlock = 512;

// `bytes` rounded up to whole transfer blocks, at least one block.
inline size_t PaddedTransferLength(size_t bytes) {
  if (bytes <= kTransferBlock) return kTransferBlock;
  return (bytes + kTransferBlock - 1) / kTransferBlock * kTransferBlock;
}

class Transport {
 public:
  virtual ~Transport() = default;

  // IF-SEND: security protocol `protocol` (1 for TCG ComPackets), `com_id` in the SP-specific field.
  // Throws CodedError on failure (e.g. "TRANSPORT_NOT_SUPPORTED", "TRANSPORT_IO").
  virtual void SecuritySend(uint8_t protocol, uint16_t com_id, const std::vector<uint8_t>& data) = 0;

  // IF-RECV: returns up to `length` bytes (a drive pads to the transfer length it was asked for).
  virtual std::vector<uint8_t> SecurityReceive(uint8_t protocol, uint16_t com_id, size_t length) = 0;

  // Short human description ("emulated drive /path/img", "SCSI /dev/sdb", ...).
  virtual std::string Describe() const = 0;

  // Serial number as the drive reports it (used e.g. for sedutil-style PIN hashing); may be empty.
  virtual std::string Serial() const = 0;
};

}  // namespace transport
}  // namespace kmip_agent
