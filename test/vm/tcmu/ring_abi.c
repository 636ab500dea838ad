/* target_core_user's shared-memory layout, taken from the kernel's own header (which compiles as C
 * only), for tcmu_opal.cc to read the mailbox and command entries by offset. */
#include <linux/target_core_user.h>
#include <stddef.h>

const size_t tcmu_abi_mb_cmdr_off = offsetof(struct tcmu_mailbox, cmdr_off);
const size_t tcmu_abi_mb_cmdr_size = offsetof(struct tcmu_mailbox, cmdr_size);
const size_t tcmu_abi_mb_cmd_head = offsetof(struct tcmu_mailbox, cmd_head);
const size_t tcmu_abi_mb_cmd_tail = offsetof(struct tcmu_mailbox, cmd_tail);
const size_t tcmu_abi_req_iov_cnt = offsetof(struct tcmu_cmd_entry, req.iov_cnt);
const size_t tcmu_abi_req_cdb_off = offsetof(struct tcmu_cmd_entry, req.cdb_off);
const size_t tcmu_abi_req_iov = offsetof(struct tcmu_cmd_entry, req.iov);
const size_t tcmu_abi_iov_size = sizeof(struct iovec);
const size_t tcmu_abi_rsp_status = offsetof(struct tcmu_cmd_entry, rsp.scsi_status);
const size_t tcmu_abi_rsp_sense = offsetof(struct tcmu_cmd_entry, rsp.sense_buffer);
const size_t tcmu_abi_rsp_end = offsetof(struct tcmu_cmd_entry, rsp.sense_buffer) + TCMU_SENSE_BUFFERSIZE;
const unsigned tcmu_abi_op_mask = TCMU_OP_MASK;
const unsigned tcmu_abi_op_cmd = TCMU_OP_CMD;
const unsigned tcmu_abi_mailbox_version = TCMU_MAILBOX_VERSION;
