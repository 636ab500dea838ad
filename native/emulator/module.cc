// N-API module `emulator`: create / powerCycle / read / write / info by image path, and open()
// for a handle that keeps one Transport (and its TCG session) across raw ifSend / ifRecv calls.
// Every function returns a Promise; the work runs on the libuv pool (core/promise_worker.h).
#include <napi.h>

#include <functional>
#include <memory>
#include <mutex>

#include "core/errors.h"
#include "core/js_args.h"
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

Napi::Value Rejected(Napi::Env env, const std::string& message) {
  auto deferred = Napi::Promise::Deferred::New(env);
  deferred.Reject(MakeError(env, "EMU_INVALID_ARGUMENT", message).Value());
  return deferred.Promise();
}

bool GetString(const Napi::CallbackInfo& info, size_t i, std::string* out) {
  if (info.Length() <= i || !info[i].IsString()) return false;
  *out = info[i].As<Napi::String>().Utf8Value();
  return !out->empty() && out->size() < 4096 && out->find('\0') == std::string::npos;
}

bool GetUint(const Napi::CallbackInfo& info, size_t i, uint64_t* out, uint64_t max) {
  if (info.Length() <= i || !info[i].IsNumber()) return false;
  double d = info[i].As<Napi::Number>().DoubleValue();
  if (!(d >= 0) || d > static_cast<double>(max) || d != static_cast<double>(static_cast<uint64_t>(d))) return false;
  *out = static_cast<uint64_t>(d);
  return true;
}

bool GetBuffer(const Napi::CallbackInfo& info, size_t i, std::vector<uint8_t>* out) {
  if (!info[i].IsBuffer()) return false;
  *out = CopyBytes(info[i].As<Napi::Buffer<uint8_t>>());
  return true;
}

Napi::Buffer<uint8_t> ToBuffer(Napi::Env env, const std::vector<uint8_t>& bytes) {
  return Napi::Buffer<uint8_t>::Copy(env, bytes.data(), bytes.size());
}

Napi::Value Create(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path, serial;
  uint64_t size_mib = 0;
  if (!GetString(info, 0, &path) || !GetUint(info, 1, &size_mib, 1ULL << 32) || !GetString(info, 2, &serial))
    return Rejected(env, "create(path, sizeMiB, serial)");
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
  std::string path;
  if (!GetString(info, 0, &path)) return Rejected(env, "powerCycle(path)");
  return PromiseWorker::Run(
      env, Serialized([=] { Drive::Open(path)->PowerCycle(); }), [](Napi::Env e) { return e.Undefined(); });
}

Napi::Value Destroy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path;
  if (!GetString(info, 0, &path)) return Rejected(env, "destroy(path)");
  return PromiseWorker::Run(
      env, Serialized([=] { Drive::Destroy(path); }), [](Napi::Env e) { return e.Undefined(); });
}

Napi::Value Read(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path;
  uint64_t lba = 0, count = 0;
  if (!GetString(info, 0, &path) || !GetUint(info, 1, &lba, 1ULL << 53) || !GetUint(info, 2, &count, 65536))
    return Rejected(env, "read(path, lba, count)");
  auto data = std::make_shared<std::vector<uint8_t>>();
  return PromiseWorker::Run(
      env, Serialized([=] { *data = Drive::Open(path)->Read(lba, count); }),
      [=](Napi::Env e) { return ToBuffer(e, *data); });
}

