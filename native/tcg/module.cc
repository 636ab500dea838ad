// The `tcg` addon module: test entry points for the codec layers (decodeTokens, encodeTokens,
// parseComPacket, buildComPacket, parseDiscovery, parseMethodResponse, statusName) and
// openAsync(spec) -> Promise of a drive handle (open(spec): the same, synchronously) whose methods run Opal flows off the JS thread, one
// PromiseWorker per call, serialised per drive by a mutex (the TS layer also queues calls).
// Scripted and fixture drives for tests are opened by the test addon only (native/test/tcg_seams.cc).
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
#include "emulator/emulated_drive.h"
#include "tcg/drive_handle.h"
#include "tcg/js_values.h"
#include "tcg/opal.h"
#include "tcg/status.h"
#include "transport/passthrough.h"

namespace kmip_agent {
namespace tcg {
namespace {


std::vector<uint8_t> BufferArg(const Napi::Value& v, const char* what) {
  return BytesArg(v, "TCG_INVALID_ARGUMENT", what);
}

// PINs: copied once from the Buffer into self-wiping memory.
SecretBytes SecretArg(const Napi::Value& v, const char* what) {
  return SecretBytesArg(v, "TCG_INVALID_ARGUMENT", what);
}

template <typename T>
T UintArg(const Napi::Value& v, const char* what, T max = std::numeric_limits<T>::max()) {
  return IntegerArg<T>(v, "TCG_INVALID_ARGUMENT", what, 0, max);
}

template <typename T>
std::optional<T> OptionalUintArg(const Napi::Value& v, const char* what) {
  return OptionalIntegerArg<T>(v, "TCG_INVALID_ARGUMENT", what);
}

// Locking ranges and users are numbered in 16 bits of their UIDs (Opal SSC 4.3.5.2, 4.3.1.8).
uint32_t IndexArg(const Napi::Value& v, const char* what) { return UintArg<uint32_t>(v, what, 0xFFFF); }

std::optional<bool> OptionalBoolArg(const Napi::Value& v) {
  if (v.IsUndefined() || v.IsNull()) return std::nullopt;
  return v.ToBoolean().Value();
}

Authority AuthorityArg(const Napi::Value& v) {
  if (!v.IsObject()) throw CodedError("TCG_INVALID_ARGUMENT", "authority must be {kind, index}");
  Napi::Object o = v.As<Napi::Object>();
  const std::string kind = o.Get("kind").ToString().Utf8Value();
  Authority a;
  a.index = OptionalUintArg<uint32_t>(o.Get("index"), "authority index").value_or(1);
  if (kind == "sid") a.kind = Authority::Kind::kSid;
  else if (kind == "psid") a.kind = Authority::Kind::kPsid;
  else if (kind == "admin") a.kind = Authority::Kind::kAdmin;
  else if (kind == "user") a.kind = Authority::Kind::kUser;
  else if (kind == "anybody") a.kind = Authority::Kind::kAnybody;
  else throw CodedError("TCG_INVALID_ARGUMENT", "unknown authority kind '" + kind + "'");
  if ((a.kind == Authority::Kind::kAdmin || a.kind == Authority::Kind::kUser) && (a.index < 1 || a.index > 0xFFFF))
    throw CodedError("TCG_INVALID_ARGUMENT", "authority index must be 1..65535");
  return a;
}

Napi::Object RangeToJs(Napi::Env env, const RangeInfo& r) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("range", r.range);
  o.Set("start", static_cast<double>(r.start));
  o.Set("length", static_cast<double>(r.length));
  o.Set("readLockEnabled", r.read_lock_enabled);
  o.Set("writeLockEnabled", r.write_lock_enabled);
  o.Set("readLocked", r.read_locked);
  o.Set("writeLocked", r.write_locked);
  return o;
}

OpalDrive& Live(DriveState& state) {
  if (!state.drive) throw CodedError("DRIVE_CLOSED", "the drive handle is closed");
  return *state.drive;
}

using Flow = std::function<JsBuilder(OpalDrive&)>;

// Runs one flow off the JS thread, holding the drive's mutex for all of it.
Napi::Value Queue(Napi::Env env, const std::shared_ptr<DriveState>& state, Flow flow) {
  return PromiseWorker::RunBuilt(
      env,
      [state, flow = std::move(flow)] {
        std::lock_guard<std::mutex> lock(state->mutex);
        return flow(Live(*state));
      },
      "kmip-agent:tcg");
}

Napi::Object StatusToJs(Napi::Env env, const OpalStatus& st) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("discovery", DiscoveryToJs(env, st.discovery));
  o.Set("lockingSupported", st.locking_supported);
  o.Set("lockingEnabled", st.locking_enabled);
  o.Set("locked", st.locked);
  o.Set("mbrEnabled", st.mbr_enabled);
  o.Set("mbrDone", st.mbr_done);
  o.Set("lockingSpLifecycle", st.locking_sp_lifecycle ? Napi::Value(Napi::Number::New(env, *st.locking_sp_lifecycle))
                                                      : env.Null());
  o.Set("sidIsMsid", st.sid_is_msid ? Napi::Value(Napi::Boolean::New(env, *st.sid_is_msid)) : env.Null());
  o.Set("sidStateSource", st.sid_state_source);
  o.Set("maxRanges", st.max_ranges ? Napi::Value(Napi::Number::New(env, *st.max_ranges)) : env.Null());
  return o;
}

LockState LockStateArg(const Napi::Value& v) {
  const std::string s = v.ToString().Utf8Value();
  if (s == "locked") return LockState::kLocked;
  if (s == "read-only") return LockState::kReadOnly;
  if (s == "unlocked") return LockState::kUnlocked;
  throw CodedError("TCG_INVALID_ARGUMENT", "lock state must be locked, read-only or unlocked");
}

}  // namespace

