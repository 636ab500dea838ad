// TEST ADDON ONLY. `testSeams.openScriptedDrive` and `testSeams.openPassthroughFixture`: the host
// TCG stack (the tcg module's drive handle) over a TPer of canned responses, or over the SCSI / ATA /
// NVMe pass-through transport whose "device" is the fixture in front of an emulated drive image.
#include <napi.h>

#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/errors.h"
#include "core/js_args.h"
#include "core/registry.h"
#include "emulator/emulated_drive.h"
#include "tcg/drive_handle.h"
#include "test/device_fixture.h"
#include "test/scripted_transport.h"
#include "transport/passthrough.h"

namespace kmip_agent {
namespace tcg {
namespace {

constexpr const char* kCode = "TCG_INVALID_ARGUMENT";

// openScriptedDrive(discovery, responses): a drive whose TPer answers from canned responses.
// Handle extra: sent() -> the IF-SEND payloads so far (read between calls, when no worker runs).
Napi::Value OpenScriptedDrive(const Napi::CallbackInfo& info) {
  return CatchAll(info.Env(), [&]() -> Napi::Value {
    std::vector<uint8_t> discovery = BytesArg(info[0], kCode, "discovery");
    std::deque<std::vector<uint8_t>> responses;
    if (info.Length() > 1 && info[1].IsArray()) {
      Napi::Array a = info[1].As<Napi::Array>();
      for (uint32_t i = 0; i < a.Length(); ++i) responses.push_back(BytesArg(a.Get(i), kCode, "response"));
    }
    ExchangeLimits limits;
    limits.max_polls = 20;
    limits.poll_sleep_us_max = 200;
    limits.busy_retries = 2;
    limits.busy_sleep_us = 100;
    auto transport = std::make_unique<transport::ScriptedTransport>(std::move(discovery), std::move(responses));
    auto sent = transport->sent();
    auto state = MakeDriveState(std::make_unique<OpalDrive>(std::move(transport), limits));
    Napi::Object handle = MakeHandle(info.Env(), state);
    handle.Set("sent", Napi::Function::New(info.Env(), [sent, state](const Napi::CallbackInfo& ci) {
      std::lock_guard<std::mutex> lock(state->mutex);
      Napi::Array a = Napi::Array::New(ci.Env(), sent->size());
      for (size_t i = 0; i < sent->size(); ++i)
        a.Set(static_cast<uint32_t>(i), Napi::Buffer<uint8_t>::Copy(ci.Env(), (*sent)[i].data(), (*sent)[i].size()));
      return a;
    }));
    return handle;
  });
}

// openPassthroughFixture(kind: scsi|ata|nvme, imagePath). Handle extra: commands() ->
// { "<command name>": count }.
Napi::Value OpenPassthroughFixture(const Napi::CallbackInfo& info) {
  return CatchAll(info.Env(), [&]() -> Napi::Value {
    const std::string kind_name = StringArg(info[0], kCode, "kind");
    const std::string path = StringArg(info[1], kCode, "image path");
    transport::PassthroughKind kind;
    if (kind_name == "scsi") kind = transport::PassthroughKind::Scsi;
    else if (kind_name == "ata") kind = transport::PassthroughKind::Ata;
    else if (kind_name == "nvme") kind = transport::PassthroughKind::Nvme;
    else throw CodedError(kCode, "kind must be scsi, ata or nvme");
    auto port = std::make_unique<transport::TransportBackedDevicePort>(emulator::OpenEmulatedDrive(path), kind);
    transport::TransportBackedDevicePort* fixture = port.get();
    // The same detection real devices go through must recognise the fixture as this kind.
    if (transport::DetectKind(*port, path) != kind)
      throw CodedError("TCG_INTERNAL", "the device fixture was not detected as " + kind_name);
    const std::string serial = fixture->tper().Serial();
    IoctlPort& ref = *port;
    auto pt = std::make_unique<transport::PassthroughTransport>(
        ref, kind, kind_name + " fixture over emulated " + path, serial, std::move(port));
    auto state = MakeDriveState(std::make_unique<OpalDrive>(std::move(pt)));
    Napi::Object handle = MakeHandle(info.Env(), state);
    handle.Set("commands", Napi::Function::New(info.Env(), [fixture, state](const Napi::CallbackInfo& ci) {
      std::lock_guard<std::mutex> lock(state->mutex);
      Napi::Object o = Napi::Object::New(ci.Env());
      if (!state->drive) return o;  // closed: the fixture is gone with the drive
      for (const auto& [name, count] : fixture->counts()) o.Set(name, count);
      return o;
    }));
    return handle;
  });
}

void Init(Napi::Env env, Napi::Object exports) {
  exports.Set("openScriptedDrive", Napi::Function::New(env, OpenScriptedDrive, "openScriptedDrive"));
  exports.Set("openPassthroughFixture", Napi::Function::New(env, OpenPassthroughFixture, "openPassthroughFixture"));
}

}  // namespace
}  // namespace tcg
}  // namespace kmip_agent

KMIP_AGENT_MODULE(testSeams, kmip_agent::tcg::Init);
