// libcryptsetup wrapper (addon.luks): LUKS2 header info, key checks, activation, keyslot add/remove.
// Every call returns a Promise and runs its libcryptsetup work off the JS thread (AsyncWorker).
// Keys arrive as Buffers, are copied into SecretBytes at once and wiped when the call ends.
#include <fcntl.h>
#include <libcryptsetup.h>
#include <napi.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "core/errors.h"
#include "core/registry.h"
#include "core/secure.h"
#include "luks/luks2_header.h"

namespace kmip_agent {
namespace luks {
namespace {

// Keyslots the agent creates hold machine-generated, uniformly random 32-byte keys. Key stretching
// exists to slow guessing of low-entropy passphrases; 2^256 guesses are out of reach with or
// without it, so any cost spent here buys nothing. Argon2id (libcryptsetup's default, up to 1 GiB and
// 4 threads per keyslot try) would only slow boot unlock of many volumes and risk running a small
// appliance out of memory. So: PBKDF2-SHA256 with libcryptsetup's minimum of 1000 iterations and no
// benchmark (a fixed, reproducible cost). Keyslots made by humans with passphrases keep their own
// PBKDF; this applies only to keyslots added here.
constexpr const char* kPbkdfType = CRYPT_KDF_PBKDF2;
constexpr const char* kPbkdfHash = "sha256";
constexpr uint32_t kPbkdfIterations = 1000;

// cryptsetup's own limit for a passphrase read from a key file is 8 MiB; no key of ours comes close.
constexpr size_t kMaxKeySize = 8192;
constexpr size_t kMaxDmNameSize = 127;  // DM_NAME_LEN - 1

// libcryptsetup keeps process-global state (log and debug settings, crypto backend, locking), so
// the worker threads take turns.
std::mutex& LibraryMutex() {
  static std::mutex mutex;
  return mutex;
}

// Error-level messages libcryptsetup logs during one operation, kept to explain a failure.
// libcryptsetup does not log key material; debug output (which dumps far more) stays off.
struct OperationLog {
  std::vector<std::string> errors;
  std::string Suffix() const {
    if (errors.empty()) return "";
    std::string joined;
    for (const auto& e : errors) joined += (joined.empty() ? "" : " ") + e;
    return " (libcryptsetup: " + joined + ")";
  }
};

void CollectLog(int level, const char* msg, void* usrptr) {
  if (level != CRYPT_LOG_ERROR || msg == nullptr || usrptr == nullptr) return;
  std::string line(msg);
  while (!line.empty() && (line.back() == '\n' || line.back() == ' ')) line.pop_back();
  auto* log = static_cast<OperationLog*>(usrptr);
  if (!line.empty() && log->errors.size() < 8) log->errors.push_back(line);
}

void DiscardLog(int, const char*, void*) {}

[[noreturn]] void Fail(const std::string& code, const std::string& message, int r, const OperationLog& log) {
  throw CodedError(code, message + log.Suffix(), r < 0 ? -r : r);
}

// Maps a negative errno from libcryptsetup to a stable code.
[[noreturn]] void FailErrno(int r, const std::string& what, const OperationLog& log) {
  switch (-r) {
    case EPERM:
      Fail("LUKS_WRONG_KEY", what + ": no keyslot accepts this key", r, log);
    case EBUSY:
      Fail("LUKS_BUSY", what + ": the device or mapping is busy", r, log);
    case EEXIST:
      Fail("LUKS_ALREADY_ACTIVE", what + ": a mapping with this name already exists", r, log);
    case ENOMEM:
      Fail("LUKS_OUT_OF_MEMORY", what + ": out of memory", r, log);
    case EACCES:
      Fail("LUKS_PERMISSION_DENIED", what + ": permission denied (root is needed)", r, log);
    case ENOSPC:
      Fail("LUKS_KEYSLOT_FULL", what + ": no room for another keyslot", r, log);
    default:
      Fail("LUKS_FAILED", what + ": " + strerror(-r), r, log);
  }
}

// "" when device-mapper can be used, else why not.
std::string DmUnavailableReason() {
  bool in_kernel = false;
  std::ifstream misc("/proc/misc");
  std::string line;
  while (std::getline(misc, line))
    if (line.find(" device-mapper") != std::string::npos) in_kernel = true;
  bool control = access("/dev/mapper/control", F_OK) == 0;
  if (in_kernel && control) return "";
  if (!in_kernel && !control) return "the kernel has no device-mapper (dm_mod) and /dev/mapper/control is missing";
  if (!in_kernel) return "the kernel has no device-mapper (dm_mod is not loaded)";
  return "/dev/mapper/control is missing";
}

void RequireDeviceMapper() {
  std::string reason = DmUnavailableReason();
  if (!reason.empty())
    throw CodedError("LUKS_DM_NOT_AVAILABLE", "device-mapper not available: cannot activate (" + reason + ")");
}

class CryptDevice {
 public:
  CryptDevice() = default;
  CryptDevice(const CryptDevice&) = delete;
  CryptDevice& operator=(const CryptDevice&) = delete;
  ~CryptDevice() {
    if (cd_ != nullptr) crypt_free(cd_);
  }
  crypt_device** out() { return &cd_; }
  crypt_device* get() const { return cd_; }

