// Runs blocking work (ioctls, I/O, crypto) off the JS thread and settles a promise: with what
// `finish` builds on the JS thread, or with a typed NativeError for anything `work` threw.
#pragma once
#include <napi.h>

#include <functional>

#include "core/errors.h"

namespace kmip_agent {

class PromiseWorker : public Napi::AsyncWorker {
 public:
  using Work = std::function<void()>;
  using Finish = std::function<Napi::Value(Napi::Env)>;

  // Queues the work and returns its promise.
  static Napi::Promise Run(Napi::Env env, Work work, Finish finish) {
    auto* worker = new PromiseWorker(env, std::move(work), std::move(finish));
    Napi::Promise promise = worker->deferred_.Promise();
    worker->Queue();
    return promise;
  }

  void Execute() override {
    try {
      work_();
    } catch (...) {
      error_ = DescribeCurrentException();
      SetError(error_.message);
    }
  }
  void OnOK() override {
    Napi::Value value = finish_(Env());
    if (Env().IsExceptionPending()) {
      deferred_.Reject(Env().GetAndClearPendingException().Value());
      return;
    }
    deferred_.Resolve(value);
  }
  void OnError(const Napi::Error&) override {
    deferred_.Reject(MakeError(Env(), error_.code, error_.message, error_.status).Value());
  }

 private:
  PromiseWorker(Napi::Env env, Work work, Finish finish)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), work_(std::move(work)),
        finish_(std::move(finish)) {}

  Napi::Promise::Deferred deferred_;
  Work work_;
  Finish finish_;
  ErrorInfo error_;
};

}  // namespace kmip_agent