Napi::Value Write(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path;
  uint64_t lba = 0;
  auto data = std::make_shared<std::vector<uint8_t>>();
  if (!GetString(info, 0, &path) || !GetUint(info, 1, &lba, 1ULL << 53) || !GetBuffer(info, 2, data.get()))
    return Rejected(env, "write(path, lba, buffer)");
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
  std::string path;
  if (!GetString(info, 0, &path)) return Rejected(env, "info(path)");
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

// A handle: one open drive (exclusive lock) with its TPer and session state.
class Handle : public Napi::ObjectWrap<Handle> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "EmulatedDriveHandle",
                       {InstanceMethod<&Handle::IfSend>("ifSend"), InstanceMethod<&Handle::IfRecv>("ifRecv"),
                        InstanceMethod<&Handle::Close>("close")});
  }
  explicit Handle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Handle>(info), state_(std::make_shared<State>()) {}

  struct State {
    std::mutex mutex;
    std::unique_ptr<transport::Transport> transport;
  };
  std::shared_ptr<State> state() { return state_; }

 private:
  static std::unique_lock<std::mutex> Lock(State& s) {
    std::unique_lock<std::mutex> lock(s.mutex);
    if (!s.transport) throw CodedError("EMU_CLOSED", "the emulated drive handle is closed");
    return lock;
  }

  Napi::Value IfSend(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint64_t protocol = 0, com_id = 0;
    auto data = std::make_shared<std::vector<uint8_t>>();
    if (!GetUint(info, 0, &protocol, 255) || !GetUint(info, 1, &com_id, 0xFFFF) || !GetBuffer(info, 2, data.get()))
      return Rejected(env, "ifSend(protocol, comId, buffer)");
    auto s = state_;
    return PromiseWorker::Run(
        env,
        [=] {
          struct Wipe {
            std::vector<uint8_t>& bytes;
            ~Wipe() { SecureWipe(bytes.data(), bytes.size()); }
          } wipe{*data};  // the payload may carry PINs
          auto lock = Lock(*s);
          s->transport->SecuritySend(static_cast<uint8_t>(protocol), static_cast<uint16_t>(com_id), *data);
        },
        [](Napi::Env e) { return e.Undefined(); });
  }

  Napi::Value IfRecv(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint64_t protocol = 0, com_id = 0, length = 0;
    if (!GetUint(info, 0, &protocol, 255) || !GetUint(info, 1, &com_id, 0xFFFF) ||
        !GetUint(info, 2, &length, 1 << 20))
      return Rejected(env, "ifRecv(protocol, comId, length)");
    auto s = state_;
    auto out = std::make_shared<std::vector<uint8_t>>();
    return PromiseWorker::Run(
        env,
        [=] {
          auto lock = Lock(*s);
          *out = s->transport->SecurityReceive(static_cast<uint8_t>(protocol), static_cast<uint16_t>(com_id),
                                               static_cast<size_t>(length));
        },
        [=](Napi::Env e) {
          Napi::Value b = ToBuffer(e, *out);
          SecureWipe(out->data(), out->size());
          return b;
        });
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    auto s = state_;
    return PromiseWorker::Run(
        info.Env(),
        [=] {
          std::lock_guard<std::mutex> lock(s->mutex);
          s->transport.reset();
        },
        [](Napi::Env e) { return e.Undefined(); });
  }

  std::shared_ptr<State> state_;
};

struct ModuleData {
  Napi::FunctionReference handle_class;
};

Napi::Value Open(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path;
  if (!GetString(info, 0, &path)) return Rejected(env, "open(path)");
  auto* data = static_cast<ModuleData*>(info.Data());
  Napi::Object handle = data->handle_class.New({});
  auto state = Handle::Unwrap(handle)->state();
  auto ref = std::make_shared<Napi::ObjectReference>(Napi::Persistent(handle));
  return PromiseWorker::Run(
      env,
      [=] {
        std::lock_guard<std::mutex> lock(state->mutex);
        state->transport = OpenEmulatedDrive(path);
      },
      [=](Napi::Env) {
        Napi::Object h = ref->Value();
        ref->Reset();
        return h;
      });
}

void Init(Napi::Env env, Napi::Object exports) {
  auto* data = new ModuleData();
  data->handle_class = Napi::Persistent(Handle::Define(env));
  env.AddCleanupHook([data] { delete data; });
  exports.Set("create", Napi::Function::New(env, Create, "create"));
  exports.Set("powerCycle", Napi::Function::New(env, PowerCycle, "powerCycle"));
  exports.Set("read", Napi::Function::New(env, Read, "read"));
  exports.Set("destroy", Napi::Function::New(env, Destroy, "destroy"));
  exports.Set("write", Napi::Function::New(env, Write, "write"));
  exports.Set("info", Napi::Function::New(env, Info, "info"));
  exports.Set("open", Napi::Function::New(env, Open, "open", data));
}

}  // namespace
}  // namespace emulator
}  // namespace kmip_agent

KMIP_AGENT_MODULE(emulator, kmip_agent::emulator::Init);
