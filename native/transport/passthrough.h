// TCG IF-SEND / IF-RECV to real drives from user space: SCSI SECURITY PROTOCOL and ATA TRUSTED
// commands through SG_IO, NVMe Security Send/Receive through the admin command ioctl. Everything
// goes through an IoctlPort, so the same code runs against a device or the recording test seam.
#pragma once
#include <memory>
#include <string>

#include "core/ioctl_port.h"
#include "transport/transport.h"

namespace kmip_agent {
namespace transport {

enum class PassthroughKind { Scsi, Ata, Nvme };

const char* KindName(PassthroughKind kind);

class PassthroughTransport : public Transport {
 public:
  // `port` must outlive the transport unless it is `owned_port`.
  PassthroughTransport(IoctlPort& port, PassthroughKind kind, std::string description, std::string serial,
                       std::unique_ptr<IoctlPort> owned_port = nullptr);

  void SecuritySend(uint8_t protocol, uint16_t com_id, const std::vector<uint8_t>& data) override;
  std::vector<uint8_t> SecurityReceive(uint8_t protocol, uint16_t com_id, size_t length) override;
  std::string Describe() const override { return description_; }
  std::string Serial() const override { return serial_; }
  PassthroughKind kind() const { return kind_; }

 private:
  std::unique_ptr<IoctlPort> owned_port_;
  IoctlPort& port_;
  PassthroughKind kind_;
  std::string description_;
  std::string serial_;
};

// How a device is reached (the command set) and why, in words `drive discover` shows.
struct Route {
  PassthroughKind kind = PassthroughKind::Scsi;
  std::string reason;
};

// How this device can be reached: NVMe (NVME_IOCTL_ID answers); an ATA disk behind a SCSI/ATA
// Translation layer (the ATA Information VPD page exists) through ATA PASS-THROUGH, except behind
// Linux libata (the page names it), which refuses pass-through of TRUSTED SEND/RECEIVE unless the
// kernel was booted with libata.allow_tpm=1 (<sysfs_root>/module/libata/parameters/allow_tpm) and
// translates SCSI SECURITY PROTOCOL IN/OUT itself; otherwise SCSI (SG_IO works). Anything else, a
// loop device for one, throws TRANSPORT_NOT_SUPPORTED naming the device.
Route DetectRoute(IoctlPort& port, const std::string& path, const std::string& sysfs_root = "/sys");
inline PassthroughKind DetectKind(IoctlPort& port, const std::string& path) { return DetectRoute(port, path).kind; }

// Best effort: the drive's serial (SCSI VPD 80h, NVMe Identify Controller), "" when unavailable.
std::string ReadSerial(IoctlPort& port, PassthroughKind kind);

// Opens a device path and returns its pass-through transport (or throws, typed).
std::unique_ptr<PassthroughTransport> OpenDeviceTransport(const std::string& path);

}  // namespace transport
}  // namespace kmip_agent
