// ComPacket / Packet / SubPacket framing (TCG Storage Architecture Core Spec 2.01, 3.2.3):
//   ComPacket header (20 bytes): Reserved[4] ComID[2] ComIDExtension[2] OutstandingData[4]
//                                MinTransfer[4] Length[4]
//   Packet header    (24 bytes): TPerSessionNumber[4] HostSessionNumber[4] SeqNumber[4]
//                                Reserved[2] AckType[2] Acknowledgement[4] Length[4]
//   SubPacket header (12 bytes): Reserved[6] Kind[2] Length[4], then the payload padded with
//                                zeros to a multiple of 4 (padding not counted in Length).
// All fields big-endian. Length fields count the bytes after their header. Used by both the host
// (build calls, parse responses) and the emulated TPer (parse calls, build responses).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace kmip_agent {
namespace tcg {

constexpr size_t kComPacketHeaderSize = 20;
constexpr size_t kPacketHeaderSize = 24;
constexpr size_t kSubPacketHeaderSize = 12;
constexpr size_t kFramingOverhead = kComPacketHeaderSize + kPacketHeaderSize + kSubPacketHeaderSize;

// SubPacket kinds (3.2.3.4.1): 0 = data; 0x8001 = credit control.
constexpr uint16_t kSubPacketData = 0x0000;
constexpr uint16_t kSubPacketCreditControl = 0x8001;

struct SubPacket {
  uint16_t kind = kSubPacketData;
  std::vector<uint8_t> payload;  // without padding
};

struct Packet {
  uint32_t tper_session = 0;  // TPer Session Number (TSN)
  uint32_t host_session = 0;  // Host Session Number (HSN)
  uint32_t seq_number = 0;
  uint16_t ack_type = 0;
  uint32_t acknowledgement = 0;
  std::vector<SubPacket> subpackets;
};

struct ComPacket {
  uint16_t com_id = 0;
  uint16_t com_id_extension = 0;
  uint32_t outstanding_data = 0;  // bytes the TPer still holds for the host (responses only)
  uint32_t min_transfer = 0;      // smallest IF-RECV length that can carry the next response
  std::vector<Packet> packets;    // empty when Length is 0 (nothing ready / nothing to return)
};

// Serialises a ComPacket. If `pad_to` > 0 the result is zero-padded to a multiple of it (a drive
// transfer is usually a multiple of 512 bytes); the padding is outside ComPacket.Length.
std::vector<uint8_t> BuildComPacket(const ComPacket& packet, size_t pad_to = 0);

// Convenience: one Packet with one data SubPacket carrying `payload` (a token stream).
std::vector<uint8_t> BuildComPacket(uint16_t com_id, uint32_t tper_session, uint32_t host_session,
                                    const std::vector<uint8_t>& payload, uint32_t seq_number = 0,
                                    size_t pad_to = 0);

// Parses a ComPacket from `size` bytes (trailing bytes past ComPacket.Length are transfer padding
// and ignored). Throws CodedError("TCG_MALFORMED_COMPACKET") when a header is truncated, a Length
// field claims more bytes than are present, or a SubPacket overruns its Packet.
ComPacket ParseComPacket(const uint8_t* data, size_t size);
inline ComPacket ParseComPacket(const std::vector<uint8_t>& data) { return ParseComPacket(data.data(), data.size()); }

// Big-endian helpers shared by framing and discovery.
inline uint16_t ReadBe16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }
inline uint32_t ReadBe32(const uint8_t* p) {
  return (static_cast<uint32_t>(p[0]) << 24) | (static_cast<uint32_t>(p[1]) << 16) |
         (static_cast<uint32_t>(p[2]) << 8) | p[3];
}
inline uint64_t ReadBe64(const uint8_t* p) {
  return (static_cast<uint64_t>(ReadBe32(p)) << 32) | ReadBe32(p + 4);
}
inline void WriteBe16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
inline void WriteBe32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> ((3 - i) * 8));
}
inline void WriteBe64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> ((7 - i) * 8));
}

}  // namespace tcg
}  // namespace kmip_agent
