#include "emulator/drive.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <iterator>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "core/errors.h"
#include "emulator/emu_crypto.h"

// The test addon defines this (native/test/crash_points.cc) to kill the process at a named step of
// Drive::Create, so tests can interrupt a create exactly there; the shipped addon leaves it undefined.
extern "C" void kmip_agent_crash_point(const char* step) __attribute__((weak));

namespace kmip_agent {
namespace emulator {
namespace {

void CrashPoint(const char* step) {
  if (kmip_agent_crash_point != nullptr) kmip_agent_crash_point(step);
}

constexpr uint64_t kMaxSizeMib = kMaxBlocks * kBlockSize >> 20;  // 4 TiB of sparse image
constexpr uint64_t kMbrShadowBlocks = Drive::kMbrTableSize / kBlockSize;

[[noreturn]] void SysFail(const std::string& what) {
  throw CodedError("EMU_IO", what + ": " + std::strerror(errno), errno);
}

std::string RandomHex(size_t bytes) { return ToHex(RandomBytes(bytes)); }

std::string ReadWholeFile(const std::string& path, bool* missing) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT && missing != nullptr) {
      *missing = true;
      return {};
    }
    SysFail("cannot open " + path);
  }
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int saved = errno;
      ::close(fd);
      errno = saved;
      SysFail("cannot read " + path);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > (16u << 20)) {
      ::close(fd);
      throw CodedError("EMU_STATE_CORRUPT", path + " is implausibly large");
    }
  }
  ::close(fd);
  if (missing != nullptr) *missing = false;
  return out;
}

void PreadFull(int fd, uint8_t* buf, size_t size, off_t offset) {
  size_t done = 0;
  while (done < size) {
    ssize_t n = ::pread(fd, buf + done, size - done, offset + static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) SysFail("image read failed");
    if (n == 0) {  // past the end of a short image: reads as never written
      std::memset(buf + done, 0, size - done);
      return;
    }
    done += static_cast<size_t>(n);
  }
}

void PwriteFull(int fd, const uint8_t* buf, size_t size, off_t offset) {
  size_t done = 0;
  while (done < size) {
    ssize_t n = ::pwrite(fd, buf + done, size - done, offset + static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) SysFail("image write failed");
    done += static_cast<size_t>(n);
  }
}

bool AllZero(const uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; ++i)
    if (p[i] != 0) return false;
  return true;
}

bool Contains(const std::vector<uint32_t>& v, uint32_t x) { return std::find(v.begin(), v.end(), x) != v.end(); }

std::string MakePsid() {
  // 32 characters from an unambiguous alphabet, like the label printed on real drives.
  static const char kAlphabet[] = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
  std::vector<uint8_t> r = RandomBytes(32);
  std::string out;
  for (uint8_t b : r) out.push_back(kAlphabet[b % 32]);
  return out;
}

AuthorityRow Authority(Uid u, const std::string& name, bool is_class, Uid cls, bool enabled, Uid credential) {
  AuthorityRow a;
  a.uid = u;
  a.name = name;
  a.is_class = is_class;
  a.cls = cls;
  a.enabled = enabled;
  a.credential = credential;
  return a;
}

PinRow Pin(Uid row, Uid authority, const std::string& name) {
  PinRow p;
  p.uid = row;
  p.authority = authority;
  p.common_name = name;
  return p;
}

void InitAdminSp(DriveState& s) {
  s.admin_authorities = {
      Authority(tcg::uid::kAuthorityAnybody, "Anybody", false, 0, true, 0),
      Authority(tcg::uid::kAuthorityAdmins, "Admins", true, 0, true, 0),
      Authority(tcg::uid::kAuthorityMakers, "Makers", true, 0, true, 0),
      Authority(tcg::uid::kAuthoritySid, "SID", false, 0, true, tcg::uid::kCPinSid),
      Authority(tcg::uid::kAuthorityPsid, "PSID", false, 0, true, tcg::uid::kCPinPsid),
  };
}

void InitRanges(DriveState& s) {
  s.ranges.clear();
  for (int n = 0; n <= kNumRanges; ++n) {
    RangeRow r;
    r.number = n;
    r.length = n == 0 ? s.blocks : 0;
    r.ace_read = {tcg::uid::kAuthorityAdmins};
    r.ace_write = {tcg::uid::kAuthorityAdmins};
    s.ranges.push_back(std::move(r));
  }
  s.mbr = MbrControl();
}

