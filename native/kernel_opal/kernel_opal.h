// Opal flows through the Linux kernel's sed-opal driver (block/sed-opal.c): one ioctl per step,
// the kernel runs the TCG sessions. Used when the kernel has sed-opal for the drive; it also keeps
// an unlock key (IOC_OPAL_SAVE) so the drive is unlocked again after suspend-to-RAM.
// Keys are copied into the ioctl structs, which are wiped after every call.
#pragma once
#include <cstdint>
#include <optional>
#include <vector>

#include "core/secure.h"
#include "core/ioctl_port.h"

namespace kmip_agent {
namespace kernel_opal {

enum class LockState : uint32_t { ReadOnly = 0x01, ReadWrite = 0x02, Locked = 0x04 };

// Who opens the session: Admin1 (0) or UserN (N), optionally in Single User Mode.
struct Credential {
  uint32_t who = 0;
  SecretBytes key;
  bool sum = false;
};

struct DriveStatus {
  uint32_t flags = 0;
  bool supported = false;
  bool locking_supported = false;
  bool locking_enabled = false;
  bool locked = false;
  bool mbr_enabled = false;
  bool mbr_done = false;
  bool sum_supported = false;
};

struct RangeStatus {
  uint64_t start = 0;
  uint64_t length = 0;
  bool read_lock_enabled = false;
  bool write_lock_enabled = false;
  LockState state = LockState::Locked;
};

struct Geometry {
  bool align_required = false;  // the drive's ALIGN bit: ranges must start and end on granularity
  uint32_t logical_block_size = 0;
  uint64_t alignment_granularity = 0;
  uint64_t lowest_aligned_lba = 0;
};

class KernelOpal {
 public:
  explicit KernelOpal(IoctlPort& port) : port_(port) {}

  DriveStatus Status();
  std::vector<uint8_t> Discovery(size_t max_bytes = 4096);
  Geometry GetGeometry();
  // SID PIN from MSID to `sid_key` (the kernel reads MSID itself).
  void TakeOwnership(const SecretBytes& sid_key);
  // Activates the Locking SP (authenticated as SID); `sum_ranges` non-empty = Single User Mode.
  void ActivateLockingSp(const SecretBytes& sid_key, const std::vector<uint8_t>& sum_ranges);
  void SetupRange(const Credential& admin, uint8_t range, uint64_t start, uint64_t length, bool read_lock_enabled,
                  bool write_lock_enabled);
  void ActivateUser(const Credential& admin, uint32_t user);
  // Admin1 authenticates outside Single User Mode: the kernel refuses session.sum here (EINVAL).
  void AddUserToRange(const Credential& admin, uint32_t user, uint8_t range, LockState access);
  // Sets `target`'s PIN to target.key, authenticated as `auth`.
  void SetPassword(const Credential& auth, const Credential& target);
  void SetSidPassword(const SecretBytes& current_sid, const SecretBytes& new_sid);
  void LockUnlock(const Credential& who, uint8_t range, LockState state);
  // Also gives the kernel the key to re-unlock `range` after resume from suspend.
  void SaveForResume(const Credential& who, uint8_t range, LockState state);
  RangeStatus GetRangeStatus(const Credential& who, uint8_t range);
  void RevertTper(const SecretBytes& sid_key);
  void PsidRevert(const SecretBytes& psid);
  void RevertLockingSp(const SecretBytes& admin_key, bool keep_global_range_key);
  // Erase = SUM erase method; SecureErase = GenKey on the range's media key (crypto erase).
  void EraseRange(const Credential& who, uint8_t range);
  void SecureEraseRange(const Credential& who, uint8_t range);
  void EnableMbr(const SecretBytes& admin_key, bool enable);
  void SetMbrDone(const SecretBytes& admin_key, bool done);

 private:
  // Runs one ioctl on `arg` and wipes it afterwards; maps failures to typed errors.
  void Invoke(unsigned long request, void* arg, size_t size);
  // After an EINVAL: does the device answer sed-opal at all (GET_STATUS succeeds, Opal supported)?
  bool SedOpalAnswers(unsigned long failed_request);

  IoctlPort& port_;
};

}  // namespace kernel_opal
}  // namespace kmip_agent
