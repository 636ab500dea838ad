// libcryptsetup wrapper (addon.luks): LUKS2 header info, key checks, activation, keyslot add/remove, format.
// Every call returns a Promise and runs its libcryptsetup work off the JS thread (PromiseWorker).
// Keys arrive as Buffers, are copied into SecretBytes at once and wiped when the call ends.
#include <fcntl.h>
#include <linux/fs.h>
#include <libcryptsetup.h>
#include <napi.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/errors.h"
#include "core/js_args.h"
#include "core/promise_worker.h"
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

// A keyslot whose PBKDF would run for many minutes is never tried: libcryptsetup clamps a huge iteration
// count from a damaged or altered header to INT32_MAX (about 20 minutes of PBKDF2 on a small appliance),
// and every LUKS operation of the process waits behind it on LibraryMutex. The bounds sit far above what
// cryptsetup's benchmark picks (a few million PBKDF2 iterations; Argon2 up to 1 GiB for a few passes).
constexpr uint32_t kMaxPbkdf2Iterations = 100'000'000;
constexpr uint32_t kMaxArgon2MemoryKiB = 4u * 1024 * 1024;   // libcryptsetup's own maximum
constexpr uint64_t kMaxArgon2CostKiB = 64ull * 1024 * 1024;  // passes x memory: 64 passes over 1 GiB

// cryptsetup's own limit for a passphrase read from a key file is 8 MiB; no key of ours comes close.
constexpr size_t kMaxKeySize = 8192;
constexpr size_t kMaxDmNameSize = 127;  // DM_NAME_LEN - 1
// LUKS2's default metadata + keyslot area is 16 MiB; a volume needs room for data after it.
constexpr uint64_t kMinFormatBytes = 17ull * 1024 * 1024;

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

// The cost of an active keyslot's PBKDF when it is beyond the bounds above ("" when within them).
std::string ExcessiveCost(crypt_device* cd, int slot) {
  crypt_pbkdf_type pbkdf{};
  if (crypt_keyslot_get_pbkdf(cd, slot, &pbkdf) != 0 || pbkdf.type == nullptr) return "";
  if (std::strcmp(pbkdf.type, CRYPT_KDF_PBKDF2) == 0)
    return pbkdf.iterations > kMaxPbkdf2Iterations ? "pbkdf2 with " + std::to_string(pbkdf.iterations) + " iterations" : "";
  const uint64_t cost = uint64_t{pbkdf.iterations} * pbkdf.max_memory_kb;
  if (pbkdf.max_memory_kb <= kMaxArgon2MemoryKiB && cost <= kMaxArgon2CostKiB) return "";
  return std::string(pbkdf.type) + " with " + std::to_string(pbkdf.iterations) + " passes over " +
         std::to_string(pbkdf.max_memory_kb) + " KiB";
}