// Builds the JS handle object for an open drive: every method returns a Promise.
Napi::Object MakeHandle(Napi::Env env, std::shared_ptr<DriveState> state) {
  Napi::Object h = Napi::Object::New(env);
  auto method = [&](const char* name, HandleMethod body) { AddMethod(env, h, name, std::move(body)); };
  method("describe", [state](const Napi::CallbackInfo& info) {
    return Napi::String::New(info.Env(), state->description);
  });
  method("serial", [state](const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), state->serial); });
  method("discover", [state](const Napi::CallbackInfo& info) {
    return Queue(info.Env(), state, [](OpalDrive& d) -> JsBuilder {
      Discovery disc = d.Discover();
      return [disc](Napi::Env env) { return DiscoveryToJs(env, disc); };
    });
  });
  method("status", [state](const Napi::CallbackInfo& info) {
    const bool probe = info.Length() > 0 && info[0].ToBoolean().Value();
    return Queue(info.Env(), state, [probe](OpalDrive& d) -> JsBuilder {
      OpalStatus st = d.Status(probe);
      return [st](Napi::Env env) { return StatusToJs(env, st); };
    });
  });
  method("readMsid", [state](const Napi::CallbackInfo& info) {
    return Queue(info.Env(), state, [](OpalDrive& d) -> JsBuilder {
      auto msid = std::make_shared<SecretBytes>(d.ReadMsid());
      return [msid](Napi::Env env) { return Napi::Buffer<uint8_t>::Copy(env, msid->data(), msid->size()); };
    });
  });
  method("takeOwnership", [state](const Napi::CallbackInfo& info) {
    auto pin = std::make_shared<SecretBytes>(SecretArg(info[0], "new SID PIN"));
    return Queue(info.Env(), state, [pin](OpalDrive& d) {
      d.TakeOwnership(*pin);
      return Undefined();
    });
  });
  method("activate", [state](const Napi::CallbackInfo& info) {
    auto pin = std::make_shared<SecretBytes>(SecretArg(info[0], "SID PIN"));
    return Queue(info.Env(), state, [pin](OpalDrive& d) {
      d.ActivateLockingSp(*pin);
      return Undefined();
    });
  });
  method("setPin", [state](const Napi::CallbackInfo& info) {
    Authority who = AuthorityArg(info[0]);
    auto pin = std::make_shared<SecretBytes>(SecretArg(info[1], "PIN"));
    Authority target = AuthorityArg(info[2]);
    auto new_pin = std::make_shared<SecretBytes>(SecretArg(info[3], "new PIN"));
    return Queue(info.Env(), state, [who, pin, target, new_pin](OpalDrive& d) {
      d.SetPin(who, *pin, target, *new_pin);
      return Undefined();
    });
  });
  method("enableUser", [state](const Napi::CallbackInfo& info) {
    auto pin = std::make_shared<SecretBytes>(SecretArg(info[0], "Admin1 PIN"));
    const uint32_t user = IndexArg(info[1], "user");
    const bool enabled = info[2].ToBoolean().Value();
    std::vector<uint32_t> ranges;
    if (info[3].IsArray()) {
      Napi::Array a = info[3].As<Napi::Array>();
      for (uint32_t i = 0; i < a.Length(); ++i) ranges.push_back(IndexArg(a.Get(i), "range"));
    }
    return Queue(info.Env(), state, [pin, user, enabled, ranges](OpalDrive& d) {
      d.EnableUser(*pin, user, enabled, ranges);
      return Undefined();
    });
  });
  method("setupRange", [state](const Napi::CallbackInfo& info) {
    auto pin = std::make_shared<SecretBytes>(SecretArg(info[0], "Admin1 PIN"));
    const uint32_t range = IndexArg(info[1], "range");
    auto start = OptionalUintArg<uint64_t>(info[2], "start");
    auto length = OptionalUintArg<uint64_t>(info[3], "length");
    const bool rle = info[4].ToBoolean().Value();
    const bool wle = info[5].ToBoolean().Value();
    return Queue(info.Env(), state, [=](OpalDrive& d) {
      d.SetupRange(*pin, range, start, length, rle, wle);
      return Undefined();
    });
  });
  method("ranges", [state](const Napi::CallbackInfo& info) {
    Authority who = AuthorityArg(info[0]);
    auto pin = std::make_shared<SecretBytes>(SecretArg(info[1], "PIN"));
    return Queue(info.Env(), state, [who, pin](OpalDrive& d) -> JsBuilder {
      std::vector<RangeInfo> ranges = d.Ranges(who, *pin);
      return [ranges](Napi::Env env) {
        Napi::Array a = Napi::Array::New(env, ranges.size());
        for (size_t i = 0; i < ranges.size(); ++i) a.Set(static_cast<uint32_t>(i), RangeToJs(env, ranges[i]));
        return a;
      };
    });
  });
  method("setLock", [state](const Napi::CallbackInfo& info) {
    Authority who = AuthorityArg(info[0]);
    auto pin = std::make_shared<SecretBytes>(SecretArg(info[1], "PIN"));
    const uint32_t range = IndexArg(info[2], "range");
    LockState lock = LockStateArg(info[3]);
    return Queue(info.Env(), state, [who, pin, range, lock](OpalDrive& d) {
      d.SetLock(who, *pin, range, lock);
      return Undefined();
    });
  });
  method("revert", [state](const Napi::CallbackInfo& info) {
    auto pin = std::make_shared<SecretBytes>(SecretArg(info[0], "SID PIN"));
    return Queue(info.Env(), state, [pin](OpalDrive& d) {
      d.RevertTPer(*pin);
      return Undefined();
    });
  });
  method("psidRevert", [state](const Napi::CallbackInfo& info) {
    auto pin = std::make_shared<SecretBytes>(SecretArg(info[0], "PSID"));
    return Queue(info.Env(), state, [pin](OpalDrive& d) {
      d.PsidRevert(*pin);
      return Undefined();
    });
  });
  method("revertLockingSp", [state](const Napi::CallbackInfo& info) {
    auto pin = std::make_shared<SecretBytes>(SecretArg(info[0], "Admin1 PIN"));
    const bool keep = info[1].ToBoolean().Value();
    return Queue(info.Env(), state, [pin, keep](OpalDrive& d) {
      d.RevertLockingSp(*pin, keep);
      return Undefined();
    });
  });
  method("erase", [state](const Napi::CallbackInfo& info) {
    auto pin = std::make_shared<SecretBytes>(SecretArg(info[0], "Admin1 PIN"));
    const uint32_t range = IndexArg(info[1], "range");
    const bool use_erase = info[2].ToBoolean().Value();
    return Queue(info.Env(), state, [pin, range, use_erase](OpalDrive& d) {
      d.EraseRange(*pin, range, use_erase);
      return Undefined();
    });
  });
  method("setMbr", [state](const Napi::CallbackInfo& info) {
    auto pin = std::make_shared<SecretBytes>(SecretArg(info[0], "Admin1 PIN"));
    auto enable = OptionalBoolArg(info[1]);
    auto done = OptionalBoolArg(info[2]);
    return Queue(info.Env(), state, [pin, enable, done](OpalDrive& d) {
      d.SetMbr(*pin, enable, done);
      return Undefined();
    });
  });
  method("tries", [state](const Napi::CallbackInfo& info) {
    Authority target = AuthorityArg(info[0]);
    std::optional<Authority> who;
    std::shared_ptr<SecretBytes> pin;
    if (info.Length() > 2 && info[1].IsObject() && info[2].IsBuffer()) {
      who = AuthorityArg(info[1]);
      pin = std::make_shared<SecretBytes>(SecretArg(info[2], "PIN"));
    }
    return Queue(info.Env(), state, [target, who, pin](OpalDrive& d) -> JsBuilder {
      std::optional<Tries> t = d.ReadTries(target, who ? &*who : nullptr, pin.get());
      return [t](Napi::Env env) -> Napi::Value {
        if (!t) return env.Null();
        Napi::Object o = Napi::Object::New(env);
        o.Set("tries", t->tries);
        o.Set("tryLimit", t->try_limit);
        return o;
      };
    });
  });
  method("verify", [state](const Napi::CallbackInfo& info) {
    Authority who = AuthorityArg(info[0]);
    auto pin = std::make_shared<SecretBytes>(SecretArg(info[1], "PIN"));
    return Queue(info.Env(), state, [who, pin](OpalDrive& d) {
      d.Verify(who, *pin);
      return Undefined();
    });
  });
  method("close", [state](const Napi::CallbackInfo& info) {
    return Queue(info.Env(), state, [state](OpalDrive&) {
      state->drive.reset();  // mutex held by the worker
      return Undefined();
    });
  });
  return h;
}

