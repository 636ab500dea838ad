#include "transport/passthrough.h"

#include <errno.h>
#include <sys/ioctl.h>
// sys/ioctl.h first: the NVMe header uses _IO/_IOWR without including it.
#include <linux/nvme_ioctl.h>
#include <scsi/sg.h>

#include <algorithm>
#include <cstring>
#include <fstream>

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

// SAT's ATA Information VPD page (89h): bytes 8..15 SAT VENDOR IDENTIFICATION, 16..31 SAT PRODUCT
// IDENTIFICATION name the translation layer; Linux libata calls itself "linux" / "libata".
bool TranslatedByLibata(const std::vector<uint8_t>& page) {
  return page.size() >= 32 && TrimAscii(page.data() + 8, 8) == "linux" && TrimAscii(page.data() + 16, 16) == "libata";
}

// The libata.allow_tpm module parameter ("1", "0"), or "" when it cannot be read.
std::string ReadAllowTpm(const std::string& file) {
  std::ifstream in(file);
  std::string value;
  if (!in || !std::getline(in, value)) return "";
  return value;
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
  // Transfers are whole blocks on every transport: a shorter ComPacket is zero-padded in a copy
  // that wipes itself (ComPackets carry PINs); one already padded is sent in place.
  const size_t length = PaddedTransferLength(data.size());
  SecretBytes padded(length == data.size() ? 0 : length);
  uint8_t* buffer = const_cast<uint8_t*>(data.data());
  if (length != data.size()) {
    if (!data.empty()) std::memcpy(padded.data(), data.data(), data.size());
    buffer = padded.data();
  }
  switch (kind_) {
    case PassthroughKind::Scsi: {
      auto cdb = ScsiSecurityProtocolCdb(true, protocol, com_id, static_cast<uint32_t>(length));
      RunSgIo(port_, cdb.data(), cdb.size(), SG_DXFER_TO_DEV, buffer, length, "SECURITY PROTOCOL OUT");
      return;
    }
    case PassthroughKind::Ata: {
      auto cdb = AtaTrustedCdb(true, protocol, com_id, static_cast<uint32_t>(length));
      RunSgIo(port_, cdb.data(), cdb.size(), SG_DXFER_TO_DEV, buffer, length, "ATA TRUSTED SEND");
      return;
    }
    case PassthroughKind::Nvme: {
      auto cmd = NvmeSecurityCommand(true, protocol, com_id, static_cast<uint32_t>(length));
      RunNvme(port_, cmd, buffer, "NVMe Security Send");
      return;
    }
  }
}

std::vector<uint8_t> PassthroughTransport::SecurityReceive(uint8_t protocol, uint16_t com_id, size_t length) {
  // Asked for whole blocks; the caller gets the `length` bytes it asked for.
  const size_t padded = PaddedTransferLength(length);
  std::vector<uint8_t> data(padded);
  switch (kind_) {
    case PassthroughKind::Scsi: {
      auto cdb = ScsiSecurityProtocolCdb(false, protocol, com_id, static_cast<uint32_t>(padded));
      RunSgIo(port_, cdb.data(), cdb.size(), SG_DXFER_FROM_DEV, data.data(), data.size(), "SECURITY PROTOCOL IN");
      break;
    }
    case PassthroughKind::Ata: {
      auto cdb = AtaTrustedCdb(false, protocol, com_id, static_cast<uint32_t>(padded));
      RunSgIo(port_, cdb.data(), cdb.size(), SG_DXFER_FROM_DEV, data.data(), data.size(), "ATA TRUSTED RECEIVE");
      break;
    }
    case PassthroughKind::Nvme: {
      auto cmd = NvmeSecurityCommand(false, protocol, com_id, static_cast<uint32_t>(padded));
      RunNvme(port_, cmd, data.data(), "NVMe Security Receive");
      break;
    }
  }
  if (padded != length) {
    SecureWipe(data.data() + length, padded - length);
    data.resize(length);
  }
  return data;
}

Route DetectRoute(IoctlPort& port, const std::string& path, const std::string& sysfs_root) {
  if (port.Ioctl(NVME_IOCTL_ID, nullptr, 0) >= 0)
    return {PassthroughKind::Nvme, "NVMe controller: Security Send/Receive admin commands"};
  int version = 0;
  if (port.Ioctl(SG_GET_VERSION_NUM, &version, sizeof version) != 0) {
    throw CodedError("TRANSPORT_NOT_SUPPORTED",
                     path + " is not a SCSI, ATA or NVMe disk (no SG_IO, no NVMe admin commands; a loop device or a "
                            "partition, for example): TCG pass-through is not possible on it");
  }
  // The ATA Information VPD page exists only where a SCSI/ATA Translation layer fronts an ATA drive.
  std::vector<uint8_t> page;
  try {
    page = InquiryVpd(port, 0x89);
  } catch (const CodedError&) {
    // no SAT: a native SCSI device
  }
  if (page.size() < 2 || page[1] != 0x89)
    return {PassthroughKind::Scsi, "SCSI device (no ATA Information VPD page): SECURITY PROTOCOL IN/OUT"};
  if (!TranslatedByLibata(page)) {
    std::string satl = TrimAscii(page.data() + 8, 8) + " " + TrimAscii(page.data() + 16, 16);
    satl = satl == " " ? "" : " (" + satl + ")";
    return {PassthroughKind::Ata, "ATA disk behind a SCSI/ATA translation layer" + satl +
                                      ": ATA PASS-THROUGH(16) with TRUSTED SEND/RECEIVE"};
  }
  const std::string file = sysfs_root + "/module/libata/parameters/allow_tpm";
  const std::string allow_tpm = ReadAllowTpm(file);
  if (allow_tpm == "1") {
    return {PassthroughKind::Ata, "ATA disk behind Linux libata, which passes TRUSTED SEND/RECEIVE through "
                                  "(libata.allow_tpm=1): ATA PASS-THROUGH(16)"};
  }
  return {PassthroughKind::Scsi,
          "ATA disk behind Linux libata: SCSI SECURITY PROTOCOL IN/OUT, which libata translates to TRUSTED "
          "SEND/RECEIVE (libata refuses them in ATA PASS-THROUGH unless the kernel is booted with "
          "libata.allow_tpm=1; " +
              file + (allow_tpm.empty() ? " could not be read)" : " reads " + allow_tpm + ")")};
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
  Route route = DetectRoute(*port, path);
  std::string serial = ReadSerial(*port, route.kind);
  IoctlPort& ref = *port;
  // The description carries the route's reason, so `drive discover` says how and why.
  return std::make_unique<PassthroughTransport>(
      ref, route.kind, std::string(KindName(route.kind)) + " " + path + " (" + route.reason + ")", serial,
      std::move(port));
}

}  // namespace transport
}  // namespace kmip_agent
