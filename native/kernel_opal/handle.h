// The JS handle of the kernelOpal module: one method per sed-opal operation, each returning a
// Promise for its ioctls, run off the JS thread and serialised per handle. Declared here so the
// test addon (native/test) can put its recording ioctl port behind the same handle.
#pragma once
#include <napi.h>

#include <functional>
#include <memory>
#include <mutex>

#include "core/ioctl_port.h"

namespace kmip_agent {
namespace kernel_opal {

struct HandleState {
  std::mutex mutex;
  // Runs `use` with this handle's port (held under `mutex`): the device, opened for the call, or a
  // test's recording port.
  std::function<void(const std::function<void(IoctlPort&)>& use)> with_port;
};

Napi::Object MakeHandle(Napi::Env env, std::shared_ptr<HandleState> state);

}  // namespace kernel_opal
}  // namespace kmip_agent
