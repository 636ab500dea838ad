#include "kernel_opal/kernel_opal.h"

#include <errno.h>

#include <cstring>
#include <string>

#include "core/errors.h"
#include "kernel_opal/sed_opal_abi.h"
#include "tcg/status.h"

namespace kmip_agent {
namespace kernel_opal {
namespace {

// The kernel's internal ENOTSUPP (524) reaches userspace from sed-opal when the device has no
// Opal support registered.
constexpr int kKernelEnotsupp = 524;

void FillKey(OpalKey& out, const SecretBytes& key, uint8_t range = 0) {
  if (key.size() > kKeyMax) {
    throw CodedError("KOPAL_INVALID_ARGUMENT", "key is longer than the kernel's " + std::to_string(kKeyMax) + " bytes");
  }
  out.lr = range;
  out.key_type = kKeyIncluded;
  out.key_len = static_cast<uint8_t>(key.size());
  if (!key.empty()) std::memcpy(out.key, key.data(), key.size());
}

void FillSession(OpalSessionInfo& out, const Credential& who, uint8_t range = 0) {
  out.sum = who.sum ? 1 : 0;
  out.who = who.who;
  FillKey(out.opal_key, who.key, range);
}

// Zeroes a struct holding key material when the scope ends, whatever happens.
template <typename T>
struct Wiped {
  T value{};
  ~Wiped() { SecureWipe(&value, sizeof(T)); }
};

// Every sed-opal ioctl but the three that only read what the drive tells anyone.
bool CarriesKey(unsigned long request) {
  return request != kIocGetStatus && request != kIocGetGeometry && request != kIocDiscovery;
}

// Throws the typed error for a failed ioctl: -errno from the kernel, or a positive TCG status.
[[noreturn]] void ThrowIoctlFailure(unsigned long request, int ret) {
  const char* name = IoctlName(request);
  const std::string what = name != nullptr ? name : "sed-opal ioctl";
  if (ret > 0) {
    // A TCG method status the drive returned through the kernel.
    CodedError error(tcg::StatusErrorCode(static_cast<uint32_t>(ret)),
                     what + ": the drive answered " + tcg::StatusName(static_cast<uint32_t>(ret)) + " (" +
                         tcg::StatusDescription(static_cast<uint32_t>(ret)) + ")",
                     ret);
    // The kernel authenticates inside every ioctl that carries a key and does not say which step
    // was refused: its refusal counts as a refused authentication (the safe side for lockout).
    if (CarriesKey(request) && tcg::RefusesAuthentication(static_cast<uint32_t>(ret))) error.MarkAuthRefused();
    throw error;
  }
  int err = -ret;
  if (err == EINVAL && request == kIocGetStatus) err = ENOTTY;  // GET_STATUS has no argument to refuse
  switch (err) {
    case ENOTTY:
    case EOPNOTSUPP:
    case kKernelEnotsupp:
      throw CodedError("KOPAL_NOT_SUPPORTED",
                       what + ": this kernel or drive has no sed-opal support (" + std::strerror(err == kKernelEnotsupp ? EOPNOTSUPP : err) +
                           "); the agent can use TCG pass-through instead",
                       err);
    case EACCES:
    case EPERM:
      throw CodedError("KOPAL_PERMISSION_DENIED",
                       what + ": permission denied: sed-opal ioctls need CAP_SYS_ADMIN (run as root, or add "
                              "CAP_SYS_ADMIN to the service's capabilities)",
                       err);
    case EINVAL:
      throw CodedError("KOPAL_INVALID_ARGUMENT", what + ": the kernel refused the arguments (EINVAL)", err);
    case EBUSY:
      throw CodedError("KOPAL_BUSY", what + ": the device is busy", err);
    case ENODEV:
    case ENXIO:
      throw CodedError("KOPAL_NO_DEVICE", what + ": the device went away", err);
    default:
      throw CodedError("KOPAL_IO_ERROR", what + ": " + std::strerror(err), err);
  }
}

}  // namespace

void KernelOpal::Invoke(unsigned long request, void* arg, size_t size) {
  int ret = port_.Ioctl(request, arg, size);
  if (ret == 0) return;
  if (ret == -EINVAL && !SedOpalAnswers(request)) {
    // Block drivers answer ioctls they do not know with EINVAL (loop does), so EINVAL alone does not
    // tell "bad argument" from "no sed-opal here"; GET_STATUS takes no argument and settles it.
    ThrowIoctlFailure(request, -ENOTTY);
  }
  ThrowIoctlFailure(request, ret);
}

bool KernelOpal::SedOpalAnswers(unsigned long failed_request) {
  if (failed_request == kIocGetStatus) return false;
  OpalStatus st{};
  return port_.Ioctl(kIocGetStatus, &st, sizeof st) == 0 && (st.flags & kFlSupported) != 0;
}

DriveStatus KernelOpal::Status() {
  OpalStatus st{};
  Invoke(kIocGetStatus, &st, sizeof st);
  DriveStatus out;
  out.flags = st.flags;
  out.supported = st.flags & kFlSupported;
  out.locking_supported = st.flags & kFlLockingSupported;
  out.locking_enabled = st.flags & kFlLockingEnabled;
  out.locked = st.flags & kFlLocked;
  out.mbr_enabled = st.flags & kFlMbrEnabled;
  out.mbr_done = st.flags & kFlMbrDone;
  out.sum_supported = st.flags & kFlSumSupported;
  return out;
}

std::vector<uint8_t> KernelOpal::Discovery(size_t max_bytes) {
  std::vector<uint8_t> buffer(max_bytes);
  OpalDiscovery d{};
  d.data = reinterpret_cast<uintptr_t>(buffer.data());
  d.size = buffer.size();
  int ret = port_.Ioctl(kIocDiscovery, &d, sizeof d);
  if (ret < 0) ThrowIoctlFailure(kIocDiscovery, ret);
  // Unlike the other calls, success is a byte count: the length of the response copied.
  if (ret > 0 && static_cast<size_t>(ret) < buffer.size()) {
    size_t copied = static_cast<size_t>(ret);
    // The kernel copies the header's Length bytes, which is 4 short of the response (Length does
    // not count its own 4 bytes). The uncopied tail stays as zeroed here: keep Length + 4 bytes so
    // the response parses whole instead of looking cut short.
    const size_t length = copied >= 4 ? (size_t{buffer[0]} << 24 | size_t{buffer[1]} << 16 |
                                         size_t{buffer[2]} << 8 | size_t{buffer[3]})
                                      : 0;
    if (length == copied && length + 4 <= buffer.size()) copied = length + 4;
    buffer.resize(copied);
  }
  return buffer;
}

Geometry KernelOpal::GetGeometry() {
  OpalGeometry g{};
  Invoke(kIocGetGeometry, &g, sizeof g);
  return {g.align != 0, g.logical_block_size, g.alignment_granularity, g.lowest_aligned_lba};
}

void KernelOpal::TakeOwnership(const SecretBytes& sid_key) {
  Wiped<OpalKey> k;
  FillKey(k.value, sid_key);
  Invoke(kIocTakeOwnership, &k.value, sizeof k.value);
}

void KernelOpal::ActivateLockingSp(const SecretBytes& sid_key, const std::vector<uint8_t>& sum_ranges) {
  if (sum_ranges.size() > kMaxLockingRanges) {
    throw CodedError("KOPAL_INVALID_ARGUMENT", "at most 9 locking ranges can be put in Single User Mode");
  }
  Wiped<OpalLrAct> a;
  FillKey(a.value.key, sid_key);
  a.value.sum = sum_ranges.empty() ? 0 : 1;
  a.value.num_lrs = static_cast<uint8_t>(sum_ranges.size());
  for (size_t i = 0; i < sum_ranges.size(); ++i) a.value.lr[i] = sum_ranges[i];
  Invoke(kIocActivateLsp, &a.value, sizeof a.value);
}

void KernelOpal::SetupRange(const Credential& admin, uint8_t range, uint64_t start, uint64_t length,
                            bool read_lock_enabled, bool write_lock_enabled) {
  Wiped<OpalUserLrSetup> s;
  s.value.range_start = start;
  s.value.range_length = length;
  s.value.read_lock_enabled = read_lock_enabled ? 1 : 0;
  s.value.write_lock_enabled = write_lock_enabled ? 1 : 0;
  FillSession(s.value.session, admin, range);
  Invoke(kIocLrSetup, &s.value, sizeof s.value);
}

void KernelOpal::ActivateUser(const Credential& admin, uint32_t user) {
  Wiped<OpalSessionInfo> s;
  FillSession(s.value, admin);
  // The kernel takes the user to enable from `who` and authenticates as Admin1 with the key.
  s.value.who = user;
  Invoke(kIocActivateUsr, &s.value, sizeof s.value);
}

void KernelOpal::AddUserToRange(const Credential& admin, uint32_t user, uint8_t range, LockState access) {
  if (access != LockState::ReadOnly && access != LockState::ReadWrite) {
    throw CodedError("KOPAL_INVALID_ARGUMENT", "a user is added to a range for read-only or read-write access");
  }
  if (admin.sum) {
    throw CodedError("KOPAL_INVALID_ARGUMENT",
                     "IOC_OPAL_ADD_USR_TO_LR has no Single User Mode form (a SUM range already belongs to its user)");
  }
  Wiped<OpalLockUnlock> l;
  FillSession(l.value.session, admin, range);
  l.value.session.sum = 0;  // never set: the kernel answers EINVAL
  l.value.session.who = user;
  l.value.l_state = static_cast<uint32_t>(access);
  Invoke(kIocAddUsrToLr, &l.value, sizeof l.value);
}

void KernelOpal::SetPassword(const Credential& auth, const Credential& target) {
  Wiped<OpalNewPw> p;
  FillSession(p.value.session, auth);
  FillSession(p.value.new_user_pw, target);
  Invoke(kIocSetPw, &p.value, sizeof p.value);
}

void KernelOpal::SetSidPassword(const SecretBytes& current_sid, const SecretBytes& new_sid) {
  Wiped<OpalNewPw> p;
  FillKey(p.value.session.opal_key, current_sid);
  FillKey(p.value.new_user_pw.opal_key, new_sid);
  Invoke(kIocSetSidPw, &p.value, sizeof p.value);
}

void KernelOpal::LockUnlock(const Credential& who, uint8_t range, LockState state) {
  Wiped<OpalLockUnlock> l;
  FillSession(l.value.session, who, range);
  l.value.l_state = static_cast<uint32_t>(state);
  Invoke(kIocLockUnlock, &l.value, sizeof l.value);
}

void KernelOpal::SaveForResume(const Credential& who, uint8_t range, LockState state) {
  Wiped<OpalLockUnlock> l;
  FillSession(l.value.session, who, range);
  l.value.l_state = static_cast<uint32_t>(state);
  l.value.flags = kSaveForLock;
  Invoke(kIocSave, &l.value, sizeof l.value);
}

RangeStatus KernelOpal::GetRangeStatus(const Credential& who, uint8_t range) {
  Wiped<OpalLrStatus> s;
  FillSession(s.value.session, who, range);
  Invoke(kIocGetLrStatus, &s.value, sizeof s.value);
  RangeStatus out;
  out.start = s.value.range_start;
  out.length = s.value.range_length;
  out.read_lock_enabled = s.value.read_lock_enabled != 0;
  out.write_lock_enabled = s.value.write_lock_enabled != 0;
  switch (s.value.l_state) {
    case kLockReadOnly: out.state = LockState::ReadOnly; break;
    case kLockReadWrite: out.state = LockState::ReadWrite; break;
    case kLockLocked: out.state = LockState::Locked; break;
    default:
      throw CodedError("KOPAL_BAD_RESPONSE", "IOC_OPAL_GET_LR_STATUS returned an unknown lock state " +
                                                 std::to_string(s.value.l_state));
  }
  return out;
}

void KernelOpal::RevertTper(const SecretBytes& sid_key) {
  Wiped<OpalKey> k;
  FillKey(k.value, sid_key);
  Invoke(kIocRevertTpr, &k.value, sizeof k.value);
}

void KernelOpal::PsidRevert(const SecretBytes& psid) {
  Wiped<OpalKey> k;
  FillKey(k.value, psid);
  Invoke(kIocPsidRevertTpr, &k.value, sizeof k.value);
}

void KernelOpal::RevertLockingSp(const SecretBytes& admin_key, bool keep_global_range_key) {
  Wiped<OpalRevertLsp> r;
  FillKey(r.value.key, admin_key);
  r.value.options = keep_global_range_key ? kRevertLspPreserve : 0;
  Invoke(kIocRevertLsp, &r.value, sizeof r.value);
}

void KernelOpal::EraseRange(const Credential& who, uint8_t range) {
  Wiped<OpalSessionInfo> s;
  FillSession(s.value, who, range);
  Invoke(kIocEraseLr, &s.value, sizeof s.value);
}

void KernelOpal::SecureEraseRange(const Credential& who, uint8_t range) {
  Wiped<OpalSessionInfo> s;
  FillSession(s.value, who, range);
  Invoke(kIocSecureEraseLr, &s.value, sizeof s.value);
}

void KernelOpal::EnableMbr(const SecretBytes& admin_key, bool enable) {
  Wiped<OpalMbrData> m;
  FillKey(m.value.key, admin_key);
  m.value.enable_disable = enable ? kMbrEnable : kMbrDisable;
  Invoke(kIocEnableDisableMbr, &m.value, sizeof m.value);
}

void KernelOpal::SetMbrDone(const SecretBytes& admin_key, bool done) {
  Wiped<OpalMbrDone> m;
  FillKey(m.value.key, admin_key);
  m.value.done_flag = done ? kMbrDone : kMbrNotDone;
  Invoke(kIocMbrDone, &m.value, sizeof m.value);
}

}  // namespace kernel_opal
}  // namespace kmip_agent
