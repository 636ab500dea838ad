// N-API module `kernelOpal`: open(device) -> a handle with one method per sed-opal operation, each
// returning a Promise (core/js_handle.h); ioctls() -> this build's request numbers by name. The
// device is opened for each call and closed after it: sed-opal keeps nothing per open file, and a
// handle may live as long as the agent. The test addon puts a recording port behind the same handle.
#include <napi.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/errors.h"
#include "core/js_args.h"
#include "core/js_handle.h"
#include "core/promise_worker.h"
#include "core/registry.h"
#include "kernel_opal/handle.h"
#include "kernel_opal/kernel_opal.h"
#include "kernel_opal/sed_opal_abi.h"

namespace kmip_agent {
namespace kernel_opal {
namespace {

constexpr const char* kCode = "KOPAL_INVALID_ARGUMENT";

SecretBytes KeyArg(const Napi::Value& v, const char* what) { return SecretBytesArg(v, kCode, what); }

uint8_t RangeArg(const Napi::Value& v) {
  return IntegerArg<uint8_t>(v, kCode, "range", 0, static_cast<uint8_t>(kMaxLockingRanges - 1));
}

uint32_t UserArg(const Napi::Value& v) { return IntegerArg<uint32_t>(v, kCode, "user", 1, 9); }

bool FlagArg(const Napi::Value& v, const char* what) {
  if (!v.IsBoolean()) throw CodedError(kCode, std::string(what) + " must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

// {who, key, sum?}: who is Admin1 (0) or UserN (N), the kernel's numbering.
Credential CredentialArg(const Napi::Value& v, const char* what) {
  if (!v.IsObject()) throw CodedError(kCode, std::string(what) + " must be {who, key, sum?}");
  Napi::Object o = v.As<Napi::Object>();
  Credential c;
  c.who = IntegerArg<uint32_t>(o.Get("who"), kCode, std::string(what) + ".who", 0, 9);
  c.key = KeyArg(o.Get("key"), (std::string(what) + ".key").c_str());
  Napi::Value sum = o.Get("sum");
  c.sum = !sum.IsUndefined() && FlagArg(sum, (std::string(what) + ".sum").c_str());
  return c;
}

// The drives layer's spelling of lock states (src/drives/types.ts LockStateName).
LockState LockStateArg(const Napi::Value& v) {
  const std::string s = v.IsString() ? v.As<Napi::String>().Utf8Value() : "";
  if (s == "read-only") return LockState::ReadOnly;
  if (s == "unlocked") return LockState::ReadWrite;
  if (s == "locked") return LockState::Locked;
  throw CodedError(kCode, "state must be 'locked', 'read-only' or 'unlocked'");
}

const char* LockStateName(LockState s) {
  switch (s) {
    case LockState::ReadOnly: return "read-only";
    case LockState::ReadWrite: return "unlocked";
    default: return "locked";
  }
}

// Which lock a user added to a range may set: ReadLocked (the kernel's OPAL_RO) or WriteLocked (OPAL_RW).
LockState RangeLockArg(const Napi::Value& v) {
  const std::string s = v.IsString() ? v.As<Napi::String>().Utf8Value() : "";
  if (s == "read") return LockState::ReadOnly;
  if (s == "write") return LockState::ReadWrite;
  throw CodedError(kCode, "lock must be 'read' or 'write'");
}

Napi::Object StatusToJs(Napi::Env env, const DriveStatus& s) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("flags", s.flags);
  o.Set("supported", s.supported);
  o.Set("lockingSupported", s.locking_supported);
  o.Set("lockingEnabled", s.locking_enabled);
  o.Set("locked", s.locked);
  o.Set("mbrEnabled", s.mbr_enabled);
  o.Set("mbrDone", s.mbr_done);
  o.Set("sumSupported", s.sum_supported);
  return o;
}

Napi::Object RangeStatusToJs(Napi::Env env, const RangeStatus& r) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("start", Napi::BigInt::New(env, r.start));
  o.Set("length", Napi::BigInt::New(env, r.length));
  o.Set("readLockEnabled", r.read_lock_enabled);
  o.Set("writeLockEnabled", r.write_lock_enabled);
  o.Set("state", LockStateName(r.state));
  return o;
}

Napi::Object GeometryToJs(Napi::Env env, const Geometry& g) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("alignRequired", g.align_required);
  o.Set("logicalBlockSize", g.logical_block_size);
  o.Set("alignmentGranularity", Napi::BigInt::New(env, g.alignment_granularity));
  o.Set("lowestAlignedLba", Napi::BigInt::New(env, g.lowest_aligned_lba));
  return o;
}

using Operation = std::function<JsBuilder(KernelOpal&)>;

// Runs one operation off the JS thread on the handle's port, holding the handle's mutex.
Napi::Value Queue(Napi::Env env, const std::shared_ptr<HandleState>& state, Operation op) {
  return PromiseWorker::RunBuilt(
      env,
      [state, op = std::move(op)] {
        std::lock_guard<std::mutex> lock(state->mutex);
        JsBuilder builder;
        state->with_port([&](IoctlPort& port) {
          KernelOpal opal(port);
          builder = op(opal);
        });
        return builder;
      },
      "kmip-agent:kernel-opal");
}

}  // namespace

Napi::Object MakeHandle(Napi::Env env, std::shared_ptr<HandleState> state) {
  Napi::Object h = Napi::Object::New(env);
  auto method = [&](const char* name, HandleMethod body) { AddMethod(env, h, name, std::move(body)); };
  method("status", [state](const Napi::CallbackInfo& info) {
    return Queue(info.Env(), state, [](KernelOpal& k) -> JsBuilder {
      DriveStatus s = k.Status();
      return [s](Napi::Env e) { return StatusToJs(e, s); };
    });
  });
  method("discovery", [state](const Napi::CallbackInfo& info) {
    const size_t max_bytes = OptionalIntegerArg<uint32_t>(info[0], kCode, "maxBytes", 1, 65536).value_or(4096);
    return Queue(info.Env(), state, [max_bytes](KernelOpal& k) -> JsBuilder {
      auto data = std::make_shared<std::vector<uint8_t>>(k.Discovery(max_bytes));
      return [data](Napi::Env e) { return Napi::Buffer<uint8_t>::Copy(e, data->data(), data->size()); };
    });
  });
  method("geometry", [state](const Napi::CallbackInfo& info) {
    return Queue(info.Env(), state, [](KernelOpal& k) -> JsBuilder {
      Geometry g = k.GetGeometry();
      return [g](Napi::Env e) { return GeometryToJs(e, g); };
    });
  });
  method("takeOwnership", [state](const Napi::CallbackInfo& info) {
    SecretBytes sid = KeyArg(info[0], "SID key");
    return Queue(info.Env(), state, [sid](KernelOpal& k) {
      k.TakeOwnership(sid);
      return Undefined();
    });
  });
  method("activateLockingSp", [state](const Napi::CallbackInfo& info) {
    SecretBytes sid = KeyArg(info[0], "SID key");
    std::vector<uint8_t> sum_ranges;
    if (!info[1].IsUndefined()) {
      if (!info[1].IsArray()) throw CodedError(kCode, "sumRanges must be an array of ranges");
      Napi::Array a = info[1].As<Napi::Array>();
      for (uint32_t i = 0; i < a.Length(); ++i) sum_ranges.push_back(RangeArg(a.Get(i)));
    }
    return Queue(info.Env(), state, [sid, sum_ranges](KernelOpal& k) {
      k.ActivateLockingSp(sid, sum_ranges);
      return Undefined();
    });
  });
  method("setupRange", [state](const Napi::CallbackInfo& info) {
    Credential admin = CredentialArg(info[0], "admin");
    const uint8_t range = RangeArg(info[1]);
    const uint64_t start = IntegerArg<uint64_t>(info[2], kCode, "start");
    const uint64_t length = IntegerArg<uint64_t>(info[3], kCode, "length");
    const bool rle = FlagArg(info[4], "readLockEnabled");
    const bool wle = FlagArg(info[5], "writeLockEnabled");
    return Queue(info.Env(), state, [=](KernelOpal& k) {
      k.SetupRange(admin, range, start, length, rle, wle);
      return Undefined();
    });
  });
  method("activateUser", [state](const Napi::CallbackInfo& info) {
    Credential admin = CredentialArg(info[0], "admin");
    const uint32_t user = UserArg(info[1]);
    return Queue(info.Env(), state, [admin, user](KernelOpal& k) {
      k.ActivateUser(admin, user);
      return Undefined();
    });
  });
  method("addUserToRange", [state](const Napi::CallbackInfo& info) {
    Credential admin = CredentialArg(info[0], "admin");
    const uint32_t user = UserArg(info[1]);
    const uint8_t range = RangeArg(info[2]);
    const LockState lock = RangeLockArg(info[3]);
    return Queue(info.Env(), state, [=](KernelOpal& k) {
      k.AddUserToRange(admin, user, range, lock);
      return Undefined();
    });
  });
  method("setPassword", [state](const Napi::CallbackInfo& info) {
    Credential auth = CredentialArg(info[0], "auth");
    Credential target = CredentialArg(info[1], "target");
    return Queue(info.Env(), state, [auth, target](KernelOpal& k) {
      k.SetPassword(auth, target);
      return Undefined();
    });
  });
  method("setSidPassword", [state](const Napi::CallbackInfo& info) {
    SecretBytes current = KeyArg(info[0], "current SID key");
    SecretBytes next = KeyArg(info[1], "new SID key");
    return Queue(info.Env(), state, [current, next](KernelOpal& k) {
      k.SetSidPassword(current, next);
      return Undefined();
    });
  });
  for (const bool save : {false, true}) {
    method(save ? "saveForResume" : "lockUnlock", [state, save](const Napi::CallbackInfo& info) {
      Credential auth = CredentialArg(info[0], "auth");
      const uint8_t range = RangeArg(info[1]);
      const LockState lock = LockStateArg(info[2]);
      return Queue(info.Env(), state, [=](KernelOpal& k) {
        if (save) k.SaveForResume(auth, range, lock);
        else k.LockUnlock(auth, range, lock);
        return Undefined();
      });
    });
  }
  method("rangeStatus", [state](const Napi::CallbackInfo& info) {
    Credential auth = CredentialArg(info[0], "auth");
    const uint8_t range = RangeArg(info[1]);
    return Queue(info.Env(), state, [auth, range](KernelOpal& k) -> JsBuilder {
      RangeStatus r = k.GetRangeStatus(auth, range);
      return [r](Napi::Env e) { return RangeStatusToJs(e, r); };
    });
  });
  method("revertTper", [state](const Napi::CallbackInfo& info) {
    SecretBytes sid = KeyArg(info[0], "SID key");
    return Queue(info.Env(), state, [sid](KernelOpal& k) {
      k.RevertTper(sid);
      return Undefined();
    });
  });
  method("psidRevert", [state](const Napi::CallbackInfo& info) {
    SecretBytes psid = KeyArg(info[0], "PSID");
    return Queue(info.Env(), state, [psid](KernelOpal& k) {
      k.PsidRevert(psid);
      return Undefined();
    });
  });
  method("revertLockingSp", [state](const Napi::CallbackInfo& info) {
    SecretBytes admin = KeyArg(info[0], "Admin1 key");
    const bool keep = FlagArg(info[1], "keepGlobalRangeKey");
    return Queue(info.Env(), state, [admin, keep](KernelOpal& k) {
      k.RevertLockingSp(admin, keep);
      return Undefined();
    });
  });
  for (const bool secure : {false, true}) {
    method(secure ? "secureEraseRange" : "eraseRange", [state, secure](const Napi::CallbackInfo& info) {
      Credential auth = CredentialArg(info[0], "auth");
      const uint8_t range = RangeArg(info[1]);
      return Queue(info.Env(), state, [=](KernelOpal& k) {
        if (secure) k.SecureEraseRange(auth, range);
        else k.EraseRange(auth, range);
        return Undefined();
      });
    });
  }
  method("enableMbr", [state](const Napi::CallbackInfo& info) {
    SecretBytes admin = KeyArg(info[0], "Admin1 key");
    const bool enable = FlagArg(info[1], "enable");
    return Queue(info.Env(), state, [admin, enable](KernelOpal& k) {
      k.EnableMbr(admin, enable);
      return Undefined();
    });
  });
  method("setMbrDone", [state](const Napi::CallbackInfo& info) {
    SecretBytes admin = KeyArg(info[0], "Admin1 key");
    const bool done = FlagArg(info[1], "done");
    return Queue(info.Env(), state, [admin, done](KernelOpal& k) {
      k.SetMbrDone(admin, done);
      return Undefined();
    });
  });
  return h;
}

namespace {

// open(device): the handle of a block device. Nothing is opened until a method runs.
Napi::Value Open(const Napi::CallbackInfo& info) {
  return CatchAll(info.Env(), [&]() -> Napi::Value {
    const std::string device = StringArg(info[0], kCode, "device");
    auto state = std::make_shared<HandleState>();
    state->with_port = [device](const std::function<void(IoctlPort&)>& use) {
      DeviceIoctlPort port(device, "KOPAL");
      if (!port.IsBlockDevice()) {
        throw CodedError("KOPAL_NOT_SUPPORTED", device + " is not a block device: sed-opal needs a drive");
      }
      use(port);
    };
    return MakeHandle(info.Env(), state);
  });
}

// The ioctl numbers this build uses, by name (to check them against the kernel's formula in tests).
Napi::Value Ioctls(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  for (const IoctlInfo& ioctl : kIoctls) o.Set(ioctl.name, Napi::Number::New(env, static_cast<double>(ioctl.request)));
  return o;
}

void Init(Napi::Env env, Napi::Object exports) {
  exports.Set("open", Napi::Function::New(env, Open, "open"));
  exports.Set("ioctls", Napi::Function::New(env, Ioctls, "ioctls"));
}

}  // namespace
}  // namespace kernel_opal
}  // namespace kmip_agent

KMIP_AGENT_MODULE(kernelOpal, kmip_agent::kernel_opal::Init);
