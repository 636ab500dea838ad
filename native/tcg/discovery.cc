// Level 0 discovery parsing and building (Core Spec 3.3.6, Opal SSC 3.1.1).
#include "tcg/discovery.h"

#include <algorithm>
#include <cstdio>

#include "core/errors.h"
#include "tcg/packet.h"

namespace kmip_agent {
namespace tcg {
namespace {

constexpr size_t kHeaderSize = 48;

bool Bit(const std::vector<uint8_t>& d, size_t byte, int bit) { return byte < d.size() && (d[byte] >> bit) & 1; }
uint8_t U8(const std::vector<uint8_t>& d, size_t at) { return at < d.size() ? d[at] : 0; }
uint16_t U16(const std::vector<uint8_t>& d, size_t at) { return static_cast<uint16_t>((U8(d, at) << 8) | U8(d, at + 1)); }
uint32_t U32(const std::vector<uint8_t>& d, size_t at) {
  return (static_cast<uint32_t>(U16(d, at)) << 16) | U16(d, at + 2);
}
uint64_t U64(const std::vector<uint8_t>& d, size_t at) { return (static_cast<uint64_t>(U32(d, at)) << 32) | U32(d, at + 4); }

std::string Hex16(uint16_t v) {
  char b[8];
  std::snprintf(b, sizeof b, "0x%04X", v);
  return b;
}

// Feature data offsets below are relative to the descriptor start minus its 4-byte header,
// i.e. the spec's byte 4 is data[0].
SscFeature ParseSsc(uint16_t code, const std::vector<uint8_t>& d) {
  SscFeature f;
  f.code = code;
  f.base_com_id = U16(d, 0);
  f.num_com_ids = U16(d, 2);
  f.range_crossing = Bit(d, 4, 0);
  if (code != feature::kOpal1 && code != feature::kEnterprise) {
    f.num_locking_admins = U16(d, 5);
    f.num_locking_users = U16(d, 7);
    f.initial_c_pin_sid_indicator = U8(d, 9);
    f.c_pin_sid_revert_behavior = U8(d, 10);
  }
  return f;
}

// Minimum data length a known feature needs for its fields (spec lengths).
size_t ExpectedLength(uint16_t code) {
  switch (code) {
    case feature::kTPer:
    case feature::kLocking: return 12;
    case feature::kGeometry: return 28;
    case feature::kEnterprise:
    case feature::kOpal1:
    case feature::kSingleUserMode:
    case feature::kDataStore: return 12;
    case feature::kOpal2:
    case feature::kOpalite:
    case feature::kPyrite1:
    case feature::kPyrite2:
    case feature::kRuby: return 16;
    default: return 0;
  }
}

void PutFeature(std::vector<uint8_t>& out, uint16_t code, uint8_t version, const std::vector<uint8_t>& data) {
  if (data.size() > 255) throw CodedError("TCG_VALUE_TOO_LONG", "feature descriptor longer than 255 bytes");
  out.push_back(static_cast<uint8_t>(code >> 8));
  out.push_back(static_cast<uint8_t>(code));
  out.push_back(static_cast<uint8_t>(version << 4));
  out.push_back(static_cast<uint8_t>(data.size()));
  out.insert(out.end(), data.begin(), data.end());
}

}  // namespace

std::string FeatureName(uint16_t code) {
  switch (code) {
    case feature::kTPer: return "TPer";
    case feature::kLocking: return "Locking";
    case feature::kGeometry: return "Geometry";
    case feature::kEnterprise: return "Enterprise";
    case feature::kOpal1: return "Opal1";
    case feature::kSingleUserMode: return "SingleUserMode";
    case feature::kDataStore: return "DataStore";
    case feature::kOpal2: return "Opal2";
    case feature::kOpalite: return "Opalite";
    case feature::kPyrite1: return "Pyrite1";
    case feature::kPyrite2: return "Pyrite2";
    case feature::kRuby: return "Ruby";
    case feature::kLockingLbaRanges: return "LockingLbaRanges";
    case feature::kBlockSid: return "BlockSID";
    case feature::kNamespaceLocking: return "NamespaceLocking";
    case feature::kDataRemoval: return "DataRemovalMechanism";
    default: return code >= 0xC000 ? "Vendor" : "Unknown";
  }
}

const SscFeature* Discovery::PrimarySsc() const {
  if (opal2) return &*opal2;
  if (opal1) return &*opal1;
  if (other_ssc) return &*other_ssc;
  if (enterprise) return &*enterprise;
  return nullptr;
}

Discovery ParseDiscovery(const uint8_t* data, size_t size) {
  if (size < kHeaderSize)
    throw CodedError("TCG_MALFORMED_DISCOVERY", "Level 0 discovery response of " + std::to_string(size) +
                                                    " bytes is shorter than its 48-byte header");
  Discovery d;
  d.length = ReadBe32(data);
  d.revision = ReadBe32(data + 4);
  d.vendor.assign(data + 16, data + 48);
  if (d.length < kHeaderSize - 4 && d.length != 0)
    throw CodedError("TCG_MALFORMED_DISCOVERY",
                     "Level 0 discovery Length " + std::to_string(d.length) + " is shorter than the header");
  // Length excludes its own 4 bytes; some drives count them: read no further than what arrived.
  size_t end = static_cast<size_t>(d.length) + 4;
  if (end > size) {
    d.warnings.push_back("header Length " + std::to_string(d.length) + " exceeds the " + std::to_string(size) +
                         "-byte response; parsed what is present");
    end = size;
  }
  size_t pos = kHeaderSize;
  while (pos < end) {
    if (end - pos < 4) {
      bool zeros = true;
      for (size_t i = pos; i < end; ++i) zeros = zeros && data[i] == 0;
      if (!zeros) d.warnings.push_back("stray " + std::to_string(end - pos) + " bytes after the last feature");
      break;
    }
    FeatureDescriptor f;
    f.code = ReadBe16(data + pos);
    f.version = data[pos + 2] >> 4;
    f.declared_length = data[pos + 3];
    pos += 4;
    size_t avail = std::min<size_t>(f.declared_length, end - pos);
    f.truncated = avail < f.declared_length;
    f.data.assign(data + pos, data + pos + avail);
    pos += avail;
    if (f.code == 0 && f.declared_length == 0) break;  // zero padding after the last descriptor
    if (f.truncated)
      d.warnings.push_back("feature " + Hex16(f.code) + " (" + FeatureName(f.code) + ") declares " +
                           std::to_string(f.declared_length) + " bytes but only " + std::to_string(avail) +
                           " are present");
    const size_t expected = ExpectedLength(f.code);
    if (expected > 0 && f.data.size() < expected && !f.truncated)
      d.warnings.push_back("feature " + Hex16(f.code) + " (" + FeatureName(f.code) + ") is " +
                           std::to_string(f.data.size()) + " bytes, expected " + std::to_string(expected));
    const auto& b = f.data;
    switch (f.code) {
      case feature::kTPer:
        d.tper = TPerFeature{Bit(b, 0, 0), Bit(b, 0, 1), Bit(b, 0, 2), Bit(b, 0, 3), Bit(b, 0, 4), Bit(b, 0, 6)};
        break;
      case feature::kLocking:
        d.locking = LockingFeature{Bit(b, 0, 0), Bit(b, 0, 1), Bit(b, 0, 2), Bit(b, 0, 3),
                                   Bit(b, 0, 4), Bit(b, 0, 5), Bit(b, 0, 6)};
        break;
      case feature::kGeometry:
        d.geometry = GeometryFeature{Bit(b, 0, 0), U32(b, 8), U64(b, 12), U64(b, 20)};
        break;
      case feature::kOpal1: d.opal1 = ParseSsc(f.code, b); break;
      case feature::kOpal2: d.opal2 = ParseSsc(f.code, b); break;
      case feature::kEnterprise: d.enterprise = ParseSsc(f.code, b); break;
      case feature::kOpalite:
      case feature::kPyrite1:
      case feature::kPyrite2:
      case feature::kRuby:
        if (!d.other_ssc) d.other_ssc = ParseSsc(f.code, b);
        break;
      case feature::kSingleUserMode:
        d.single_user_mode = SingleUserModeFeature{U32(b, 0), Bit(b, 4, 0), Bit(b, 4, 1), Bit(b, 4, 2)};
        break;
      case feature::kDataStore: d.data_store = DataStoreFeature{U16(b, 2), U32(b, 4), U32(b, 8)}; break;
      default: break;  // kept raw in `features`
    }
    d.features.push_back(std::move(f));
  }
  return d;
}

DiscoveryBuilder& DiscoveryBuilder::TPer(const TPerFeature& f) {
  std::vector<uint8_t> d(12, 0);
  d[0] = static_cast<uint8_t>(f.sync | f.async << 1 | f.ack_nak << 2 | f.buffer_mgmt << 3 | f.streaming << 4 |
                              f.comid_mgmt << 6);
  PutFeature(body_, feature::kTPer, 1, d);
  return *this;
}

DiscoveryBuilder& DiscoveryBuilder::Locking(const LockingFeature& f) {
  std::vector<uint8_t> d(12, 0);
  d[0] = static_cast<uint8_t>(f.locking_supported | f.locking_enabled << 1 | f.locked << 2 |
                              f.media_encryption << 3 | f.mbr_enabled << 4 | f.mbr_done << 5 |
                              f.mbr_shadowing_not_supported << 6);
  PutFeature(body_, feature::kLocking, 1, d);
  return *this;
}

DiscoveryBuilder& DiscoveryBuilder::Geometry(const GeometryFeature& f) {
  std::vector<uint8_t> d(28, 0);
  d[0] = f.align ? 1 : 0;
  WriteBe32(&d[8], f.logical_block_size);
  WriteBe64(&d[12], f.alignment_granularity);
  WriteBe64(&d[20], f.lowest_aligned_lba);
  PutFeature(body_, feature::kGeometry, 1, d);
  return *this;
}

DiscoveryBuilder& DiscoveryBuilder::Ssc(const SscFeature& f) {
  const bool short_form = f.code == feature::kOpal1 || f.code == feature::kEnterprise;
  std::vector<uint8_t> d(short_form ? 12 : 16, 0);
  WriteBe16(&d[0], f.base_com_id);
  WriteBe16(&d[2], f.num_com_ids);
  d[4] = f.range_crossing ? 1 : 0;
  if (!short_form) {
    WriteBe16(&d[5], f.num_locking_admins);
    WriteBe16(&d[7], f.num_locking_users);
    d[9] = f.initial_c_pin_sid_indicator;
    d[10] = f.c_pin_sid_revert_behavior;
  }
  PutFeature(body_, f.code, 1, d);
  return *this;
}

DiscoveryBuilder& DiscoveryBuilder::SingleUserMode(const SingleUserModeFeature& f) {
  std::vector<uint8_t> d(12, 0);
  WriteBe32(&d[0], f.num_locking_objects);
  d[4] = static_cast<uint8_t>(f.any | f.all << 1 | f.policy << 2);
  PutFeature(body_, feature::kSingleUserMode, 1, d);
  return *this;
}

DiscoveryBuilder& DiscoveryBuilder::DataStore(const DataStoreFeature& f) {
  std::vector<uint8_t> d(12, 0);
  WriteBe16(&d[2], f.max_tables);
  WriteBe32(&d[4], f.max_total_size);
  WriteBe32(&d[8], f.table_size_alignment);
  PutFeature(body_, feature::kDataStore, 1, d);
  return *this;
}

DiscoveryBuilder& DiscoveryBuilder::Raw(uint16_t code, uint8_t version, const std::vector<uint8_t>& data) {
  PutFeature(body_, code, version, data);
  return *this;
}

std::vector<uint8_t> DiscoveryBuilder::Build(size_t pad_to) const {
  std::vector<uint8_t> out(std::max(kHeaderSize + body_.size(), pad_to), 0);
  WriteBe32(&out[0], static_cast<uint32_t>(kHeaderSize - 4 + body_.size()));
  WriteBe32(&out[4], 1);  // data structure revision 0x00000001
  std::copy(body_.begin(), body_.end(), out.begin() + kHeaderSize);
  return out;
}

}  // namespace tcg
}  // namespace kmip_agent
