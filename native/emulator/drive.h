// One emulated drive on disk: the sparse data image `<path>` (512-byte blocks, AES-XTS encrypted
// per range), the state file `<path>.state` (written atomically, mode 0600) and a volatile key
// cache that models the drive's RAM (unwrapped media keys of unlocked ranges). The cache lives on
// tmpfs ($KMIP_AGENT_EMU_RAM_DIR, else /dev/shm, else $XDG_RUNTIME_DIR), never on disk; losing it (host reboot)
// counts as a power loss. Holding a Drive holds an exclusive flock on the image.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/secure.h"
#include "emulator/drive_state.h"

namespace kmip_agent {
namespace emulator {

// What a session knows about an authenticated authority: its PIN-derived KEK and private key.
struct AuthorityKeys {
  SecretBytes kek;
  SecretBytes private_key;
};
using Keyring = std::map<Uid, AuthorityKeys>;

struct PinDerivation {
  std::vector<uint8_t> verifier;
  SecretBytes kek;
};

class Drive {
 public:
  // Creates image + state; fails with EMU_EXISTS if the image exists. Returns the PSID (shown once).
  // Atomic: both are written aside (`<path>.creating`) and renamed into place last, the image last,
  // so a killed create leaves no image without a state; its leftovers are removed by the next create.
  static std::string Create(const std::string& path, uint64_t size_mib, const std::string& serial);
  // Opens with an exclusive non-blocking lock (EMU_BUSY when held elsewhere).
  static std::unique_ptr<Drive> Open(const std::string& path);
  // Removes the image, its state, its shadow MBR and its key cache (EMU_BUSY if in use), and any
  // partial drive: what an interrupted create left, a state without image, an image without state.
  static void Destroy(const std::string& path);
  ~Drive();
  Drive(const Drive&) = delete;
  Drive& operator=(const Drive&) = delete;

  const std::string& path() const { return path_; }
  DriveState& state() { return state_; }
  const DriveState& state() const { return state_; }

  // Persists the state file and the key cache atomically.
  void Commit();
  // Power cycle: ranges with LockOnReset PowerCycle relock, Tries reset where Persistence is
  // false, MBR Done resets per DoneOnReset, the key cache is emptied. Persists.
  void PowerCycle();

  // Data plane (throws EMU_DATA_PROTECT for locked ranges, EMU_LBA_OUT_OF_RANGE past the end).
  std::vector<uint8_t> Read(uint64_t lba, uint64_t count);
  void Write(uint64_t lba, const uint8_t* data, size_t size);

  // Key hierarchy.
  PinDerivation Derive(const PinRow& row, const uint8_t* pin, size_t size) const;
  SecretBytes MsidKek() const;
  // Checks a PIN; on success fills `keys` (KEK + unwrapped private key). No Tries bookkeeping.
  bool VerifyPin(const PinRow& row, const uint8_t* pin, size_t size, AuthorityKeys* keys) const;
  // Sets a new PIN; keeps the authority's key pair when its private key is in `keyring`,
  // otherwise makes a new pair (old seals for it become useless and are dropped).
  void SetPin(PinRow& row, const uint8_t* pin, size_t size, Keyring* keyring);
  // Copies one PIN row's credential into another authority's row (Activate: SID -> Admin1).
  void CopyPin(const PinRow& from, PinRow& to, Keyring* keyring);
  // The media key of a range if this keyring (or the MSID while locking is off, or the cache) opens it.
  bool MediaKey(const RangeRow& range, const Keyring& keyring, SecretBytes* key) const;
  // Re-seals `key` for the range's allowed authorities (Admins always, plus its ACEs) and the MSID
  // while locking is off.
  void GrantRange(RangeRow& range, const SecretBytes& key);
  // New random media key for a range (GenKey / Erase / Activate / Revert).
  void NewMediaKey(RangeRow& range);
  // For block-by-block I/O: loads the media key of `range` into *key unless *key_range says it is
  // already there; throws EMU_DATA_PROTECT when it is not loaded.
  void BlockKey(const RangeRow& range, SecretBytes* key, int* key_range) const;
  void CacheKey(int range, const SecretBytes& key);
  void DropCachedKey(int range);
  bool HasCachedKey(int range) const { return cache_.count(range) != 0; }

  // The shadow MBR byte table (Opal: at least 128 MiB), kept in `<path>.mbr` (created on first
  // write; it holds the pre-boot image, which is not secret). Reads past what was written are zeros.
  static constexpr uint64_t kMbrTableSize = 128ULL << 20;
  void WriteMbr(uint64_t offset, const uint8_t* data, size_t size);
  std::vector<uint8_t> ReadMbr(uint64_t offset, size_t size) const;

  // Factory reset of everything (Revert on the AdminSP, PSID revert).
  void FactoryReset();
  // Back to Manufactured-Inactive (RevertSP on the LockingSP / Revert of the LockingSP object).
  void RevertLockingSp(bool keep_global_key, const Keyring& keyring);
  // Activate the LockingSP: Admin1 takes the SID PIN; ranges get fresh keys.
  void ActivateLockingSp(Keyring* keyring);

 private:
  Drive(std::string path, int fd);
  void LoadCache();
  void WriteCache();
  void ApplyPowerCycle();
  std::string StatePath() const { return path_ + ".state"; }
  std::string MbrPath() const { return path_ + ".mbr"; }
  void ClearMbr();
  std::string CachePath() const;
  static std::string CacheDir();
  static void CollectOrphanCaches();

  std::string path_;
  std::string image_path_;  // absolute, recorded in the key cache for orphan collection
  int fd_ = -1;
  DriveState state_;
  std::map<int, SecretBytes> cache_;
  mutable SecretBytes msid_kek_;  // derived from public data; cached because every MSID unwrap needs it
};

// Writes `data` to `path` atomically: temp file, fsync, rename, fsync of the directory; mode 0600.
// `crash_name` names the file for the test addon's crash points (<name>-tmp-partial: half the temp file
// written; <name>-tmp-synced: the temp file complete, not renamed; <name>-renamed: in place).
void WriteFileAtomic(const std::string& path, const std::string& data, const char* crash_name = nullptr);

}  // namespace emulator
}  // namespace kmip_agent
