#include "emulator/emu_crypto.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <memory>

#include "core/errors.h"

namespace kmip_agent {
namespace emulator {
namespace {

struct CipherCtxFree {
  void operator()(EVP_CIPHER_CTX* ctx) const { EVP_CIPHER_CTX_free(ctx); }
};
using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, CipherCtxFree>;

CipherCtx NewCtx() {
  CipherCtx ctx(EVP_CIPHER_CTX_new());
  if (!ctx) throw CodedError("EMU_CRYPTO", "cannot allocate a cipher context");
  return ctx;
}

void Xts(bool encrypt, const SecretBytes& key, uint64_t lba, const uint8_t* in, uint8_t* out, size_t blocks) {
  if (key.size() != kMediaKeySize) throw CodedError("EMU_CRYPTO", "media key has the wrong size");
  CipherCtx ctx = NewCtx();
  for (size_t i = 0; i < blocks; ++i) {
    uint8_t tweak[16] = {0};
    uint64_t block = lba + i;
    for (int b = 0; b < 8; ++b) tweak[b] = static_cast<uint8_t>(block >> (8 * b));
    int len = 0;
    if (EVP_CipherInit_ex(ctx.get(), EVP_aes_256_xts(), nullptr, key.data(), tweak, encrypt ? 1 : 0) != 1 ||
        EVP_CipherUpdate(ctx.get(), out + i * kBlockSize, &len, in + i * kBlockSize, kBlockSize) != 1 ||
        len != static_cast<int>(kBlockSize)) {
      throw CodedError("EMU_CRYPTO", "AES-XTS failed");
    }
  }
}

}  // namespace

std::vector<uint8_t> RandomBytes(size_t n) {
  std::vector<uint8_t> out(n);
  if (n > 0 && RAND_bytes(out.data(), static_cast<int>(n)) != 1) throw CodedError("EMU_CRYPTO", "no randomness");
  return out;
}

SecretBytes RandomSecret(size_t n) {
  SecretBytes out(n);
  if (n > 0 && RAND_bytes(out.data(), static_cast<int>(n)) != 1) throw CodedError("EMU_CRYPTO", "no randomness");
  return out;
}

std::vector<uint8_t> Sha256(const uint8_t* data, size_t size) {
  std::vector<uint8_t> out(32);
  unsigned int len = 0;
  if (EVP_Digest(data, size, out.data(), &len, EVP_sha256(), nullptr) != 1 || len != 32)
    throw CodedError("EMU_CRYPTO", "SHA-256 failed");
  return out;
}

SecretBytes Pbkdf2(const uint8_t* secret, size_t secret_size, const std::vector<uint8_t>& salt, int iterations,
                   size_t out_size) {
  SecretBytes out(out_size);
  static const uint8_t kEmpty = 0;
  if (PKCS5_PBKDF2_HMAC(reinterpret_cast<const char*>(secret_size ? secret : &kEmpty), static_cast<int>(secret_size),
                        salt.data(), static_cast<int>(salt.size()), iterations, EVP_sha256(),
                        static_cast<int>(out_size), out.data()) != 1) {
    throw CodedError("EMU_CRYPTO", "PBKDF2 failed");
  }
  return out;
}

std::vector<uint8_t> WrapKey(const SecretBytes& kek, const SecretBytes& key) {
  CipherCtx ctx = NewCtx();
  EVP_CIPHER_CTX_set_flags(ctx.get(), EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
  std::vector<uint8_t> out(key.size() + 16);
  int len = 0, fin = 0;
  if (EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_wrap_pad(), nullptr, kek.data(), nullptr) != 1 ||
      EVP_EncryptUpdate(ctx.get(), out.data(), &len, key.data(), static_cast<int>(key.size())) != 1 ||
      EVP_EncryptFinal_ex(ctx.get(), out.data() + len, &fin) != 1) {
    throw CodedError("EMU_CRYPTO", "key wrap failed");
  }
  out.resize(static_cast<size_t>(len + fin));
  return out;
}

bool UnwrapKey(const SecretBytes& kek, const std::vector<uint8_t>& wrapped, SecretBytes* key) {
  if (wrapped.size() < 16 || wrapped.size() > 1024) return false;
  CipherCtx ctx = NewCtx();
  EVP_CIPHER_CTX_set_flags(ctx.get(), EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
  SecretBytes out(wrapped.size());
  int len = 0, fin = 0;
  if (EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_wrap_pad(), nullptr, kek.data(), nullptr) != 1 ||
      EVP_DecryptUpdate(ctx.get(), out.data(), &len, wrapped.data(), static_cast<int>(wrapped.size())) != 1 ||
      EVP_DecryptFinal_ex(ctx.get(), out.data() + len, &fin) != 1) {
    return false;
  }
  *key = SecretBytes(out.data(), static_cast<size_t>(len + fin));
  return true;
}

void XtsEncrypt(const SecretBytes& key, uint64_t lba, const uint8_t* in, uint8_t* out, size_t blocks) {
  Xts(true, key, lba, in, out, blocks);
}

void XtsDecrypt(const SecretBytes& key, uint64_t lba, const uint8_t* in, uint8_t* out, size_t blocks) {
  Xts(false, key, lba, in, out, blocks);
}

namespace {
struct PkeyFree {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
struct PkeyCtxFree {
  void operator()(EVP_PKEY_CTX* ctx) const { EVP_PKEY_CTX_free(ctx); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;
using PkeyCtx = std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree>;

SecretBytes X25519Shared(const SecretBytes& private_key, const std::vector<uint8_t>& peer_public) {
  if (private_key.size() != 32 || peer_public.size() != 32) throw CodedError("EMU_CRYPTO", "bad X25519 key size");
  Pkey priv(EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, nullptr, private_key.data(), 32));
  Pkey peer(EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, nullptr, peer_public.data(), 32));
  if (!priv || !peer) throw CodedError("EMU_CRYPTO", "bad X25519 key");
  PkeyCtx ctx(EVP_PKEY_CTX_new(priv.get(), nullptr));
  SecretBytes shared(32);
  size_t len = 32;
  if (!ctx || EVP_PKEY_derive_init(ctx.get()) != 1 || EVP_PKEY_derive_set_peer(ctx.get(), peer.get()) != 1 ||
      EVP_PKEY_derive(ctx.get(), shared.data(), &len) != 1 || len != 32) {
    throw CodedError("EMU_CRYPTO", "X25519 failed");
  }
  return shared;
}

// KEK = SHA-256(shared || ephemeral public || recipient public): binds the wrap to both keys.
SecretBytes SealKek(const SecretBytes& shared, const std::vector<uint8_t>& eph, const std::vector<uint8_t>& pub) {
  SecretBytes input(shared.size() + eph.size() + pub.size());
  std::copy(shared.data(), shared.data() + shared.size(), input.data());
  std::copy(eph.begin(), eph.end(), input.data() + shared.size());
  std::copy(pub.begin(), pub.end(), input.data() + shared.size() + eph.size());
  std::vector<uint8_t> digest = Sha256(input.data(), input.size());
  SecretBytes kek(digest.data(), digest.size());
  SecureWipe(digest.data(), digest.size());
  return kek;
}
}  // namespace

void GenerateKeyPair(std::vector<uint8_t>* public_key, SecretBytes* private_key) {
  PkeyCtx ctx(EVP_PKEY_CTX_new_id(EVP_PKEY_X25519, nullptr));
  EVP_PKEY* raw = nullptr;
  if (!ctx || EVP_PKEY_keygen_init(ctx.get()) != 1 || EVP_PKEY_keygen(ctx.get(), &raw) != 1)
    throw CodedError("EMU_CRYPTO", "X25519 key generation failed");
  Pkey key(raw);
  SecretBytes priv(32);
  public_key->assign(32, 0);
  size_t plen = 32, qlen = 32;
  if (EVP_PKEY_get_raw_private_key(key.get(), priv.data(), &plen) != 1 ||
      EVP_PKEY_get_raw_public_key(key.get(), public_key->data(), &qlen) != 1 || plen != 32 || qlen != 32) {
    throw CodedError("EMU_CRYPTO", "X25519 key export failed");
  }
  *private_key = std::move(priv);
}

std::vector<uint8_t> SealToPublic(const std::vector<uint8_t>& public_key, const SecretBytes& secret) {
  std::vector<uint8_t> eph_pub;
  SecretBytes eph_priv;
  GenerateKeyPair(&eph_pub, &eph_priv);
  SecretBytes kek = SealKek(X25519Shared(eph_priv, public_key), eph_pub, public_key);
  std::vector<uint8_t> out = eph_pub;
  std::vector<uint8_t> wrapped = WrapKey(kek, secret);
  out.insert(out.end(), wrapped.begin(), wrapped.end());
  return out;
}

bool OpenSealed(const SecretBytes& private_key, const std::vector<uint8_t>& sealed, SecretBytes* secret) {
  if (sealed.size() < 32 + 16 || private_key.size() != 32) return false;
  std::vector<uint8_t> eph(sealed.begin(), sealed.begin() + 32);
  Pkey priv(EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, nullptr, private_key.data(), 32));
  if (!priv) return false;
  std::vector<uint8_t> pub(32);
  size_t len = 32;
  if (EVP_PKEY_get_raw_public_key(priv.get(), pub.data(), &len) != 1) return false;
  SecretBytes kek = SealKek(X25519Shared(private_key, eph), eph, pub);
  return UnwrapKey(kek, std::vector<uint8_t>(sealed.begin() + 32, sealed.end()), secret);
}

bool SecretEquals(const uint8_t* a, const uint8_t* b, size_t size) { return CRYPTO_memcmp(a, b, size) == 0; }

void AppendHex(std::string* out, const uint8_t* data, size_t size) {
  static const char kDigits[] = "0123456789abcdef";
  out->reserve(out->size() + size * 2);
  for (size_t i = 0; i < size; ++i) {
    out->push_back(kDigits[data[i] >> 4]);
    out->push_back(kDigits[data[i] & 15]);
  }
}

std::string ToHex(const uint8_t* data, size_t size) {
  std::string out;
  AppendHex(&out, data, size);
  return out;
}

bool FromHex(const std::string& hex, std::vector<uint8_t>* out) {
  if (hex.size() % 2 != 0) return false;
  out->clear();
  out->reserve(hex.size() / 2);
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (size_t i = 0; i < hex.size(); i += 2) {
    int hi = nibble(hex[i]), lo = nibble(hex[i + 1]);
    if (hi < 0 || lo < 0) return false;
    out->push_back(static_cast<uint8_t>(hi << 4 | lo));
  }
  return true;
}

}  // namespace emulator
}  // namespace kmip_agent
