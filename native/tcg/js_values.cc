// TCG values <-> JS.
#include "tcg/js_values.h"

#include <cstdio>

#include "core/errors.h"
#include "core/js_args.h"

namespace kmip_agent {
namespace tcg {
namespace {

Napi::Value Number(Napi::Env env, uint64_t v) {
  if (v <= (1ull << 53)) return Napi::Number::New(env, static_cast<double>(v));
  return Napi::BigInt::New(env, v);
}

Napi::Value SignedNumber(Napi::Env env, int64_t v) {
  if (v <= (1ll << 53) && v >= -(1ll << 53)) return Napi::Number::New(env, static_cast<double>(v));
  return Napi::BigInt::New(env, v);
}

Napi::Buffer<uint8_t> Bytes(Napi::Env env, const std::vector<uint8_t>& b) {
  return Napi::Buffer<uint8_t>::Copy(env, b.data(), b.size());
}

const char* ControlName(Value::Kind kind) {
  switch (kind) {
    case Value::Kind::kCall: return "CALL";
    case Value::Kind::kEndOfData: return "EOD";
    case Value::Kind::kEndOfSession: return "EOS";
    case Value::Kind::kStartTransaction: return "START_TRANSACTION";
    case Value::Kind::kEndTransaction: return "END_TRANSACTION";
    case Value::Kind::kEmpty: return "EMPTY";
    default: return "?";
  }
}

[[noreturn]] void BadArgument(const std::string& what) { throw CodedError("TCG_INVALID_ARGUMENT", what); }

Napi::Object SscToJs(Napi::Env env, const SscFeature& f) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("feature", FeatureName(f.code));
  o.Set("baseComId", f.base_com_id);
  o.Set("numComIds", f.num_com_ids);
  o.Set("rangeCrossing", f.range_crossing);
  if (f.code != feature::kOpal1 && f.code != feature::kEnterprise) {
    o.Set("numLockingAdmins", f.num_locking_admins);
    o.Set("numLockingUsers", f.num_locking_users);
    o.Set("initialCPinSidIndicator", f.initial_c_pin_sid_indicator);
    o.Set("cPinSidRevertBehavior", f.c_pin_sid_revert_behavior);
  }
  return o;
}

}  // namespace

std::string HexUid(uint64_t uid) {
  char b[20];
  std::snprintf(b, sizeof b, "%016llx", static_cast<unsigned long long>(uid));
  return b;
}

Napi::Value ValueToJs(Napi::Env env, const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUint: return Number(env, v.AsUint());
    case Value::Kind::kInt: return SignedNumber(env, v.AsInt());
    case Value::Kind::kBytes: return Bytes(env, v.AsBytes());
    case Value::Kind::kList: {
      const auto& items = v.Items();
      Napi::Array a = Napi::Array::New(env, items.size());
      for (size_t i = 0; i < items.size(); ++i) a.Set(static_cast<uint32_t>(i), ValueToJs(env, items[i]));
      return a;
    }
    case Value::Kind::kName: {
      Napi::Object o = Napi::Object::New(env);
      o.Set("name", ValueToJs(env, v.NameKey()));
      o.Set("value", ValueToJs(env, v.NameValue()));
      return o;
    }
    default: {
      Napi::Object o = Napi::Object::New(env);
      o.Set("token", ControlName(v.kind()));
      return o;
    }
  }
}

Value JsToValue(const Napi::Value& js) {
  if (js.IsNumber() || js.IsBigInt()) {
    return Value::MakeUint(IntegerArg<uint64_t>(js, "TCG_INVALID_ARGUMENT", "an unsigned token value"));
  }
  if (js.IsBuffer()) {
    return Value::MakeBytes(CopyBytes(js.As<Napi::Buffer<uint8_t>>()));
  }
  if (js.IsString()) {
    const std::string s = js.As<Napi::String>().Utf8Value();
    return Value::MakeBytes(std::vector<uint8_t>(s.begin(), s.end()));
  }
  if (js.IsArray()) {
    Napi::Array a = js.As<Napi::Array>();
    std::vector<Value> items;
    for (uint32_t i = 0; i < a.Length(); ++i) items.push_back(JsToValue(a.Get(i)));
    return Value::MakeList(std::move(items));
  }
  if (js.IsObject()) {
    Napi::Object o = js.As<Napi::Object>();
    if (o.Has("token")) {
      const std::string t = o.Get("token").ToString().Utf8Value();
      if (t == "CALL") return Value::MakeControl(Value::Kind::kCall);
      if (t == "EOD") return Value::MakeControl(Value::Kind::kEndOfData);
      if (t == "EOS") return Value::MakeControl(Value::Kind::kEndOfSession);
      if (t == "START_TRANSACTION") return Value::MakeControl(Value::Kind::kStartTransaction);
      if (t == "END_TRANSACTION") return Value::MakeControl(Value::Kind::kEndTransaction);
      if (t == "EMPTY") return Value::MakeControl(Value::Kind::kEmpty);
      BadArgument("unknown token " + t);
    }
    if (o.Has("int")) {
      return Value::MakeInt(IntegerArg<int64_t>(o.Get("int"), "TCG_INVALID_ARGUMENT", "{int}"));
    }
    if (o.Has("uid")) {
      const std::string h = o.Get("uid").ToString().Utf8Value();
      if (h.size() != 16 || h.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos)
        BadArgument("uid must be 16 hex digits");
      return Value::MakeUid(std::stoull(h, nullptr, 16));
    }
    if (o.Has("name") && o.Has("value")) return Value::MakeName(JsToValue(o.Get("name")), JsToValue(o.Get("value")));
  }
  BadArgument("cannot encode this JS value as a TCG token");
}