// The PBKDF2 iteration counts of the header's digests, which every key check runs after a keyslot opens.
// libcryptsetup has no call for them, so they are read from its own JSON dump: a small scanner that
// knows strings (a hostile header may put braces or quotes in them) and nesting, and nothing else.
std::vector<unsigned long long> DigestIterations(const std::string& json) {
  std::vector<unsigned long long> found;
  // libcryptsetup reads the count through a 64-bit integer, from a number or a string alike ("-512"
  // included), and keeps it unsigned: a negative one counts as huge.
  auto count = [](const std::string& text) -> unsigned long long {
    const long long value = std::strtoll(text.c_str(), nullptr, 10);
    return value < 0 ? ULLONG_MAX : static_cast<unsigned long long>(value);
  };
  int depth = 0;
  int digests_depth = -1;  // depth of the "digests" object while inside it
  std::string key;         // the last object key read, until its value
  for (size_t i = 0; i < json.size(); ++i) {
    const char c = json[i];
    if (c == '"') {
      std::string text;
      for (++i; i < json.size() && json[i] != '"'; ++i) {
        if (json[i] == '\\') ++i;
        if (i < json.size()) text += json[i];
      }
      size_t next = i + 1;
      while (next < json.size() && std::isspace(static_cast<unsigned char>(json[next]))) ++next;
      if (next < json.size() && json[next] == ':') {
        key = text;
        i = next;
      } else {
        if (key == "iterations" && digests_depth > 0 && depth == digests_depth + 1) found.push_back(count(text));
        key.clear();
      }
    } else if (c == '{' || c == '[') {
      ++depth;
      if (c == '{' && depth == 2 && key == "digests") digests_depth = depth;
      key.clear();
    } else if (c == '}' || c == ']') {
      if (depth == digests_depth) digests_depth = -1;
      --depth;
      key.clear();
    } else if ((std::isdigit(static_cast<unsigned char>(c)) || c == '-') && key == "iterations" &&
               digests_depth > 0 && depth == digests_depth + 1) {
      size_t end = i + 1;
      while (end < json.size() && std::isdigit(static_cast<unsigned char>(json[end]))) ++end;
      found.push_back(count(json.substr(i, end - i)));
      i = end - 1;
      key.clear();
    } else if (c == ',') {
      key.clear();
    }
  }
  return found;
}

void RequireBoundedDigests(crypt_device* cd) {
  const char* json = nullptr;
  if (crypt_dump_json(cd, &json, 0) < 0 || json == nullptr) return;
  for (unsigned long long iterations : DigestIterations(json))
    if (iterations > kMaxPbkdf2Iterations)
      throw CodedError("LUKS_KEYSLOT_COST_EXCESSIVE",
                       "the header's volume key digest asks for " + std::to_string(iterations) +
                           " PBKDF2 iterations, a check that would run for many minutes: no key tried (a damaged or "
                           "altered header?). Check `cryptsetup luksDump` or restore a header backup");
}

// Activates `name` (nullptr: only checks the key) with the keyslot `slot`, or any when slot < 0, as
// CRYPT_ANY_SLOT would (preferred keyslots, then normal ones) but never a keyslot of excessive cost;
// -errno when the key opens none. When it opens none and such keyslots were passed over, that is the
// error (LUKS_KEYSLOT_COST_EXCESSIVE), since one of them may be the key's.
int ActivateByKey(crypt_device* cd, const char* name, const SecretBytes& key, int slot, uint32_t flags) {
  auto activate = [&](int s) {
    return crypt_activate_by_passphrase(cd, name, s, reinterpret_cast<const char*>(key.data()), key.size(), flags);
  };
  RequireBoundedDigests(cd);
  std::vector<std::pair<int, std::string>> passed_over;
  for (int s = 0; s < KeyslotMax(); ++s) {
    if ((slot >= 0 && s != slot) || !SlotOpensVolume(crypt_keyslot_status(cd, s))) continue;
    std::string cost = ExcessiveCost(cd, s);
    if (!cost.empty()) passed_over.emplace_back(s, cost);
  }
  int r = -EPERM;
  if (passed_over.empty()) {
    r = activate(slot < 0 ? CRYPT_ANY_SLOT : slot);
  } else if (slot < 0) {
    auto skipped = [&](int s) {
      for (const auto& p : passed_over)
        if (p.first == s) return true;
      return false;
    };
    for (crypt_keyslot_priority priority : {CRYPT_SLOT_PRIORITY_PREFER, CRYPT_SLOT_PRIORITY_NORMAL}) {
      for (int s = 0; s < KeyslotMax() && r == -EPERM; ++s) {
        if (skipped(s) || !SlotOpensVolume(crypt_keyslot_status(cd, s)) || crypt_keyslot_get_priority(cd, s) != priority)
          continue;
        r = activate(s);
        if (r == -ENOENT) r = -EPERM;  // this keyslot is not the key's: go on
      }
    }
  }
  if (r != -EPERM || passed_over.empty()) return r;
  std::string which;
  for (const auto& [s, cost] : passed_over) which += (which.empty() ? "" : ", ") + std::to_string(s) + " (" + cost + ")";
  throw CodedError("LUKS_KEYSLOT_COST_EXCESSIVE",
                   "keyslot " + which +
                       " asks for a key derivation that would run for many minutes: not tried (a damaged or altered "
                       "header?); the key opens no other keyslot. Check `cryptsetup luksDump`, restore a header backup "
                       "or remove that keyslot");
}

