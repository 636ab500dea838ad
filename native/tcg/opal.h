// Opal flows on top of sessions (Opal SSC 2.01 section 5 and Application Notes): discovery and
// status, ownership, Locking SP activation, PINs, users, ranges, lock/unlock, reverts, crypto
// erase, MBR control, and reading C_PIN Tries/TryLimit. PINs arrive as SecretBytes and never
// leave them except inside wiped token buffers.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/secure.h"
#include "tcg/discovery.h"
#include "tcg/session.h"

namespace kmip_agent {
namespace tcg {

// Who authenticates: SID / PSID in the Admin SP, Admin<n> / User<n> in the Locking SP.
struct Authority {
  enum class Kind { kSid, kPsid, kAdmin, kUser, kAnybody } kind = Kind::kAdmin;
  uint32_t index = 1;
  uint64_t Uid() const;
  uint64_t CPinUid() const;  // the C_PIN row holding this authority's PIN
  uint64_t Sp() const;       // the SP this authority lives in
  std::string Describe() const;
};

struct RangeInfo {
  uint32_t range = 0;  // 0 = global range
  uint64_t start = 0;
  uint64_t length = 0;
  bool read_lock_enabled = false;
  bool write_lock_enabled = false;
  bool read_locked = false;
  bool write_locked = false;
};

struct OpalStatus {
  Discovery discovery;
  bool locking_supported = false;
  bool locking_enabled = false;  // the Locking SP is activated
  bool locked = false;
  bool mbr_enabled = false;
  bool mbr_done = false;
  std::optional<uint32_t> locking_sp_lifecycle;  // 8 = Manufactured-Inactive, 9 = Manufactured
  // C_PIN_SID == C_PIN_MSID (the drive is not owned). From the Block SID feature when the drive
  // has it, or from an explicit probe; unset when unknown.
  std::optional<bool> sid_is_msid;
  std::string sid_state_source;  // "block-sid-feature", "probe", or ""
  // Numbered locking ranges besides the global one (LockingInfo MaxRanges, which anybody may read
  // once the Locking SP is active); unset when unknown.
  std::optional<uint32_t> max_ranges;
};

struct Tries {
  uint32_t tries = 0;      // failed attempts since the last power cycle / success
  uint32_t try_limit = 0;  // 0 = no limit
};

enum class LockState { kLocked, kReadOnly, kUnlocked };

class OpalDrive {
 public:
  explicit OpalDrive(std::unique_ptr<transport::Transport> transport, ExchangeLimits limits = {});

  Device& device() { return device_; }
  // true: authenticate with ThisSP.Authenticate inside the session instead of at StartSession.
  void set_authenticate_with_method(bool v) { device_.set_authenticate_with_method(v); }
  std::string Describe() { return device_.transport().Describe(); }
  std::string Serial() { return device_.transport().Serial(); }

  const Discovery& Discover() { return device_.Discover(); }
  // Discovery plus what an unauthenticated session can read; `probe_sid` tries SID with the MSID
  // PIN (this counts a failed try against SID when the drive is owned).
  OpalStatus Status(bool probe_sid);
  SecretBytes ReadMsid();

  void TakeOwnership(const SecretBytes& new_sid_pin);
  void ActivateLockingSp(const SecretBytes& sid_pin);
  // `who` authenticates with `pin` and sets `target`'s PIN to `new_pin` (target in the same SP).
  void SetPin(const Authority& who, const SecretBytes& pin, const Authority& target, const SecretBytes& new_pin);
  // Enable/disable Locking SP user `user` and (when enabling) let it lock/unlock `ranges`.
  void EnableUser(const SecretBytes& admin_pin, uint32_t user, bool enabled, const std::vector<uint32_t>& ranges);
  void SetupRange(const SecretBytes& admin_pin, uint32_t range, std::optional<uint64_t> start,
                  std::optional<uint64_t> length, bool read_lock_enabled, bool write_lock_enabled);
  std::vector<RangeInfo> Ranges(const Authority& who, const SecretBytes& pin);
  void SetLock(const Authority& who, const SecretBytes& pin, uint32_t range, LockState state);
  // Full unlock flow as one session: StartSession(auth), Set ReadLocked/WriteLocked, Close.
  void RevertTPer(const SecretBytes& sid_pin);
  void PsidRevert(const SecretBytes& psid);
  void RevertLockingSp(const SecretBytes& admin_pin, bool keep_global_range_key);
  // Crypto erase: GenKey on the range's active key (or the SUM Erase method).
  void EraseRange(const SecretBytes& admin_pin, uint32_t range, bool use_erase_method);
  void SetMbr(const SecretBytes& admin_pin, std::optional<bool> enable, std::optional<bool> done);
  // C_PIN Tries/TryLimit of `target`. Tries an unauthenticated read first; if the TPer refuses
  // and `who`+`pin` are given, reads as that authority. Unset when not readable.
  std::optional<Tries> ReadTries(const Authority& target, const Authority* who, const SecretBytes* pin);
  // Authenticates `who` and closes the session: the cheapest "is this PIN right?" test.
  void Verify(const Authority& who, const SecretBytes& pin);

 private:
  Device device_;
  bool properties_done_ = false;
  void EnsureProperties();
};

}  // namespace tcg
}  // namespace kmip_agent
