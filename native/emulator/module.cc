// N-API module `emulator`: create / powerCycle / read / write / info / destroy by image path, and
// open() for a handle that keeps one Transport (and its TCG session) across raw ifSend / ifRecv
// calls. Every function returns a Promise; the work runs on the libuv pool (core/promise_worker.h).
// Bad arguments throw a typed EMU_INVALID_ARGUMENT before any work is queued (core/js_args.h).
#include <napi.h>

#include <functional>
#include <memory>
#include <mutex>

#include "core/errors.h"
#include "core/js_args.h"
#include "core/js_handle.h"
#include "core/promise_worker.h"
#include "core/registry.h"
#include "core/secure.h"
#include "emulator/drive.h"
#include "emulator/emu_crypto.h"
#include "emulator/emulated_drive.h"

namespace kmip_agent {
namespace emulator {
namespace {

// Path-based calls from this process wait for each other instead of failing with EMU_BUSY
// (the flock still refuses other processes and open handles).
std::mutex& PathCallMutex() {
  static std::mutex mutex;
  return mutex;
}

PromiseWorker::Work Serialized(PromiseWorker::Work work) {
  return [work = std::move(work)] {
    std::lock_guard<std::mutex> lock(PathCallMutex());
    work();
  };
}

constexpr const char* kCode = "EMU_INVALID_ARGUMENT";

std::string PathArg(const Napi::Value& v) {
  std::string path = StringArg(v, kCode, "image path");
  if (path.size() >= 4096) throw CodedError(kCode, "image path must be shorter than 4096 bytes");
  return path;
}

uint64_t UintArg(const Napi::Value& v, const char* what, uint64_t max) {
  return IntegerArg<uint64_t>(v, kCode, what, 0, max);
}

Napi::Buffer<uint8_t> ToBuffer(Napi::Env env, const std::vector<uint8_t>& bytes) {
  return Napi::Buffer<uint8_t>::Copy(env, bytes.data(), bytes.size());
}

Napi::Value Create(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string path = PathArg(info[0]);
  const uint64_t size_mib = UintArg(info[1], "sizeMiB", 1ULL << 32);
  const std::string serial = StringArg(info[2], kCode, "serial");
  auto psid = std::make_shared<std::string>();
  return PromiseWorker::Run(
      env, Serialized([=] { *psid = Drive::Create(path, size_mib, serial); }),
      [=](Napi::Env e) {
        Napi::Object out = Napi::Object::New(e);
        out.Set("psid", Napi::String::New(e, *psid));
        SecureWipe(psid->data(), psid->size());
        return out;
      });
}

Napi::Value PowerCycle(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string path = PathArg(info[0]);
  return PromiseWorker::Run(
      env, Serialized([=] { Drive::Open(path)->PowerCycle(); }), [](Napi::Env e) { return e.Undefined(); });
}

Napi::Value Destroy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string path = PathArg(info[0]);
  return PromiseWorker::Run(
      env, Serialized([=] { Drive::Destroy(path); }), [](Napi::Env e) { return e.Undefined(); });
}

Napi::Value Read(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string path = PathArg(info[0]);
  const uint64_t lba = UintArg(info[1], "lba", (1ULL << 53) - 1);
  const uint64_t count = UintArg(info[2], "count", 65536);
  auto data = std::make_shared<std::vector<uint8_t>>();
  return PromiseWorker::Run(
      env, Serialized([=] { *data = Drive::Open(path)->Read(lba, count); }),
      [=](Napi::Env e) { return ToBuffer(e, *data); });
}

Napi::Value Write(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string path = PathArg(info[0]);
  const uint64_t lba = UintArg(info[1], "lba", (1ULL << 53) - 1);
  auto data = std::make_shared<std::vector<uint8_t>>(BytesArg(info[2], kCode, "data"));
  return PromiseWorker::Run(
      env, Serialized([=] { Drive::Open(path)->Write(lba, data->data(), data->size()); }),
      [](Napi::Env e) { return e.Undefined(); });
}

struct InfoSnapshot {
  std::string path;
  DriveState state;
  bool owned = false;  // the SID PIN is no longer the MSID
};

Napi::Value Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string path = PathArg(info[0]);
  auto snap = std::make_shared<InfoSnapshot>();
  return PromiseWorker::Run(
      env,
      Serialized([=] {
        std::unique_ptr<Drive> drive = Drive::Open(path);
        snap->path = path;
        snap->state = drive->state();
        const PinRow* sid = snap->state.FindPin(tcg::uid::kCPinSid);
        const std::string& msid = snap->state.msid;
        snap->owned = sid != nullptr &&
                      !drive->VerifyPin(*sid, reinterpret_cast<const uint8_t*>(msid.data()), msid.size(), nullptr);
      }),
      [=](Napi::Env e) {
        const DriveState& s = snap->state;
        Napi::Object out = Napi::Object::New(e);
        out.Set("path", snap->path);
        out.Set("serial", s.serial);
        out.Set("blocks", Napi::Number::New(e, static_cast<double>(s.blocks)));
        out.Set("sizeMiB", Napi::Number::New(e, static_cast<double>(s.blocks * kBlockSize >> 20)));
        out.Set("logicalBlockSize", Napi::Number::New(e, 512));
        bool active = s.LockingActive();
        out.Set("lockingSpActive", Napi::Boolean::New(e, active));
        out.Set("owned", Napi::Boolean::New(e, snap->owned));
        Napi::Array ranges = Napi::Array::New(e);
        uint32_t i = 0;
        for (const auto& r : s.ranges) {
          if (r.number != 0 && r.length == 0 && !r.LockingEnabled()) continue;
          Napi::Object o = Napi::Object::New(e);
          o.Set("number", r.number);
          o.Set("start", Napi::Number::New(e, static_cast<double>(r.number == 0 ? 0 : r.start)));
          o.Set("length", Napi::Number::New(e, static_cast<double>(r.length)));
          o.Set("readLockEnabled", Napi::Boolean::New(e, r.read_lock_enabled));
          o.Set("writeLockEnabled", Napi::Boolean::New(e, r.write_lock_enabled));
          o.Set("readLocked", Napi::Boolean::New(e, active && r.read_lock_enabled && r.read_locked));
          o.Set("writeLocked", Napi::Boolean::New(e, active && r.write_lock_enabled && r.write_locked));
          Napi::Array lor = Napi::Array::New(e);
          for (uint32_t j = 0; j < r.lock_on_reset.size(); ++j) lor.Set(j, r.lock_on_reset[j]);
          o.Set("lockOnReset", lor);
          ranges.Set(i++, o);
        }
        out.Set("ranges", ranges);
        Napi::Object mbr = Napi::Object::New(e);
        mbr.Set("enable", Napi::Boolean::New(e, s.mbr.enable));
        mbr.Set("done", Napi::Boolean::New(e, s.mbr.done));
        out.Set("mbr", mbr);
        Napi::Array locked_out = Napi::Array::New(e);
        uint32_t k = 0;
        for (const auto* pins : {&s.admin_pins, &s.locking_pins})
          for (const auto& p : *pins)
            if (p.try_limit != 0 && p.tries >= p.try_limit) locked_out.Set(k++, p.common_name);
        out.Set("lockedOutAuthorities", locked_out);
        return out;
      });
}

// One open drive (exclusive lock) with its TPer and session state; calls on it are serialised.
struct HandleState {
  std::mutex mutex;
  std::unique_ptr<transport::Transport> transport;
};

std::unique_lock<std::mutex> Lock(HandleState& s) {
  std::unique_lock<std::mutex> lock(s.mutex);
  if (!s.transport) throw CodedError("EMU_CLOSED", "the emulated drive handle is closed");
  return lock;
}

Napi::Object MakeHandle(Napi::Env env, std::shared_ptr<HandleState> s) {
  Napi::Object h = Napi::Object::New(env);
  AddMethod(env, h, "ifSend", [s](const Napi::CallbackInfo& info) {
    const auto protocol = IntegerArg<uint8_t>(info[0], kCode, "protocol");
    const auto com_id = IntegerArg<uint16_t>(info[1], kCode, "comId");
    auto data = std::make_shared<std::vector<uint8_t>>(BytesArg(info[2], kCode, "data"));
    return PromiseWorker::Run(
        info.Env(),
        [=] {
          struct Wipe {
            std::vector<uint8_t>& bytes;
            ~Wipe() { SecureWipe(bytes.data(), bytes.size()); }
          } wipe{*data};  // the payload may carry PINs
          auto lock = Lock(*s);
          s->transport->SecuritySend(protocol, com_id, *data);
        },
        [](Napi::Env e) { return e.Undefined(); });
  });
  AddMethod(env, h, "ifRecv", [s](const Napi::CallbackInfo& info) {
    const auto protocol = IntegerArg<uint8_t>(info[0], kCode, "protocol");
    const auto com_id = IntegerArg<uint16_t>(info[1], kCode, "comId");
    const auto length = IntegerArg<uint32_t>(info[2], kCode, "length", 0, 1 << 20);
    auto out = std::make_shared<std::vector<uint8_t>>();
    return PromiseWorker::Run(
        info.Env(),
        [=] {
          auto lock = Lock(*s);
          *out = s->transport->SecurityReceive(protocol, com_id, length);
        },
        [=](Napi::Env e) {
          Napi::Value b = ToBuffer(e, *out);
          SecureWipe(out->data(), out->size());
          return b;
        });
  });
  AddMethod(env, h, "close", [s](const Napi::CallbackInfo& info) {
    return PromiseWorker::Run(
        info.Env(),
        [=] {
          std::lock_guard<std::mutex> lock(s->mutex);
          s->transport.reset();
        },
        [](Napi::Env e) { return e.Undefined(); });
  });
  return h;
}

Napi::Value Open(const Napi::CallbackInfo& info) {
  const std::string path = PathArg(info[0]);
  auto state = std::make_shared<HandleState>();
  return PromiseWorker::Run(
      info.Env(),
      [=] {
        std::lock_guard<std::mutex> lock(state->mutex);
        state->transport = OpenEmulatedDrive(path);
      },
      [=](Napi::Env e) -> Napi::Value { return MakeHandle(e, state); });
}

void Init(Napi::Env env, Napi::Object exports) {
  AddMethod(env, exports, "create", Create);
  AddMethod(env, exports, "powerCycle", PowerCycle);
  AddMethod(env, exports, "read", Read);
  AddMethod(env, exports, "destroy", Destroy);
  AddMethod(env, exports, "write", Write);
  AddMethod(env, exports, "info", Info);
  AddMethod(env, exports, "open", Open);
}

}  // namespace
}  // namespace emulator
}  // namespace kmip_agent

KMIP_AGENT_MODULE(emulator, kmip_agent::emulator::Init);
