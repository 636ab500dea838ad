// State file format: UTF-8 text, one `key value` line each, keys grouped by object, ending in a
// SHA-256 line over everything before it. Text keeps the file inspectable (it holds no secret in
// the clear) and the checksum catches truncation or tampering.
#include "emulator/drive_state.h"

#include <cstdlib>
#include <sstream>

#include "core/errors.h"
#include "emulator/emu_crypto.h"

namespace kmip_agent {
namespace emulator {
namespace {

[[noreturn]] void Corrupt(const std::string& why) { throw CodedError("EMU_STATE_CORRUPT", "state file is corrupt: " + why); }

std::string UidHex(Uid u) {
  char buf[17];
  snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(u));
  return buf;
}

std::string Join(const std::vector<uint32_t>& v) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) out += (i ? "," : "") + std::to_string(v[i]);
  return out.empty() ? "-" : out;
}
std::string JoinUids(const std::vector<Uid>& v) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) out += (i ? "," : "") + UidHex(v[i]);
  return out.empty() ? "-" : out;
}
std::string Hex(const std::vector<uint8_t>& v) { return v.empty() ? "-" : ToHex(v); }
// Strings are stored hex-encoded so any byte is safe.
std::string Str(const std::string& s) {
  return s.empty() ? "-" : ToHex(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

class Writer {
 public:
  void Put(const std::string& key, const std::string& value) { out_ << key << ' ' << value << '\n'; }
  void Put(const std::string& key, uint64_t value) { Put(key, std::to_string(value)); }
  std::string Text() const { return out_.str(); }

 private:
  std::ostringstream out_;
};

void PutPin(Writer& w, const std::string& p, const PinRow& r) {
  w.Put(p + "uid", UidHex(r.uid));
  w.Put(p + "authority", UidHex(r.authority));
  w.Put(p + "common_name", Str(r.common_name));
  w.Put(p + "has_pin", r.has_pin);
  w.Put(p + "salt", Hex(r.salt));
  w.Put(p + "verifier", Hex(r.verifier));
  w.Put(p + "public_key", Hex(r.public_key));
  w.Put(p + "wrapped_private", Hex(r.wrapped_private));
  w.Put(p + "try_limit", r.try_limit);
  w.Put(p + "tries", r.tries);
  w.Put(p + "persistence", r.persistence);
}

void PutAuthority(Writer& w, const std::string& p, const AuthorityRow& a) {
  w.Put(p + "uid", UidHex(a.uid));
  w.Put(p + "name", Str(a.name));
  w.Put(p + "common_name", Str(a.common_name));
  w.Put(p + "is_class", a.is_class);
  w.Put(p + "class", UidHex(a.cls));
  w.Put(p + "enabled", a.enabled);
  w.Put(p + "credential", UidHex(a.credential));
}

class Reader {
 public:
  explicit Reader(const std::string& text) {
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
      size_t sp = line.find(' ');
      if (sp == std::string::npos || sp == 0) Corrupt("malformed line");
      if (!values_.emplace(line.substr(0, sp), line.substr(sp + 1)).second) Corrupt("duplicate key " + line.substr(0, sp));
    }
  }
  bool Has(const std::string& key) const { return values_.count(key) != 0; }
  const std::string& Raw(const std::string& key) const {
    auto it = values_.find(key);
    if (it == values_.end()) Corrupt("missing " + key);
    return it->second;
  }
  uint64_t Num(const std::string& key) const {
    const std::string& v = Raw(key);
    if (v.empty() || v.size() > 20 || v.find_first_not_of("0123456789") != std::string::npos) Corrupt("bad number " + key);
    return std::strtoull(v.c_str(), nullptr, 10);
  }
  bool Bool(const std::string& key) const {
    uint64_t v = Num(key);
    if (v > 1) Corrupt("bad flag " + key);
    return v == 1;
  }
  Uid UidOf(const std::string& key) const { return ParseUid(Raw(key), key); }
  std::vector<uint8_t> Bytes(const std::string& key) const {
    const std::string& v = Raw(key);
    std::vector<uint8_t> out;
    if (v == "-") return out;
    if (!FromHex(v, &out)) Corrupt("bad hex " + key);
    return out;
  }
  std::string Text(const std::string& key) const {
    std::vector<uint8_t> b = Bytes(key);
    return std::string(b.begin(), b.end());
  }
  std::vector<uint32_t> Nums(const std::string& key) const {
    std::vector<uint32_t> out;
    const std::string& v = Raw(key);
    if (v == "-") return out;
    std::istringstream in(v);
    std::string item;
    while (std::getline(in, item, ',')) {
      if (item.empty() || item.size() > 9 || item.find_first_not_of("0123456789") != std::string::npos)
        Corrupt("bad list " + key);
      out.push_back(static_cast<uint32_t>(std::strtoul(item.c_str(), nullptr, 10)));
    }
    return out;
  }
  std::vector<Uid> Uids(const std::string& key) const {
    std::vector<Uid> out;
    const std::string& v = Raw(key);
    if (v == "-") return out;
    std::istringstream in(v);
    std::string item;
    while (std::getline(in, item, ',')) out.push_back(ParseUid(item, key));
    return out;
  }

 private:
  static Uid ParseUid(const std::string& v, const std::string& key) {
    std::vector<uint8_t> b;
    if (v.size() != 16 || !FromHex(v, &b)) Corrupt("bad uid " + key);
    Uid u = 0;
    for (uint8_t x : b) u = u << 8 | x;
    return u;
  }
  std::map<std::string, std::string> values_;
};

PinRow GetPin(const Reader& r, const std::string& p) {
  PinRow row;
  row.uid = r.UidOf(p + "uid");
  row.authority = r.UidOf(p + "authority");
  row.common_name = r.Text(p + "common_name");
  row.has_pin = r.Bool(p + "has_pin");
  row.salt = r.Bytes(p + "salt");
  row.verifier = r.Bytes(p + "verifier");
  row.public_key = r.Bytes(p + "public_key");
  row.wrapped_private = r.Bytes(p + "wrapped_private");
  row.try_limit = static_cast<uint32_t>(r.Num(p + "try_limit"));
  row.tries = static_cast<uint32_t>(r.Num(p + "tries"));
  row.persistence = r.Bool(p + "persistence");
  if (row.has_pin && (row.verifier.size() != 32 || row.salt.size() != 16)) Corrupt("bad PIN verifier " + p);
  return row;
}

AuthorityRow GetAuthority(const Reader& r, const std::string& p) {
  AuthorityRow a;
  a.uid = r.UidOf(p + "uid");
  a.name = r.Text(p + "name");
  a.common_name = r.Text(p + "common_name");
  a.is_class = r.Bool(p + "is_class");
  a.cls = r.UidOf(p + "class");
  a.enabled = r.Bool(p + "enabled");
  a.credential = r.UidOf(p + "credential");
  return a;
}

}  // namespace

