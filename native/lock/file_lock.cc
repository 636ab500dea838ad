// Advisory whole-file locks (flock) for the agent's state: one process owns the state directory at a
// time. The kernel drops the lock when the holder's descriptor closes, including when the process
// dies, so a crash never leaves a stale lock behind (a PID file would). Node has no flock, hence this.
#include <napi.h>
#include <errno.h>
#include <sys/file.h>

#include <cstring>
#include <string>

#include "core/errors.h"
#include "core/js_args.h"
#include "core/registry.h"

namespace kmip_agent {
namespace file_lock {
namespace {

int FdArg(const Napi::CallbackInfo& info) {
  if (info.Length() != 1) throw CodedError("LOCK_BAD_ARGUMENT", "expects one file descriptor");
  return IntegerArg<int>(info[0], "LOCK_BAD_ARGUMENT", "fd", 0);
}

// tryLock(fd): true when this descriptor now holds the exclusive lock, false when another holds it.
// Non-blocking, so it runs on the JS thread without waiting.
Napi::Value TryLock(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return CatchAll(env, [&]() -> Napi::Value {
    const int fd = FdArg(info);
    int rc;
    do {
      rc = ::flock(fd, LOCK_EX | LOCK_NB);
    } while (rc != 0 && errno == EINTR);
    if (rc == 0) return Napi::Boolean::New(env, true);
    if (errno == EWOULDBLOCK) return Napi::Boolean::New(env, false);
    throw CodedError("LOCK_FAILED", std::string("flock: ") + std::strerror(errno), errno);
  });
}

// unlock(fd): releases the lock (closing the descriptor does too).
Napi::Value Unlock(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return CatchAll(env, [&]() -> Napi::Value {
    if (::flock(FdArg(info), LOCK_UN) != 0) throw CodedError("LOCK_FAILED", std::string("flock: ") + std::strerror(errno), errno);
    return env.Undefined();
  });
}

void Init(Napi::Env env, Napi::Object exports) {
  exports.Set("tryLock", Napi::Function::New(env, TryLock, "tryLock"));
  exports.Set("unlock", Napi::Function::New(env, Unlock, "unlock"));
}

}  // namespace
}  // namespace file_lock
}  // namespace kmip_agent

KMIP_AGENT_MODULE(fileLock, kmip_agent::file_lock::Init);