// Create writes the image (and so its state, `<aside>.state`) under this name and renames both into
// place last, so an interrupted create leaves only these files, never an image without its state.
std::string AsidePath(const std::string& path) { return path + ".creating"; }

// Removes what an interrupted create of `path` left aside. Its lock on the image aside died with it;
// a create of this path still running holds it (EMU_BUSY). Returns whether anything was removed.
bool RemoveCreateLeftovers(const std::string& path) {
  const std::string aside = AsidePath(path);
  int fd = ::open(aside.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd >= 0 && ::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    ::close(fd);
    if (err == EWOULDBLOCK) throw CodedError("EMU_BUSY", path + " is being created by another process");
    errno = err;
    SysFail("cannot lock " + aside);
  }
  bool removed = false;
  for (const std::string& file : {aside + ".state.tmp", aside + ".state", aside}) {
    if (::unlink(file.c_str()) == 0) removed = true;
    else if (errno != ENOENT) SysFail("cannot remove " + file);
  }
  if (fd >= 0) ::close(fd);
  return removed;
}

// rename(2) that never replaces an existing `to` (EEXIST instead), falling back to link + unlink on
// file systems without RENAME_NOREPLACE.
int RenameNoReplace(const std::string& from, const std::string& to) {
  if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) == 0) return 0;
  if (errno != EINVAL && errno != ENOSYS) return -1;
  if (::link(from.c_str(), to.c_str()) != 0) return -1;
  ::unlink(from.c_str());
  return 0;
}

// The absolute form of a path whose file may not exist yet (its directory must).
std::string AbsolutePath(const std::string& path) {
  const size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  const std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  char* real = ::realpath(dir.c_str(), nullptr);
  if (real == nullptr) return path;
  std::string out = real;
  std::free(real);
  return (out == "/" ? out : out + "/") + base;
}

}  // namespace

void WriteFileAtomic(const std::string& path, const std::string& data, const char* crash_name) {
  auto crash_point = [crash_name](const char* step) {
    if (crash_name != nullptr) CrashPoint((std::string(crash_name) + step).c_str());
  };
  std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) SysFail("cannot create " + tmp);
  size_t done = 0;
  // Written in two halves so that a crash point can stop it torn in the middle.
  const size_t half = data.size() / 2;
  bool halfway = false;
  while (done < data.size()) {
    if (!halfway && done >= half) {
      halfway = true;
      crash_point("-tmp-partial");
    }
    size_t limit = halfway ? data.size() : half;
    ssize_t n = ::write(fd, data.data() + done, limit - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int saved = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      errno = saved;
      SysFail("cannot write " + tmp);
    }
    done += static_cast<size_t>(n);
  }
  if (::fchmod(fd, 0600) != 0 || ::fsync(fd) != 0) {
    int saved = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    errno = saved;
    SysFail("cannot sync " + tmp);
  }
  ::close(fd);
  crash_point("-tmp-synced");
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int saved = errno;
    ::unlink(tmp.c_str());
    errno = saved;
    SysFail("cannot rename " + tmp);
  }
  crash_point("-renamed");
  size_t slash = path.rfind('/');
  std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

Drive::Drive(std::string path, int fd) : path_(std::move(path)), fd_(fd) {
  char* real = ::realpath(path_.c_str(), nullptr);
  image_path_ = real != nullptr ? real : path_;
  std::free(real);
}

Drive::~Drive() {
  if (fd_ >= 0) ::close(fd_);  // releases the flock
}