 private:
  crypt_device* cd_ = nullptr;
};

// Classifies path with our own header checks, then lets libcryptsetup load it as LUKS2.
void LoadLuks2(const std::string& path, CryptDevice& device, OperationLog& log) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    int err = errno;
    if (err == EACCES) throw CodedError("LUKS_PERMISSION_DENIED", path + ": permission denied", err);
    if (err == ENOENT || err == ENOTDIR)
      throw CodedError("LUKS_DEVICE_NOT_FOUND", path + ": no such device or file", err);
    throw CodedError("LUKS_DEVICE_NOT_FOUND", path + ": " + strerror(err), err);
  }
  if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
    throw CodedError("LUKS_NOT_LUKS", path + " is not a block device or image file");
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    std::string code = err == EACCES ? "LUKS_PERMISSION_DENIED" : "LUKS_IO_ERROR";
    throw CodedError(code, path + ": cannot open: " + strerror(err), err);
  }
  HeaderCheck check;
  try {
    check = CheckLuksHeaders(fd);
  } catch (...) {
    close(fd);
    throw;
  }
  close(fd);
  switch (check.kind) {
    case HeaderKind::kNotLuks:
      throw CodedError("LUKS_NOT_LUKS", path + " is not a LUKS device (no LUKS header)");
    case HeaderKind::kLuks1:
      throw CodedError("LUKS_UNSUPPORTED_VERSION",
                       path + " is LUKS1: only LUKS2 is supported (convert with `cryptsetup convert --type luks2`)");
    case HeaderKind::kUnknownVersion:
      throw CodedError("LUKS_UNSUPPORTED_VERSION", path + ": unsupported " + check.detail);
    case HeaderKind::kCorrupt:
      throw CodedError("LUKS_CORRUPT_HEADER", path + ": damaged LUKS2 header (" + check.detail +
                                                  "); left untouched: back up the device, then run `cryptsetup repair`");
    case HeaderKind::kLuks2:
      break;
  }
  int r = crypt_init(device.out(), path.c_str());
  if (r < 0) FailErrno(r, path + ": cannot open", log);
  crypt_set_log_callback(device.get(), CollectLog, &log);
  r = crypt_load(device.get(), CRYPT_LUKS2, nullptr);
  if (r == -EINVAL || r == -ENOTSUP)
    Fail("LUKS_CORRUPT_HEADER", path + ": libcryptsetup cannot read the LUKS2 metadata", r, log);
  if (r < 0) FailErrno(r, path + ": cannot load the LUKS2 header", log);
}

int KeyslotMax() { return crypt_keyslot_max(CRYPT_LUKS2); }

void RequireSlotInRange(int slot) {
  if (slot < 0 || slot >= KeyslotMax())
    throw CodedError("LUKS_KEYSLOT_INVALID",
                     "keyslot " + std::to_string(slot) + " is out of range (0.." + std::to_string(KeyslotMax() - 1) + ")");
}