PinRow* DriveState::FindPin(Uid row) {
  for (auto& p : admin_pins)
    if (p.uid == row) return &p;
  for (auto& p : locking_pins)
    if (p.uid == row) return &p;
  return nullptr;
}

PinRow* DriveState::PinOfAuthority(Uid authority) {
  for (auto& p : admin_pins)
    if (p.authority == authority) return &p;
  for (auto& p : locking_pins)
    if (p.authority == authority) return &p;
  return nullptr;
}

AuthorityRow* DriveState::FindAuthority(bool locking_sp, Uid authority) {
  for (auto& a : locking_sp ? locking_authorities : admin_authorities)
    if (a.uid == authority) return &a;
  return nullptr;
}

RangeRow* DriveState::FindRangeByLockingUid(Uid u) {
  for (auto& r : ranges)
    if (r.LockingUid() == u) return &r;
  return nullptr;
}

RangeRow* DriveState::FindRangeByKeyUid(Uid u) {
  for (auto& r : ranges)
    if (r.KeyUid() == u) return &r;
  return nullptr;
}

const RangeRow& DriveState::RangeForLba(uint64_t lba) const {
  for (const auto& r : ranges)
    if (r.number != 0 && r.length != 0 && lba >= r.start && lba - r.start < r.length) return r;
  return ranges.at(0);
}

