// Typed errors across the JS boundary. JS hands the addon its NativeError class once at load
// (setErrorClass); every failure then arrives in JS as that class with a stable `code`.
// C++ exceptions never cross into JS: CatchAll converts anything thrown inside a call.
#pragma once
#include <napi.h>

#include <functional>
#include <stdexcept>
#include <string>

namespace kmip_agent {

// An error with a stable code (e.g. "TCG_NOT_AUTHORIZED", "EMU_BUSY") raised inside C++.
class CodedError : public std::runtime_error {
 public:
  CodedError(std::string code, const std::string& message, int status = 0)
      : std::runtime_error(message), code_(std::move(code)), status_(status) {}
  const std::string& code() const { return code_; }
  // Protocol-level status (TCG method status, errno, ...) when there is one; 0 otherwise.
  int status() const { return status_; }
  // The drive refused to authenticate an authority (wrong PIN, or locked out). Marked only where an
  // authentication is answered, so callers never guess it from the message; JS sees `authRefused`.
  bool auth_refused() const { return auth_refused_; }
  CodedError& MarkAuthRefused() {
    auth_refused_ = true;
    return *this;
  }

 private:
  std::string code_;
  int status_;
  bool auth_refused_ = false;
};

// Builds a JS error of the registered class (falls back to Error) with .code and .status set.
Napi::Error MakeError(Napi::Env env, const std::string& code, const std::string& message, int status = 0);

// Throws (as a pending JS exception) a typed error; the caller must return right after.
void ThrowError(Napi::Env env, const std::string& code, const std::string& message, int status = 0);

// Runs fn and converts any C++ exception to a pending JS exception. Returns fn's value, or
// undefined when it threw.
Napi::Value CatchAll(Napi::Env env, const std::function<Napi::Value()>& fn);

// Error value for a CodedError / std::exception caught off the JS thread (AsyncWorker).
struct ErrorInfo {
  std::string code;
  std::string message;
  int status = 0;
  bool auth_refused = false;
};
ErrorInfo DescribeCurrentException();

// The JS error for a caught exception: MakeError's fields, plus `authRefused: true` when marked.
Napi::Error MakeError(Napi::Env env, const ErrorInfo& info);

}  // namespace kmip_agent
