// sd_notify: one datagram to systemd's notification socket ($NOTIFY_SOCKET). Node has no
// AF_UNIX datagram sockets, so the addon sends it. Abstract sockets ("@name") are supported.
#include <napi.h>
#include <errno.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "core/errors.h"
#include "core/registry.h"

namespace kmip_agent {
namespace notify {
namespace {

void SendDatagram(const std::string& socket_path, const std::string& message) {
  if (socket_path.empty() || (socket_path[0] != '/' && socket_path[0] != '@')) {
    throw CodedError("NOTIFY_BAD_SOCKET", "NOTIFY_SOCKET must be an absolute path or an abstract name starting with @");
  }
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (socket_path.size() > sizeof(address.sun_path)) {
    throw CodedError("NOTIFY_BAD_SOCKET", "NOTIFY_SOCKET is longer than a unix socket address allows");
  }
  std::memcpy(address.sun_path, socket_path.data(), socket_path.size());
  if (socket_path[0] == '@') address.sun_path[0] = '\0';  // abstract namespace
  const socklen_t length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + socket_path.size());

  int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw CodedError("NOTIFY_FAILED", std::string("socket: ") + std::strerror(errno), errno);
  ssize_t sent;
  do {
    sent = ::sendto(fd, message.data(), message.size(), MSG_NOSIGNAL, reinterpret_cast<sockaddr*>(&address), length);
  } while (sent < 0 && errno == EINTR);
  int err = errno;
  ::close(fd);
  if (sent < 0) {
    throw CodedError("NOTIFY_FAILED", "sending to " + socket_path + ": " + std::strerror(err), err);
  }
}

// send(socketPath, message): throws a typed error when the datagram cannot be sent.
Napi::Value Send(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return CatchAll(env, [&]() -> Napi::Value {
    if (info.Length() != 2 || !info[0].IsString() || !info[1].IsString()) {
      throw CodedError("NOTIFY_BAD_ARGUMENT", "send(socketPath, message) expects two strings");
    }
    SendDatagram(info[0].As<Napi::String>().Utf8Value(), info[1].As<Napi::String>().Utf8Value());
    return env.Undefined();
  });
}

void Init(Napi::Env env, Napi::Object exports) { exports.Set("send", Napi::Function::New(env, Send, "send")); }

}  // namespace
}  // namespace notify
}  // namespace kmip_agent

KMIP_AGENT_MODULE(notify, kmip_agent::notify::Init);
