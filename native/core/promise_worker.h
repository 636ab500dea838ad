// Runs blocking work (ioctls, I/O, crypto) off the JS thread and settles a promise: with what
// `finish` builds on the JS thread, or with a typed NativeError for anything `work` or `finish` threw.
// `work` is released on the worker thread as soon as it has run, so secrets it captured (SecretBytes)
// are wiped before the result travels back; it must therefore capture no JS values.
#pragma once
#include <napi.h>

#include <functional>
#include <memory>

#include "core/errors.h"

namespace kmip_agent {

// Builds a worker's result on the JS thread from the plain C++ values the worker captured.
using JsBuilder = std::function<Napi::Value(Napi::Env)>;

// The builder of a result that is undefined.
inline JsBuilder Undefined() {
  return [](Napi::Env env) { return env.Undefined(); };
}

class PromiseWorker : public Napi::AsyncWorker {
 public:
  using Work = std::function<void()>;
  using Finish = std::function<Napi::Value(Napi::Env)>;

  // Queues the work and returns its promise. `resource_name` names the work for async_hooks.
  static Napi::Promise Run(Napi::Env env, Work work, Finish finish, const char* resource_name = "generic") {
    auto* worker = new PromiseWorker(env, std::move(work), std::move(finish), resource_name);
    Napi::Promise promise = worker->deferred_.Promise();
    worker->Queue();
    return promise;
  }

  // Runs `work` off the JS thread and resolves with what the builder it returns makes (undefined
  // when it returns none).
  static Napi::Promise RunBuilt(Napi::Env env, std::function<JsBuilder()> work, const char* resource_name) {
    auto builder = std::make_shared<JsBuilder>();
    return Run(
        env, [work = std::move(work), builder] { *builder = work(); },
        [builder](Napi::Env e) { return *builder ? (*builder)(e) : e.Undefined(); }, resource_name);
  }

  void Execute() override {
    try {
      work_();
    } catch (...) {
      error_ = DescribeCurrentException();
      SetError(error_.message);
    }
    work_ = nullptr;
  }
  void OnOK() override {
    Napi::Env env = Env();
    Napi::Value value = CatchAll(env, [&] { return finish_(env); });
    if (env.IsExceptionPending()) {
      deferred_.Reject(env.GetAndClearPendingException().Value());
      return;
    }
    deferred_.Resolve(value);
  }
  void OnError(const Napi::Error&) override {
    deferred_.Reject(MakeError(Env(), error_).Value());
  }

 private:
  PromiseWorker(Napi::Env env, Work work, Finish finish, const char* resource_name)
      : Napi::AsyncWorker(env, resource_name), deferred_(Napi::Promise::Deferred::New(env)), work_(std::move(work)),
        finish_(std::move(finish)) {}

  Napi::Promise::Deferred deferred_;
  Work work_;
  Finish finish_;
  ErrorInfo error_;
};

}  // namespace kmip_agent
