// Compile-time proof that our ABI matches the installed kernel header wherever that header knows
// an ioctl (bookworm: up to IOC_OPAL_GET_STATUS). Newer numbers are pinned by their _IOW/_IOR
// construction and sizes in sed_opal_abi.h.
#include <linux/sed-opal.h>

#include "kernel_opal/sed_opal_abi.h"

namespace kmip_agent {
namespace kernel_opal {

static_assert(OPAL_KEY_MAX == kKeyMax, "OPAL_KEY_MAX");
static_assert(OPAL_MAX_LRS == kMaxLockingRanges, "OPAL_MAX_LRS");
static_assert(sizeof(struct opal_key) == sizeof(OpalKey), "opal_key size");
static_assert(sizeof(struct opal_lock_unlock) == sizeof(OpalLockUnlock), "opal_lock_unlock size");
static_assert(offsetof(struct opal_lock_unlock, l_state) == offsetof(OpalLockUnlock, l_state), "l_state");
static_assert(offsetof(struct opal_user_lr_setup, session) == offsetof(OpalUserLrSetup, session), "lr_setup");
static_assert(IOC_OPAL_SAVE == kIocSave, "IOC_OPAL_SAVE");
static_assert(IOC_OPAL_LOCK_UNLOCK == kIocLockUnlock, "IOC_OPAL_LOCK_UNLOCK");
static_assert(IOC_OPAL_TAKE_OWNERSHIP == kIocTakeOwnership, "IOC_OPAL_TAKE_OWNERSHIP");
static_assert(IOC_OPAL_ACTIVATE_LSP == kIocActivateLsp, "IOC_OPAL_ACTIVATE_LSP");
static_assert(IOC_OPAL_SET_PW == kIocSetPw, "IOC_OPAL_SET_PW");
static_assert(IOC_OPAL_ACTIVATE_USR == kIocActivateUsr, "IOC_OPAL_ACTIVATE_USR");
static_assert(IOC_OPAL_REVERT_TPR == kIocRevertTpr, "IOC_OPAL_REVERT_TPR");
static_assert(IOC_OPAL_LR_SETUP == kIocLrSetup, "IOC_OPAL_LR_SETUP");
static_assert(IOC_OPAL_ADD_USR_TO_LR == kIocAddUsrToLr, "IOC_OPAL_ADD_USR_TO_LR");
static_assert(IOC_OPAL_ENABLE_DISABLE_MBR == kIocEnableDisableMbr, "IOC_OPAL_ENABLE_DISABLE_MBR");
static_assert(IOC_OPAL_ERASE_LR == kIocEraseLr, "IOC_OPAL_ERASE_LR");
static_assert(IOC_OPAL_SECURE_ERASE_LR == kIocSecureEraseLr, "IOC_OPAL_SECURE_ERASE_LR");
#ifdef IOC_OPAL_PSID_REVERT_TPR
static_assert(IOC_OPAL_PSID_REVERT_TPR == kIocPsidRevertTpr, "IOC_OPAL_PSID_REVERT_TPR");
#endif
#ifdef IOC_OPAL_MBR_DONE
static_assert(IOC_OPAL_MBR_DONE == kIocMbrDone, "IOC_OPAL_MBR_DONE");
#endif
#ifdef IOC_OPAL_WRITE_SHADOW_MBR
static_assert(IOC_OPAL_WRITE_SHADOW_MBR == kIocWriteShadowMbr, "IOC_OPAL_WRITE_SHADOW_MBR");
#endif
#ifdef IOC_OPAL_GENERIC_TABLE_RW
static_assert(IOC_OPAL_GENERIC_TABLE_RW == kIocGenericTableRw, "IOC_OPAL_GENERIC_TABLE_RW");
#endif
#ifdef IOC_OPAL_GET_STATUS
static_assert(IOC_OPAL_GET_STATUS == kIocGetStatus, "IOC_OPAL_GET_STATUS");
#endif
#ifdef IOC_OPAL_GET_LR_STATUS
static_assert(IOC_OPAL_GET_LR_STATUS == kIocGetLrStatus, "IOC_OPAL_GET_LR_STATUS");
#endif
#ifdef IOC_OPAL_GET_GEOMETRY
static_assert(IOC_OPAL_GET_GEOMETRY == kIocGetGeometry, "IOC_OPAL_GET_GEOMETRY");
#endif
#ifdef IOC_OPAL_DISCOVERY
static_assert(IOC_OPAL_DISCOVERY == kIocDiscovery, "IOC_OPAL_DISCOVERY");
#endif
#ifdef IOC_OPAL_REVERT_LSP
static_assert(IOC_OPAL_REVERT_LSP == kIocRevertLsp, "IOC_OPAL_REVERT_LSP");
#endif
#ifdef IOC_OPAL_SET_SID_PW
static_assert(IOC_OPAL_SET_SID_PW == kIocSetSidPw, "IOC_OPAL_SET_SID_PW");
#endif

}  // namespace kernel_opal
}  // namespace kmip_agent