std::string Drive::Create(const std::string& path, uint64_t size_mib, const std::string& serial) {
  if (size_mib == 0 || size_mib > kMaxSizeMib)
    throw CodedError("EMU_INVALID_ARGUMENT", "size must be 1 to " + std::to_string(kMaxSizeMib) + " MiB");
  if (serial.empty() || serial.size() > 20)
    throw CodedError("EMU_INVALID_ARGUMENT", "serial must be 1 to 20 characters (ATA IDENTIFY limit)");
  for (char c : serial)
    if (c < 0x21 || c > 0x7e) throw CodedError("EMU_INVALID_ARGUMENT", "serial must be printable ASCII without spaces");
  const std::string aside = AsidePath(path);
  int fd = ::open(aside.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0 && errno == EEXIST) {
    // Left by an interrupted create (EMU_BUSY if a create is running); cleaned, then ours.
    RemoveCreateLeftovers(path);
    fd = ::open(aside.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 && errno == EEXIST) throw CodedError("EMU_BUSY", path + " is being created by another process");
  }
  if (fd < 0) SysFail("cannot create " + aside);
  std::unique_ptr<Drive> drive(new Drive(aside, fd));
  drive->image_path_ = AbsolutePath(path);  // what the key cache names once the image is in place
  bool state_in_place = false;
  try {
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) SysFail("cannot lock " + aside);
    CrashPoint("aside-created");
    // Checked under the lock on the image aside: a create of this path that finished before we took
    // it has already renamed its image into place.
    struct stat st;
    if (::lstat(path.c_str(), &st) == 0) throw CodedError("EMU_EXISTS", path + " already exists");
    CollectOrphanCaches();  // inside the try: without a volatile directory nothing may be left behind
    if (::ftruncate(fd, static_cast<off_t>(size_mib << 20)) != 0) SysFail("cannot size " + aside);
    CrashPoint("image-sized");
    DriveState& s = drive->state_;
    s.serial = serial;
    s.drive_id = RandomHex(16);
    s.power_epoch = RandomHex(8);
    s.blocks = (size_mib << 20) / kBlockSize;
    s.salt = RandomBytes(16);
    s.msid = RandomHex(16);
    std::string psid = MakePsid();
    InitAdminSp(s);
    s.admin_pins = {Pin(tcg::uid::kCPinSid, tcg::uid::kAuthoritySid, "SID"), Pin(tcg::uid::kCPinMsid, 0, "MSID"),
                    Pin(tcg::uid::kCPinPsid, tcg::uid::kAuthorityPsid, "PSID")};
    Keyring none;
    drive->SetPin(*s.FindPin(tcg::uid::kCPinPsid), reinterpret_cast<const uint8_t*>(psid.data()), psid.size(), &none);
    drive->FactoryReset();
    drive->Commit();  // the state aside, and the key cache
    CrashPoint("state-written");
    // The state first, the image last: the image appearing is what makes the drive exist.
    const std::string state = path + ".state";
    if (::rename(drive->StatePath().c_str(), state.c_str()) != 0) SysFail("cannot rename " + drive->StatePath());
    state_in_place = true;
    CrashPoint("state-renamed");
    if (RenameNoReplace(aside, path) != 0) {
      if (errno == EEXIST) throw CodedError("EMU_EXISTS", path + " already exists");
      SysFail("cannot rename " + aside + " to " + path);
    }
    drive->path_ = path;
    CrashPoint("image-renamed");
    return psid;
  } catch (...) {
    try {
      ::unlink(drive->CachePath().c_str());
    } catch (const CodedError&) {
      // no volatile directory: no cache was written
    }
    if (state_in_place) ::unlink((path + ".state").c_str());
    for (const std::string& file : {aside + ".state.tmp", aside + ".state", aside}) ::unlink(file.c_str());
    throw;
  }
}

std::unique_ptr<Drive> Drive::Open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) throw CodedError("EMU_NOT_FOUND", "no emulated drive image at " + path);
    SysFail("cannot open " + path);
  }
  std::unique_ptr<Drive> drive(new Drive(path, fd));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) throw CodedError("EMU_BUSY", path + " is open in another process");
    SysFail("cannot lock " + path);
  }
  bool missing = false;
  std::string text = ReadWholeFile(drive->StatePath(), &missing);
  if (missing) {
    throw CodedError("EMU_STATE_MISSING", "the state file " + drive->StatePath() +
                                              " is missing: `drive emulate destroy` removes what is left of the drive");
  }
  drive->state_ = Deserialize(text);
  drive->LoadCache();
  return drive;
}

