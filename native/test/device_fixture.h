// TEST ADDON ONLY (never used for real drives): an IoctlPort that plays a SCSI disk, an ATA disk
// behind a SCSI/ATA Translation layer, or an NVMe controller, whose TCG side is another Transport
// (the emulated drive). It decodes the SG_IO / NVMe admin commands the pass-through transport
// sends, independently of the code that builds them (from SPC-4, SAT-3 + ACS, NVMe base spec), so the
// host TCG stack can run every Opal flow over real command blocks without hardware. A command
// block it cannot accept is answered like a drive would: CHECK CONDITION, ILLEGAL REQUEST, INVALID
// FIELD IN CDB (SCSI/ATA) or Invalid Field (NVMe).
#pragma once
#include <map>
#include <memory>
#include <string>

#include "core/ioctl_port.h"
#include "transport/passthrough.h"
#include "transport/transport.h"

namespace kmip_agent {
namespace transport {

class TransportBackedDevicePort : public IoctlPort {
 public:
  TransportBackedDevicePort(std::unique_ptr<Transport> tper, PassthroughKind kind)
      : tper_(std::move(tper)), kind_(kind) {}
  int Ioctl(unsigned long request, void* arg, size_t size) override;
  const Transport& tper() const { return *tper_; }
  // How many commands of each name were accepted ("SECURITY PROTOCOL IN", "ATA TRUSTED SEND", ...).
  const std::map<std::string, int>& counts() const { return counts_; }

 private:
  int SgIo(void* arg);
  int NvmeAdmin(void* arg);

  std::unique_ptr<Transport> tper_;
  PassthroughKind kind_;
  std::map<std::string, int> counts_;
};

}  // namespace transport
}  // namespace kmip_agent
