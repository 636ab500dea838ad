// SANITIZER BUILD ONLY (scripts/fuzz-native.sh defines KMIP_AGENT_SANITIZER_CANARY): planted bugs that
// prove the sanitizer run would see a real one. `sanitizerCanary.trigger(kind, n)` commits the named bug
// with sizes and indexes from `n`, so the compiler cannot prove it away; the script expects each call to
// end the process with the matching ASan or UBSan report. No other build compiles any of this.
#ifdef KMIP_AGENT_SANITIZER_CANARY
#include <napi.h>

#include <climits>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>

#include "core/registry.h"

namespace kmip_agent {
namespace sanitizer_canary {
namespace {

// Opaque to the optimiser: the bug happens through memory it cannot reason about.
volatile int sink;

Napi::Value Trigger(const Napi::CallbackInfo& info) {
  const std::string kind = info[0].As<Napi::String>().Utf8Value();
  const int n = info[1].As<Napi::Number>().Int32Value();
  if (kind == "heap-buffer-overflow") {
    auto buffer = std::make_unique<uint8_t[]>(n);
    std::memset(buffer.get(), 0, n);
    sink = buffer[n];  // one past the end
  } else if (kind == "heap-use-after-free") {
    uint8_t* buffer = new uint8_t[n];
    std::memset(buffer, 1, n);
    delete[] buffer;
    sink = buffer[n / 2];
  } else if (kind == "signed-integer-overflow") {
    int value = INT_MAX - 1;
    value += n;  // n >= 2 overflows
    sink = value;
  } else {
    Napi::TypeError::New(info.Env(), "unknown canary " + kind).ThrowAsJavaScriptException();
  }
  return info.Env().Undefined();
}

void Init(Napi::Env env, Napi::Object exports) {
  exports.Set("trigger", Napi::Function::New(env, Trigger, "trigger"));
}

}  // namespace
}  // namespace sanitizer_canary
}  // namespace kmip_agent

KMIP_AGENT_MODULE(sanitizerCanary, kmip_agent::sanitizer_canary::Init);
#endif  // KMIP_AGENT_SANITIZER_CANARY