void Drive::Destroy(const std::string& path) {
  // Partial drives go too: what an interrupted create left aside, and a state file without its image.
  bool removed = RemoveCreateLeftovers(path);
  int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    if (errno != ENOENT) SysFail("cannot open " + path);
    for (const std::string& file : {path + ".state.tmp", path + ".state", path + ".mbr"}) {
      if (::unlink(file.c_str()) == 0) removed = true;
      else if (errno != ENOENT) SysFail("cannot remove " + file);
    }
    if (!removed) throw CodedError("EMU_NOT_FOUND", "no emulated drive image at " + path);
    return;
  }
  std::unique_ptr<Drive> drive(new Drive(path, fd));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) throw CodedError("EMU_BUSY", path + " is open in another process");
    SysFail("cannot lock " + path);
  }
  std::vector<std::string> files;
  // The key cache is named by the state; without a readable state it is left to orphan collection.
  bool missing = false;
  std::string text = ReadWholeFile(drive->StatePath(), &missing);
  try {
    if (!missing) {
      drive->state_ = Deserialize(text);
      files.push_back(drive->CachePath());
    }
  } catch (const CodedError&) {
    // a corrupt state file is removed with the rest
  }
  for (const std::string& file : {drive->MbrPath(), drive->StatePath() + ".tmp", drive->StatePath(), path})
    files.push_back(file);
  for (const std::string& file : files) {
    if (::unlink(file.c_str()) != 0 && errno != ENOENT) SysFail("cannot remove " + file);
  }
  drive->cache_.clear();
}

std::string Drive::CacheDir() {
  // The cache holds unwrapped media keys, so it must live in RAM: an explicit directory is taken as
  // given (the caller vouches for it); otherwise only the usual tmpfs mounts qualify, never a disk.
  const char* explicit_dir = std::getenv("KMIP_AGENT_EMU_RAM_DIR");
  if (explicit_dir != nullptr && *explicit_dir != 0) return explicit_dir;
  const char* runtime_dir = std::getenv("XDG_RUNTIME_DIR");
  for (const char* candidate : {"/dev/shm", runtime_dir}) {
    struct stat st;
    if (candidate != nullptr && *candidate != 0 && ::stat(candidate, &st) == 0 && S_ISDIR(st.st_mode)) return candidate;
  }
  throw CodedError("EMU_NO_VOLATILE_DIR",
                   "no tmpfs directory for the drive's volatile key cache (neither /dev/shm nor $XDG_RUNTIME_DIR); "
                   "set KMIP_AGENT_EMU_RAM_DIR to a directory on tmpfs");
}

void Drive::CollectOrphanCaches() {
  // A drive's RAM outlives its image only when the image was deleted by hand: remove such caches
  // (each names its image) so test runs and scratch drives leave nothing on tmpfs.
  std::string dir = CacheDir();
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return;
  std::vector<std::string> orphans;
  while (struct dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name.rfind("kmip-agent-emu-", 0) != 0 || name.size() < 4 || name.compare(name.size() - 4, 4, ".ram") != 0)
      continue;
    std::string file = dir + "/" + name;
    bool missing = false;
    std::string text;
    try {
      text = ReadWholeFile(file, &missing);
    } catch (const CodedError&) {
      continue;
    }
    size_t at = text.find("\nimage ");
    if (!missing && at != std::string::npos) {
      size_t end = text.find('\n', at + 7);
      std::string image = text.substr(at + 7, end == std::string::npos ? std::string::npos : end - at - 7);
      struct stat st;
      if (!image.empty() && ::stat(image.c_str(), &st) != 0 && errno == ENOENT) orphans.push_back(file);
    }
    SecureWipe(text.data(), text.size());
  }
  ::closedir(d);
  for (const std::string& file : orphans) ::unlink(file.c_str());
}

std::string Drive::CachePath() const {
  return CacheDir() + "/kmip-agent-emu-" + state_.drive_id + ".ram";
}

void Drive::LoadCache() {
  bool missing = false;
  std::string text = ReadWholeFile(CachePath(), &missing);
  // Parsed in place (no stream copies) so the key material can be wiped afterwards.
  std::string epoch;
  std::map<int, SecretBytes> keys;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    size_t space = text.find(' ', pos);
    if (space != std::string::npos && space < end) {
      std::string key = text.substr(pos, space - pos);
      const char* value = text.data() + space + 1;
      size_t value_size = end - space - 1;
      if (key == "epoch") {
        epoch.assign(value, value_size);
      } else if (key.rfind("key.", 0) == 0 && key.size() == 5 && key[4] >= '0' && key[4] <= '0' + kNumRanges &&
                 value_size == kMediaKeySize * 2) {
        std::vector<uint8_t> raw;
        if (FromHex(std::string(value, value_size), &raw)) keys[key[4] - '0'] = SecretBytes(raw.data(), raw.size());
        SecureWipe(raw.data(), raw.size());
      }
    }
    pos = end + 1;
  }
  SecureWipe(text.data(), text.size());
  if (missing || epoch != state_.power_epoch) {
    // The drive lost power while nobody held it (the host rebooted): same as a power cycle,
    // and ranges whose keys were in RAM cannot stay unlocked.
    cache_.clear();
    ApplyPowerCycle();
    for (auto& r : state_.ranges)
      if (r.LockingEnabled()) r.read_locked = r.read_lock_enabled, r.write_locked = r.write_lock_enabled;
    Commit();
    return;
  }
  cache_ = std::move(keys);
}

