// addon.unixsocket: who is at the other end of a connected AF_UNIX socket. Node exposes neither the
// peer's address nor its credentials, and the crypttab key socket needs both: systemd-cryptsetup
// names the volume it wants in the abstract address it binds before connecting, and only root may
// receive a key. Two syscalls on an fd Node already owns: synchronous, they never block.
#include <napi.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <string>

#include "core/errors.h"
#include "core/js_args.h"
#include "core/registry.h"

namespace kmip_agent {
namespace unixsocket {
namespace {

int FdArg(const Napi::CallbackInfo& info) {
  return IntegerArg<int>(info[0], "SOCKET_INVALID_ARGUMENT", "file descriptor", 0);
}

// peerInfo(fd) -> { pid, uid, gid, address: Buffer (sun_path bytes, abstract names keep their
// leading NUL), abstract: boolean }.
Napi::Value PeerInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return CatchAll(env, [&]() -> Napi::Value {
    int fd = FdArg(info);
    struct ucred cred{};
    socklen_t cred_len = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cred_len) != 0) {
      int err = errno;
      throw CodedError("SOCKET_PEER_UNKNOWN", std::string("SO_PEERCRED failed: ") + strerror(err), err);
    }
    struct sockaddr_un addr{};
    socklen_t addr_len = sizeof addr;
    if (getpeername(fd, reinterpret_cast<struct sockaddr*>(&addr), &addr_len) != 0) {
      int err = errno;
      throw CodedError("SOCKET_PEER_UNKNOWN", std::string("getpeername failed: ") + strerror(err), err);
    }
    if (addr.sun_family != AF_UNIX) throw CodedError("SOCKET_NOT_UNIX", "the peer is not an AF_UNIX socket");
    size_t path_len = addr_len > offsetof(struct sockaddr_un, sun_path) ? addr_len - offsetof(struct sockaddr_un, sun_path) : 0;
    bool abstract = path_len > 0 && addr.sun_path[0] == '\0';
    // A filesystem path may carry its terminating NUL in the length; an abstract name is exact.
    if (!abstract)
      while (path_len > 0 && addr.sun_path[path_len - 1] == '\0') --path_len;
    Napi::Object o = Napi::Object::New(env);
    o.Set("pid", Napi::Number::New(env, cred.pid));
    o.Set("uid", Napi::Number::New(env, cred.uid));
    o.Set("gid", Napi::Number::New(env, cred.gid));
    o.Set("address", Napi::Buffer<uint8_t>::Copy(env, reinterpret_cast<const uint8_t*>(addr.sun_path), path_len));
    o.Set("abstract", Napi::Boolean::New(env, abstract));
    return o;
  });
}

void InitUnixSocket(Napi::Env env, Napi::Object exports) {
  exports.Set("peerInfo", Napi::Function::New(env, PeerInfo, "peerInfo"));
}

}  // namespace
}  // namespace unixsocket
}  // namespace kmip_agent

KMIP_AGENT_MODULE(unixsocket, kmip_agent::unixsocket::InitUnixSocket);