bool SlotOpensVolume(crypt_keyslot_info status) {
  return status == CRYPT_SLOT_ACTIVE || status == CRYPT_SLOT_ACTIVE_LAST;
}

// The keyslot key opens (any slot when slot < 0), without activating anything; -errno when none.
int TryKey(crypt_device* cd, const SecretBytes& key, int slot) {
  return crypt_activate_by_passphrase(cd, nullptr, slot < 0 ? CRYPT_ANY_SLOT : slot,
                                      reinterpret_cast<const char*>(key.data()), key.size(), 0);
}

int RequireKey(crypt_device* cd, const SecretBytes& key, const std::string& what, OperationLog& log) {
  int r = TryKey(cd, key, -1);
  if (r < 0) FailErrno(r, what, log);
  return r;
}

void UseAgentPbkdf(crypt_device* cd, OperationLog& log) {
  crypt_pbkdf_type pbkdf{};
  pbkdf.type = kPbkdfType;
  pbkdf.hash = kPbkdfHash;
  pbkdf.iterations = kPbkdfIterations;
  pbkdf.flags = CRYPT_PBKDF_NO_BENCHMARK;
  int r = crypt_set_pbkdf_type(cd, &pbkdf);
  if (r < 0) FailErrno(r, "cannot set the keyslot PBKDF", log);
}

// ---- results -------------------------------------------------------------------------------------

struct KeyslotInfo {
  int slot = 0;
  std::string state;  // active | unbound
  std::string priority;
  std::string encryption;
  int key_size = 0;
  std::string pbkdf_type, pbkdf_hash;
  uint32_t iterations = 0, memory_kb = 0, parallel = 0;
};

struct TokenInfo {
  int token = 0;
  std::string type;
  std::string kind;  // internal | external, with "-unknown" when no handler is loaded
};

struct LuksInfo {
  std::string type, uuid, label, subsystem, cipher, cipher_mode, metadata_json, device_name;
  int volume_key_size = 0, sector_size = 0;
  uint64_t data_offset_sectors = 0;
  std::vector<KeyslotInfo> keyslots;
  std::vector<TokenInfo> tokens;
};

std::string OrEmpty(const char* s) { return s == nullptr ? "" : s; }

LuksInfo ReadInfo(crypt_device* cd, OperationLog& log) {
  LuksInfo info;
  info.type = OrEmpty(crypt_get_type(cd));
  info.uuid = OrEmpty(crypt_get_uuid(cd));
  info.label = OrEmpty(crypt_get_label(cd));
  info.subsystem = OrEmpty(crypt_get_subsystem(cd));
  info.cipher = OrEmpty(crypt_get_cipher(cd));
  info.cipher_mode = OrEmpty(crypt_get_cipher_mode(cd));
  info.volume_key_size = crypt_get_volume_key_size(cd);
  info.sector_size = crypt_get_sector_size(cd);
  info.data_offset_sectors = crypt_get_data_offset(cd);
  info.device_name = OrEmpty(crypt_get_device_name(cd));
  for (int slot = 0; slot < KeyslotMax(); ++slot) {
    crypt_keyslot_info status = crypt_keyslot_status(cd, slot);
    if (status != CRYPT_SLOT_ACTIVE && status != CRYPT_SLOT_ACTIVE_LAST && status != CRYPT_SLOT_UNBOUND) continue;
    KeyslotInfo ks;
    ks.slot = slot;
    ks.state = status == CRYPT_SLOT_UNBOUND ? "unbound" : "active";
    switch (crypt_keyslot_get_priority(cd, slot)) {
      case CRYPT_SLOT_PRIORITY_IGNORE: ks.priority = "ignore"; break;
      case CRYPT_SLOT_PRIORITY_PREFER: ks.priority = "prefer"; break;
      default: ks.priority = "normal"; break;
    }
    size_t area_key_size = 0;
    ks.encryption = OrEmpty(crypt_keyslot_get_encryption(cd, slot, &area_key_size));
    ks.key_size = crypt_keyslot_get_key_size(cd, slot);
    crypt_pbkdf_type pbkdf{};
    if (crypt_keyslot_get_pbkdf(cd, slot, &pbkdf) == 0) {
      ks.pbkdf_type = OrEmpty(pbkdf.type);
      ks.pbkdf_hash = OrEmpty(pbkdf.hash);
      ks.iterations = pbkdf.iterations;
      ks.memory_kb = pbkdf.max_memory_kb;
      ks.parallel = pbkdf.parallel_threads;
    }
    info.keyslots.push_back(ks);
  }
  int token_max = crypt_token_max(CRYPT_LUKS2);
  for (int token = 0; token < token_max; ++token) {
    const char* type = nullptr;
    crypt_token_info status = crypt_token_status(cd, token, &type);
    if (status == CRYPT_TOKEN_INVALID || status == CRYPT_TOKEN_INACTIVE) continue;
    TokenInfo t;
    t.token = token;
    t.type = OrEmpty(type);
    t.kind = status == CRYPT_TOKEN_INTERNAL           ? "internal"
             : status == CRYPT_TOKEN_INTERNAL_UNKNOWN ? "internal-unknown"
             : status == CRYPT_TOKEN_EXTERNAL         ? "external"
                                                      : "external-unknown";
    info.tokens.push_back(t);
  }
  // The metadata JSON (keyslot areas, salts, digests, segments, tokens): no key material in it.
  const char* json = nullptr;
  int r = crypt_dump_json(cd, &json, 0);
  if (r < 0) FailErrno(r, "cannot read the LUKS2 metadata", log);
  info.metadata_json = OrEmpty(json);
  return info;
}