void Drive::WriteCache() {
  std::string text;
  // Reserved in full (the image path included) so appending keys never reallocates and leaves
  // an unwiped copy of them in freed memory.
  text.reserve(16 + state_.power_epoch.size() + image_path_.size() + cache_.size() * (8 + kMediaKeySize * 2));
  text.append("epoch ").append(state_.power_epoch).append("\n");
  text.append("image ").append(image_path_).append("\n");
  for (const auto& [n, key] : cache_) {
    text.append("key.").append(std::to_string(n)).append(" ");
    AppendHex(&text, key.data(), key.size());
    text.push_back('\n');
  }
  try {
    WriteFileAtomic(CachePath(), text);
  } catch (...) {
    SecureWipe(text.data(), text.size());
    throw;
  }
  SecureWipe(text.data(), text.size());
}

void Drive::Commit() {
  WriteCache();
  WriteFileAtomic(StatePath(), Serialize(state_), "state-file");
}

void Drive::ApplyPowerCycle() {
  state_.power_epoch = RandomHex(8);
  for (auto* pins : {&state_.admin_pins, &state_.locking_pins})
    for (auto& p : *pins)
      if (!p.persistence) p.tries = 0;
  for (auto& r : state_.ranges) {
    if (Contains(r.lock_on_reset, kResetPowerCycle)) {
      if (r.read_lock_enabled) r.read_locked = true;
      if (r.write_lock_enabled) r.write_locked = true;
    }
  }
  if (Contains(state_.mbr.done_on_reset, kResetPowerCycle)) state_.mbr.done = false;
  // Keys of ranges that stay unlocked through the reset (LockOnReset without PowerCycle) survive;
  // the others leave RAM with the power.
  for (auto it = cache_.begin(); it != cache_.end();) {
    const RangeRow& r = state_.ranges.at(static_cast<size_t>(it->first));
    bool still_open = r.LockingEnabled() && !((r.read_lock_enabled && r.read_locked) &&
                                              (r.write_lock_enabled && r.write_locked));
    it = still_open ? std::next(it) : cache_.erase(it);
  }
}

void Drive::PowerCycle() {
  ApplyPowerCycle();
  Commit();
}

PinDerivation Drive::Derive(const PinRow& row, const uint8_t* pin, size_t size) const {
  std::vector<uint8_t> salt = state_.salt;
  salt.insert(salt.end(), row.salt.begin(), row.salt.end());
  SecretBytes derived = Pbkdf2(pin, size, salt, kPinIterations, 64);
  PinDerivation out;
  out.verifier = Sha256(derived.data(), 32);
  out.kek = SecretBytes(derived.data() + 32, 32);
  return out;
}

SecretBytes Drive::MsidKek() const {
  if (!msid_kek_.empty()) return msid_kek_;
  PinRow row;
  row.salt.assign(16, 0x4d);  // fixed: the MSID is public, its KEK only keeps keys off the image
  msid_kek_ = Derive(row, reinterpret_cast<const uint8_t*>(state_.msid.data()), state_.msid.size()).kek;
  return msid_kek_;
}

bool Drive::VerifyPin(const PinRow& row, const uint8_t* pin, size_t size, AuthorityKeys* keys) const {
  if (!row.has_pin) return false;
  PinDerivation d = Derive(row, pin, size);
  if (d.verifier.size() != row.verifier.size() || !SecretEquals(d.verifier.data(), row.verifier.data(), 32))
    return false;
  if (keys != nullptr) {
    keys->kek = d.kek;
    if (!row.wrapped_private.empty() && !UnwrapKey(d.kek, row.wrapped_private, &keys->private_key))
      throw CodedError("EMU_STATE_CORRUPT", "an authority's private key does not unwrap under its verified PIN");
  }
  return true;
}

