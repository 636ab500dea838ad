#include "transport/passthrough.h"

#include <errno.h>
#include <sys/ioctl.h>
// sys/ioctl.h first: the NVMe header uses _IO/_IOWR without including it.
#include <linux/nvme_ioctl.h>
#include <scsi/sg.h>

#include <algorithm>
#include <cstring>

#include "core/errors.h"
#include "core/secure.h"
#include "transport/security_commands.h"

namespace kmip_agent {
namespace transport {
namespace {

constexpr unsigned kTimeoutMs = 20000;
constexpr uint8_t kScsiStatusCheckCondition = 0x02;
constexpr uint16_t kDriverSense = 0x08;

[[noreturn]] void ThrowErrno(const std::string& what, int err) {
  switch (err) {
    case ENOTTY:
    case EINVAL:
    case EOPNOTSUPP:
      throw CodedError("TRANSPORT_NOT_SUPPORTED", what + ": not supported by this device (" + std::strerror(err) + ")",
                       err);
    case EACCES:
    case EPERM:
      throw CodedError("TRANSPORT_PERMISSION_DENIED",
                       what + ": permission denied: pass-through needs root (CAP_SYS_RAWIO and CAP_SYS_ADMIN)", err);
    default:
      throw CodedError("TRANSPORT_IO", what + ": " + std::strerror(err), err);
  }
}

// One SG_IO command; `direction` is SG_DXFER_FROM_DEV, SG_DXFER_TO_DEV or SG_DXFER_NONE.
void RunSgIo(IoctlPort& port, const uint8_t* cdb, size_t cdb_len, int direction, uint8_t* data, size_t length,
             const std::string& what) {
  uint8_t sense[64] = {};
  sg_io_hdr_t io;
  std::memset(&io, 0, sizeof io);
  io.interface_id = 'S';
  io.cmd_len = static_cast<unsigned char>(cdb_len);
  io.cmdp = const_cast<unsigned char*>(cdb);
  io.dxfer_direction = direction;
  io.dxfer_len = static_cast<unsigned>(length);
  io.dxferp = data;
  io.mx_sb_len = sizeof sense;
  io.sbp = sense;
  io.timeout = kTimeoutMs;
  int ret = port.Ioctl(SG_IO, &io, sizeof io);
  if (ret < 0) ThrowErrno(what, -ret);
  const bool check_condition = (io.status & 0x7E) == kScsiStatusCheckCondition;
  if (check_condition || io.sb_len_wr > 0) {
    SenseInfo info = ParseSense(sense, io.sb_len_wr);
    if (SenseMeansUnsupported(info)) {
      throw CodedError("TRANSPORT_NOT_SUPPORTED",
                       what + ": the device refused the command (" + DescribeSense(info) +
                           "): it does not support TCG security commands");
    }
    if (info.valid && info.key != 0) {
      throw CodedError("TRANSPORT_COMMAND_FAILED", what + ": " + DescribeSense(info), info.key);
    }
  }
  if (io.host_status != 0 || (io.driver_status & ~kDriverSense) != 0) {
    throw CodedError("TRANSPORT_IO", what + ": host status " + std::to_string(io.host_status) + ", driver status " +
                                         std::to_string(io.driver_status));
  }
}

void RunNvme(IoctlPort& port, nvme_passthru_cmd& cmd, uint8_t* data, const std::string& what) {
  cmd.addr = reinterpret_cast<uintptr_t>(data);
  int ret = port.Ioctl(NVME_IOCTL_ADMIN_CMD, &cmd, sizeof cmd);
  if (ret < 0) ThrowErrno(what, -ret);
  if (ret > 0) {
    // NVMe status field (SCT/SC): generic 01h invalid opcode, 02h invalid field.
    const int sc = ret & 0xFF;
    const int sct = (ret >> 8) & 0x7;
    if (sct == 0 && (sc == 0x01 || sc == 0x02)) {
      throw CodedError("TRANSPORT_NOT_SUPPORTED",
                       what + ": the controller refused the command (status " + std::to_string(ret) +
                           "): it does not support TCG security commands",
                       ret);
    }
    throw CodedError("TRANSPORT_COMMAND_FAILED", what + ": NVMe status " + std::to_string(ret), ret);
  }
}

std::string TrimAscii(const uint8_t* data, size_t size) {
  std::string s(reinterpret_cast<const char*>(data), size);
  s.erase(std::find(s.begin(), s.end(), '\0'), s.end());
  const auto first = s.find_first_not_of(' ');
  if (first == std::string::npos) return "";
  return s.substr(first, s.find_last_not_of(' ') - first + 1);
}

// INQUIRY with EVPD for `page`; returns the page or throws.
std::vector<uint8_t> InquiryVpd(IoctlPort& port, uint8_t page) {
  std::vector<uint8_t> data(255);
  const uint8_t cdb[6] = {0x12, 0x01, page, 0x00, static_cast<uint8_t>(data.size()), 0x00};
  RunSgIo(port, cdb, sizeof cdb, SG_DXFER_FROM_DEV, data.data(), data.size(), "INQUIRY VPD");
  return data;
}

// ATA trusted commands move whole 512-byte blocks, at least one.
size_t AtaPadded(size_t bytes) {
  return std::max<size_t>(kAtaBlockSize, (bytes + kAtaBlockSize - 1) / kAtaBlockSize * kAtaBlockSize);
}

}  // namespace

const char* KindName(PassthroughKind kind) {
  switch (kind) {
    case PassthroughKind::Scsi: return "scsi";
    case PassthroughKind::Ata: return "ata";
    default: return "nvme";
  }
}

PassthroughTransport::PassthroughTransport(IoctlPort& port, PassthroughKind kind, std::string description,
                                           std::string serial, std::unique_ptr<IoctlPort> owned_port)
    : owned_port_(std::move(owned_port)), port_(port), kind_(kind), description_(std::move(description)),
      serial_(std::move(serial)) {}

void PassthroughTransport::SecuritySend(uint8_t protocol, uint16_t com_id, const std::vector<uint8_t>& data) {
  switch (kind_) {
    case PassthroughKind::Scsi: {
      // Sent in place: ComPackets carry PINs, so no copies are made that would need wiping.
      auto cdb = ScsiSecurityProtocolCdb(true, protocol, com_id, static_cast<uint32_t>(data.size()));
      RunSgIo(port_, cdb.data(), cdb.size(), SG_DXFER_TO_DEV, const_cast<uint8_t*>(data.data()), data.size(),
              "SECURITY PROTOCOL OUT");
      return;
    }
    case PassthroughKind::Ata: {
      // ATA moves whole blocks: the ComPacket is padded with zeros in a copy that wipes itself.
      SecretBytes payload(AtaPadded(data.size()));
      std::memcpy(payload.data(), data.data(), data.size());
      auto cdb = AtaTrustedCdb(true, protocol, com_id, static_cast<uint32_t>(payload.size()));
      RunSgIo(port_, cdb.data(), cdb.size(), SG_DXFER_TO_DEV, payload.data(), payload.size(), "ATA TRUSTED SEND");
      return;
    }
    case PassthroughKind::Nvme: {
      auto cmd = NvmeSecurityCommand(true, protocol, com_id, static_cast<uint32_t>(data.size()));
      RunNvme(port_, cmd, const_cast<uint8_t*>(data.data()), "NVMe Security Send");
      return;
    }
  }
}

std::vector<uint8_t> PassthroughTransport::SecurityReceive(uint8_t protocol, uint16_t com_id, size_t length) {
  switch (kind_) {
    case PassthroughKind::Scsi: {
      std::vector<uint8_t> data(length);
      auto cdb = ScsiSecurityProtocolCdb(false, protocol, com_id, static_cast<uint32_t>(length));
      RunSgIo(port_, cdb.data(), cdb.size(), SG_DXFER_FROM_DEV, data.data(), data.size(), "SECURITY PROTOCOL IN");
      return data;
    }
    case PassthroughKind::Ata: {
      size_t padded = AtaPadded(length);
      std::vector<uint8_t> data(padded);
      auto cdb = AtaTrustedCdb(false, protocol, com_id, static_cast<uint32_t>(padded));
      RunSgIo(port_, cdb.data(), cdb.size(), SG_DXFER_FROM_DEV, data.data(), data.size(), "ATA TRUSTED RECEIVE");
      data.resize(length);
      return data;
    }
    default: {
      std::vector<uint8_t> data(length);
      auto cmd = NvmeSecurityCommand(false, protocol, com_id, static_cast<uint32_t>(length));
      RunNvme(port_, cmd, data.data(), "NVMe Security Receive");
      return data;
    }
  }
}

PassthroughKind DetectKind(IoctlPort& port, const std::string& path) {
  if (port.Ioctl(NVME_IOCTL_ID, nullptr, 0) >= 0) return PassthroughKind::Nvme;
  int version = 0;
  if (port.Ioctl(SG_GET_VERSION_NUM, &version, sizeof version) != 0) {
    throw CodedError("TRANSPORT_NOT_SUPPORTED",
                     path + " is not a SCSI, ATA or NVMe disk (no SG_IO, no NVMe admin commands; a loop device or a "
                            "partition, for example): TCG pass-through is not possible on it");
  }
  // The ATA Information VPD page exists only where a SCSI/ATA Translation layer fronts an ATA drive.
  try {
    std::vector<uint8_t> page = InquiryVpd(port, 0x89);
    if (page[1] == 0x89) return PassthroughKind::Ata;
  } catch (const CodedError&) {
    // no SAT: a native SCSI device
  }
  return PassthroughKind::Scsi;
}

std::string ReadSerial(IoctlPort& port, PassthroughKind kind) {
  try {
    if (kind == PassthroughKind::Nvme) {
      std::vector<uint8_t> identify(4096);
      nvme_passthru_cmd cmd;
      std::memset(&cmd, 0, sizeof cmd);
      cmd.opcode = 0x06;  // Identify
      cmd.cdw10 = 1;      // CNS 01h: controller
      cmd.data_len = static_cast<uint32_t>(identify.size());
      cmd.timeout_ms = kTimeoutMs;
      RunNvme(port, cmd, identify.data(), "NVMe Identify");
      return TrimAscii(identify.data() + 4, 20);  // SN: bytes 23:04
    }
    std::vector<uint8_t> page = InquiryVpd(port, 0x80);
    if (page[1] != 0x80) return "";
    size_t length = std::min<size_t>(page[3], page.size() - 4);
    return TrimAscii(page.data() + 4, length);
  } catch (const CodedError&) {
    return "";
  }
}

std::unique_ptr<PassthroughTransport> OpenDeviceTransport(const std::string& path) {
  auto port = std::make_unique<DeviceIoctlPort>(path, "TRANSPORT");
  if (!port->IsBlockDevice() && !port->IsCharDevice()) {
    throw CodedError("TRANSPORT_NOT_SUPPORTED", path + " is not a device node: TCG pass-through needs a drive");
  }
  PassthroughKind kind = DetectKind(*port, path);
  std::string serial = ReadSerial(*port, kind);
  IoctlPort& ref = *port;
  return std::make_unique<PassthroughTransport>(ref, kind, std::string(KindName(kind)) + " " + path, serial,
                                                std::move(port));
}

}  // namespace transport
}  // namespace kmip_agent
