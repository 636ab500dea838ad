// Cryptography of the emulated drive: media encryption (AES-256-XTS per 512-byte block), key
// wrapping (AES-256 key wrap with padding, RFC 5649), PIN derivation (PBKDF2-HMAC-SHA256) and
// randomness. OpenSSL comes from Node's bundled copy (its symbols are exported by the node binary).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/secure.h"

namespace kmip_agent {
namespace emulator {

constexpr size_t kBlockSize = 512;
constexpr size_t kMediaKeySize = 64;  // AES-256-XTS: two 256-bit keys
constexpr size_t kKekSize = 32;

std::vector<uint8_t> RandomBytes(size_t n);
SecretBytes RandomSecret(size_t n);

std::vector<uint8_t> Sha256(const uint8_t* data, size_t size);

// PBKDF2-HMAC-SHA256 of `secret` with `salt`.
SecretBytes Pbkdf2(const uint8_t* secret, size_t secret_size, const std::vector<uint8_t>& salt, int iterations,
                   size_t out_size);

// AES-256 key wrap with padding (RFC 5649). Unwrap returns false when the KEK is wrong or the
// blob was altered (the integrity check fails).
std::vector<uint8_t> WrapKey(const SecretBytes& kek, const SecretBytes& key);
bool UnwrapKey(const SecretBytes& kek, const std::vector<uint8_t>& wrapped, SecretBytes* key);

// AES-256-XTS over whole 512-byte blocks; the tweak is the LBA (little-endian, 16 bytes).
void XtsEncrypt(const SecretBytes& key, uint64_t lba, const uint8_t* in, uint8_t* out, size_t blocks);
void XtsDecrypt(const SecretBytes& key, uint64_t lba, const uint8_t* in, uint8_t* out, size_t blocks);

// Per-authority key pairs (X25519) let an administrator grant a range's media key to an
// authority whose PIN it does not know: the key is sealed to the authority's public key, and only
// that authority's private key (itself wrapped under its PIN) opens it.
void GenerateKeyPair(std::vector<uint8_t>* public_key, SecretBytes* private_key);
std::vector<uint8_t> SealToPublic(const std::vector<uint8_t>& public_key, const SecretBytes& secret);
bool OpenSealed(const SecretBytes& private_key, const std::vector<uint8_t>& sealed, SecretBytes* secret);

// Constant-time comparison.
bool SecretEquals(const uint8_t* a, const uint8_t* b, size_t size);

// Appends lowercase hex in place, without reallocating when `out` already has the capacity: callers
// that build secret text reserve it first, so no unwiped copy is left behind in freed memory.
void AppendHex(std::string* out, const uint8_t* data, size_t size);
std::string ToHex(const uint8_t* data, size_t size);
inline std::string ToHex(const std::vector<uint8_t>& v) { return ToHex(v.data(), v.size()); }
// Returns false on odd length or a non-hex character.
bool FromHex(const std::string& hex, std::vector<uint8_t>* out);

}  // namespace emulator
}  // namespace kmip_agent
