// TEST ADDON ONLY. N-API module `passthrough`: the command-block builders and sense parser (for
// byte-level tests), probe/ifRecv on a real device (off the JS thread), and `scripted` to run the
// transports against the recording ioctl port. The agent reaches devices through the tcg module.
#include <napi.h>
#include <sys/ioctl.h>
#include <linux/nvme_ioctl.h>
#include <scsi/sg.h>

#include <cstring>
#include <memory>

#include "core/errors.h"
#include "core/js_args.h"
#include "core/promise_worker.h"
#include "core/registry.h"
#include "test/scripted_ioctl_port.h"
#include "transport/passthrough.h"
#include "transport/security_commands.h"

namespace kmip_agent {
namespace transport {
namespace {

constexpr const char* kCode = "TRANSPORT_INVALID_ARGUMENT";

uint8_t ProtocolArg(const Napi::Value& v) { return IntegerArg<uint8_t>(v, kCode, "protocol"); }
uint16_t ComIdArg(const Napi::Value& v) { return IntegerArg<uint16_t>(v, kCode, "comId"); }
uint32_t LengthArg(const Napi::Value& v) { return IntegerArg<uint32_t>(v, kCode, "length"); }

Napi::Buffer<uint8_t> ToBuffer(Napi::Env env, const void* data, size_t size) {
  return Napi::Buffer<uint8_t>::Copy(env, static_cast<const uint8_t*>(data), size);
}

Napi::Value ScsiCdb(const Napi::CallbackInfo& info) {
  return CatchAll(info.Env(), [&]() -> Napi::Value {
    auto cdb = ScsiSecurityProtocolCdb(info[0].ToBoolean(), ProtocolArg(info[1]),
                                       ComIdArg(info[2]), LengthArg(info[3]));
    return ToBuffer(info.Env(), cdb.data(), cdb.size());
  });
}

Napi::Value AtaCdb(const Napi::CallbackInfo& info) {
  return CatchAll(info.Env(), [&]() -> Napi::Value {
    auto cdb = AtaTrustedCdb(info[0].ToBoolean(), ProtocolArg(info[1]),
                             ComIdArg(info[2]), LengthArg(info[3]));
    return ToBuffer(info.Env(), cdb.data(), cdb.size());
  });
}

Napi::Value NvmeCommand(const Napi::CallbackInfo& info) {
  return CatchAll(info.Env(), [&]() -> Napi::Value {
    auto cmd = NvmeSecurityCommand(info[0].ToBoolean(), ProtocolArg(info[1]),
                                   ComIdArg(info[2]), LengthArg(info[3]));
    return ToBuffer(info.Env(), &cmd, sizeof cmd);
  });
}

Napi::Value ParseSenseJs(const Napi::CallbackInfo& info) {
  return CatchAll(info.Env(), [&]() -> Napi::Value {
    if (!info[0].IsBuffer()) throw CodedError(kCode, "parseSense expects a Buffer");
    auto b = info[0].As<Napi::Buffer<uint8_t>>();
    SenseInfo s = ParseSense(b.Data(), b.Length());
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("valid", s.valid);
    o.Set("responseCode", s.response_code);
    o.Set("key", s.key);
    o.Set("asc", s.asc);
    o.Set("ascq", s.ascq);
    o.Set("description", DescribeSense(s));
    o.Set("unsupported", SenseMeansUnsupported(s));
    return o;
  });
}

const char* RequestName(unsigned long request) {
  if (request == SG_IO) return "SG_IO";
  if (request == SG_GET_VERSION_NUM) return "SG_GET_VERSION_NUM";
  if (request == NVME_IOCTL_ID) return "NVME_IOCTL_ID";
  if (request == NVME_IOCTL_ADMIN_CMD) return "NVME_IOCTL_ADMIN_CMD";
  return "UNKNOWN";
}

// Where the user buffers sit inside SG_IO and NVMe admin arguments.
ScriptedIoctlPort::Buffers LocateBuffers(unsigned long request, void* arg) {
  ScriptedIoctlPort::Buffers b;
  if (request == SG_IO) {
    auto* io = static_cast<sg_io_hdr_t*>(arg);
    b.data = io->dxferp;
    b.data_size = io->dxfer_len;
    b.sense = io->sbp;
    b.sense_size = io->mx_sb_len;
    b.command = io->cmdp;
    b.command_size = io->cmd_len;
  } else if (request == NVME_IOCTL_ADMIN_CMD) {
    auto* cmd = static_cast<nvme_passthru_cmd*>(arg);
    b.data = reinterpret_cast<void*>(static_cast<uintptr_t>(cmd->addr));
    b.data_size = cmd->data_len;
  }
  return b;
}

PassthroughKind KindFrom(const std::string& name) {
  if (name == "scsi") return PassthroughKind::Scsi;
  if (name == "ata") return PassthroughKind::Ata;
  if (name == "nvme") return PassthroughKind::Nvme;
  throw CodedError(kCode, "kind must be scsi, ata or nvme");
}

// scripted(kind, answers, op, params): kind 'scsi'|'ata'|'nvme' (op 'send'|'recv') or 'detect' (op ignored).
Napi::Value Scripted(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return CatchAll(env, [&]() -> Napi::Value {
    if (info.Length() < 4 || !info[0].IsString() || !info[1].IsArray() || !info[2].IsString() || !info[3].IsObject()) {
      throw CodedError(kCode, "scripted(kind, answers, op, params)");
    }
    std::vector<ScriptedIoctlPort::Answer> answers;
    auto list = info[1].As<Napi::Array>();
    for (uint32_t i = 0; i < list.Length(); ++i) {
      Napi::Object a = list.Get(i).As<Napi::Object>();
      ScriptedIoctlPort::Answer answer;
      answer.ret = OptionalIntegerArg<int32_t>(a.Get("ret"), kCode, "ret").value_or(0);
      CopyIfBuffer(a.Get("structOut"), answer.struct_out);
      answer.struct_out_offset = OptionalIntegerArg<uint32_t>(a.Get("structOutOffset"), kCode, "structOutOffset").value_or(0);
      CopyIfBuffer(a.Get("dataOut"), answer.buffer_out);
      CopyIfBuffer(a.Get("senseOut"), answer.sense_out);
      answers.push_back(std::move(answer));
    }
    const std::string kind = info[0].As<Napi::String>().Utf8Value();
    const std::string op = info[2].As<Napi::String>().Utf8Value();
    Napi::Object params = info[3].As<Napi::Object>();
    ScriptedIoctlPort port(std::move(answers), LocateBuffers);
    Napi::Object out = Napi::Object::New(env);
    try {
      if (kind == "detect") {
        Napi::Value root = params.Get("sysfsRoot");
        Route route = DetectRoute(port, "/dev/scripted", root.IsString() ? root.As<Napi::String>().Utf8Value() : "/sys");
        out.Set("result", KindName(route.kind));
        out.Set("reason", route.reason);
      } else {
        PassthroughTransport transport(port, KindFrom(kind), "scripted", "");
        const uint8_t protocol = ProtocolArg(params.Get("protocol"));
        const uint16_t com_id = ComIdArg(params.Get("comId"));
        if (op == "send") {
          transport.SecuritySend(protocol, com_id, BytesArg(params.Get("data"), kCode, "data"));
          out.Set("result", env.Null());
        } else {
          auto data = transport.SecurityReceive(protocol, com_id, LengthArg(params.Get("length")));
          out.Set("result", ToBuffer(env, data.data(), data.size()));
        }
      }
    } catch (...) {
      out.Set("error", MakeError(env, DescribeCurrentException()).Value());
    }
    Napi::Array calls = Napi::Array::New(env, port.calls().size());
    for (size_t i = 0; i < port.calls().size(); ++i) {
      const auto& c = port.calls()[i];
      Napi::Object call = Napi::Object::New(env);
      call.Set("name", RequestName(c.request));
      call.Set("struct", ToBuffer(env, c.struct_in.data(), c.struct_in.size()));
      call.Set("command", ToBuffer(env, c.command_in.data(), c.command_in.size()));
      call.Set("data", ToBuffer(env, c.buffer_in.data(), c.buffer_in.size()));
      calls.Set(static_cast<uint32_t>(i), call);
    }
    out.Set("calls", calls);
    return out;
  });
}

Napi::Value Probe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return CatchAll(env, [&]() -> Napi::Value {
    if (!info[0].IsString()) throw CodedError(kCode, "probe(device) expects a path");
    auto device = info[0].As<Napi::String>().Utf8Value();
    auto state = std::make_shared<std::pair<std::string, std::string>>();
    return PromiseWorker::Run(
        env,
        [device, state]() {
          auto transport = OpenDeviceTransport(device);
          state->first = KindName(transport->kind());
          state->second = transport->Serial();
        },
        [state](Napi::Env e) -> Napi::Value {
          Napi::Object o = Napi::Object::New(e);
          o.Set("kind", state->first);
          o.Set("serial", state->second);
          return o;
        });
  });
}

Napi::Value IfRecv(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return CatchAll(env, [&]() -> Napi::Value {
    if (!info[0].IsString()) throw CodedError(kCode, "ifRecv(device, protocol, comId, length)");
    auto device = info[0].As<Napi::String>().Utf8Value();
    auto protocol = ProtocolArg(info[1]);
    auto com_id = ComIdArg(info[2]);
    auto length = IntegerArg<uint32_t>(info[3], kCode, "length", 1, 1024 * 1024);
    auto data = std::make_shared<std::vector<uint8_t>>();
    return PromiseWorker::Run(
        env, [=]() { *data = OpenDeviceTransport(device)->SecurityReceive(protocol, com_id, length); },
        [data](Napi::Env e) -> Napi::Value { return ToBuffer(e, data->data(), data->size()); });
  });
}

void Init(Napi::Env env, Napi::Object exports) {
  exports.Set("scsiSecurityCdb", Napi::Function::New(env, ScsiCdb, "scsiSecurityCdb"));
  exports.Set("ataTrustedCdb", Napi::Function::New(env, AtaCdb, "ataTrustedCdb"));
  exports.Set("nvmeSecurityCommand", Napi::Function::New(env, NvmeCommand, "nvmeSecurityCommand"));
  exports.Set("parseSense", Napi::Function::New(env, ParseSenseJs, "parseSense"));
  exports.Set("scripted", Napi::Function::New(env, Scripted, "scripted"));
  exports.Set("probe", Napi::Function::New(env, Probe, "probe"));
  exports.Set("ifRecv", Napi::Function::New(env, IfRecv, "ifRecv"));
}

}  // namespace
}  // namespace transport
}  // namespace kmip_agent

KMIP_AGENT_MODULE(passthrough, kmip_agent::transport::Init);
