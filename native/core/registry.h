// Static registration of addon modules: each subsystem (tcg, emulator, luks, ...) registers an init
// function from its own file, so adding a subsystem never edits a shared list.
#pragma once
#include <napi.h>

namespace kmip_agent {

using ModuleInit = void (*)(Napi::Env env, Napi::Object exports);

// Returns true so it can initialise a static bool at namespace scope.
bool RegisterModule(const char* name, ModuleInit init);

void InitRegisteredModules(Napi::Env env, Napi::Object exports);

// The addon entry point (core/addon.cc).
Napi::Object Init(Napi::Env env, Napi::Object exports);

}  // namespace kmip_agent

#define KMIP_AGENT_MODULE(name, fn) \
  static const bool kmip_agent_module_registered_##name = ::kmip_agent::RegisterModule(#name, fn)
