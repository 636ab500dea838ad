#include "test/device_fixture.h"

#include <errno.h>
#include <sys/ioctl.h>
// sys/ioctl.h first: the NVMe header uses _IO/_IOWR without including it.
#include <linux/nvme_ioctl.h>
#include <scsi/sg.h>

#include <algorithm>
#include <cstring>
#include <vector>

namespace kmip_agent {
namespace transport {
namespace {

constexpr uint8_t kCheckCondition = 0x02;
constexpr uint8_t kIllegalRequest = 0x05;
constexpr uint8_t kInvalidFieldInCdb = 0x24;
constexpr uint8_t kInvalidOpcode = 0x20;
constexpr int kNvmeInvalidField = 0x02;

// Fixed-format sense data (SPC-4 4.5.3) with a CHECK CONDITION status.
int Refuse(sg_io_hdr_t* io, uint8_t asc) {
  io->status = kCheckCondition;
  io->masked_status = kCheckCondition >> 1;
  io->driver_status = 0x08;  // DRIVER_SENSE
  const uint8_t sense[18] = {0x70, 0, kIllegalRequest, 0, 0, 0, 0, 10, 0, 0, 0, 0, asc, 0, 0, 0, 0, 0};
  const size_t n = std::min<size_t>(io->mx_sb_len, sizeof sense);
  if (io->sbp != nullptr) std::memcpy(io->sbp, sense, n);
  io->sb_len_wr = static_cast<unsigned char>(n);
  return 0;
}

uint32_t Be32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) << 24 | static_cast<uint32_t>(p[1]) << 16 | static_cast<uint32_t>(p[2]) << 8 | p[3];
}

}  // namespace

int TransportBackedDevicePort::Ioctl(unsigned long request, void* arg, size_t) {
  if (request == SG_IO && kind_ != PassthroughKind::Nvme) return SgIo(arg);
  if (request == SG_GET_VERSION_NUM && kind_ != PassthroughKind::Nvme) {
    *static_cast<int*>(arg) = 30527;
    return 0;
  }
  if (request == NVME_IOCTL_ADMIN_CMD && kind_ == PassthroughKind::Nvme) return NvmeAdmin(arg);
  if (request == NVME_IOCTL_ID && kind_ == PassthroughKind::Nvme) return 1;
  return -ENOTTY;
}