Napi::Object TokenToJs(Napi::Env env, const Token& t) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("kind", TokenKindName(t.kind));
  o.Set("offset", static_cast<double>(t.offset));
  if (t.kind == TokenKind::kUint) o.Set("value", Number(env, t.uint));
  if (t.kind == TokenKind::kInt) o.Set("value", SignedNumber(env, t.sint));
  if (t.kind == TokenKind::kBytes) o.Set("value", Bytes(env, t.bytes));
  return o;
}

Napi::Object ComPacketToJs(Napi::Env env, const ComPacket& cp) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("comId", cp.com_id);
  o.Set("comIdExtension", cp.com_id_extension);
  o.Set("outstandingData", cp.outstanding_data);
  o.Set("minTransfer", cp.min_transfer);
  Napi::Array packets = Napi::Array::New(env, cp.packets.size());
  for (size_t i = 0; i < cp.packets.size(); ++i) {
    const Packet& p = cp.packets[i];
    Napi::Object po = Napi::Object::New(env);
    po.Set("tperSession", p.tper_session);
    po.Set("hostSession", p.host_session);
    po.Set("seqNumber", p.seq_number);
    po.Set("ackType", p.ack_type);
    po.Set("acknowledgement", p.acknowledgement);
    Napi::Array subs = Napi::Array::New(env, p.subpackets.size());
    for (size_t j = 0; j < p.subpackets.size(); ++j) {
      Napi::Object so = Napi::Object::New(env);
      so.Set("kind", p.subpackets[j].kind);
      so.Set("payload", Bytes(env, p.subpackets[j].payload));
      subs.Set(static_cast<uint32_t>(j), so);
    }
    po.Set("subpackets", subs);
    packets.Set(static_cast<uint32_t>(i), po);
  }
  o.Set("packets", packets);
  return o;
}

Napi::Object DiscoveryToJs(Napi::Env env, const Discovery& d) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("length", d.length);
  o.Set("revision", d.revision);
  if (d.tper) {
    Napi::Object t = Napi::Object::New(env);
    t.Set("sync", d.tper->sync);
    t.Set("async", d.tper->async);
    t.Set("ackNak", d.tper->ack_nak);
    t.Set("bufferMgmt", d.tper->buffer_mgmt);
    t.Set("streaming", d.tper->streaming);
    t.Set("comIdMgmt", d.tper->comid_mgmt);
    o.Set("tper", t);
  }
  if (d.locking) {
    Napi::Object l = Napi::Object::New(env);
    l.Set("lockingSupported", d.locking->locking_supported);
    l.Set("lockingEnabled", d.locking->locking_enabled);
    l.Set("locked", d.locking->locked);
    l.Set("mediaEncryption", d.locking->media_encryption);
    l.Set("mbrEnabled", d.locking->mbr_enabled);
    l.Set("mbrDone", d.locking->mbr_done);
    l.Set("mbrShadowingNotSupported", d.locking->mbr_shadowing_not_supported);
    o.Set("locking", l);
  }
  if (d.geometry) {
    Napi::Object g = Napi::Object::New(env);
    g.Set("align", d.geometry->align);
    g.Set("logicalBlockSize", d.geometry->logical_block_size);
    g.Set("alignmentGranularity", Number(env, d.geometry->alignment_granularity));
    g.Set("lowestAlignedLba", Number(env, d.geometry->lowest_aligned_lba));
    o.Set("geometry", g);
  }
  if (d.opal1) o.Set("opal1", SscToJs(env, *d.opal1));
  if (d.opal2) o.Set("opal2", SscToJs(env, *d.opal2));
  if (d.enterprise) o.Set("enterprise", SscToJs(env, *d.enterprise));
  if (d.other_ssc) o.Set("otherSsc", SscToJs(env, *d.other_ssc));
  if (d.single_user_mode) {
    Napi::Object s = Napi::Object::New(env);
    s.Set("numLockingObjects", d.single_user_mode->num_locking_objects);
    s.Set("any", d.single_user_mode->any);
    s.Set("all", d.single_user_mode->all);
    s.Set("policy", d.single_user_mode->policy);
    o.Set("singleUserMode", s);
  }
  if (d.data_store) {
    Napi::Object s = Napi::Object::New(env);
    s.Set("maxTables", d.data_store->max_tables);
    s.Set("maxTotalSize", d.data_store->max_total_size);
    s.Set("tableSizeAlignment", d.data_store->table_size_alignment);
    o.Set("dataStore", s);
  }
  Napi::Array features = Napi::Array::New(env, d.features.size());
  for (size_t i = 0; i < d.features.size(); ++i) {
    const FeatureDescriptor& f = d.features[i];
    Napi::Object fo = Napi::Object::New(env);
    fo.Set("code", f.code);
    fo.Set("name", FeatureName(f.code));
    fo.Set("version", f.version);
    fo.Set("length", f.declared_length);
    fo.Set("data", Bytes(env, f.data));
    if (f.truncated) fo.Set("truncated", true);
    features.Set(static_cast<uint32_t>(i), fo);
  }
  o.Set("features", features);
  Napi::Array warnings = Napi::Array::New(env, d.warnings.size());
  for (size_t i = 0; i < d.warnings.size(); ++i) warnings.Set(static_cast<uint32_t>(i), d.warnings[i]);
  o.Set("warnings", warnings);
  return o;
}

}  // namespace tcg
}  // namespace kmip_agent
