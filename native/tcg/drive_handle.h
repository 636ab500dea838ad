// The JS handle of one open drive (tcg module): every method runs its Opal flow off the JS thread
// and returns a Promise; calls on one drive are serialised by its mutex. Declared here so the test
// addon (native/test) can put its scripted and fixture drives behind the same handle.
#pragma once
#include <napi.h>

#include <memory>
#include <mutex>
#include <string>

#include "tcg/opal.h"

namespace kmip_agent {
namespace tcg {

// One open drive. Calls take `mutex` for their whole flow so sessions never interleave.
struct DriveState {
  std::mutex mutex;
  std::unique_ptr<OpalDrive> drive;
  std::string description;
  std::string serial;
};

// Takes ownership of `drive` and reads what the handle reports about it (description, serial).
std::shared_ptr<DriveState> MakeDriveState(std::unique_ptr<OpalDrive> drive);

Napi::Object MakeHandle(Napi::Env env, std::shared_ptr<DriveState> state);

}  // namespace tcg
}  // namespace kmip_agent
