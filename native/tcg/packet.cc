// ComPacket framing, Core Spec 3.2.3.
#include "tcg/packet.h"

#include <algorithm>
#include <string>

#include "core/errors.h"
#include "core/secure.h"

namespace kmip_agent {
namespace tcg {
namespace {

[[noreturn]] void Malformed(const std::string& what) {
  throw CodedError("TCG_MALFORMED_COMPACKET", "malformed ComPacket: " + what);
}

size_t Padded4(size_t n) { return (n + 3) & ~size_t{3}; }

}  // namespace

std::vector<uint8_t> BuildComPacket(const ComPacket& packet, size_t pad_to) {
  size_t body = 0;
  for (const Packet& p : packet.packets) {
    body += kPacketHeaderSize;
    for (const SubPacket& s : p.subpackets) body += kSubPacketHeaderSize + Padded4(s.payload.size());
  }
  if (body > 0xFFFFFFFFu) throw CodedError("TCG_VALUE_TOO_LONG", "ComPacket too large");
  size_t total = kComPacketHeaderSize + body;
  if (pad_to > 0 && total % pad_to != 0) total += pad_to - total % pad_to;
  std::vector<uint8_t> out(total, 0);
  uint8_t* h = out.data();
  WriteBe16(h + 4, packet.com_id);
  WriteBe16(h + 6, packet.com_id_extension);
  WriteBe32(h + 8, packet.outstanding_data);
  WriteBe32(h + 12, packet.min_transfer);
  WriteBe32(h + 16, static_cast<uint32_t>(body));
  size_t pos = kComPacketHeaderSize;
  for (const Packet& p : packet.packets) {
    size_t plen = 0;
    for (const SubPacket& s : p.subpackets) plen += kSubPacketHeaderSize + Padded4(s.payload.size());
    uint8_t* ph = out.data() + pos;
    WriteBe32(ph + 0, p.tper_session);
    WriteBe32(ph + 4, p.host_session);
    WriteBe32(ph + 8, p.seq_number);
    WriteBe16(ph + 14, p.ack_type);
    WriteBe32(ph + 16, p.acknowledgement);
    WriteBe32(ph + 20, static_cast<uint32_t>(plen));
    pos += kPacketHeaderSize;
    for (const SubPacket& s : p.subpackets) {
      uint8_t* sh = out.data() + pos;
      WriteBe16(sh + 6, s.kind);
      WriteBe32(sh + 8, static_cast<uint32_t>(s.payload.size()));
      pos += kSubPacketHeaderSize;
      if (!s.payload.empty()) std::copy(s.payload.begin(), s.payload.end(), out.begin() + pos);
      pos += Padded4(s.payload.size());
    }
  }
  return out;
}

std::vector<uint8_t> BuildComPacket(uint16_t com_id, uint32_t tper_session, uint32_t host_session,
                                    const std::vector<uint8_t>& payload, uint32_t seq_number, size_t pad_to) {
  ComPacket cp;
  cp.com_id = com_id;
  Packet p;
  p.tper_session = tper_session;
  p.host_session = host_session;
  p.seq_number = seq_number;
  SubPacket s;
  s.payload = payload;
  p.subpackets.push_back(std::move(s));
  cp.packets.push_back(std::move(p));
  std::vector<uint8_t> out = BuildComPacket(cp, pad_to);
  // The copy of the payload may hold a PIN.
  std::vector<uint8_t>& copy = cp.packets[0].subpackets[0].payload;
  SecureWipe(copy.data(), copy.size());
  return out;
}

ComPacket ParseComPacket(const uint8_t* data, size_t size) {
  if (size < kComPacketHeaderSize)
    Malformed("only " + std::to_string(size) + " bytes, a ComPacket header needs " +
              std::to_string(kComPacketHeaderSize));
  ComPacket cp;
  cp.com_id = ReadBe16(data + 4);
  cp.com_id_extension = ReadBe16(data + 6);
  cp.outstanding_data = ReadBe32(data + 8);
  cp.min_transfer = ReadBe32(data + 12);
  const uint32_t length = ReadBe32(data + 16);
  if (length > size - kComPacketHeaderSize)
    Malformed("Length says " + std::to_string(length) + " bytes but only " +
              std::to_string(size - kComPacketHeaderSize) + " follow the header");
  size_t pos = kComPacketHeaderSize;
  const size_t end = kComPacketHeaderSize + length;
  while (pos < end) {
    if (end - pos < kPacketHeaderSize) {
      // Trailing zero bytes inside Length are tolerated as padding; anything else is an error.
      bool zeros = true;
      for (size_t i = pos; i < end; ++i) zeros = zeros && data[i] == 0;
      if (zeros) break;
      Malformed("truncated Packet header at byte " + std::to_string(pos));
    }
    Packet p;
    const uint8_t* ph = data + pos;
    p.tper_session = ReadBe32(ph + 0);
    p.host_session = ReadBe32(ph + 4);
    p.seq_number = ReadBe32(ph + 8);
    p.ack_type = ReadBe16(ph + 14);
    p.acknowledgement = ReadBe32(ph + 16);
    const uint32_t plen = ReadBe32(ph + 20);
    pos += kPacketHeaderSize;
    if (plen > end - pos)
      Malformed("Packet Length says " + std::to_string(plen) + " bytes but only " + std::to_string(end - pos) +
                " remain in the ComPacket");
    const size_t pend = pos + plen;
    while (pos < pend) {
      if (pend - pos < kSubPacketHeaderSize) {
        bool zeros = true;
        for (size_t i = pos; i < pend; ++i) zeros = zeros && data[i] == 0;
        if (zeros) break;
        Malformed("truncated SubPacket header at byte " + std::to_string(pos));
      }
      SubPacket s;
      s.kind = ReadBe16(data + pos + 6);
      const uint32_t slen = ReadBe32(data + pos + 8);
      pos += kSubPacketHeaderSize;
      if (slen > pend - pos)
        Malformed("SubPacket Length says " + std::to_string(slen) + " bytes but only " + std::to_string(pend - pos) +
                  " remain in the Packet");
      s.payload.assign(data + pos, data + pos + slen);
      // Padding to a multiple of 4 may be cut short only by the end of the Packet.
      pos += std::min(Padded4(slen), pend - pos);
      p.subpackets.push_back(std::move(s));
    }
    pos = pend;
    cp.packets.push_back(std::move(p));
  }
  return cp;
}

}  // namespace tcg
}  // namespace kmip_agent
