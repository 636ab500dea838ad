// Command blocks that carry TCG IF-SEND / IF-RECV to a drive, built byte for byte:
//   SCSI  SECURITY PROTOCOL IN (A2h) / OUT (B5h), 12-byte CDB (SPC-4)
//   ATA   TRUSTED RECEIVE (5Ch) / TRUSTED SEND (5Eh) inside ATA PASS-THROUGH (16) (85h, SAT)
//   NVMe  Security Receive (82h) / Security Send (81h) admin commands
// and the SCSI sense data that comes back when a drive refuses one.
#pragma once
#include <sys/ioctl.h>
// sys/ioctl.h first: the NVMe header uses _IO/_IOWR without including it.
#include <linux/nvme_ioctl.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace kmip_agent {
namespace transport {

constexpr uint8_t kScsiSecurityProtocolIn = 0xA2;
constexpr uint8_t kScsiSecurityProtocolOut = 0xB5;
constexpr uint8_t kAtaPassThrough16 = 0x85;
constexpr uint8_t kAtaTrustedReceive = 0x5C;
constexpr uint8_t kAtaTrustedSend = 0x5E;
constexpr uint8_t kNvmeAdminSecuritySend = 0x81;
constexpr uint8_t kNvmeAdminSecurityReceive = 0x82;
constexpr size_t kAtaBlockSize = 512;

// `to_device` = IF-SEND. Lengths are in bytes (INC_512 = 0).
std::array<uint8_t, 12> ScsiSecurityProtocolCdb(bool to_device, uint8_t protocol, uint16_t sp_specific, uint32_t length);

// Length in bytes, a multiple of 512 and at most 0xFFFF blocks (throws TRANSPORT_INVALID_ARGUMENT).
std::array<uint8_t, 16> AtaTrustedCdb(bool to_device, uint8_t protocol, uint16_t sp_specific, uint32_t length);

// The admin command with its data buffer pointer left for the caller to set.
nvme_passthru_cmd NvmeSecurityCommand(bool to_device, uint8_t protocol, uint16_t sp_specific, uint32_t length);

struct SenseInfo {
  bool valid = false;
  uint8_t response_code = 0;
  uint8_t key = 0;
  uint8_t asc = 0;
  uint8_t ascq = 0;
};

// Fixed (70h/71h) or descriptor (72h/73h) format sense data.
SenseInfo ParseSense(const uint8_t* data, size_t size);

// "ILLEGAL REQUEST, asc 20h ascq 00h (invalid command operation code)".
std::string DescribeSense(const SenseInfo& sense);

// True when the sense says the device does not know the command or its fields (ILLEGAL REQUEST
// with invalid opcode / invalid field in CDB), i.e. the device has no such security protocol.
bool SenseMeansUnsupported(const SenseInfo& sense);

}  // namespace transport
}  // namespace kmip_agent