std::shared_ptr<DriveState> MakeDriveState(std::unique_ptr<OpalDrive> drive) {
  auto state = std::make_shared<DriveState>();
  state->drive = std::move(drive);
  state->description = state->drive->Describe();
  state->serial = state->drive->Serial();
  return state;
}

namespace {

std::unique_ptr<transport::Transport> OpenTransport(const std::string& spec) {
  if (spec.rfind("emu:", 0) == 0) {
    const std::string path = spec.substr(4);
    if (path.empty()) throw CodedError("DRIVE_SPEC_INVALID", "emu: needs an image path (emu:/path/to/image)");
    return emulator::OpenEmulatedDrive(path);
  }
  if (spec.rfind("/dev/", 0) == 0) {
    // A real drive: TCG over SCSI SECURITY PROTOCOL, ATA TRUSTED (SAT) or NVMe Security Send/Receive.
    // Devices no pass-through reaches (loop, partition, regular file) throw TRANSPORT_NOT_SUPPORTED.
    return transport::OpenDeviceTransport(spec);
  }
  throw CodedError("DRIVE_SPEC_INVALID",
                   "'" + spec + "' is not a drive: use a device path (/dev/sdX) or emu:/path/to/image");
}

bool AuthenticateWithMethodOption(const Napi::CallbackInfo& info) {
  return info.Length() > 1 && info[1].IsObject() &&
         info[1].As<Napi::Object>().Get("authenticateWithMethod").ToBoolean().Value();
}

// Opens the drive `spec` names and reads what its handle reports (description, serial).
std::shared_ptr<DriveState> OpenState(const std::string& spec, bool authenticate_with_method) {
  auto drive = std::make_unique<OpalDrive>(OpenTransport(spec));
  drive->set_authenticate_with_method(authenticate_with_method);
  return MakeDriveState(std::move(drive));
}

// openAsync(spec, options): the drives layer's entry point. Opening runs off the JS thread too
// (an emulated drive takes a file lock and reads its state; a device is opened and probed).
Napi::Value OpenAsync(const Napi::CallbackInfo& info) {
  return CatchAll(info.Env(), [&]() -> Napi::Value {
    if (info.Length() < 1 || !info[0].IsString()) throw CodedError("TCG_INVALID_ARGUMENT", "openAsync(spec: string)");
    std::string spec = info[0].As<Napi::String>().Utf8Value();
    const bool authenticate_with_method = AuthenticateWithMethodOption(info);
    auto opened = std::make_shared<std::shared_ptr<DriveState>>();
    return PromiseWorker::Run(
        info.Env(), [spec, authenticate_with_method, opened] { *opened = OpenState(spec, authenticate_with_method); },
        [opened](Napi::Env e) -> Napi::Value { return MakeHandle(e, *opened); }, "kmip-agent:tcg-open");
  });
}

// open(spec, options): synchronous variant kept for callers written against it (emulator tests).
Napi::Value Open(const Napi::CallbackInfo& info) {
  return CatchAll(info.Env(), [&]() -> Napi::Value {
    if (info.Length() < 1 || !info[0].IsString()) throw CodedError("TCG_INVALID_ARGUMENT", "open(spec: string)");
    return MakeHandle(info.Env(),
                      OpenState(info[0].As<Napi::String>().Utf8Value(), AuthenticateWithMethodOption(info)));
  });
}

Napi::Value DecodeTokensJs(const Napi::CallbackInfo& info) {
  return CatchAll(info.Env(), [&]() -> Napi::Value {
    std::vector<uint8_t> b = BufferArg(info[0], "tokens");
    std::vector<Token> tokens = DecodeTokens(b);
    Napi::Array a = Napi::Array::New(info.Env(), tokens.size());
    for (size_t i = 0; i < tokens.size(); ++i) a.Set(static_cast<uint32_t>(i), TokenToJs(info.Env(), tokens[i]));
    return a;
  });
}

Napi::Value DecodeValuesJs(const Napi::CallbackInfo& info) {
  return CatchAll(info.Env(), [&]() -> Napi::Value {
    std::vector<uint8_t> b = BufferArg(info[0], "tokens");
    std::vector<Value> values = ParseValues(b.data(), b.size());
    Napi::Array a = Napi::Array::New(info.Env(), values.size());
    for (size_t i = 0; i < values.size(); ++i) a.Set(static_cast<uint32_t>(i), ValueToJs(info.Env(), values[i]));
    return a;
  });
}

Napi::Value EncodeTokensJs(const Napi::CallbackInfo& info) {
  return CatchAll(info.Env(), [&]() -> Napi::Value {
    if (info.Length() < 1 || !info[0].IsArray()) throw CodedError("TCG_INVALID_ARGUMENT", "encodeTokens(values[])");
    Napi::Array a = info[0].As<Napi::Array>();
    TokenWriter w;
    for (uint32_t i = 0; i < a.Length(); ++i) EncodeValue(JsToValue(a.Get(i)), w);
    return Napi::Buffer<uint8_t>::Copy(info.Env(), w.bytes().data(), w.bytes().size());
  });
}

Napi::Value ParseComPacketJs(const Napi::CallbackInfo& info) {
  return CatchAll(info.Env(), [&]() -> Napi::Value {
    std::vector<uint8_t> b = BufferArg(info[0], "ComPacket");
    return ComPacketToJs(info.Env(), ParseComPacket(b));
  });
}

Napi::Value BuildComPacketJs(const Napi::CallbackInfo& info) {
  return CatchAll(info.Env(), [&]() -> Napi::Value {
    if (info.Length() < 1 || !info[0].IsObject()) throw CodedError("TCG_INVALID_ARGUMENT", "buildComPacket(options)");
    Napi::Object o = info[0].As<Napi::Object>();
    ComPacket cp;
    cp.com_id = UintArg<uint16_t>(o.Get("comId"), "comId");
    cp.outstanding_data = OptionalUintArg<uint32_t>(o.Get("outstandingData"), "outstandingData").value_or(0);
    cp.min_transfer = OptionalUintArg<uint32_t>(o.Get("minTransfer"), "minTransfer").value_or(0);
    if (o.Has("payload")) {
      Packet p;
      p.tper_session = OptionalUintArg<uint32_t>(o.Get("tperSession"), "tperSession").value_or(0);
      p.host_session = OptionalUintArg<uint32_t>(o.Get("hostSession"), "hostSession").value_or(0);
      p.seq_number = OptionalUintArg<uint32_t>(o.Get("seqNumber"), "seqNumber").value_or(0);
      SubPacket s;
      s.payload = BufferArg(o.Get("payload"), "payload");
      p.subpackets.push_back(std::move(s));
      cp.packets.push_back(std::move(p));
    }
    const size_t pad_to = OptionalUintArg<uint32_t>(o.Get("padTo"), "padTo").value_or(0);
    std::vector<uint8_t> out = BuildComPacket(cp, pad_to);
    return Napi::Buffer<uint8_t>::Copy(info.Env(), out.data(), out.size());
  });
}

Napi::Value ParseDiscoveryJs(const Napi::CallbackInfo& info) {
  return CatchAll(info.Env(), [&]() -> Napi::Value {
    std::vector<uint8_t> b = BufferArg(info[0], "discovery response");
    return DiscoveryToJs(info.Env(), ParseDiscovery(b));
  });
}

Napi::Value ParseMethodResponseJs(const Napi::CallbackInfo& info) {
  return CatchAll(info.Env(), [&]() -> Napi::Value {
    std::vector<uint8_t> b = BufferArg(info[0], "method response");
    MethodResult r = ParseMethodResponse(b);
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("status", r.status);
    o.Set("statusName", StatusName(r.status));
    o.Set("results", ValueToJs(info.Env(), r.results));
    return o;
  });
}

Napi::Value StatusNameJs(const Napi::CallbackInfo& info) {
  return CatchAll(info.Env(), [&]() -> Napi::Value {
    const uint32_t s = UintArg<uint32_t>(info[0], "status");
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("name", StatusName(s));
    o.Set("code", StatusErrorCode(s));
    return o;
  });
}

void InitTcg(Napi::Env env, Napi::Object exports) {
  exports.Set("open", Napi::Function::New(env, Open, "open"));
  exports.Set("openAsync", Napi::Function::New(env, OpenAsync, "openAsync"));
  exports.Set("decodeTokens", Napi::Function::New(env, DecodeTokensJs, "decodeTokens"));
  exports.Set("decodeValues", Napi::Function::New(env, DecodeValuesJs, "decodeValues"));
  exports.Set("encodeTokens", Napi::Function::New(env, EncodeTokensJs, "encodeTokens"));
  exports.Set("parseComPacket", Napi::Function::New(env, ParseComPacketJs, "parseComPacket"));
  exports.Set("buildComPacket", Napi::Function::New(env, BuildComPacketJs, "buildComPacket"));
  exports.Set("parseDiscovery", Napi::Function::New(env, ParseDiscoveryJs, "parseDiscovery"));
  exports.Set("parseMethodResponse", Napi::Function::New(env, ParseMethodResponseJs, "parseMethodResponse"));
  exports.Set("statusName", Napi::Function::New(env, StatusNameJs, "statusName"));
}

}  // namespace
}  // namespace tcg
}  // namespace kmip_agent

KMIP_AGENT_MODULE(tcg, kmip_agent::tcg::InitTcg);