int TransportBackedDevicePort::SgIo(void* arg) {
  auto* io = static_cast<sg_io_hdr_t*>(arg);
  if (io->interface_id != 'S' || io->cmdp == nullptr) return -EINVAL;
  const uint8_t* cdb = io->cmdp;
  auto* data = static_cast<uint8_t*>(io->dxferp);
  io->status = 0;
  io->sb_len_wr = 0;
  io->host_status = 0;
  io->driver_status = 0;

  uint8_t protocol = 0;
  uint16_t com_id = 0;
  bool to_device = false;
  std::string name;
  if (kind_ == PassthroughKind::Scsi && (cdb[0] == 0xA2 || cdb[0] == 0xB5) && io->cmd_len == 12) {
    // SECURITY PROTOCOL IN/OUT (SPC-4 6.40/6.41): protocol, SP specific (BE), INC_512, length (BE).
    to_device = cdb[0] == 0xB5;
    protocol = cdb[1];
    com_id = static_cast<uint16_t>(cdb[2] << 8 | cdb[3]);
    if ((cdb[4] & 0x80) != 0 || Be32(cdb + 6) != io->dxfer_len) return Refuse(io, kInvalidFieldInCdb);
    name = to_device ? "SECURITY PROTOCOL OUT" : "SECURITY PROTOCOL IN";
  } else if (kind_ == PassthroughKind::Ata && cdb[0] == 0x85 && io->cmd_len == 16 &&
             (cdb[14] == 0x5C || cdb[14] == 0x5E)) {
    // ATA PASS-THROUGH (16) (SAT-3 12.2.2) carrying TRUSTED RECEIVE/SEND (ACS-3 7.55/7.57):
    // FEATURE = protocol, COUNT + LBA(7:0) = 512-byte blocks, LBA(23:8) = SP specific.
    to_device = cdb[14] == 0x5E;
    const uint8_t ata_protocol = (cdb[1] >> 1) & 0x0F;
    const bool from_device_dir = (cdb[2] & 0x08) != 0;
    const bool blocks = (cdb[2] & 0x04) != 0;
    const uint8_t t_length = cdb[2] & 0x03;
    const uint32_t count = static_cast<uint32_t>(cdb[8]) << 8 | cdb[6];
    if (ata_protocol != (to_device ? 5 : 4) || from_device_dir == to_device || !blocks || t_length != 2 ||
        count * 512 != io->dxfer_len) {
      return Refuse(io, kInvalidFieldInCdb);
    }
    protocol = cdb[4];
    com_id = static_cast<uint16_t>(cdb[12] << 8 | cdb[10]);
    name = to_device ? "ATA TRUSTED SEND" : "ATA TRUSTED RECEIVE";
  } else if (cdb[0] == 0x12) {
    // INQUIRY: only the ATA Information VPD page (89h) for an ATA disk, as a SATL reports it.
    if (kind_ != PassthroughKind::Ata || (cdb[1] & 1) == 0 || cdb[2] != 0x89) return Refuse(io, kInvalidFieldInCdb);
    std::memset(data, 0, io->dxfer_len);
    if (io->dxfer_len > 1) data[1] = 0x89;
    ++counts_["INQUIRY"];
    return 0;
  } else {
    return Refuse(io, kInvalidOpcode);
  }
  const int expected_dir = to_device ? SG_DXFER_TO_DEV : SG_DXFER_FROM_DEV;
  if (io->dxfer_direction != expected_dir || data == nullptr) return Refuse(io, kInvalidFieldInCdb);
  if (to_device) {
    tper_->SecuritySend(protocol, com_id, std::vector<uint8_t>(data, data + io->dxfer_len));
  } else {
    std::vector<uint8_t> out = tper_->SecurityReceive(protocol, com_id, io->dxfer_len);
    std::memset(data, 0, io->dxfer_len);
    std::memcpy(data, out.data(), std::min<size_t>(out.size(), io->dxfer_len));
  }
  ++counts_[name];
  return 0;
}

int TransportBackedDevicePort::NvmeAdmin(void* arg) {
  auto* cmd = static_cast<nvme_passthru_cmd*>(arg);
  if (cmd->opcode != 0x81 && cmd->opcode != 0x82) return 0x01;  // Invalid Command Opcode
  // Security Send/Receive (NVMe base 5.25/5.26): CDW10 SECP(31:24) SPSP(23:8) NSSF(7:0), CDW11 length.
  const bool to_device = cmd->opcode == 0x81;
  const uint8_t protocol = static_cast<uint8_t>(cmd->cdw10 >> 24);
  const uint16_t com_id = static_cast<uint16_t>(cmd->cdw10 >> 8);
  if (cmd->nsid != 0 || (cmd->cdw10 & 0xFF) != 0 || cmd->cdw11 != cmd->data_len || cmd->addr == 0) {
    return kNvmeInvalidField;
  }
  auto* data = reinterpret_cast<uint8_t*>(static_cast<uintptr_t>(cmd->addr));
  if (to_device) {
    tper_->SecuritySend(protocol, com_id, std::vector<uint8_t>(data, data + cmd->data_len));
  } else {
    std::vector<uint8_t> out = tper_->SecurityReceive(protocol, com_id, cmd->data_len);
    std::memset(data, 0, cmd->data_len);
    std::memcpy(data, out.data(), std::min<size_t>(out.size(), cmd->data_len));
  }
  ++counts_[to_device ? "NVMe Security Send" : "NVMe Security Receive"];
  return 0;
}

}  // namespace transport
}  // namespace kmip_agent