// The keyslot key opens (any slot when slot < 0), without activating anything; -errno when none.
int TryKey(crypt_device* cd, const SecretBytes& key, int slot) { return ActivateByKey(cd, nullptr, key, slot, 0); }

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

// One libcryptsetup operation on a worker thread (one at a time: LibraryMutex), settling a Promise
// with what `finish` builds or a typed error. Keys the operation captured are wiped once it ran.
Napi::Promise RunLuks(Napi::Env env, const char* name, std::function<void(OperationLog&)> operation,
                      PromiseWorker::Finish finish) {
  return PromiseWorker::Run(
      env,
      [operation = std::move(operation)] {
        std::lock_guard<std::mutex> lock(LibraryMutex());
        OperationLog log;
        operation(log);
      },
      std::move(finish), name);
}

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
  Napi::Buffer<uint8_t> buffer = RequireBuffer(info[i], "LUKS_INVALID_ARGUMENT", what);
  if (buffer.Length() == 0 || buffer.Length() > kMaxKeySize)
    throw CodedError("LUKS_INVALID_ARGUMENT",
                     std::string(what) + " must be 1.." + std::to_string(kMaxKeySize) + " bytes");
  return SecretBytes(buffer.Data(), buffer.Length());
}

int IntArg(const Napi::CallbackInfo& info, size_t i, const char* what) {
  return IntegerArg<int>(info[i], "LUKS_INVALID_ARGUMENT", what);
}

bool BoolArg(const Napi::CallbackInfo& info, size_t i) { return info.Length() > i && info[i].ToBoolean().Value(); }

std::string DmNameArg(const Napi::CallbackInfo& info, size_t i) {
  std::string name = StringArg(info, i, "mapping name");
  if (name.size() > kMaxDmNameSize || name.find('/') != std::string::npos || name == "." || name == "..")
    throw CodedError("LUKS_INVALID_ARGUMENT", "mapping name must be 1..127 characters without '/'");
  return name;
}

// ---- operations (worker thread) -----------------------------------------------------------------

void CloseMapping(const std::string& name, OperationLog& log) {
  RequireDeviceMapper();
  CryptDevice device;
  int r = crypt_init_by_name(device.out(), name.c_str());
  if (r == -ENODEV || r == -ENOENT)
    Fail("LUKS_NOT_ACTIVE", "no active mapping named " + name, r, log);
  if (r < 0) FailErrno(r, "cannot find mapping " + name, log);
  crypt_set_log_callback(device.get(), CollectLog, &log);
  r = crypt_deactivate(device.get(), name.c_str());
  if (r < 0) FailErrno(r, "cannot close " + name, log);
}

int OpenMapping(const std::string& path, const std::string& name, const SecretBytes& key, bool read_only,
                OperationLog& log) {
  CryptDevice device;
  LoadLuks2(path, device, log);
  RequireDeviceMapper();
  uint32_t flags = read_only ? CRYPT_ACTIVATE_READONLY : 0;
  int r = ActivateByKey(device.get(), name.c_str(), key, -1, flags);
  if (r < 0) FailErrno(r, "cannot open " + path + " as " + name, log);
  return r;
}