Napi::Value ToJs(Napi::Env env, const LuksInfo& info) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("type", info.type);
  o.Set("uuid", info.uuid);
  o.Set("label", info.label);
  o.Set("subsystem", info.subsystem);
  o.Set("cipher", info.cipher);
  o.Set("cipherMode", info.cipher_mode);
  o.Set("volumeKeySize", info.volume_key_size);
  o.Set("sectorSize", info.sector_size);
  o.Set("dataOffsetSectors", Napi::Number::New(env, static_cast<double>(info.data_offset_sectors)));
  o.Set("deviceName", info.device_name);
  Napi::Array slots = Napi::Array::New(env, info.keyslots.size());
  for (size_t i = 0; i < info.keyslots.size(); ++i) {
    const KeyslotInfo& ks = info.keyslots[i];
    Napi::Object s = Napi::Object::New(env);
    s.Set("slot", ks.slot);
    s.Set("state", ks.state);
    s.Set("priority", ks.priority);
    s.Set("encryption", ks.encryption);
    s.Set("keySize", ks.key_size);
    Napi::Object pbkdf = Napi::Object::New(env);
    pbkdf.Set("type", ks.pbkdf_type);
    pbkdf.Set("hash", ks.pbkdf_hash);
    pbkdf.Set("iterations", ks.iterations);
    pbkdf.Set("memoryKiB", ks.memory_kb);
    pbkdf.Set("parallel", ks.parallel);
    s.Set("pbkdf", pbkdf);
    slots.Set(static_cast<uint32_t>(i), s);
  }
  o.Set("keyslots", slots);
  Napi::Array tokens = Napi::Array::New(env, info.tokens.size());
  for (size_t i = 0; i < info.tokens.size(); ++i) {
    Napi::Object t = Napi::Object::New(env);
    t.Set("token", info.tokens[i].token);
    t.Set("type", info.tokens[i].type);
    t.Set("kind", info.tokens[i].kind);
    tokens.Set(static_cast<uint32_t>(i), t);
  }
  o.Set("tokens", tokens);
  o.Set("metadataJson", info.metadata_json);
  return o;
}

Napi::Value SlotResult(Napi::Env env, int slot) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("slot", slot);
  return o;
}

// ---- async plumbing ------------------------------------------------------------------------------

