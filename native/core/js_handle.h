// How every native object reaches JS: a plain object (a "handle") whose methods share native state
// through captured shared_ptrs. A method reads its arguments on the JS thread, where a bad one
// throws a typed error, and returns a Promise for the work, run off the JS thread by PromiseWorker.
#pragma once
#include <napi.h>

#include <functional>
#include <utility>

#include "core/errors.h"

namespace kmip_agent {

using HandleMethod = std::function<Napi::Value(const Napi::CallbackInfo&)>;

// Adds `name` to `handle`; C++ exceptions thrown by `body` become typed JS errors (CatchAll).
inline void AddMethod(Napi::Env env, Napi::Object handle, const char* name, HandleMethod body) {
  handle.Set(name, Napi::Function::New(
                       env,
                       [body = std::move(body)](const Napi::CallbackInfo& info) {
                         return CatchAll(info.Env(), [&] { return body(info); });
                       },
                       name));
}

}  // namespace kmip_agent
