// TEST ADDON ONLY. `testSeams.openScriptedKernelOpal(answers)`: the kernelOpal handle over the
// recording ioctl port. Handle extra: calls() -> [{request, name, struct}] of every ioctl so far
// (read between calls, when no worker runs), the struct bytes as the kernel would have seen them.
#include <napi.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "core/errors.h"
#include "core/js_args.h"
#include "core/registry.h"
#include "kernel_opal/handle.h"
#include "kernel_opal/sed_opal_abi.h"
#include "test/scripted_ioctl_port.h"

namespace kmip_agent {
namespace kernel_opal {
namespace {

constexpr const char* kCode = "KOPAL_INVALID_ARGUMENT";

// Where IOC_OPAL_DISCOVERY's argument points at its data buffer.
ScriptedIoctlPort::Buffers LocateBuffers(unsigned long request, void* arg) {
  ScriptedIoctlPort::Buffers buffers;
  if (request == kIocDiscovery) {
    auto* d = static_cast<OpalDiscovery*>(arg);
    buffers.data = reinterpret_cast<void*>(static_cast<uintptr_t>(d->data));
    buffers.data_size = d->size;
  }
  return buffers;
}

// answers: [{ret, structOut?, bufferOut?}], replayed in order (then -ENOTTY).
Napi::Value OpenScriptedKernelOpal(const Napi::CallbackInfo& info) {
  return CatchAll(info.Env(), [&]() -> Napi::Value {
    if (!info[0].IsArray()) throw CodedError(kCode, "answers must be an array");
    std::vector<ScriptedIoctlPort::Answer> answers;
    Napi::Array list = info[0].As<Napi::Array>();
    for (uint32_t i = 0; i < list.Length(); ++i) {
      if (!list.Get(i).IsObject()) throw CodedError(kCode, "each answer must be {ret, structOut?, bufferOut?}");
      Napi::Object a = list.Get(i).As<Napi::Object>();
      ScriptedIoctlPort::Answer answer;
      answer.ret = OptionalIntegerArg<int32_t>(a.Get("ret"), kCode, "ret").value_or(0);
      CopyIfBuffer(a.Get("structOut"), answer.struct_out);
      CopyIfBuffer(a.Get("bufferOut"), answer.buffer_out);
      answers.push_back(std::move(answer));
    }
    auto port = std::make_shared<ScriptedIoctlPort>(std::move(answers), LocateBuffers);
    auto state = std::make_shared<HandleState>();
    state->with_port = [port](const std::function<void(IoctlPort&)>& use) { use(*port); };
    Napi::Object handle = MakeHandle(info.Env(), state);
    handle.Set("calls", Napi::Function::New(info.Env(), [port, state](const Napi::CallbackInfo& ci) {
      std::lock_guard<std::mutex> lock(state->mutex);
      Napi::Env env = ci.Env();
      Napi::Array calls = Napi::Array::New(env, port->calls().size());
      for (size_t i = 0; i < port->calls().size(); ++i) {
        const auto& call = port->calls()[i];
        Napi::Object c = Napi::Object::New(env);
        c.Set("request", Napi::Number::New(env, static_cast<double>(call.request)));
        const char* name = IoctlName(call.request);
        c.Set("name", name != nullptr ? Napi::String::New(env, name) : env.Null());
        c.Set("struct", Napi::Buffer<uint8_t>::Copy(env, call.struct_in.data(), call.struct_in.size()));
        calls.Set(static_cast<uint32_t>(i), c);
      }
      return calls;
    }));
    return handle;
  });
}

void Init(Napi::Env env, Napi::Object exports) {
  exports.Set("openScriptedKernelOpal", Napi::Function::New(env, OpenScriptedKernelOpal, "openScriptedKernelOpal"));
}

}  // namespace
}  // namespace kernel_opal
}  // namespace kmip_agent

KMIP_AGENT_MODULE(testSeams, kmip_agent::kernel_opal::Init);
