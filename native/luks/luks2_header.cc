// LUKS binary header checks (see luks2_header.h for why the agent does this itself).
// Layout facts from the LUKS2 on-disk format specification: a 4096-byte big-endian binary header
// followed by the JSON area; the header area size (hdr_size) is 16 KiB .. 4 MiB, a power of two;
// the secondary header starts right after the primary area (at hdr_size); the checksum covers the
// whole header area with the checksum field zeroed.
#include "luks/luks2_header.h"

#include <openssl/evp.h>
#include <sys/types.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <vector>

#include "core/errors.h"

namespace kmip_agent {
namespace luks {
namespace {

constexpr size_t kBinaryHeaderSize = 4096;
constexpr uint8_t kPrimaryMagic[6] = {'L', 'U', 'K', 'S', 0xba, 0xbe};
constexpr uint8_t kSecondaryMagic[6] = {'S', 'K', 'U', 'L', 0xba, 0xbe};
// Offsets of fields in the binary header.
constexpr size_t kVersionOffset = 6;
constexpr size_t kHdrSizeOffset = 8;
constexpr size_t kSeqIdOffset = 16;
constexpr size_t kChecksumAlgOffset = 72;
constexpr size_t kChecksumAlgSize = 32;
constexpr size_t kHdrOffsetOffset = 256;
constexpr size_t kChecksumOffset = 448;
constexpr size_t kChecksumSize = 64;
// Where a secondary header may sit (one per valid header area size), for a device whose primary
// header is gone.
constexpr std::array<uint64_t, 9> kAreaSizes = {0x4000,  0x8000,   0x10000,  0x20000, 0x40000,
                                                0x80000, 0x100000, 0x200000, 0x400000};

uint64_t ReadBe(const uint8_t* p, size_t n) {
  uint64_t v = 0;
  for (size_t i = 0; i < n; ++i) v = (v << 8) | p[i];
  return v;
}

// Reads exactly size bytes at offset; false when the device is shorter.
bool ReadAt(int fd, uint64_t offset, uint8_t* out, size_t size) {
  size_t done = 0;
  while (done < size) {
    ssize_t n = pread(fd, out + done, size - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      throw CodedError("LUKS_IO_ERROR", std::string("cannot read the LUKS header: ") + strerror(err), err);
    }
    if (n == 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

bool IsAreaSize(uint64_t size) {
  for (uint64_t s : kAreaSizes)
    if (s == size) return true;
  return false;
}

struct Header {
  uint64_t hdr_size = 0;
  uint64_t seqid = 0;
};

// Validates one LUKS2 header at offset; returns an empty string when intact, else what is wrong.
std::string ValidateLuks2(int fd, uint64_t offset, const uint8_t (&magic)[6], Header* out) {
  std::vector<uint8_t> binary(kBinaryHeaderSize);
  if (!ReadAt(fd, offset, binary.data(), binary.size())) return "device too short for the header";
  if (memcmp(binary.data(), magic, sizeof magic) != 0) return "magic missing";
  if (ReadBe(binary.data() + kVersionOffset, 2) != 2) return "version is not 2";
  uint64_t hdr_size = ReadBe(binary.data() + kHdrSizeOffset, 8);
  if (!IsAreaSize(hdr_size)) return "invalid header area size";
  if (ReadBe(binary.data() + kHdrOffsetOffset, 8) != offset) return "header offset field does not match its position";
  char alg[kChecksumAlgSize + 1] = {0};
  memcpy(alg, binary.data() + kChecksumAlgOffset, kChecksumAlgSize);
  const EVP_MD* md = EVP_get_digestbyname(alg);
  if (md == nullptr || EVP_MD_get_size(md) <= 0 || static_cast<size_t>(EVP_MD_get_size(md)) > kChecksumSize)
    return std::string("unsupported checksum algorithm '") + alg + "'";

  std::vector<uint8_t> area(hdr_size);
  if (!ReadAt(fd, offset, area.data(), area.size())) return "device too short for the header area";
  uint8_t stored[kChecksumSize];
  memcpy(stored, area.data() + kChecksumOffset, kChecksumSize);
  memset(area.data() + kChecksumOffset, 0, kChecksumSize);
  uint8_t computed[EVP_MAX_MD_SIZE];
  unsigned int computed_len = 0;
  if (EVP_Digest(area.data(), area.size(), computed, &computed_len, md, nullptr) != 1)
    return "cannot compute the header checksum";
  if (memcmp(stored, computed, computed_len) != 0) return "checksum mismatch";
  out->hdr_size = hdr_size;
  out->seqid = ReadBe(binary.data() + kSeqIdOffset, 8);
  return "";
}

// Offset of a LUKS2 secondary header at one of its possible positions; 0 when there is none.
uint64_t FindSecondary(int fd) {
  for (uint64_t offset : kAreaSizes) {
    uint8_t magic[8];
    if (!ReadAt(fd, offset, magic, sizeof magic)) break;
    if (memcmp(magic, kSecondaryMagic, sizeof kSecondaryMagic) == 0 && ReadBe(magic + kVersionOffset, 2) == 2)
      return offset;
  }
  return 0;
}

}  // namespace

HeaderCheck CheckLuksHeaders(int fd) {
  HeaderCheck result;
  uint8_t start[8];
  bool long_enough = ReadAt(fd, 0, start, sizeof start);
  if (long_enough && memcmp(start, kPrimaryMagic, sizeof kPrimaryMagic) == 0) {
    result.version = static_cast<int>(ReadBe(start + kVersionOffset, 2));
    if (result.version != 2) {
      // A LUKS2 secondary header behind a primary claiming another version: the version field is damaged.
      if (uint64_t secondary = FindSecondary(fd); secondary != 0) {
        result.kind = HeaderKind::kCorrupt;
        result.detail = "primary header: version field says " + std::to_string(result.version) +
                        " but a LUKS2 secondary header follows at offset " + std::to_string(secondary);
        return result;
      }
      result.kind = result.version == 1 ? HeaderKind::kLuks1 : HeaderKind::kUnknownVersion;
      if (result.version != 1) result.detail = "LUKS version " + std::to_string(result.version);
      return result;
    }
    Header primary, secondary;
    std::string problem = ValidateLuks2(fd, 0, kPrimaryMagic, &primary);
    if (!problem.empty()) {
      result.kind = HeaderKind::kCorrupt;
      result.detail = "primary header: " + problem;
      return result;
    }
    problem = ValidateLuks2(fd, primary.hdr_size, kSecondaryMagic, &secondary);
    if (!problem.empty()) {
      result.kind = HeaderKind::kCorrupt;
      result.detail = "secondary header: " + problem;
    } else if (primary.seqid != secondary.seqid || primary.hdr_size != secondary.hdr_size) {
      result.kind = HeaderKind::kCorrupt;
      result.detail = "primary and secondary headers disagree (an interrupted update)";
    } else {
      result.kind = HeaderKind::kLuks2;
    }
    return result;
  }
  // No primary magic: a LUKS2 device whose primary header was overwritten still has a secondary.
  if (uint64_t secondary = FindSecondary(fd); secondary != 0) {
    result.kind = HeaderKind::kCorrupt;
    result.version = 2;
    result.detail = "primary header missing (a secondary LUKS2 header remains at offset " +
                    std::to_string(secondary) + ")";
    return result;
  }
  result.kind = HeaderKind::kNotLuks;
  return result;
}

}  // namespace luks
}  // namespace kmip_agent
