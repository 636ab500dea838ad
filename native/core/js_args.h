// Reading Buffer arguments in native modules: a wrong type throws CodedError(code, "<what> must be
// a Buffer"), with the calling module's own code (TCG_INVALID_ARGUMENT, LUKS_..., KOPAL_...).
#pragma once
#include <napi.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/errors.h"
#include "core/secure.h"

namespace kmip_agent {

// The value as a Buffer, or a typed error.
inline Napi::Buffer<uint8_t> RequireBuffer(const Napi::Value& v, const char* code, const std::string& what) {
  if (!v.IsBuffer()) throw CodedError(code, what + " must be a Buffer");
  return v.As<Napi::Buffer<uint8_t>>();
}

// A copy of a Buffer's bytes.
inline std::vector<uint8_t> CopyBytes(const Napi::Buffer<uint8_t>& b) {
  return std::vector<uint8_t>(b.Data(), b.Data() + b.Length());
}

// A copy of the Buffer argument's bytes, or a typed error.
inline std::vector<uint8_t> BytesArg(const Napi::Value& v, const char* code, const std::string& what) {
  return CopyBytes(RequireBuffer(v, code, what));
}

// Secrets (PINs, keys): copied once into self-wiping memory; the caller's Buffer stays the caller's to wipe.
inline SecretBytes SecretBytesArg(const Napi::Value& v, const char* code, const std::string& what) {
  Napi::Buffer<uint8_t> b = RequireBuffer(v, code, what);
  return SecretBytes(b.Data(), b.Length());
}

// Copies `v` into `out` when it is a Buffer; leaves `out` alone otherwise (optional fields).
inline void CopyIfBuffer(const Napi::Value& v, std::vector<uint8_t>& out) {
  if (v.IsBuffer()) out = CopyBytes(v.As<Napi::Buffer<uint8_t>>());
}

}  // namespace kmip_agent
