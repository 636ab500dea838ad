// The Linux sed-opal ioctl ABI (include/uapi/linux/sed-opal.h), defined here rather than taken from
// the installed headers: Debian bookworm's headers stop at IOC_OPAL_GET_STATUS (236) and predate
// opal_key.key_type and opal_lock_unlock.flags. Layouts are pinned by static_asserts below and
// checked against the installed header for every ioctl it knows (kernel_opal_abi_check.cc).
#pragma once
#include <linux/ioctl.h>

#include <cstddef>
#include <cstdint>

namespace kmip_agent {
namespace kernel_opal {

constexpr size_t kKeyMax = 256;
constexpr size_t kMaxLockingRanges = 9;
constexpr size_t kUidLength = 8;

// opal_user: who authenticates (ADMIN1 = 0, USERn = n).
constexpr uint32_t kAdmin1 = 0;

// opal_lock_state
constexpr uint32_t kLockReadOnly = 0x01;
constexpr uint32_t kLockReadWrite = 0x02;
constexpr uint32_t kLockLocked = 0x04;

// opal_lock_flags: IOC_OPAL_SAVE also keeps the key for locking on suspend.
constexpr uint16_t kSaveForLock = 0x01;

// opal_key_type
constexpr uint8_t kKeyIncluded = 0;
constexpr uint8_t kKeyInKeyring = 1;

// opal_mbr / opal_mbr_done_flag
constexpr uint8_t kMbrEnable = 0x00;
constexpr uint8_t kMbrDisable = 0x01;
constexpr uint8_t kMbrNotDone = 0x00;
constexpr uint8_t kMbrDone = 0x01;

// opal_revert_lsp_opts
constexpr uint32_t kRevertLspPreserve = 0x01;

// opal_status.flags
constexpr uint32_t kFlSupported = 0x01;
constexpr uint32_t kFlLockingSupported = 0x02;
constexpr uint32_t kFlLockingEnabled = 0x04;
constexpr uint32_t kFlLocked = 0x08;
constexpr uint32_t kFlMbrEnabled = 0x10;
constexpr uint32_t kFlMbrDone = 0x20;
constexpr uint32_t kFlSumSupported = 0x40;

struct OpalKey {
  uint8_t lr;
  uint8_t key_len;
  uint8_t key_type;
  uint8_t align[5];
  uint8_t key[kKeyMax];
};

struct OpalLrAct {
  OpalKey key;
  uint32_t sum;
  uint8_t num_lrs;
  uint8_t lr[kMaxLockingRanges];
  uint8_t align[2];
};

struct OpalSessionInfo {
  uint32_t sum;
  uint32_t who;
  OpalKey opal_key;
};

struct OpalUserLrSetup {
  uint64_t range_start;
  uint64_t range_length;
  uint32_t read_lock_enabled;   // RLE
  uint32_t write_lock_enabled;  // WLE
  OpalSessionInfo session;
};

struct OpalLrStatus {
  OpalSessionInfo session;
  uint64_t range_start;
  uint64_t range_length;
  uint32_t read_lock_enabled;
  uint32_t write_lock_enabled;
  uint32_t l_state;
  uint8_t align[4];
};

struct OpalLockUnlock {
  OpalSessionInfo session;
  uint32_t l_state;
  uint16_t flags;
  uint8_t align[2];
};

struct OpalNewPw {
  OpalSessionInfo session;
  OpalSessionInfo new_user_pw;
};

struct OpalMbrData {
  OpalKey key;
  uint8_t enable_disable;
  uint8_t align[7];
};

struct OpalMbrDone {
  OpalKey key;
  uint8_t done_flag;
  uint8_t align[7];
};

struct OpalShadowMbr {
  OpalKey key;
  uint64_t data;  // user pointer
  uint64_t offset;
  uint64_t size;
};

struct OpalReadWriteTable {
  OpalKey key;
  uint64_t data;  // user pointer
  uint8_t table_uid[kUidLength];
  uint64_t offset;
  uint64_t size;
  uint64_t flags;
  uint64_t priv;
};

struct OpalStatus {
  uint32_t flags;
  uint32_t reserved;
};

struct OpalGeometry {
  uint8_t align;  // not padding: the drive's ALIGN bit (Geometry feature), ranges must be aligned
  uint32_t logical_block_size;
  uint64_t alignment_granularity;
  uint64_t lowest_aligned_lba;
  uint8_t reserved[3];
};

struct OpalDiscovery {
  uint64_t data;  // user pointer to the response buffer
  uint64_t size;
};

struct OpalRevertLsp {
  OpalKey key;
  uint32_t options;
  uint32_t pad;
};

static_assert(sizeof(OpalKey) == 264, "opal_key");
static_assert(offsetof(OpalKey, key) == 8, "opal_key.key");
static_assert(sizeof(OpalLrAct) == 280, "opal_lr_act");
static_assert(sizeof(OpalSessionInfo) == 272, "opal_session_info");
static_assert(sizeof(OpalUserLrSetup) == 296, "opal_user_lr_setup");
static_assert(offsetof(OpalUserLrSetup, session) == 24, "opal_user_lr_setup.session");
static_assert(sizeof(OpalLrStatus) == 304, "opal_lr_status");
static_assert(sizeof(OpalLockUnlock) == 280, "opal_lock_unlock");
static_assert(offsetof(OpalLockUnlock, flags) == 276, "opal_lock_unlock.flags");
static_assert(sizeof(OpalNewPw) == 544, "opal_new_pw");
static_assert(sizeof(OpalMbrData) == 272, "opal_mbr_data");
static_assert(sizeof(OpalMbrDone) == 272, "opal_mbr_done");
static_assert(sizeof(OpalShadowMbr) == 288, "opal_shadow_mbr");
static_assert(sizeof(OpalReadWriteTable) == 312, "opal_read_write_table");
static_assert(sizeof(OpalStatus) == 8, "opal_status");
static_assert(sizeof(OpalGeometry) == 32, "opal_geometry");
static_assert(offsetof(OpalGeometry, logical_block_size) == 4, "opal_geometry.logical_block_size");
static_assert(sizeof(OpalDiscovery) == 16, "opal_discovery");
static_assert(sizeof(OpalRevertLsp) == 272, "opal_revert_lsp");

// The ioctl numbers, built the way the kernel header builds them.
constexpr unsigned long kIocSave = _IOW('p', 220, OpalLockUnlock);
constexpr unsigned long kIocLockUnlock = _IOW('p', 221, OpalLockUnlock);
constexpr unsigned long kIocTakeOwnership = _IOW('p', 222, OpalKey);
constexpr unsigned long kIocActivateLsp = _IOW('p', 223, OpalLrAct);
constexpr unsigned long kIocSetPw = _IOW('p', 224, OpalNewPw);
constexpr unsigned long kIocActivateUsr = _IOW('p', 225, OpalSessionInfo);
constexpr unsigned long kIocRevertTpr = _IOW('p', 226, OpalKey);
constexpr unsigned long kIocLrSetup = _IOW('p', 227, OpalUserLrSetup);
constexpr unsigned long kIocAddUsrToLr = _IOW('p', 228, OpalLockUnlock);
constexpr unsigned long kIocEnableDisableMbr = _IOW('p', 229, OpalMbrData);
constexpr unsigned long kIocEraseLr = _IOW('p', 230, OpalSessionInfo);
constexpr unsigned long kIocSecureEraseLr = _IOW('p', 231, OpalSessionInfo);
constexpr unsigned long kIocPsidRevertTpr = _IOW('p', 232, OpalKey);
constexpr unsigned long kIocMbrDone = _IOW('p', 233, OpalMbrDone);
constexpr unsigned long kIocWriteShadowMbr = _IOW('p', 234, OpalShadowMbr);
constexpr unsigned long kIocGenericTableRw = _IOW('p', 235, OpalReadWriteTable);
constexpr unsigned long kIocGetStatus = _IOR('p', 236, OpalStatus);
constexpr unsigned long kIocGetLrStatus = _IOW('p', 237, OpalLrStatus);
constexpr unsigned long kIocGetGeometry = _IOR('p', 238, OpalGeometry);
constexpr unsigned long kIocDiscovery = _IOW('p', 239, OpalDiscovery);
constexpr unsigned long kIocRevertLsp = _IOW('p', 240, OpalRevertLsp);
constexpr unsigned long kIocSetSidPw = _IOW('p', 241, OpalNewPw);

// Every sed-opal ioctl this build knows, with the kernel's name for it (messages, tests).
struct IoctlInfo {
  unsigned long request;
  const char* name;
};
inline constexpr IoctlInfo kIoctls[] = {
    {kIocSave, "IOC_OPAL_SAVE"},
    {kIocLockUnlock, "IOC_OPAL_LOCK_UNLOCK"},
    {kIocTakeOwnership, "IOC_OPAL_TAKE_OWNERSHIP"},
    {kIocActivateLsp, "IOC_OPAL_ACTIVATE_LSP"},
    {kIocSetPw, "IOC_OPAL_SET_PW"},
    {kIocActivateUsr, "IOC_OPAL_ACTIVATE_USR"},
    {kIocRevertTpr, "IOC_OPAL_REVERT_TPR"},
    {kIocLrSetup, "IOC_OPAL_LR_SETUP"},
    {kIocAddUsrToLr, "IOC_OPAL_ADD_USR_TO_LR"},
    {kIocEnableDisableMbr, "IOC_OPAL_ENABLE_DISABLE_MBR"},
    {kIocEraseLr, "IOC_OPAL_ERASE_LR"},
    {kIocSecureEraseLr, "IOC_OPAL_SECURE_ERASE_LR"},
    {kIocPsidRevertTpr, "IOC_OPAL_PSID_REVERT_TPR"},
    {kIocMbrDone, "IOC_OPAL_MBR_DONE"},
    {kIocWriteShadowMbr, "IOC_OPAL_WRITE_SHADOW_MBR"},
    {kIocGenericTableRw, "IOC_OPAL_GENERIC_TABLE_RW"},
    {kIocGetStatus, "IOC_OPAL_GET_STATUS"},
    {kIocGetLrStatus, "IOC_OPAL_GET_LR_STATUS"},
    {kIocGetGeometry, "IOC_OPAL_GET_GEOMETRY"},
    {kIocDiscovery, "IOC_OPAL_DISCOVERY"},
    {kIocRevertLsp, "IOC_OPAL_REVERT_LSP"},
    {kIocSetSidPw, "IOC_OPAL_SET_SID_PW"},
};

// Name of an ioctl request ("IOC_OPAL_LOCK_UNLOCK"), or nullptr when it is not a sed-opal one.
inline const char* IoctlName(unsigned long request) {
  for (const IoctlInfo& info : kIoctls)
    if (info.request == request) return info.name;
  return nullptr;
}

}  // namespace kernel_opal
}  // namespace kmip_agent