std::string Serialize(const DriveState& s) {
  Writer w;
  w.Put("format", DriveState::kFormatVersion);
  w.Put("serial", Str(s.serial));
  w.Put("drive_id", s.drive_id);
  w.Put("power_epoch", s.power_epoch);
  w.Put("blocks", s.blocks);
  w.Put("salt", Hex(s.salt));
  w.Put("msid", Str(s.msid));
  w.Put("locking_sp_life_cycle", s.locking_sp_life_cycle);
  w.Put("mbr.enable", s.mbr.enable);
  w.Put("mbr.done", s.mbr.done);
  w.Put("mbr.done_on_reset", Join(s.mbr.done_on_reset));
  w.Put("admin_authorities", s.admin_authorities.size());
  for (size_t i = 0; i < s.admin_authorities.size(); ++i)
    PutAuthority(w, "admin_authority." + std::to_string(i) + ".", s.admin_authorities[i]);
  w.Put("admin_pins", s.admin_pins.size());
  for (size_t i = 0; i < s.admin_pins.size(); ++i) PutPin(w, "admin_pin." + std::to_string(i) + ".", s.admin_pins[i]);
  w.Put("locking_authorities", s.locking_authorities.size());
  for (size_t i = 0; i < s.locking_authorities.size(); ++i)
    PutAuthority(w, "locking_authority." + std::to_string(i) + ".", s.locking_authorities[i]);
  w.Put("locking_pins", s.locking_pins.size());
  for (size_t i = 0; i < s.locking_pins.size(); ++i)
    PutPin(w, "locking_pin." + std::to_string(i) + ".", s.locking_pins[i]);
  w.Put("ranges", s.ranges.size());
  for (size_t i = 0; i < s.ranges.size(); ++i) {
    const RangeRow& r = s.ranges[i];
    std::string p = "range." + std::to_string(i) + ".";
    w.Put(p + "number", static_cast<uint64_t>(r.number));
    w.Put(p + "common_name", Str(r.common_name));
    w.Put(p + "start", r.start);
    w.Put(p + "length", r.length);
    w.Put(p + "read_lock_enabled", r.read_lock_enabled);
    w.Put(p + "write_lock_enabled", r.write_lock_enabled);
    w.Put(p + "read_locked", r.read_locked);
    w.Put(p + "write_locked", r.write_locked);
    w.Put(p + "lock_on_reset", Join(r.lock_on_reset));
    w.Put(p + "ace_read", JoinUids(r.ace_read));
    w.Put(p + "ace_write", JoinUids(r.ace_write));
    w.Put(p + "msid_wrap", Hex(r.msid_wrap));
    w.Put(p + "key_generation", r.key_generation);
    w.Put(p + "seals", r.seals.size());
    size_t j = 0;
    for (const auto& [authority, sealed] : r.seals) {
      std::string q = p + "seal." + std::to_string(j++) + ".";
      w.Put(q + "authority", UidHex(authority));
      w.Put(q + "blob", Hex(sealed));
    }
  }
  std::string body = w.Text();
  std::vector<uint8_t> digest = Sha256(reinterpret_cast<const uint8_t*>(body.data()), body.size());
  return body + "sha256 " + ToHex(digest) + "\n";
}