void Drive::SetPin(PinRow& row, const uint8_t* pin, size_t size, Keyring* keyring) {
  AuthorityKeys keys;
  bool keep_pair = false;
  auto known = keyring->find(row.authority);
  if (known != keyring->end() && !known->second.private_key.empty() && !row.public_key.empty()) {
    keys.private_key = known->second.private_key;
    keep_pair = true;
  }
  row.salt = RandomBytes(16);
  PinDerivation d = Derive(row, pin, size);
  row.verifier = d.verifier;
  row.has_pin = true;
  if (!keep_pair) {
    GenerateKeyPair(&row.public_key, &keys.private_key);
    for (auto& r : state_.ranges) r.seals.erase(row.authority);
  }
  row.wrapped_private = WrapKey(d.kek, keys.private_key);
  keys.kek = std::move(d.kek);
  if (row.authority != 0) (*keyring)[row.authority] = std::move(keys);
}

void Drive::CopyPin(const PinRow& from, PinRow& to, Keyring* keyring) {
  auto known = keyring->find(from.authority);
  if (known == keyring->end()) throw CodedError("EMU_INTERNAL", "copying a PIN needs its owner authenticated");
  to.salt = from.salt;
  to.verifier = from.verifier;
  to.has_pin = from.has_pin;
  AuthorityKeys keys;
  keys.kek = known->second.kek;
  GenerateKeyPair(&to.public_key, &keys.private_key);
  to.wrapped_private = WrapKey(keys.kek, keys.private_key);
  for (auto& r : state_.ranges) r.seals.erase(to.authority);
  (*keyring)[to.authority] = std::move(keys);
}

void Drive::BlockKey(const RangeRow& range, SecretBytes* key, int* key_range) const {
  if (*key_range == range.number) return;
  Keyring none;
  if (!MediaKey(range, none, key))
    throw CodedError("EMU_DATA_PROTECT", "the media key of range " + std::to_string(range.number) + " is not loaded");
  *key_range = range.number;
}

bool Drive::MediaKey(const RangeRow& range, const Keyring& keyring, SecretBytes* key) const {
  if (!range.LockingEnabled() && !range.msid_wrap.empty() && UnwrapKey(MsidKek(), range.msid_wrap, key)) return true;
  auto cached = cache_.find(range.number);
  if (cached != cache_.end()) {
    *key = cached->second;
    return true;
  }
  for (const auto& [authority, keys] : keyring) {
    auto seal = range.seals.find(authority);
    if (seal != range.seals.end() && !keys.private_key.empty() && OpenSealed(keys.private_key, seal->second, key))
      return true;
  }
  return false;
}

void Drive::GrantRange(RangeRow& range, const SecretBytes& key) {
  std::vector<Uid> allowed;
  for (int i = 0; i < kNumAdmins; ++i) allowed.push_back(tcg::uid::kAuthorityAdmin1 + i);
  for (const auto* ace : {&range.ace_read, &range.ace_write}) {
    for (Uid u : *ace) {
      if (u == tcg::uid::kAuthorityAdmins) continue;
      if (u == tcg::uid::kAuthorityUsers) {
        for (int i = 0; i < kNumUsers; ++i) allowed.push_back(tcg::uid::kAuthorityUser1 + i);
      } else {
        allowed.push_back(u);
      }
    }
  }
  range.seals.clear();
  for (Uid u : allowed) {
    PinRow* pin = state_.PinOfAuthority(u);
    if (pin != nullptr && !pin->public_key.empty() && range.seals.count(u) == 0)
      range.seals[u] = SealToPublic(pin->public_key, key);
  }
  range.msid_wrap = range.LockingEnabled() ? std::vector<uint8_t>() : WrapKey(MsidKek(), key);
  if (HasCachedKey(range.number)) CacheKey(range.number, key);
}

void Drive::NewMediaKey(RangeRow& range) {
  SecretBytes key = RandomSecret(kMediaKeySize);
  DropCachedKey(range.number);
  range.key_generation++;
  GrantRange(range, key);
  // A range that is unlocked right now stays usable with its new key.
  if (range.LockingEnabled() && !(range.read_locked && range.write_locked)) CacheKey(range.number, key);
}

void Drive::CacheKey(int range, const SecretBytes& key) { cache_[range] = key; }
void Drive::DropCachedKey(int range) { cache_.erase(range); }

