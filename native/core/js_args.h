// Reading JS arguments in native modules: a wrong type or value throws CodedError(code, "<what> must
// be ..."), with the calling module's own code (TCG_INVALID_ARGUMENT, LUKS_..., KOPAL_...), so the
// message names the argument and the code names the module.
#pragma once
#include <napi.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <type_traits>
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

// The one reader of integer arguments: a Number that is a safe integer (|n| <= 2^53 - 1, so no
// rounding happened on the JS side) or a BigInt, within [min, max]; anything else (fractions, NaN,
// strings, out of range, a BigInt that does not fit) is refused, never truncated or wrapped.
template <typename T>
T IntegerArg(const Napi::Value& v, const char* code, const std::string& what, T min = std::numeric_limits<T>::min(),
             T max = std::numeric_limits<T>::max()) {
  static_assert(std::is_integral_v<T> && sizeof(T) <= 8, "IntegerArg reads integers up to 64 bits");
  bool ok = false;
  T value = 0;
  if (v.IsNumber()) {
    const double d = v.As<Napi::Number>().DoubleValue();
    constexpr double kMaxSafe = 9007199254740991.0;  // Number.MAX_SAFE_INTEGER
    if (std::isfinite(d) && std::trunc(d) == d && std::fabs(d) <= kMaxSafe) {
      if constexpr (std::is_signed_v<T>) {
        const auto n = static_cast<int64_t>(d);
        ok = n >= static_cast<int64_t>(min) && n <= static_cast<int64_t>(max);
        value = static_cast<T>(n);
      } else {
        ok = d >= 0 && static_cast<uint64_t>(d) >= static_cast<uint64_t>(min) &&
             static_cast<uint64_t>(d) <= static_cast<uint64_t>(max);
        value = ok ? static_cast<T>(static_cast<uint64_t>(d)) : 0;
      }
    }
  } else if (v.IsBigInt()) {
    bool lossless = false;
    if constexpr (std::is_signed_v<T>) {
      const int64_t n = v.As<Napi::BigInt>().Int64Value(&lossless);
      ok = lossless && n >= static_cast<int64_t>(min) && n <= static_cast<int64_t>(max);
      value = static_cast<T>(n);
    } else {
      const uint64_t n = v.As<Napi::BigInt>().Uint64Value(&lossless);
      ok = lossless && n >= static_cast<uint64_t>(min) && n <= static_cast<uint64_t>(max);
      value = static_cast<T>(n);
    }
  }
  if (!ok) {
    throw CodedError(code, what + " must be an integer from " + std::to_string(min) + " to " + std::to_string(max));
  }
  return value;
}

// The same for optional arguments and fields: undefined or null is "not given".
template <typename T>
std::optional<T> OptionalIntegerArg(const Napi::Value& v, const char* code, const std::string& what,
                                    T min = std::numeric_limits<T>::min(), T max = std::numeric_limits<T>::max()) {
  if (v.IsUndefined() || v.IsNull()) return std::nullopt;
  return IntegerArg<T>(v, code, what, min, max);
}

// A non-empty string without NUL bytes (paths, names), or a typed error.
inline std::string StringArg(const Napi::Value& v, const char* code, const std::string& what) {
  if (!v.IsString()) throw CodedError(code, what + " must be a string");
  std::string s = v.As<Napi::String>().Utf8Value();
  if (s.empty() || s.find('\0') != std::string::npos) throw CodedError(code, what + " must be a non-empty string");
  return s;
}

}  // namespace kmip_agent