int AddKeyslot(const std::string& path, const SecretBytes& key, const SecretBytes& new_key, int slot,
               OperationLog& log) {
  CryptDevice device;
  LoadLuks2(path, device, log);
  crypt_device* cd = device.get();
  // Every check happens before the one write, so a refused request leaves the header as it was.
  if (slot >= 0) {
    RequireSlotInRange(slot);
    if (crypt_keyslot_status(cd, slot) != CRYPT_SLOT_INACTIVE)
      throw CodedError("LUKS_KEYSLOT_IN_USE", "keyslot " + std::to_string(slot) + " of " + path + " is in use");
  } else {
    bool free_slot = false;
    for (int s = 0; s < KeyslotMax() && !free_slot; ++s) free_slot = crypt_keyslot_status(cd, s) == CRYPT_SLOT_INACTIVE;
    if (!free_slot) throw CodedError("LUKS_KEYSLOT_FULL", path + " has no free keyslot");
  }
  UseAgentPbkdf(cd, log);
  // Checks the authorizing key itself (-EPERM: LUKS_WRONG_KEY) before writing: no second KDF run.
  int r = crypt_keyslot_add_by_passphrase(cd, slot >= 0 ? slot : CRYPT_ANY_SLOT,
                                          reinterpret_cast<const char*>(key.data()), key.size(),
                                          reinterpret_cast<const char*>(new_key.data()), new_key.size());
  if (r < 0) FailErrno(r, "cannot add a keyslot to " + path, log);
  // Read back: the new key must open the new slot, or the slot goes (never leave a dud keyslot).
  int verify = TryKey(cd, new_key, r);
  if (verify != r) {
    crypt_keyslot_destroy(cd, r);
    Fail("LUKS_FAILED", "the new keyslot " + std::to_string(r) + " of " + path + " did not verify; it was removed",
         verify, log);
  }
  return r;
}

int RemoveKeyslot(const std::string& path, const SecretBytes& key, int slot,
                  const std::optional<SecretBytes>& remove_key, bool force, OperationLog& log) {
  CryptDevice device;
  LoadLuks2(path, device, log);
  crypt_device* cd = device.get();
  int auth_slot = RequireKey(cd, key, path, log);
  int target = slot;
  if (remove_key.has_value()) {
    target = TryKey(cd, *remove_key, -1);
    if (target < 0)
      Fail("LUKS_KEYSLOT_NOT_FOUND", "no keyslot of " + path + " accepts the key to remove", target, log);
  } else {
    RequireSlotInRange(target);
    crypt_keyslot_info status = crypt_keyslot_status(cd, target);
    if (status == CRYPT_SLOT_INACTIVE)
      throw CodedError("LUKS_KEYSLOT_INACTIVE", "keyslot " + std::to_string(target) + " of " + path + " is empty");
  }
  // Never lock a volume out: the authorizing key must still open another keyslot afterwards.
  bool auth_survives = auth_slot != target;
  for (int s = 0; s < KeyslotMax() && !auth_survives; ++s) {
    if (s == target || !SlotOpensVolume(crypt_keyslot_status(cd, s))) continue;
    auth_survives = TryKey(cd, key, s) == s;
  }
  if (!auth_survives && !force) {
    int working = 0;
    for (int s = 0; s < KeyslotMax(); ++s) working += SlotOpensVolume(crypt_keyslot_status(cd, s)) ? 1 : 0;
    std::string why = working <= 1 ? "it is the last keyslot that opens the volume"
                                   : "the authorizing key opens no other keyslot";
    throw CodedError("LUKS_KEYSLOT_LAST", "refusing to remove keyslot " + std::to_string(target) + " of " + path +
                                              ": " + why + " (authorize with a key that stays, or force)");
  }
  int r = crypt_keyslot_destroy(cd, target);
  if (r < 0) FailErrno(r, "cannot remove keyslot " + std::to_string(target) + " of " + path, log);
  return target;
}

