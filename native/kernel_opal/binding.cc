// N-API module `kernelOpal`: run(device, op, params) runs one sed-opal flow off the JS thread;
// runScripted(answers, op, params) runs the same flow against the recording test seam.
#include <napi.h>

#include <memory>
#include <optional>
#include <string>

#include "core/errors.h"
#include "core/js_args.h"
#include "core/promise_worker.h"
#include "core/registry.h"
#include "kernel_opal/kernel_opal.h"
#include "kernel_opal/sed_opal_abi.h"

namespace kmip_agent {
namespace kernel_opal {
namespace {

// Everything an operation needs, copied off the JS objects on the JS thread.
struct OpRequest {
  std::string op;
  Credential auth;         // session credential (Admin1 / UserN / SID as key)
  Credential target;       // setPassword: whose PIN becomes target.key
  SecretBytes new_key;     // setSidPassword
  uint8_t range = 0;
  uint64_t start = 0;
  uint64_t length = 0;
  bool read_lock_enabled = false;
  bool write_lock_enabled = false;
  bool flag = false;       // enable / done / keepGlobalRangeKey
  uint32_t user = 0;
  LockState state = LockState::Locked;
  std::vector<uint8_t> sum_ranges;
  size_t max_bytes = 4096;
};

struct OpResult {
  std::optional<DriveStatus> status;
  std::optional<RangeStatus> range;
  std::optional<Geometry> geometry;
  std::optional<std::vector<uint8_t>> bytes;
};

SecretBytes SecretFrom(const Napi::Value& v, const char* what) {
  return SecretBytesArg(v, "KOPAL_INVALID_ARGUMENT", what);
}

uint64_t NumberFrom(const Napi::Object& o, const char* key, uint64_t fallback) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return fallback;
  if (v.IsBigInt()) {
    bool lossless = true;
    return v.As<Napi::BigInt>().Uint64Value(&lossless);
  }
  if (!v.IsNumber()) throw CodedError("KOPAL_INVALID_ARGUMENT", std::string(key) + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (d < 0) throw CodedError("KOPAL_INVALID_ARGUMENT", std::string(key) + " must not be negative");
  return static_cast<uint64_t>(d);
}

bool BoolFrom(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  return v.IsBoolean() && v.As<Napi::Boolean>().Value();
}

LockState StateFrom(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  std::string s = v.IsString() ? v.As<Napi::String>().Utf8Value() : "";
  if (s == "ro") return LockState::ReadOnly;
  if (s == "rw") return LockState::ReadWrite;
  if (s == "locked") return LockState::Locked;
  throw CodedError("KOPAL_INVALID_ARGUMENT", std::string(key) + " must be 'ro', 'rw' or 'locked'");
}

Credential CredentialFrom(const Napi::Object& o, const char* prefix) {
  Credential c;
  std::string p(prefix);
  c.who = static_cast<uint32_t>(NumberFrom(o, (p + "Who").c_str(), kAdmin1));
  if (c.who > 9) throw CodedError("KOPAL_INVALID_ARGUMENT", "authorities are Admin1 (0) or User1..User9");
  c.key = SecretFrom(o.Get(p + "Key"), (p + "Key").c_str());
  c.sum = BoolFrom(o, (p + "Sum").c_str());
  return c;
}

OpRequest ParseRequest(const std::string& op, const Napi::Object& p) {
  OpRequest r;
  r.op = op;
  const uint64_t range = NumberFrom(p, "range", 0);
  if (range >= kMaxLockingRanges) throw CodedError("KOPAL_INVALID_ARGUMENT", "range must be 0..8");
  r.range = static_cast<uint8_t>(range);
  if (op == "status" || op == "geometry") return r;
  if (op == "discovery") {
    r.max_bytes = NumberFrom(p, "maxBytes", 4096);
    if (r.max_bytes == 0 || r.max_bytes > 65536) throw CodedError("KOPAL_INVALID_ARGUMENT", "maxBytes must be 1..65536");
    return r;
  }
  r.auth = CredentialFrom(p, "auth");
  if (op == "takeOwnership" || op == "revertTper" || op == "psidRevert") return r;
  if (op == "activateLockingSp") {
    Napi::Value v = p.Get("sumRanges");
    if (v.IsArray()) {
      auto a = v.As<Napi::Array>();
      for (uint32_t i = 0; i < a.Length(); ++i) r.sum_ranges.push_back(static_cast<uint8_t>(a.Get(i).As<Napi::Number>().Uint32Value()));
    }
    return r;
  }
  if (op == "setupRange") {
    r.start = NumberFrom(p, "start", 0);
    r.length = NumberFrom(p, "length", 0);
    r.read_lock_enabled = BoolFrom(p, "readLockEnabled");
    r.write_lock_enabled = BoolFrom(p, "writeLockEnabled");
    return r;
  }
  if (op == "activateUser" || op == "addUserToRange") {
    r.user = static_cast<uint32_t>(NumberFrom(p, "user", 0));
    if (r.user < 1 || r.user > 9) throw CodedError("KOPAL_INVALID_ARGUMENT", "user must be 1..9");
    if (op == "addUserToRange") r.state = StateFrom(p, "access");
    return r;
  }
  if (op == "setPassword") {
    r.target = CredentialFrom(p, "target");
    return r;
  }
  if (op == "setSidPassword") {
    r.new_key = SecretFrom(p.Get("newKey"), "newKey");
    return r;
  }
  if (op == "lockUnlock" || op == "saveForResume") {
    r.state = StateFrom(p, "state");
    return r;
  }
  if (op == "rangeStatus" || op == "eraseRange" || op == "secureEraseRange") return r;
  if (op == "revertLockingSp") {
    r.flag = BoolFrom(p, "keepGlobalRangeKey");
    return r;
  }
  if (op == "enableMbr") {
    r.flag = BoolFrom(p, "enable");
    return r;
  }
  if (op == "setMbrDone") {
    r.flag = BoolFrom(p, "done");
    return r;
  }
  throw CodedError("KOPAL_INVALID_ARGUMENT", "unknown sed-opal operation '" + op + "'");
}

OpResult Execute(KernelOpal& opal, const OpRequest& r) {
  OpResult out;
  const std::string& op = r.op;
  if (op == "status") out.status = opal.Status();
  else if (op == "geometry") out.geometry = opal.GetGeometry();
  else if (op == "discovery") out.bytes = opal.Discovery(r.max_bytes);
  else if (op == "takeOwnership") opal.TakeOwnership(r.auth.key);
  else if (op == "activateLockingSp") opal.ActivateLockingSp(r.auth.key, r.sum_ranges);
  else if (op == "setupRange") opal.SetupRange(r.auth, r.range, r.start, r.length, r.read_lock_enabled, r.write_lock_enabled);
  else if (op == "activateUser") opal.ActivateUser(r.auth, r.user);
  else if (op == "addUserToRange") opal.AddUserToRange(r.auth, r.user, r.range, r.state);
  else if (op == "setPassword") opal.SetPassword(r.auth, r.target);
  else if (op == "setSidPassword") opal.SetSidPassword(r.auth.key, r.new_key);
  else if (op == "lockUnlock") opal.LockUnlock(r.auth, r.range, r.state);
  else if (op == "saveForResume") opal.SaveForResume(r.auth, r.range, r.state);
  else if (op == "rangeStatus") out.range = opal.GetRangeStatus(r.auth, r.range);
  else if (op == "revertTper") opal.RevertTper(r.auth.key);
  else if (op == "psidRevert") opal.PsidRevert(r.auth.key);
  else if (op == "revertLockingSp") opal.RevertLockingSp(r.auth.key, r.flag);
  else if (op == "eraseRange") opal.EraseRange(r.auth, r.range);
  else if (op == "secureEraseRange") opal.SecureEraseRange(r.auth, r.range);
  else if (op == "enableMbr") opal.EnableMbr(r.auth.key, r.flag);
  else if (op == "setMbrDone") opal.SetMbrDone(r.auth.key, r.flag);
  return out;
}

const char* StateName(LockState s) {
  switch (s) {
    case LockState::ReadOnly: return "ro";
    case LockState::ReadWrite: return "rw";
    default: return "locked";
  }
}

Napi::Object ResultToJs(Napi::Env env, const OpResult& r) {
  Napi::Object o = Napi::Object::New(env);
  if (r.status) {
    const DriveStatus& s = *r.status;
    o.Set("flags", s.flags);
    o.Set("supported", s.supported);
    o.Set("lockingSupported", s.locking_supported);
    o.Set("lockingEnabled", s.locking_enabled);
    o.Set("locked", s.locked);
    o.Set("mbrEnabled", s.mbr_enabled);
    o.Set("mbrDone", s.mbr_done);
    o.Set("sumSupported", s.sum_supported);
  }
  if (r.range) {
    o.Set("start", Napi::BigInt::New(env, r.range->start));
    o.Set("length", Napi::BigInt::New(env, r.range->length));
    o.Set("readLockEnabled", r.range->read_lock_enabled);
    o.Set("writeLockEnabled", r.range->write_lock_enabled);
    o.Set("state", StateName(r.range->state));
  }
  if (r.geometry) {
    o.Set("alignRequired", r.geometry->align_required);
    o.Set("logicalBlockSize", r.geometry->logical_block_size);
    o.Set("alignmentGranularity", Napi::BigInt::New(env, r.geometry->alignment_granularity));
    o.Set("lowestAlignedLba", Napi::BigInt::New(env, r.geometry->lowest_aligned_lba));
  }
  if (r.bytes) o.Set("data", Napi::Buffer<uint8_t>::Copy(env, r.bytes->data(), r.bytes->size()));
  return o;
}

Napi::Value Run(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return CatchAll(env, [&]() -> Napi::Value {
    if (info.Length() < 3 || !info[0].IsString() || !info[1].IsString() || !info[2].IsObject()) {
      throw CodedError("KOPAL_INVALID_ARGUMENT", "run(device, op, params) expects a string, a string and an object");
    }
    auto request = std::make_shared<OpRequest>(
        ParseRequest(info[1].As<Napi::String>().Utf8Value(), info[2].As<Napi::Object>()));
    auto device = info[0].As<Napi::String>().Utf8Value();
    auto result = std::make_shared<OpResult>();
    return PromiseWorker::Run(
        env,
        [device, request, result]() {
          DeviceIoctlPort port(device, "KOPAL");
          if (!port.IsBlockDevice()) {
            throw CodedError("KOPAL_NOT_SUPPORTED", device + " is not a block device: sed-opal needs a drive");
          }
          KernelOpal opal(port);
          *result = Execute(opal, *request);
        },
        [result](Napi::Env e) -> Napi::Value { return ResultToJs(e, *result); });
  });
}

// Test seam: runs one flow against scripted answers; returns { result | error, calls }.
Napi::Value RunScripted(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return CatchAll(env, [&]() -> Napi::Value {
    if (info.Length() < 3 || !info[0].IsArray() || !info[1].IsString() || !info[2].IsObject()) {
      throw CodedError("KOPAL_INVALID_ARGUMENT", "runScripted(answers, op, params) expects an array, a string and an object");
    }
    std::vector<ScriptedIoctlPort::Answer> answers;
    auto list = info[0].As<Napi::Array>();
    for (uint32_t i = 0; i < list.Length(); ++i) {
      Napi::Object a = list.Get(i).As<Napi::Object>();
      ScriptedIoctlPort::Answer answer;
      answer.ret = a.Get("ret").IsNumber() ? a.Get("ret").As<Napi::Number>().Int32Value() : 0;
      CopyIfBuffer(a.Get("structOut"), answer.struct_out);
      CopyIfBuffer(a.Get("bufferOut"), answer.buffer_out);
      answers.push_back(std::move(answer));
    }
    OpRequest request = ParseRequest(info[1].As<Napi::String>().Utf8Value(), info[2].As<Napi::Object>());
    ScriptedIoctlPort port(std::move(answers), [](unsigned long request, void* arg) {
      ScriptedIoctlPort::Buffers buffers;
      if (request == kIocDiscovery) {
        auto* d = static_cast<OpalDiscovery*>(arg);
        buffers.data = reinterpret_cast<void*>(static_cast<uintptr_t>(d->data));
        buffers.data_size = d->size;
      }
      return buffers;
    });
    KernelOpal opal(port);
    Napi::Object out = Napi::Object::New(env);
    try {
      out.Set("result", ResultToJs(env, kernel_opal::Execute(opal, request)));
    } catch (...) {
      out.Set("error", MakeError(env, DescribeCurrentException()).Value());
    }
    Napi::Array calls = Napi::Array::New(env, port.calls().size());
    for (size_t i = 0; i < port.calls().size(); ++i) {
      const auto& call = port.calls()[i];
      Napi::Object c = Napi::Object::New(env);
      c.Set("request", Napi::Number::New(env, static_cast<double>(call.request)));
      const char* name = IoctlName(call.request);
      c.Set("name", name != nullptr ? Napi::String::New(env, name) : env.Null());
      c.Set("struct", Napi::Buffer<uint8_t>::Copy(env, call.struct_in.data(), call.struct_in.size()));
      calls.Set(static_cast<uint32_t>(i), c);
    }
    out.Set("calls", calls);
    return out;
  });
}

// The ioctl numbers this build uses, by name (to check them against the kernel's formula in tests).
Napi::Value Ioctls(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  for (const IoctlInfo& info : kIoctls) o.Set(info.name, Napi::Number::New(env, static_cast<double>(info.request)));
  return o;
}

void Init(Napi::Env env, Napi::Object exports) {
  exports.Set("run", Napi::Function::New(env, Run, "run"));
  exports.Set("runScripted", Napi::Function::New(env, RunScripted, "runScripted"));
  exports.Set("ioctls", Napi::Function::New(env, Ioctls, "ioctls"));
}

}  // namespace
}  // namespace kernel_opal
}  // namespace kmip_agent

KMIP_AGENT_MODULE(kernelOpal, kmip_agent::kernel_opal::Init);