// One libcryptsetup operation on a worker thread, settling a Promise with a typed result or error.
class LuksTask : public Napi::AsyncWorker {
 public:
  explicit LuksTask(Napi::Env env, const char* name) : Napi::AsyncWorker(env, name), deferred_(env) {}
  Napi::Promise Start() {
    Queue();
    return deferred_.Promise();
  }

 protected:
  virtual void Run(OperationLog& log) = 0;
  virtual Napi::Value Result(Napi::Env env) = 0;

  void Execute() override {
    std::lock_guard<std::mutex> lock(LibraryMutex());
    OperationLog log;
    try {
      Run(log);
    } catch (...) {
      error_ = DescribeCurrentException();
      failed_ = true;
    }
    WipeSecrets();
  }
  void OnOK() override {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    if (failed_)
      deferred_.Reject(MakeError(env, error_.code, error_.message, error_.status).Value());
    else
      deferred_.Resolve(Result(env));
  }
  // Wipes key copies as soon as the work is done, before the result travels back.
  virtual void WipeSecrets() {}

 private:
  Napi::Promise::Deferred deferred_;
  ErrorInfo error_;
  bool failed_ = false;
};

// ---- argument checks (JS thread) ----------------------------------------------------------------

std::string StringArg(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || !info[i].IsString())
    throw CodedError("LUKS_INVALID_ARGUMENT", std::string(what) + " must be a string");
  std::string s = info[i].As<Napi::String>().Utf8Value();
  if (s.empty() || s.find('\0') != std::string::npos)
    throw CodedError("LUKS_INVALID_ARGUMENT", std::string(what) + " must be a non-empty string");
  return s;
}

// Copies a key Buffer into self-wiping memory; the caller's Buffer stays the caller's to wipe.
SecretBytes KeyArg(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || !info[i].IsBuffer())
    throw CodedError("LUKS_INVALID_ARGUMENT", std::string(what) + " must be a Buffer");
  auto buffer = info[i].As<Napi::Buffer<uint8_t>>();
  if (buffer.Length() == 0 || buffer.Length() > kMaxKeySize)
    throw CodedError("LUKS_INVALID_ARGUMENT",
                     std::string(what) + " must be 1.." + std::to_string(kMaxKeySize) + " bytes");
  return SecretBytes(buffer.Data(), buffer.Length());
}

int IntArg(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || !info[i].IsNumber())
    throw CodedError("LUKS_INVALID_ARGUMENT", std::string(what) + " must be a number");
  double d = info[i].As<Napi::Number>().DoubleValue();
  if (d != static_cast<int>(d)) throw CodedError("LUKS_INVALID_ARGUMENT", std::string(what) + " must be an integer");
  return static_cast<int>(d);
}

bool BoolArg(const Napi::CallbackInfo& info, size_t i) { return info.Length() > i && info[i].ToBoolean().Value(); }

std::string DmNameArg(const Napi::CallbackInfo& info, size_t i) {
  std::string name = StringArg(info, i, "mapping name");
  if (name.size() > kMaxDmNameSize || name.find('/') != std::string::npos || name == "." || name == "..")
    throw CodedError("LUKS_INVALID_ARGUMENT", "mapping name must be 1..127 characters without '/'");
  return name;
}

// ---- operations ----------------------------------------------------------------------------------

class InfoTask : public LuksTask {
 public:
  InfoTask(Napi::Env env, std::string path) : LuksTask(env, "luks.info"), path_(std::move(path)) {}

 protected:
  void Run(OperationLog& log) override {
    CryptDevice device;
    LoadLuks2(path_, device, log);
    info_ = ReadInfo(device.get(), log);
  }
  Napi::Value Result(Napi::Env env) override { return ToJs(env, info_); }

 private:
  std::string path_;
  LuksInfo info_;
};

class CheckKeyTask : public LuksTask {
 public:
  CheckKeyTask(Napi::Env env, std::string path, SecretBytes key)
      : LuksTask(env, "luks.checkKey"), path_(std::move(path)), key_(std::move(key)) {}

