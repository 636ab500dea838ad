// Conversions between TCG values and JS (test entry points and results of the tcg module).
#pragma once
#include <napi.h>

#include "tcg/discovery.h"
#include "tcg/packet.h"
#include "tcg/tokens.h"

namespace kmip_agent {
namespace tcg {

// uint/int -> number (bigint when beyond 2^53), bytes -> Buffer, list -> Array, name ->
// {name, value}, control tokens -> {token: "CALL" | "EOD" | "EOS" | "EMPTY" | ...}.
Napi::Value ValueToJs(Napi::Env env, const Value& value);
// The reverse, for the encoder entry point: numbers/bigints >= 0 -> uint, {int: n} -> signed,
// Buffer -> bytes, string -> bytes (UTF-8), Array -> list, {name, value} -> name, {token} ->
// control token, {uid: "hex16"} -> 8-byte UID. Throws CodedError("TCG_INVALID_ARGUMENT").
Value JsToValue(const Napi::Value& js);
Napi::Object TokenToJs(Napi::Env env, const Token& token);
Napi::Object ComPacketToJs(Napi::Env env, const ComPacket& packet);
Napi::Object DiscoveryToJs(Napi::Env env, const Discovery& discovery);
std::string HexUid(uint64_t uid);

}  // namespace tcg
}  // namespace kmip_agent