void Drive::WriteMbr(uint64_t offset, const uint8_t* data, size_t size) {
  if (offset > kMbrTableSize || size > kMbrTableSize - offset)
    throw CodedError("EMU_INVALID_ARGUMENT", "write past the end of the MBR table");
  int fd = ::open(MbrPath().c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) SysFail("cannot open " + MbrPath());
  try {
    PwriteFull(fd, data, size, static_cast<off_t>(offset));
    if (::fdatasync(fd) != 0) SysFail("cannot sync " + MbrPath());
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);
}

std::vector<uint8_t> Drive::ReadMbr(uint64_t offset, size_t size) const {
  std::vector<uint8_t> out(size, 0);
  if (offset >= kMbrTableSize) return out;
  size = static_cast<size_t>(std::min<uint64_t>(size, kMbrTableSize - offset));
  int fd = ::open(MbrPath().c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return out;
    SysFail("cannot open " + MbrPath());
  }
  try {
    PreadFull(fd, out.data(), size, static_cast<off_t>(offset));
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);
  return out;
}

void Drive::ClearMbr() {
  if (::unlink(MbrPath().c_str()) != 0 && errno != ENOENT) SysFail("cannot remove " + MbrPath());
}

void Drive::FactoryReset() {
  ClearMbr();
  DriveState& s = state_;
  InitAdminSp(s);
  PinRow* sid = s.FindPin(tcg::uid::kCPinSid);
  Keyring none;
  SetPin(*sid, reinterpret_cast<const uint8_t*>(s.msid.data()), s.msid.size(), &none);
  for (auto& p : s.admin_pins) p.tries = 0;
  s.locking_sp_life_cycle = kLifeCycleManufacturedInactive;
  s.locking_authorities.clear();
  s.locking_pins.clear();
  InitRanges(s);
  cache_.clear();
  for (auto& r : s.ranges) NewMediaKey(r);
}

void Drive::RevertLockingSp(bool keep_global_key, const Keyring& keyring) {
  DriveState& s = state_;
  SecretBytes global;
  bool keep = keep_global_key && MediaKey(s.ranges[0], keyring, &global);
  ClearMbr();
  s.locking_sp_life_cycle = kLifeCycleManufacturedInactive;
  s.locking_authorities.clear();
  s.locking_pins.clear();
  InitRanges(s);
  cache_.clear();
  for (auto& r : s.ranges) {
    if (r.number == 0 && keep) {
      r.key_generation++;
      GrantRange(r, global);
    } else {
      NewMediaKey(r);
    }
  }
}

void Drive::ActivateLockingSp(Keyring* keyring) {
  DriveState& s = state_;
  s.locking_authorities = {Authority(tcg::uid::kAuthorityAnybody, "Anybody", false, 0, true, 0),
                           Authority(tcg::uid::kAuthorityAdmins, "Admins", true, 0, true, 0)};
  s.locking_pins.clear();
  for (int i = 0; i < kNumAdmins; ++i) {
    std::string name = "Admin" + std::to_string(i + 1);
    s.locking_authorities.push_back(Authority(tcg::uid::kAuthorityAdmin1 + i, name, false, tcg::uid::kAuthorityAdmins,
                                              i == 0, tcg::uid::kCPinAdmin1 + i));
    s.locking_pins.push_back(Pin(tcg::uid::kCPinAdmin1 + i, tcg::uid::kAuthorityAdmin1 + i, name));
  }
  s.locking_authorities.push_back(Authority(tcg::uid::kAuthorityUsers, "Users", true, 0, true, 0));
  for (int i = 0; i < kNumUsers; ++i) {
    std::string name = "User" + std::to_string(i + 1);
    s.locking_authorities.push_back(Authority(tcg::uid::kAuthorityUser1 + i, name, false, tcg::uid::kAuthorityUsers,
                                              false, tcg::uid::kCPinUser1 + i));
    s.locking_pins.push_back(Pin(tcg::uid::kCPinUser1 + i, tcg::uid::kAuthorityUser1 + i, name));
  }
  CopyPin(*s.FindPin(tcg::uid::kCPinSid), *s.FindPin(tcg::uid::kCPinAdmin1), keyring);
  // Activation keeps the media keys (data written before stays readable, as on real drives);
  // they are now sealed to Admin1 as well as wrapped under the MSID while locking is off.
  std::vector<SecretBytes> keys(s.ranges.size());
  std::vector<bool> have(s.ranges.size());
  Keyring none;
  for (size_t i = 0; i < s.ranges.size(); ++i) have[i] = MediaKey(s.ranges[i], none, &keys[i]);
  InitRanges(s);
  cache_.clear();
  for (size_t i = 0; i < s.ranges.size(); ++i) {
    if (have[i]) {
      GrantRange(s.ranges[i], keys[i]);
    } else {
      NewMediaKey(s.ranges[i]);
    }
  }
  s.locking_sp_life_cycle = kLifeCycleManufactured;
}