 protected:
  void Run(OperationLog& log) override {
    CryptDevice device;
    LoadLuks2(path_, device, log);
    slot_ = RequireKey(device.get(), key_, path_, log);
  }
  void WipeSecrets() override { key_.Wipe(); }
  Napi::Value Result(Napi::Env env) override { return SlotResult(env, slot_); }

 private:
  std::string path_;
  SecretBytes key_;
  int slot_ = -1;
};

class OpenTask : public LuksTask {
 public:
  OpenTask(Napi::Env env, std::string path, std::string name, SecretBytes key, bool read_only)
      : LuksTask(env, "luks.open"), path_(std::move(path)), name_(std::move(name)), key_(std::move(key)),
        read_only_(read_only) {}

 protected:
  void Run(OperationLog& log) override {
    CryptDevice device;
    LoadLuks2(path_, device, log);
    RequireDeviceMapper();
    uint32_t flags = read_only_ ? CRYPT_ACTIVATE_READONLY : 0;
    int r = crypt_activate_by_passphrase(device.get(), name_.c_str(), CRYPT_ANY_SLOT,
                                         reinterpret_cast<const char*>(key_.data()), key_.size(), flags);
    if (r < 0) FailErrno(r, "cannot open " + path_ + " as " + name_, log);
    slot_ = r;
  }
  void WipeSecrets() override { key_.Wipe(); }
  Napi::Value Result(Napi::Env env) override { return SlotResult(env, slot_); }

 private:
  std::string path_, name_;
  SecretBytes key_;
  bool read_only_;
  int slot_ = -1;
};

class CloseTask : public LuksTask {
 public:
  CloseTask(Napi::Env env, std::string name) : LuksTask(env, "luks.close"), name_(std::move(name)) {}

 protected:
  void Run(OperationLog& log) override {
    RequireDeviceMapper();
    CryptDevice device;
    int r = crypt_init_by_name(device.out(), name_.c_str());
    if (r == -ENODEV || r == -ENOENT)
      Fail("LUKS_NOT_ACTIVE", "no active mapping named " + name_, r, log);
    if (r < 0) FailErrno(r, "cannot find mapping " + name_, log);
    crypt_set_log_callback(device.get(), CollectLog, &log);
    r = crypt_deactivate(device.get(), name_.c_str());
    if (r < 0) FailErrno(r, "cannot close " + name_, log);
  }
  Napi::Value Result(Napi::Env env) override { return env.Undefined(); }

 private:
  std::string name_;
};

class AddKeyTask : public LuksTask {
 public:
  AddKeyTask(Napi::Env env, std::string path, SecretBytes key, SecretBytes new_key, int slot)
      : LuksTask(env, "luks.addKey"), path_(std::move(path)), key_(std::move(key)), new_key_(std::move(new_key)),
        slot_(slot) {}

 protected:
  void Run(OperationLog& log) override {
    CryptDevice device;
    LoadLuks2(path_, device, log);
    crypt_device* cd = device.get();
    // Every check happens before the one write, so a refused request leaves the header as it was.
    if (slot_ >= 0) {
      RequireSlotInRange(slot_);
      if (crypt_keyslot_status(cd, slot_) != CRYPT_SLOT_INACTIVE)
        throw CodedError("LUKS_KEYSLOT_IN_USE", "keyslot " + std::to_string(slot_) + " of " + path_ + " is in use");
    } else {
      bool free_slot = false;
      for (int s = 0; s < KeyslotMax() && !free_slot; ++s) free_slot = crypt_keyslot_status(cd, s) == CRYPT_SLOT_INACTIVE;
      if (!free_slot) throw CodedError("LUKS_KEYSLOT_FULL", path_ + " has no free keyslot");
    }
    RequireKey(cd, key_, path_, log);
    UseAgentPbkdf(cd, log);
    int r = crypt_keyslot_add_by_passphrase(cd, slot_ >= 0 ? slot_ : CRYPT_ANY_SLOT,
                                            reinterpret_cast<const char*>(key_.data()), key_.size(),
                                            reinterpret_cast<const char*>(new_key_.data()), new_key_.size());
    if (r < 0) FailErrno(r, "cannot add a keyslot to " + path_, log);
    // Read back: the new key must open the new slot, or the slot goes (never leave a dud keyslot).
    int verify = TryKey(cd, new_key_, r);
    if (verify != r) {
      crypt_keyslot_destroy(cd, r);
      Fail("LUKS_FAILED", "the new keyslot " + std::to_string(r) + " of " + path_ + " did not verify; it was removed",
           verify, log);
    }
    added_ = r;
  }
  void WipeSecrets() override {
    key_.Wipe();
    new_key_.Wipe();
  }
  Napi::Value Result(Napi::Env env) override { return SlotResult(env, added_); }

