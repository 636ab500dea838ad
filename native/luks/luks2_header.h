// Our own read-only look at the on-disk LUKS binary headers, made BEFORE libcryptsetup sees a device.
// Why: libcryptsetup silently rewrites a damaged primary LUKS2 header from the secondary copy (or the
// reverse) on a mere load, even for a dump. The agent must never change a header behind an operator's
// back during read-only work (info, check) or on a device it was asked to open, so a header pair that
// is not fully intact is reported as LUKS_CORRUPT_HEADER and left untouched; repairing is a
// deliberate `cryptsetup repair` after a header backup.
#pragma once
#include <cstdint>
#include <string>

namespace kmip_agent {
namespace luks {

enum class HeaderKind {
  kNotLuks,        // no LUKS magic where a primary or secondary header could be
  kLuks1,          // a LUKS1 header (not supported by the agent)
  kUnknownVersion, // LUKS magic with a version other than 1 or 2
  kLuks2,          // primary and secondary LUKS2 headers present, checksums valid, same sequence id
  kCorrupt,        // LUKS2, but one or both headers are damaged or disagree
};

struct HeaderCheck {
  HeaderKind kind = HeaderKind::kNotLuks;
  int version = 0;
  std::string detail;  // what is wrong, for kCorrupt / kUnknownVersion
};

// Reads the headers of an open file descriptor (image file or block device) with pread only.
// Throws CodedError LUKS_IO_ERROR when the device cannot be read.
HeaderCheck CheckLuksHeaders(int fd);

}  // namespace luks
}  // namespace kmip_agent