std::vector<uint8_t> Drive::Read(uint64_t lba, uint64_t count) {
  if (count == 0 || count > 65536 || lba >= state_.blocks || count > state_.blocks - lba)
    throw CodedError("EMU_LBA_OUT_OF_RANGE", "read past the end of the drive or of more than 65536 blocks");
  std::vector<uint8_t> out(count * kBlockSize);
  bool locking_active = state_.LockingActive();
  bool shadow = state_.MbrShadowing();
  std::vector<uint8_t> cipher(kBlockSize);
  SecretBytes key;
  int key_range = -1;
  uint64_t shadowed = 0;  // leading blocks the shadow MBR answers instead of the media, read at once
  if (shadow && lba < kMbrShadowBlocks) {
    shadowed = std::min(count, kMbrShadowBlocks - lba);
    std::vector<uint8_t> mbr = ReadMbr(lba * kBlockSize, static_cast<size_t>(shadowed * kBlockSize));
    std::copy(mbr.begin(), mbr.end(), out.begin());
  }
  for (uint64_t i = shadowed; i < count; ++i) {
    uint64_t b = lba + i;
    uint8_t* dst = out.data() + i * kBlockSize;
    const RangeRow& r = state_.RangeForLba(b);
    if (locking_active && r.read_lock_enabled && r.read_locked)
      throw CodedError("EMU_DATA_PROTECT", "LBA " + std::to_string(b) + " is in a read-locked range (DATA PROTECT)");
    PreadFull(fd_, cipher.data(), kBlockSize, static_cast<off_t>(b * kBlockSize));
    if (AllZero(cipher.data(), kBlockSize)) continue;  // never written
    BlockKey(r, &key, &key_range);
    XtsDecrypt(key, b, cipher.data(), dst, 1);
  }
  return out;
}

void Drive::Write(uint64_t lba, const uint8_t* data, size_t size) {
  if (size == 0 || size % kBlockSize != 0)
    throw CodedError("EMU_INVALID_ARGUMENT", "writes are whole 512-byte blocks");
  uint64_t count = size / kBlockSize;
  if (count > 65536 || lba >= state_.blocks || count > state_.blocks - lba)
    throw CodedError("EMU_LBA_OUT_OF_RANGE", "write past the end of the drive or of more than 65536 blocks");
  bool locking_active = state_.LockingActive();
  bool shadow = state_.MbrShadowing();
  // Check every block first so a refused write changes nothing.
  for (uint64_t i = 0; i < count; ++i) {
    uint64_t b = lba + i;
    if (shadow && b < kMbrShadowBlocks)
      throw CodedError("EMU_DATA_PROTECT", "LBA " + std::to_string(b) + " is shadowed by the MBR (DATA PROTECT)");
    const RangeRow& r = state_.RangeForLba(b);
    if (locking_active && r.write_lock_enabled && r.write_locked)
      throw CodedError("EMU_DATA_PROTECT", "LBA " + std::to_string(b) + " is in a write-locked range (DATA PROTECT)");
  }
  std::vector<uint8_t> cipher(size);
  SecretBytes key;
  int key_range = -1;
  for (uint64_t i = 0; i < count; ++i) {
    uint64_t b = lba + i;
    const RangeRow& r = state_.RangeForLba(b);
    BlockKey(r, &key, &key_range);
    XtsEncrypt(key, b, data + i * kBlockSize, cipher.data() + i * kBlockSize, 1);
  }
  PwriteFull(fd_, cipher.data(), size, static_cast<off_t>(lba * kBlockSize));
  if (::fdatasync(fd_) != 0) SysFail("image sync failed");
}

}  // namespace emulator
}  // namespace kmip_agent