 private:
  std::string path_;
  SecretBytes key_, new_key_;
  int slot_;
  int added_ = -1;
};

class RemoveKeyTask : public LuksTask {
 public:
  RemoveKeyTask(Napi::Env env, std::string path, SecretBytes key, int slot, std::optional<SecretBytes> remove_key,
                bool force)
      : LuksTask(env, "luks.removeKey"), path_(std::move(path)), key_(std::move(key)), slot_(slot),
        remove_key_(std::move(remove_key)), force_(force) {}

 protected:
  void Run(OperationLog& log) override {
    CryptDevice device;
    LoadLuks2(path_, device, log);
    crypt_device* cd = device.get();
    int auth_slot = RequireKey(cd, key_, path_, log);
    int target = slot_;
    if (remove_key_.has_value()) {
      target = TryKey(cd, *remove_key_, -1);
      if (target < 0)
        Fail("LUKS_KEYSLOT_NOT_FOUND", "no keyslot of " + path_ + " accepts the key to remove", target, log);
    } else {
      RequireSlotInRange(target);
      crypt_keyslot_info status = crypt_keyslot_status(cd, target);
      if (status == CRYPT_SLOT_INACTIVE)
        throw CodedError("LUKS_KEYSLOT_INACTIVE", "keyslot " + std::to_string(target) + " of " + path_ + " is empty");
    }
    // Never lock a volume out: the authorizing key must still open another keyslot afterwards.
    bool auth_survives = auth_slot != target;
    for (int s = 0; s < KeyslotMax() && !auth_survives; ++s) {
      if (s == target || !SlotOpensVolume(crypt_keyslot_status(cd, s))) continue;
      auth_survives = TryKey(cd, key_, s) == s;
    }
    if (!auth_survives && !force_) {
      int working = 0;
      for (int s = 0; s < KeyslotMax(); ++s) working += SlotOpensVolume(crypt_keyslot_status(cd, s)) ? 1 : 0;
      std::string why = working <= 1 ? "it is the last keyslot that opens the volume"
                                     : "the authorizing key opens no other keyslot";
      throw CodedError("LUKS_KEYSLOT_LAST", "refusing to remove keyslot " + std::to_string(target) + " of " + path_ +
                                                ": " + why + " (authorize with a key that stays, or force)");
    }
    int r = crypt_keyslot_destroy(cd, target);
    if (r < 0) FailErrno(r, "cannot remove keyslot " + std::to_string(target) + " of " + path_, log);
    removed_ = target;
  }
  void WipeSecrets() override {
    key_.Wipe();
    if (remove_key_.has_value()) remove_key_->Wipe();
  }
  Napi::Value Result(Napi::Env env) override { return SlotResult(env, removed_); }

 private:
  std::string path_;
  SecretBytes key_;
  int slot_;
  std::optional<SecretBytes> remove_key_;
  bool force_;
  int removed_ = -1;
};

// ---- exports -------------------------------------------------------------------------------------

Napi::Value Info(const Napi::CallbackInfo& info) {
  return CatchAll(info.Env(), [&]() -> Napi::Value {
    return (new InfoTask(info.Env(), StringArg(info, 0, "device path")))->Start();
  });
}

Napi::Value CheckKey(const Napi::CallbackInfo& info) {
  return CatchAll(info.Env(), [&]() -> Napi::Value {
    std::string path = StringArg(info, 0, "device path");
    return (new CheckKeyTask(info.Env(), path, KeyArg(info, 1, "key")))->Start();
  });
}

