#include "transport/security_commands.h"

#include <cstdio>
#include <cstring>

#include "core/errors.h"

namespace kmip_agent {
namespace transport {

std::array<uint8_t, 12> ScsiSecurityProtocolCdb(bool to_device, uint8_t protocol, uint16_t sp_specific,
                                                 uint32_t length) {
  std::array<uint8_t, 12> cdb{};
  cdb[0] = to_device ? kScsiSecurityProtocolOut : kScsiSecurityProtocolIn;
  cdb[1] = protocol;
  cdb[2] = static_cast<uint8_t>(sp_specific >> 8);
  cdb[3] = static_cast<uint8_t>(sp_specific);
  cdb[4] = 0;  // INC_512 = 0: the length counts bytes
  cdb[6] = static_cast<uint8_t>(length >> 24);
  cdb[7] = static_cast<uint8_t>(length >> 16);
  cdb[8] = static_cast<uint8_t>(length >> 8);
  cdb[9] = static_cast<uint8_t>(length);
  return cdb;
}

std::array<uint8_t, 16> AtaTrustedCdb(bool to_device, uint8_t protocol, uint16_t sp_specific, uint32_t length) {
  if (length == 0 || length % kAtaBlockSize != 0 || length / kAtaBlockSize > 0xFFFF) {
    throw CodedError("TRANSPORT_INVALID_ARGUMENT",
                     "ATA trusted commands move whole 512-byte blocks (1..65535): got " + std::to_string(length) +
                         " bytes");
  }
  const uint32_t blocks = length / kAtaBlockSize;
  std::array<uint8_t, 16> cdb{};
  cdb[0] = kAtaPassThrough16;
  // PROTOCOL: 4 = PIO Data-In, 5 = PIO Data-Out; EXTEND = 0 (28-bit command).
  cdb[1] = static_cast<uint8_t>((to_device ? 5 : 4) << 1);
  // OFF_LINE 0, CK_COND 0, T_TYPE 0, T_DIR (1 = from device), BYT_BLOK 1 (blocks), T_LENGTH 2 (in COUNT).
  cdb[2] = static_cast<uint8_t>((to_device ? 0 : 1) << 3 | 1 << 2 | 2);
  cdb[4] = protocol;                             // FEATURE (7:0) = SECURITY PROTOCOL
  cdb[6] = static_cast<uint8_t>(blocks);         // COUNT (7:0) = TRANSFER LENGTH (7:0)
  cdb[8] = static_cast<uint8_t>(blocks >> 8);    // LBA (7:0) = TRANSFER LENGTH (15:8)
  cdb[10] = static_cast<uint8_t>(sp_specific);   // LBA (15:8) = SP SPECIFIC (7:0)
  cdb[12] = static_cast<uint8_t>(sp_specific >> 8);  // LBA (23:16) = SP SPECIFIC (15:8)
  cdb[13] = 0;                                   // DEVICE: no fields apply to trusted commands
  cdb[14] = to_device ? kAtaTrustedSend : kAtaTrustedReceive;
  return cdb;
}

nvme_passthru_cmd NvmeSecurityCommand(bool to_device, uint8_t protocol, uint16_t sp_specific, uint32_t length) {
  nvme_passthru_cmd cmd;
  std::memset(&cmd, 0, sizeof cmd);
  cmd.opcode = to_device ? kNvmeAdminSecuritySend : kNvmeAdminSecurityReceive;
  cmd.nsid = 0;
  // CDW10: SECP (31:24), SPSP1 (23:16), SPSP0 (15:8), NSSF (7:0).
  cmd.cdw10 = static_cast<uint32_t>(protocol) << 24 | static_cast<uint32_t>(sp_specific) << 8;
  cmd.cdw11 = length;  // TL / AL in bytes
  cmd.data_len = length;
  cmd.timeout_ms = 20000;
  return cmd;
}

SenseInfo ParseSense(const uint8_t* data, size_t size) {
  SenseInfo sense;
  if (data == nullptr || size < 2) return sense;
  sense.response_code = data[0] & 0x7F;
  if ((sense.response_code == 0x70 || sense.response_code == 0x71) && size >= 14) {
    sense.valid = true;
    sense.key = data[2] & 0x0F;
    sense.asc = data[12];
    sense.ascq = data[13];
  } else if ((sense.response_code == 0x72 || sense.response_code == 0x73) && size >= 4) {
    sense.valid = true;
    sense.key = data[1] & 0x0F;
    sense.asc = data[2];
    sense.ascq = data[3];
  }
  return sense;
}

std::string DescribeSense(const SenseInfo& sense) {
  static const char* const kKeys[] = {"NO SENSE",        "RECOVERED ERROR", "NOT READY",      "MEDIUM ERROR",
                                      "HARDWARE ERROR",  "ILLEGAL REQUEST", "UNIT ATTENTION", "DATA PROTECT",
                                      "BLANK CHECK",     "VENDOR SPECIFIC", "COPY ABORTED",   "ABORTED COMMAND",
                                      "(reserved 0Ch)",  "VOLUME OVERFLOW", "MISCOMPARE",     "COMPLETED"};
  if (!sense.valid) return "no sense data";
  char text[96];
  std::snprintf(text, sizeof text, "%s, asc %02Xh ascq %02Xh", kKeys[sense.key & 0x0F], sense.asc, sense.ascq);
  std::string out = text;
  if (sense.key == 0x05 && sense.asc == 0x20) out += " (invalid command operation code)";
  if (sense.key == 0x05 && sense.asc == 0x24) out += " (invalid field in CDB)";
  return out;
}

bool SenseMeansUnsupported(const SenseInfo& sense) {
  return sense.valid && sense.key == 0x05 && (sense.asc == 0x20 || sense.asc == 0x24);
}

}  // namespace transport
}  // namespace kmip_agent
