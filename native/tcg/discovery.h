// Level 0 discovery (TCG Storage Architecture Core Spec 2.01, 3.3.6; Opal SSC 2.01, 3.1.1):
// IF-RECV protocol 1, ComID 0x0001. A 48-byte header (Length of parameter data[4], revision[4],
// reserved[8], vendor[32]) followed by feature descriptors: code[2], version (high nibble)[1],
// length[1], then `length` bytes of feature data.
//
// ParseDiscovery reads what real drives send, including their quirks (a Length field that counts
// the header itself, a last descriptor cut short): such deviations are recorded in `warnings`,
// not thrown. Only responses too short to hold the header throw TCG_MALFORMED_DISCOVERY.
// DiscoveryBuilder assembles a response (for the emulated TPer and for tests).
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace kmip_agent {
namespace tcg {

namespace feature {
constexpr uint16_t kTPer = 0x0001;
constexpr uint16_t kLocking = 0x0002;
constexpr uint16_t kGeometry = 0x0003;
constexpr uint16_t kEnterprise = 0x0100;
constexpr uint16_t kOpal1 = 0x0200;
constexpr uint16_t kSingleUserMode = 0x0201;
constexpr uint16_t kDataStore = 0x0202;
constexpr uint16_t kOpal2 = 0x0203;
constexpr uint16_t kOpalite = 0x0301;
constexpr uint16_t kPyrite1 = 0x0302;
constexpr uint16_t kPyrite2 = 0x0303;
constexpr uint16_t kRuby = 0x0304;
constexpr uint16_t kLockingLbaRanges = 0x0401;
constexpr uint16_t kBlockSid = 0x0402;
constexpr uint16_t kNamespaceLocking = 0x0403;
constexpr uint16_t kDataRemoval = 0x0404;
}  // namespace feature

// "TPer", "Locking", "Opal2", ...; "Vendor" for 0xC000-0xFFFF, "Unknown" otherwise.
std::string FeatureName(uint16_t code);

struct TPerFeature {
  bool sync = false;
  bool async = false;
  bool ack_nak = false;
  bool buffer_mgmt = false;
  bool streaming = false;
  bool comid_mgmt = false;
};

struct LockingFeature {
  bool locking_supported = false;
  bool locking_enabled = false;
  bool locked = false;
  bool media_encryption = false;
  bool mbr_enabled = false;
  bool mbr_done = false;
  bool mbr_shadowing_not_supported = false;  // Opal 2.01+ bit 6
};

struct GeometryFeature {
  bool align = false;
  uint32_t logical_block_size = 0;
  uint64_t alignment_granularity = 0;
  uint64_t lowest_aligned_lba = 0;
};

// Opal 1/2, Enterprise, Opalite, Pyrite, Ruby: the SSC features that announce ComIDs.
struct SscFeature {
  uint16_t code = 0;
  uint16_t base_com_id = 0;
  uint16_t num_com_ids = 0;
  bool range_crossing = false;
  // Opal 2 / Opalite / Pyrite / Ruby only (0 otherwise).
  uint16_t num_locking_admins = 0;
  uint16_t num_locking_users = 0;
  uint8_t initial_c_pin_sid_indicator = 0;  // 0x00: C_PIN_SID initial = C_PIN_MSID; 0xFF: vendor unique
  uint8_t c_pin_sid_revert_behavior = 0;    // same encoding, after a TPer revert
};

struct SingleUserModeFeature {
  uint32_t num_locking_objects = 0;
  bool any = false;
  bool all = false;
  bool policy = false;
};

struct DataStoreFeature {
  uint16_t max_tables = 0;
  uint32_t max_total_size = 0;
  uint32_t table_size_alignment = 0;
};

struct FeatureDescriptor {
  uint16_t code = 0;
  uint8_t version = 0;
  uint8_t declared_length = 0;   // the descriptor's length byte
  std::vector<uint8_t> data;     // the bytes present (may be fewer than declared_length)
  bool truncated = false;
};

struct Discovery {
  uint32_t length = 0;    // the header's "Length of parameter data"
  uint32_t revision = 0;  // data structure revision (0x00000001)
  std::vector<uint8_t> vendor;  // 32 vendor-specific header bytes
  std::vector<FeatureDescriptor> features;  // every descriptor in order, known or not
  std::optional<TPerFeature> tper;
  std::optional<LockingFeature> locking;
  std::optional<GeometryFeature> geometry;
  std::optional<SscFeature> opal1;
  std::optional<SscFeature> opal2;
  std::optional<SscFeature> enterprise;
  std::optional<SscFeature> other_ssc;  // Opalite / Pyrite / Ruby (first seen)
  std::optional<SingleUserModeFeature> single_user_mode;
  std::optional<DataStoreFeature> data_store;
  std::vector<std::string> warnings;

  // The SSC to talk to: Opal 2, else Opal 1, else another SSC with ComIDs; nullptr if none.
  const SscFeature* PrimarySsc() const;
};

// Throws CodedError("TCG_MALFORMED_DISCOVERY") if `size` < 48 or the revision field is absurd.
Discovery ParseDiscovery(const uint8_t* data, size_t size);
inline Discovery ParseDiscovery(const std::vector<uint8_t>& data) { return ParseDiscovery(data.data(), data.size()); }

// Assembles a discovery response; Build() fills the header Length (excluding its own 4 bytes).
class DiscoveryBuilder {
 public:
  DiscoveryBuilder& TPer(const TPerFeature& f);
  DiscoveryBuilder& Locking(const LockingFeature& f);
  DiscoveryBuilder& Geometry(const GeometryFeature& f);
  // Opal 2 (code 0x0203, version 1, 16 bytes) or Opal 1 (0x0200) etc. by f.code.
  DiscoveryBuilder& Ssc(const SscFeature& f);
  DiscoveryBuilder& SingleUserMode(const SingleUserModeFeature& f);
  DiscoveryBuilder& DataStore(const DataStoreFeature& f);
  DiscoveryBuilder& Raw(uint16_t code, uint8_t version, const std::vector<uint8_t>& data);
  // If pad_to > 0 the response is zero-padded to that size (what a drive returns for a longer read).
  std::vector<uint8_t> Build(size_t pad_to = 0) const;

 private:
  std::vector<uint8_t> body_;
};

}  // namespace tcg
}  // namespace kmip_agent
