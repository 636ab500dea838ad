// The emulated Opal 2 drive as seen by the host stack: a Transport like any real drive.
// Opening takes an exclusive lock on the image (a second opener gets EMU_BUSY) held until the
// returned transport is destroyed. The drive's "powered" state (unlocked ranges, tries counters)
// persists across opens; only PowerCycle() relocks ranges with LockOnReset and resets Tries.
#pragma once
#include <memory>
#include <string>

#include "transport/transport.h"

namespace kmip_agent {
namespace emulator {

std::unique_ptr<transport::Transport> OpenEmulatedDrive(const std::string& path);

}  // namespace emulator
}  // namespace kmip_agent
