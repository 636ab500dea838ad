// Token encoding/decoding, Core Spec 3.2.2.3.1 (atoms) and 3.2.2.3.2 (control tokens).
#include "tcg/tokens.h"

#include <algorithm>
#include <cstdio>

#include "core/errors.h"
#include "core/secure.h"

namespace kmip_agent {
namespace tcg {
namespace {

[[noreturn]] void Malformed(size_t offset, const std::string& what) {
  throw CodedError("TCG_MALFORMED_TOKENS", "malformed token stream at byte " + std::to_string(offset) + ": " + what);
}

[[noreturn]] void Unexpected(const std::string& what) { throw CodedError("TCG_UNEXPECTED_VALUE", what); }

constexpr size_t kMaxShort = 15;
constexpr size_t kMaxMedium = 2047;
constexpr size_t kMaxLong = 0xFFFFFF;

}  // namespace

const char* TokenKindName(TokenKind kind) {
  switch (kind) {
    case TokenKind::kUint: return "uint";
    case TokenKind::kInt: return "int";
    case TokenKind::kBytes: return "bytes";
    case TokenKind::kStartList: return "StartList";
    case TokenKind::kEndList: return "EndList";
    case TokenKind::kStartName: return "StartName";
    case TokenKind::kEndName: return "EndName";
    case TokenKind::kCall: return "Call";
    case TokenKind::kEndOfData: return "EndOfData";
    case TokenKind::kEndOfSession: return "EndOfSession";
    case TokenKind::kStartTransaction: return "StartTransaction";
    case TokenKind::kEndTransaction: return "EndTransaction";
    case TokenKind::kEmpty: return "Empty";
  }
  return "?";
}

// ---- TokenWriter ----

TokenWriter::~TokenWriter() { SecureWipe(bytes_.data(), bytes_.size()); }

std::vector<uint8_t> TokenWriter::Take() {
  std::vector<uint8_t> out;
  out.swap(bytes_);
  return out;
}

void TokenWriter::Header(bool is_bytes, bool is_signed, size_t length) {
  const uint8_t b = is_bytes ? 1 : 0;
  const uint8_t s = is_signed ? 1 : 0;
  if (length <= kMaxShort) {
    bytes_.push_back(static_cast<uint8_t>(0x80 | (b << 5) | (s << 4) | length));
  } else if (length <= kMaxMedium) {
    bytes_.push_back(static_cast<uint8_t>(0xC0 | (b << 4) | (s << 3) | (length >> 8)));
    bytes_.push_back(static_cast<uint8_t>(length & 0xFF));
  } else if (length <= kMaxLong) {
    bytes_.push_back(static_cast<uint8_t>(0xE0 | (b << 1) | s));
    bytes_.push_back(static_cast<uint8_t>(length >> 16));
    bytes_.push_back(static_cast<uint8_t>(length >> 8));
    bytes_.push_back(static_cast<uint8_t>(length));
  } else {
    throw CodedError("TCG_VALUE_TOO_LONG", "atom of " + std::to_string(length) + " bytes exceeds a long atom");
  }
}

TokenWriter& TokenWriter::Uint(uint64_t value) {
  if (value <= 63) {
    bytes_.push_back(static_cast<uint8_t>(value));
    return *this;
  }
  size_t n = 8;
  while (n > 1 && ((value >> ((n - 1) * 8)) & 0xFF) == 0) --n;
  Header(false, false, n);
  for (size_t i = n; i-- > 0;) bytes_.push_back(static_cast<uint8_t>(value >> (i * 8)));
  return *this;
}

TokenWriter& TokenWriter::Int(int64_t value) {
  if (value >= -32 && value <= 31) {
    bytes_.push_back(static_cast<uint8_t>(0x40 | (static_cast<uint8_t>(value) & 0x3F)));
    return *this;
  }
  // Shortest two's complement form: drop leading bytes that only repeat the sign.
  const uint64_t u = static_cast<uint64_t>(value);
  size_t n = 8;
  while (n > 1) {
    const uint8_t top = static_cast<uint8_t>(u >> ((n - 1) * 8));
    const uint8_t next = static_cast<uint8_t>(u >> ((n - 2) * 8));
    const bool redundant = (top == 0x00 && (next & 0x80) == 0) || (top == 0xFF && (next & 0x80) != 0);
    if (!redundant) break;
    --n;
  }
  Header(false, true, n);
  for (size_t i = n; i-- > 0;) bytes_.push_back(static_cast<uint8_t>(u >> (i * 8)));
  return *this;
}

TokenWriter& TokenWriter::Bytes(const uint8_t* data, size_t size) {
  Header(true, false, size);
  if (size > 0) bytes_.insert(bytes_.end(), data, data + size);
  return *this;
}

TokenWriter& TokenWriter::String(const std::string& text) {
  return Bytes(reinterpret_cast<const uint8_t*>(text.data()), text.size());
}

TokenWriter& TokenWriter::Uid(uint64_t uid) {
  uint8_t b[8];
  for (int i = 0; i < 8; ++i) b[i] = static_cast<uint8_t>(uid >> ((7 - i) * 8));
  return Bytes(b, 8);
}

TokenWriter& TokenWriter::Control(uint8_t control) {
  bytes_.push_back(control);
  return *this;
}

TokenWriter& TokenWriter::Raw(const uint8_t* data, size_t size) {
  if (size > 0) bytes_.insert(bytes_.end(), data, data + size);
  return *this;
}

// ---- decoding ----

void WipeTokens(std::vector<Token>& tokens) {
  for (Token& t : tokens) SecureWipe(t.bytes.data(), t.bytes.size());
}

namespace {
// Byte atoms may carry PINs: wipe decoded tokens on every way out unless handed to the caller.
struct TokenWipeGuard {
  std::vector<Token>& tokens;
  bool dismissed = false;
  ~TokenWipeGuard() {
    if (!dismissed) WipeTokens(tokens);
  }
};
}  // namespace

std::vector<Token> DecodeTokens(const uint8_t* data, size_t size) {
  std::vector<Token> out;
  TokenWipeGuard guard{out};  // moves on reallocation carry the byte buffers along, leaving no copies
  size_t pos = 0;
  while (pos < size) {
    const size_t start = pos;
    const uint8_t b = data[pos];
    Token t;
    t.offset = start;
    if ((b & 0x80) == 0) {  // tiny atom: 0 S dddddd
      ++pos;
      if (b & 0x40) {
        t.kind = TokenKind::kInt;
        t.sint = (b & 0x20) ? static_cast<int64_t>(b & 0x3F) - 64 : static_cast<int64_t>(b & 0x3F);
      } else {
        t.kind = TokenKind::kUint;
        t.uint = b & 0x3F;
      }
      out.push_back(std::move(t));
      continue;
    }
    size_t length = 0;
    bool is_bytes = false;
    bool is_signed = false;
    if ((b & 0xC0) == 0x80) {  // short atom: 10 B S nnnn
      is_bytes = b & 0x20;
      is_signed = b & 0x10;
      length = b & 0x0F;
      pos += 1;
    } else if ((b & 0xE0) == 0xC0) {  // medium atom: 110 B S nnn nnnnnnnn
      if (pos + 2 > size) Malformed(start, "medium atom header runs past the end");
      is_bytes = b & 0x10;
      is_signed = b & 0x08;
      length = (static_cast<size_t>(b & 0x07) << 8) | data[pos + 1];
      pos += 2;
    } else if ((b & 0xFC) == 0xE0) {  // long atom: 111000 B S + 3 length bytes
      if (pos + 4 > size) Malformed(start, "long atom header runs past the end");
      is_bytes = b & 0x02;
      is_signed = b & 0x01;
      length = (static_cast<size_t>(data[pos + 1]) << 16) | (static_cast<size_t>(data[pos + 2]) << 8) | data[pos + 3];
      pos += 4;
    } else {
      switch (b) {
        case token::kStartList: t.kind = TokenKind::kStartList; break;
        case token::kEndList: t.kind = TokenKind::kEndList; break;
        case token::kStartName: t.kind = TokenKind::kStartName; break;
        case token::kEndName: t.kind = TokenKind::kEndName; break;
        case token::kCall: t.kind = TokenKind::kCall; break;
        case token::kEndOfData: t.kind = TokenKind::kEndOfData; break;
        case token::kEndOfSession: t.kind = TokenKind::kEndOfSession; break;
        case token::kStartTransaction: t.kind = TokenKind::kStartTransaction; break;
        case token::kEndTransaction: t.kind = TokenKind::kEndTransaction; break;
        case token::kEmpty: t.kind = TokenKind::kEmpty; break;
        default: {
          char hex[8];
          std::snprintf(hex, sizeof hex, "0x%02X", b);
          Malformed(start, std::string("reserved token ") + hex);
        }
      }
      ++pos;
      out.push_back(std::move(t));
      continue;
    }
    if (length > size - pos) Malformed(start, "atom of " + std::to_string(length) + " bytes runs past the end");
    const uint8_t* body = data + pos;
    pos += length;
    if (is_bytes) {
      // The sign bit on a bytes atom means "continued" in the Core Spec; Opal does not use it.
      if (is_signed) Malformed(start, "continued byte sequences are not supported");
      t.kind = TokenKind::kBytes;
      t.bytes.assign(body, body + length);
    } else {
      if (length > 8) Malformed(start, "integer atom wider than 8 bytes");
      uint64_t v = 0;
      for (size_t i = 0; i < length; ++i) v = (v << 8) | body[i];
      if (is_signed) {
        t.kind = TokenKind::kInt;
        if (length > 0 && length < 8 && (body[0] & 0x80)) v |= ~uint64_t{0} << (length * 8);
        t.sint = static_cast<int64_t>(v);
      } else {
        t.kind = TokenKind::kUint;
        t.uint = v;
      }
    }
    out.push_back(std::move(t));
  }
  guard.dismissed = true;
  return out;
}

// ---- Value ----

Value Value::MakeUint(uint64_t v) {
  Value out;
  out.kind_ = Kind::kUint;
  out.uint_ = v;
  return out;
}
Value Value::MakeInt(int64_t v) {
  Value out;
  out.kind_ = Kind::kInt;
  out.sint_ = v;
  return out;
}
Value Value::MakeBytes(std::vector<uint8_t> v) {
  Value out;
  out.kind_ = Kind::kBytes;
  out.bytes_ = std::move(v);
  return out;
}
Value Value::MakeUid(uint64_t uid) {
  std::vector<uint8_t> b(8);
  for (int i = 0; i < 8; ++i) b[i] = static_cast<uint8_t>(uid >> ((7 - i) * 8));
  return MakeBytes(std::move(b));
}
Value Value::MakeList(std::vector<Value> items) {
  Value out;
  out.kind_ = Kind::kList;
  out.items_ = std::move(items);
  return out;
}
Value Value::MakeName(Value name, Value value) {
  Value out;
  out.kind_ = Kind::kName;
  out.items_.push_back(std::move(name));
  out.items_.push_back(std::move(value));
  return out;
}
Value Value::MakeControl(Kind kind) {
  Value out;
  out.kind_ = kind;
  return out;
}

uint64_t Value::AsUint() const {
  if (kind_ == Kind::kUint) return uint_;
  if (kind_ == Kind::kInt && sint_ >= 0) return static_cast<uint64_t>(sint_);
  Unexpected("expected an unsigned integer, got " + Describe());
}
int64_t Value::AsInt() const {
  if (kind_ == Kind::kInt) return sint_;
  if (kind_ == Kind::kUint && uint_ <= static_cast<uint64_t>(INT64_MAX)) return static_cast<int64_t>(uint_);
  Unexpected("expected a signed integer, got " + Describe());
}
const std::vector<uint8_t>& Value::AsBytes() const {
  if (kind_ != Kind::kBytes) Unexpected("expected a byte string, got " + Describe());
  return bytes_;
}
uint64_t Value::AsUid() const {
  const auto& b = AsBytes();
  if (b.size() != 8) Unexpected("expected an 8-byte UID, got " + std::to_string(b.size()) + " bytes");
  uint64_t v = 0;
  for (uint8_t x : b) v = (v << 8) | x;
  return v;
}
const std::vector<Value>& Value::Items() const {
  if (kind_ != Kind::kList) Unexpected("expected a list, got " + Describe());
  return items_;
}
std::vector<Value>& Value::MutableItems() {
  if (kind_ != Kind::kList) Unexpected("expected a list, got " + Describe());
  return items_;
}
const Value& Value::NameKey() const {
  if (kind_ != Kind::kName) Unexpected("expected a name, got " + Describe());
  return items_[0];
}
const Value& Value::NameValue() const {
  if (kind_ != Kind::kName) Unexpected("expected a name, got " + Describe());
  return items_[1];
}

const Value* Value::FindNamed(uint64_t name) const {
  if (kind_ != Kind::kList) return nullptr;
  for (const Value& item : items_) {
    if (item.kind_ == Kind::kName && item.items_[0].kind_ == Kind::kUint && item.items_[0].uint_ == name)
      return &item.items_[1];
  }
  return nullptr;
}

const Value* Value::FindNamed(const std::string& name) const {
  if (kind_ != Kind::kList) return nullptr;
  for (const Value& item : items_) {
    if (item.kind_ != Kind::kName || item.items_[0].kind_ != Kind::kBytes) continue;
    const auto& key = item.items_[0].bytes_;
    if (key.size() == name.size() && std::equal(key.begin(), key.end(), name.begin())) return &item.items_[1];
  }
  return nullptr;
}

std::string Value::Describe() const {
  switch (kind_) {
    case Kind::kUint: return std::to_string(uint_);
    case Kind::kInt: return std::to_string(sint_) + "s";
    case Kind::kBytes: {
      std::string s = "h'";
      char hex[3];
      for (size_t i = 0; i < bytes_.size() && i < 32; ++i) {
        std::snprintf(hex, sizeof hex, "%02x", bytes_[i]);
        s += hex;
      }
      if (bytes_.size() > 32) s += "...";
      return s + "'";
    }
    case Kind::kList: {
      std::string s = "[";
      for (size_t i = 0; i < items_.size(); ++i) s += (i ? " " : "") + items_[i].Describe();
      return s + "]";
    }
    case Kind::kName: return items_[0].Describe() + "=" + items_[1].Describe();
    case Kind::kCall: return "CALL";
    case Kind::kEndOfData: return "EOD";
    case Kind::kEndOfSession: return "EOS";
    case Kind::kStartTransaction: return "STARTTRANSACTION";
    case Kind::kEndTransaction: return "ENDTRANSACTION";
    case Kind::kEmpty: return "EMPTY";
  }
  return "?";
}

void Value::Wipe() {
  SecureWipe(bytes_.data(), bytes_.size());
  for (Value& item : items_) item.Wipe();
}

namespace {

Value AtomValue(const Token& t) {
  switch (t.kind) {
    case TokenKind::kUint: return Value::MakeUint(t.uint);
    case TokenKind::kInt: return Value::MakeInt(t.sint);
    case TokenKind::kBytes: return Value::MakeBytes(t.bytes);
    default: return Value();
  }
}

bool IsAtom(const Token& t) {
  return t.kind == TokenKind::kUint || t.kind == TokenKind::kInt || t.kind == TokenKind::kBytes;
}

// Depth bound so hostile input cannot exhaust the stack.
constexpr size_t kMaxDepth = 64;

Value ParseOne(const std::vector<Token>& tokens, size_t& pos, size_t depth) {
  const Token& t = tokens[pos];
  if (depth > kMaxDepth) Malformed(t.offset, "lists nested deeper than " + std::to_string(kMaxDepth));
  switch (t.kind) {
    case TokenKind::kUint:
    case TokenKind::kInt:
    case TokenKind::kBytes: ++pos; return AtomValue(t);
    case TokenKind::kStartList: {
      ++pos;
      std::vector<Value> items;
      for (;;) {
        if (pos >= tokens.size()) Malformed(t.offset, "list is never closed");
        if (tokens[pos].kind == TokenKind::kEndList) {
          ++pos;
          return Value::MakeList(std::move(items));
        }
        items.push_back(ParseOne(tokens, pos, depth + 1));
      }
    }
    case TokenKind::kStartName: {
      ++pos;
      if (pos >= tokens.size() || !IsAtom(tokens[pos])) Malformed(t.offset, "a name must start with an atom");
      Value name = AtomValue(tokens[pos++]);
      if (pos >= tokens.size() || tokens[pos].kind == TokenKind::kEndName)
        Malformed(t.offset, "a name has no value");
      Value value = ParseOne(tokens, pos, depth + 1);
      if (pos >= tokens.size() || tokens[pos].kind != TokenKind::kEndName)
        Malformed(t.offset, "a name is not closed by EndName");
      ++pos;
      return Value::MakeName(std::move(name), std::move(value));
    }
    case TokenKind::kEndList: Malformed(t.offset, "EndList without StartList");
    case TokenKind::kEndName: Malformed(t.offset, "EndName without StartName");
    case TokenKind::kCall: ++pos; return Value::MakeControl(Value::Kind::kCall);
    case TokenKind::kEndOfData: ++pos; return Value::MakeControl(Value::Kind::kEndOfData);
    case TokenKind::kEndOfSession: ++pos; return Value::MakeControl(Value::Kind::kEndOfSession);
    case TokenKind::kStartTransaction: ++pos; return Value::MakeControl(Value::Kind::kStartTransaction);
    case TokenKind::kEndTransaction: ++pos; return Value::MakeControl(Value::Kind::kEndTransaction);
    case TokenKind::kEmpty: ++pos; return Value::MakeControl(Value::Kind::kEmpty);
  }
  Malformed(t.offset, "unknown token");
}

}  // namespace

std::vector<Value> ParseValues(const uint8_t* data, size_t size) {
  std::vector<Token> tokens = DecodeTokens(data, size);
  TokenWipeGuard guard{tokens};
  return ParseValues(tokens);
}

std::vector<Value> ParseValues(const std::vector<Token>& tokens) {
  std::vector<Value> out;
  size_t pos = 0;
  while (pos < tokens.size()) out.push_back(ParseOne(tokens, pos, 0));
  return out;
}

void EncodeValue(const Value& value, TokenWriter& out) {
  switch (value.kind()) {
    case Value::Kind::kUint: out.Uint(value.AsUint()); return;
    case Value::Kind::kInt: out.Int(value.AsInt()); return;
    case Value::Kind::kBytes: out.Bytes(value.AsBytes()); return;
    case Value::Kind::kList:
      out.StartList();
      for (const Value& item : value.Items()) EncodeValue(item, out);
      out.EndList();
      return;
    case Value::Kind::kName:
      out.StartName();
      EncodeValue(value.NameKey(), out);
      EncodeValue(value.NameValue(), out);
      out.EndName();
      return;
    case Value::Kind::kCall: out.Call(); return;
    case Value::Kind::kEndOfData: out.EndOfData(); return;
    case Value::Kind::kEndOfSession: out.EndOfSession(); return;
    case Value::Kind::kStartTransaction: out.StartTransaction(); return;
    case Value::Kind::kEndTransaction: out.EndTransaction(); return;
    case Value::Kind::kEmpty: out.Empty(); return;
  }
}

}  // namespace tcg
}  // namespace kmip_agent
