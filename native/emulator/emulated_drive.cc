// OpenEmulatedDrive: the emulated drive seen through the Transport interface. IF-SEND/IF-RECV
// route to the TPer (Level 0 discovery, ComPackets on the base ComID, protocol 0 listing).
#include "emulator/emulated_drive.h"

#include "core/errors.h"
#include "emulator/drive.h"
#include "emulator/tper.h"

namespace kmip_agent {
namespace emulator {
namespace {

class EmulatedTransport : public transport::Transport {
 public:
  explicit EmulatedTransport(std::unique_ptr<Drive> drive) : drive_(std::move(drive)), tper_(*drive_) {}

  void SecuritySend(uint8_t protocol, uint16_t com_id, const std::vector<uint8_t>& data) override {
    tper_.IfSend(protocol, com_id, data);
  }

  std::vector<uint8_t> SecurityReceive(uint8_t protocol, uint16_t com_id, size_t length) override {
    return tper_.IfRecv(protocol, com_id, length);
  }

  std::string Describe() const override { return "emulated drive " + drive_->path(); }
  std::string Serial() const override { return drive_->state().serial; }

 private:
  std::unique_ptr<Drive> drive_;
  TPer tper_;
};

}  // namespace

std::unique_ptr<transport::Transport> OpenEmulatedDrive(const std::string& path) {
  return std::make_unique<EmulatedTransport>(Drive::Open(path));
}

}  // namespace emulator
}  // namespace kmip_agent