// A new LUKS2 header (aes-xts-plain64, 512-bit volume key made by libcryptsetup from its RNG, never
// seen here) with one keyslot for `key`, the agent's PBKDF, and the caller's UUID (the key's name on the
// key server is derived from it, so it must be known before the format). Whatever signature the device
// holds is the caller's to check; a LUKS header is refused here too unless `force`.
int FormatLuks2(const std::string& path, const SecretBytes& key, const std::string& uuid, bool force,
                OperationLog& log) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    int err = errno;
    if (err == EACCES) throw CodedError("LUKS_PERMISSION_DENIED", path + ": permission denied", err);
    throw CodedError("LUKS_DEVICE_NOT_FOUND", path + ": " + strerror(err), err);
  }
  if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
    throw CodedError("LUKS_INVALID_ARGUMENT", path + " is not a block device or image file");
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    throw CodedError(err == EACCES ? "LUKS_PERMISSION_DENIED" : "LUKS_IO_ERROR",
                     path + ": cannot open: " + strerror(err), err);
  }
  // libcryptsetup writes a header past the end of a small image file (growing it) without complaint.
  uint64_t size = static_cast<uint64_t>(st.st_size);
  if (S_ISBLK(st.st_mode) && ioctl(fd, BLKGETSIZE64, &size) != 0) size = 0;
  HeaderCheck check;
  try {
    check = CheckLuksHeaders(fd);
  } catch (...) {
    close(fd);
    throw;
  }
  close(fd);
  if (size <= kMinFormatBytes)
    throw CodedError("LUKS_INVALID_ARGUMENT", path + " is too small for a LUKS2 volume (" + std::to_string(size) +
                                                  " bytes; the header alone takes 16 MiB)");
  if (!force && check.kind != HeaderKind::kNotLuks)
    throw CodedError("LUKS_DEVICE_IN_USE", path + " already holds a LUKS header: refusing to format over it");
  CryptDevice device;
  int r = crypt_init(device.out(), path.c_str());
  if (r < 0) FailErrno(r, path + ": cannot open", log);
  crypt_device* cd = device.get();
  crypt_set_log_callback(cd, CollectLog, &log);
  crypt_pbkdf_type pbkdf{};
  pbkdf.type = kPbkdfType;
  pbkdf.hash = kPbkdfHash;
  pbkdf.iterations = kPbkdfIterations;
  pbkdf.flags = CRYPT_PBKDF_NO_BENCHMARK;
  crypt_params_luks2 params{};
  params.pbkdf = &pbkdf;
  r = crypt_format(cd, CRYPT_LUKS2, "aes", "xts-plain64", uuid.c_str(), nullptr, 64, &params);
  if (r == -EINVAL) Fail("LUKS_INVALID_ARGUMENT", "cannot format " + path + " (too small, or a bad UUID?)", r, log);
  if (r < 0) FailErrno(r, "cannot format " + path, log);
  r = crypt_keyslot_add_by_volume_key(cd, CRYPT_ANY_SLOT, nullptr, 0, reinterpret_cast<const char*>(key.data()),
                                      key.size());
  if (r < 0) FailErrno(r, "cannot add the keyslot to the new header of " + path, log);
  if (TryKey(cd, key, r) != r) Fail("LUKS_FAILED", "the new keyslot of " + path + " did not verify", -EIO, log);
  return r;
}

// ---- exports -------------------------------------------------------------------------------------

// The operations that report a keyslot resolve to { slot }.
PromiseWorker::Finish SlotFinish(const std::shared_ptr<int>& slot) {
  return [slot](Napi::Env env) { return SlotResult(env, *slot); };
}

Napi::Value Info(const Napi::CallbackInfo& info) {
  return CatchAll(info.Env(), [&]() -> Napi::Value {
    std::string path = StringArg(info, 0, "device path");
    auto result = std::make_shared<LuksInfo>();
    return RunLuks(
        info.Env(), "luks.info",
        [path, result](OperationLog& log) {
          CryptDevice device;
          LoadLuks2(path, device, log);
          *result = ReadInfo(device.get(), log);
        },
        [result](Napi::Env env) { return ToJs(env, *result); });
  });
}