DriveState Deserialize(const std::string& text) {
  size_t tail = text.rfind("sha256 ");
  if (tail == std::string::npos || (tail != 0 && text[tail - 1] != '\n')) Corrupt("no checksum");
  std::string body = text.substr(0, tail);
  std::vector<uint8_t> digest = Sha256(reinterpret_cast<const uint8_t*>(body.data()), body.size());
  if (text.substr(tail) != "sha256 " + ToHex(digest) + "\n") Corrupt("checksum mismatch");
  Reader r(body);
  if (r.Num("format") != DriveState::kFormatVersion) Corrupt("unknown format version");
  DriveState s;
  s.serial = r.Text("serial");
  s.drive_id = r.Raw("drive_id");
  s.power_epoch = r.Raw("power_epoch");
  s.blocks = r.Num("blocks");
  s.salt = r.Bytes("salt");
  s.msid = r.Text("msid");
  s.locking_sp_life_cycle = static_cast<uint8_t>(r.Num("locking_sp_life_cycle"));
  s.mbr.enable = r.Bool("mbr.enable");
  s.mbr.done = r.Bool("mbr.done");
  s.mbr.done_on_reset = r.Nums("mbr.done_on_reset");
  auto count = [&](const char* key) {
    uint64_t n = r.Num(key);
    if (n > 64) Corrupt(std::string("too many ") + key);
    return static_cast<size_t>(n);
  };
  for (size_t i = 0, n = count("admin_authorities"); i < n; ++i)
    s.admin_authorities.push_back(GetAuthority(r, "admin_authority." + std::to_string(i) + "."));
  for (size_t i = 0, n = count("admin_pins"); i < n; ++i)
    s.admin_pins.push_back(GetPin(r, "admin_pin." + std::to_string(i) + "."));
  for (size_t i = 0, n = count("locking_authorities"); i < n; ++i)
    s.locking_authorities.push_back(GetAuthority(r, "locking_authority." + std::to_string(i) + "."));
  for (size_t i = 0, n = count("locking_pins"); i < n; ++i)
    s.locking_pins.push_back(GetPin(r, "locking_pin." + std::to_string(i) + "."));
  for (size_t i = 0, n = count("ranges"); i < n; ++i) {
    RangeRow g;
    std::string p = "range." + std::to_string(i) + ".";
    g.number = static_cast<int>(r.Num(p + "number"));
    if (g.number != static_cast<int>(i)) Corrupt("ranges out of order");
    g.common_name = r.Text(p + "common_name");
    g.start = r.Num(p + "start");
    g.length = r.Num(p + "length");
    g.read_lock_enabled = r.Bool(p + "read_lock_enabled");
    g.write_lock_enabled = r.Bool(p + "write_lock_enabled");
    g.read_locked = r.Bool(p + "read_locked");
    g.write_locked = r.Bool(p + "write_locked");
    g.lock_on_reset = r.Nums(p + "lock_on_reset");
    g.ace_read = r.Uids(p + "ace_read");
    g.ace_write = r.Uids(p + "ace_write");
    g.msid_wrap = r.Bytes(p + "msid_wrap");
    g.key_generation = r.Num(p + "key_generation");
    for (size_t j = 0, m = count((p + "seals").c_str()); j < m; ++j) {
      std::string q = p + "seal." + std::to_string(j) + ".";
      g.seals[r.UidOf(q + "authority")] = r.Bytes(q + "blob");
    }
    s.ranges.push_back(std::move(g));
  }
  if (s.ranges.size() != kNumRanges + 1) Corrupt("wrong number of ranges");
  if (s.salt.size() != 16 || s.blocks == 0 || s.blocks > kMaxBlocks) Corrupt("bad drive geometry or salt");
  for (const RangeRow& g : s.ranges) {
    if (g.start > s.blocks || g.length > s.blocks - g.start) Corrupt("a range extends past the end of the drive");
    if (!g.msid_wrap.empty() && g.msid_wrap.size() != kMediaKeySize + 8) Corrupt("bad MSID wrap");
    for (uint32_t reset : g.lock_on_reset)
      if (reset > kResetProgrammatic) Corrupt("bad LockOnReset");
  }
  for (const auto* pins : {&s.admin_pins, &s.locking_pins}) {
    for (const PinRow& p : *pins) {
      if (!p.public_key.empty() && p.public_key.size() != 32) Corrupt("bad public key");
      if (p.has_pin && p.wrapped_private.size() != 40) Corrupt("bad wrapped private key");
    }
  }
  if (s.locking_sp_life_cycle != kLifeCycleManufactured && s.locking_sp_life_cycle != kLifeCycleManufacturedInactive)
    Corrupt("bad life cycle state");
  return s;
}

}  // namespace emulator
}  // namespace kmip_agent