// open(path, name, key, readOnly)
Napi::Value Open(const Napi::CallbackInfo& info) {
  return CatchAll(info.Env(), [&]() -> Napi::Value {
    std::string path = StringArg(info, 0, "device path");
    std::string name = DmNameArg(info, 1);
    SecretBytes key = KeyArg(info, 2, "key");
    return (new OpenTask(info.Env(), path, name, std::move(key), BoolArg(info, 3)))->Start();
  });
}

Napi::Value Close(const Napi::CallbackInfo& info) {
  return CatchAll(info.Env(), [&]() -> Napi::Value { return (new CloseTask(info.Env(), DmNameArg(info, 0)))->Start(); });
}

// addKey(path, key, newKey, slot): slot -1 lets libcryptsetup pick the first free one.
Napi::Value AddKey(const Napi::CallbackInfo& info) {
  return CatchAll(info.Env(), [&]() -> Napi::Value {
    std::string path = StringArg(info, 0, "device path");
    SecretBytes key = KeyArg(info, 1, "key");
    SecretBytes new_key = KeyArg(info, 2, "new key");
    int slot = IntArg(info, 3, "slot");
    if (slot < -1) throw CodedError("LUKS_KEYSLOT_INVALID", "keyslot must be 0 or more (or -1 for any)");
    return (new AddKeyTask(info.Env(), path, std::move(key), std::move(new_key), slot))->Start();
  });
}

// removeKey(path, key, slot, removeKey|null, force): exactly one of slot >= 0 or removeKey.
Napi::Value RemoveKey(const Napi::CallbackInfo& info) {
  return CatchAll(info.Env(), [&]() -> Napi::Value {
    std::string path = StringArg(info, 0, "device path");
    SecretBytes key = KeyArg(info, 1, "key");
    int slot = IntArg(info, 2, "slot");
    std::optional<SecretBytes> remove_key;
    if (info.Length() > 3 && !info[3].IsNull() && !info[3].IsUndefined()) remove_key = KeyArg(info, 3, "key to remove");
    if (remove_key.has_value() == (slot >= 0))
      throw CodedError("LUKS_INVALID_ARGUMENT", "name either a keyslot or the key to remove, not both");
    return (new RemoveKeyTask(info.Env(), path, std::move(key), slot, std::move(remove_key), BoolArg(info, 4)))
        ->Start();
  });
}

// Synchronous: reads /proc/misc and stats one file.
Napi::Value DeviceMapper(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string reason = DmUnavailableReason();
  Napi::Object o = Napi::Object::New(env);
  o.Set("available", reason.empty());
  if (!reason.empty()) o.Set("reason", reason);
  return o;
}

Napi::Value Pbkdf(const Napi::CallbackInfo& info) {
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("type", kPbkdfType);
  o.Set("hash", kPbkdfHash);
  o.Set("iterations", kPbkdfIterations);
  return o;
}

void InitLuks(Napi::Env env, Napi::Object exports) {
  // Off for good: libcryptsetup debug output is verbose about internals; messages of calls made
  // outside any operation (none should be) are dropped.
  crypt_set_debug_level(CRYPT_DEBUG_NONE);
  crypt_set_log_callback(nullptr, DiscardLog, nullptr);
  exports.Set("info", Napi::Function::New(env, Info, "info"));
  exports.Set("checkKey", Napi::Function::New(env, CheckKey, "checkKey"));
  exports.Set("open", Napi::Function::New(env, Open, "open"));
  exports.Set("close", Napi::Function::New(env, Close, "close"));
  exports.Set("addKey", Napi::Function::New(env, AddKey, "addKey"));
  exports.Set("removeKey", Napi::Function::New(env, RemoveKey, "removeKey"));
  exports.Set("deviceMapper", Napi::Function::New(env, DeviceMapper, "deviceMapper"));
  exports.Set("pbkdf", Napi::Function::New(env, Pbkdf, "pbkdf"));
}

}  // namespace
}  // namespace luks
}  // namespace kmip_agent

KMIP_AGENT_MODULE(luks, kmip_agent::luks::InitLuks);