Napi::Value CheckKey(const Napi::CallbackInfo& info) {
  return CatchAll(info.Env(), [&]() -> Napi::Value {
    std::string path = StringArg(info, 0, "device path");
    SecretBytes key = KeyArg(info, 1, "key");
    auto slot = std::make_shared<int>(-1);
    return RunLuks(
        info.Env(), "luks.checkKey",
        [path, key = std::move(key), slot](OperationLog& log) {
          CryptDevice device;
          LoadLuks2(path, device, log);
          *slot = RequireKey(device.get(), key, path, log);
        },
        SlotFinish(slot));
  });
}

// open(path, name, key, readOnly)
Napi::Value Open(const Napi::CallbackInfo& info) {
  return CatchAll(info.Env(), [&]() -> Napi::Value {
    std::string path = StringArg(info, 0, "device path");
    std::string name = DmNameArg(info, 1);
    SecretBytes key = KeyArg(info, 2, "key");
    const bool read_only = BoolArg(info, 3);
    auto slot = std::make_shared<int>(-1);
    return RunLuks(
        info.Env(), "luks.open",
        [path, name, key = std::move(key), read_only, slot](OperationLog& log) {
          *slot = OpenMapping(path, name, key, read_only, log);
        },
        SlotFinish(slot));
  });
}

Napi::Value Close(const Napi::CallbackInfo& info) {
  return CatchAll(info.Env(), [&]() -> Napi::Value {
    std::string name = DmNameArg(info, 0);
    return RunLuks(
        info.Env(), "luks.close", [name](OperationLog& log) { CloseMapping(name, log); },
        [](Napi::Env env) { return env.Undefined(); });
  });
}

// addKey(path, key, newKey, slot): slot -1 lets libcryptsetup pick the first free one.
Napi::Value AddKey(const Napi::CallbackInfo& info) {
  return CatchAll(info.Env(), [&]() -> Napi::Value {
    std::string path = StringArg(info, 0, "device path");
    SecretBytes key = KeyArg(info, 1, "key");
    SecretBytes new_key = KeyArg(info, 2, "new key");
    int slot = IntArg(info, 3, "slot");
    if (slot < -1) throw CodedError("LUKS_KEYSLOT_INVALID", "keyslot must be 0 or more (or -1 for any)");
    auto added = std::make_shared<int>(-1);
    return RunLuks(
        info.Env(), "luks.addKey",
        [path, key = std::move(key), new_key = std::move(new_key), slot, added](OperationLog& log) {
          *added = AddKeyslot(path, key, new_key, slot, log);
        },
        SlotFinish(added));
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
    const bool force = BoolArg(info, 4);
    auto removed = std::make_shared<int>(-1);
    return RunLuks(
        info.Env(), "luks.removeKey",
        [path, key = std::move(key), slot, remove_key = std::move(remove_key), force, removed](OperationLog& log) {
          *removed = RemoveKeyslot(path, key, slot, remove_key, force, log);
        },
        SlotFinish(removed));
  });
}

// format(path, key, uuid, force): resolves to { slot } of the one keyslot.
Napi::Value Format(const Napi::CallbackInfo& info) {
  return CatchAll(info.Env(), [&]() -> Napi::Value {
    std::string path = StringArg(info, 0, "device path");
    SecretBytes key = KeyArg(info, 1, "key");
    std::string uuid = StringArg(info, 2, "UUID");
    const bool force = BoolArg(info, 3);
    auto slot = std::make_shared<int>(-1);
    return RunLuks(
        info.Env(), "luks.format",
        [path, key = std::move(key), uuid, force, slot](OperationLog& log) {
          *slot = FormatLuks2(path, key, uuid, force, log);
        },
        SlotFinish(slot));
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
  exports.Set("format", Napi::Function::New(env, Format, "format"));
  exports.Set("deviceMapper", Napi::Function::New(env, DeviceMapper, "deviceMapper"));
  exports.Set("pbkdf", Napi::Function::New(env, Pbkdf, "pbkdf"));
}

}  // namespace
}  // namespace luks
}  // namespace kmip_agent

KMIP_AGENT_MODULE(luks, kmip_agent::luks::InitLuks);
