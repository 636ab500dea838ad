// Addon entry point: version(), the typed-error hook, and every registered subsystem module.
#include <napi.h>

#include <cerrno>
#include <cstring>
#include <exception>
#include <new>
#include <utility>
#include <vector>

#include "core/errors.h"
#include "core/registry.h"

#ifndef KMIP_AGENT_VERSION
#error "KMIP_AGENT_VERSION must be defined by binding.gyp"
#endif

namespace kmip_agent {
namespace {

std::vector<std::pair<const char*, ModuleInit>>& Modules() {
  static std::vector<std::pair<const char*, ModuleInit>> modules;
  return modules;
}

// Per-environment state: the JS error class registered by the TS loader.
struct AddonData {
  Napi::FunctionReference error_class;
};

Napi::Value Version(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), KMIP_AGENT_VERSION); }

Napi::Value SetErrorClass(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 1 || !info[0].IsFunction()) {
    ThrowError(env, "NATIVE_INVALID_ARGUMENT", "setErrorClass expects a constructor");
    return env.Undefined();
  }
  AddonData* data = env.GetInstanceData<AddonData>();
  data->error_class = Napi::Persistent(info[0].As<Napi::Function>());
  return env.Undefined();
}

}  // namespace

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  env.SetInstanceData(new AddonData());
  exports.Set("version", Napi::Function::New(env, Version, "version"));
  exports.Set("setErrorClass", Napi::Function::New(env, SetErrorClass, "setErrorClass"));
  InitRegisteredModules(env, exports);
  return exports;
}

bool RegisterModule(const char* name, ModuleInit init) {
  Modules().emplace_back(name, init);
  return true;
}

void InitRegisteredModules(Napi::Env env, Napi::Object exports) {
  for (auto& [name, init] : Modules()) {
    // Several files may fill one module (the test addon's `testSeams`).
    Napi::Value existing = exports.Get(name);
    Napi::Object sub = existing.IsObject() ? existing.As<Napi::Object>() : Napi::Object::New(env);
    init(env, sub);
    exports.Set(name, sub);
    if (env.IsExceptionPending()) return;
  }
}

Napi::Error MakeError(Napi::Env env, const std::string& code, const std::string& message, int status) {
  AddonData* data = env.GetInstanceData<AddonData>();
  Napi::Object error;
  if (data != nullptr && !data->error_class.IsEmpty()) {
    Napi::Value made = data->error_class.New({Napi::String::New(env, message), Napi::String::New(env, code)});
    if (!env.IsExceptionPending() && made.IsObject()) error = made.As<Napi::Object>();
  }
  if (error.IsEmpty()) error = Napi::Error::New(env, message).Value();
  error.Set("code", Napi::String::New(env, code));
  if (status != 0) error.Set("status", Napi::Number::New(env, status));
  return Napi::Error(env, error);
}

Napi::Error MakeError(Napi::Env env, const ErrorInfo& info) {
  Napi::Error error = MakeError(env, info.code, info.message, info.status);
  if (info.auth_refused) error.Value().Set("authRefused", Napi::Boolean::New(env, true));
  return error;
}

void ThrowError(Napi::Env env, const std::string& code, const std::string& message, int status) {
  MakeError(env, code, message, status).ThrowAsJavaScriptException();
}

ErrorInfo DescribeCurrentException() {
  try {
    throw;
  } catch (const CodedError& e) {
    return {e.code(), e.what(), e.status(), e.auth_refused()};
  } catch (const std::bad_alloc&) {
    return {"NATIVE_OUT_OF_MEMORY", "out of memory in the native addon", 0};
  } catch (const std::exception& e) {
    return {"NATIVE_INTERNAL", e.what(), 0};
  } catch (...) {
    return {"NATIVE_INTERNAL", "unknown native failure", 0};
  }
}

Napi::Value CatchAll(Napi::Env env, const std::function<Napi::Value()>& fn) {
  try {
    return fn();
  } catch (...) {
    MakeError(env, DescribeCurrentException()).ThrowAsJavaScriptException();
    return env.Undefined();
  }
}

}  // namespace kmip_agent

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return kmip_agent::Init(env, exports); }

NODE_API_MODULE(kmip_agent_native, InitAddon)
