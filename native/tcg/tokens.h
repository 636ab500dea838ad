// TCG Storage data stream tokens (TCG Storage Architecture Core Spec 2.01, 3.2.2.3 "Tokens"):
// atoms (tiny / short / medium / long; unsigned, signed or bytes) and the control tokens
// (StartList F0, EndList F1, StartName F2, EndName F3, Call F8, EndOfData F9, EndOfSession FA,
// StartTransaction FB, EndTransaction FC, Empty FF).
//
// Three layers, all usable by the host stack and by the emulated TPer:
//   TokenWriter  - appends tokens to a byte stream, always choosing the shortest atom (3.2.2.3.1).
//   DecodeTokens - splits a byte stream into a flat token list; malformed input throws
//                  CodedError("TCG_MALFORMED_TOKENS").
//   Value        - a tree (lists nested, names as key/value pairs) built from tokens by ParseValues,
//                  written back by EncodeValue; unbalanced lists/names throw TCG_MALFORMED_TOKENS.
// Buffers that may carry PINs are wiped by their owners (TokenWriter wipes its buffer when destroyed).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace kmip_agent {
namespace tcg {

namespace token {
constexpr uint8_t kStartList = 0xF0;
constexpr uint8_t kEndList = 0xF1;
constexpr uint8_t kStartName = 0xF2;
constexpr uint8_t kEndName = 0xF3;
constexpr uint8_t kCall = 0xF8;
constexpr uint8_t kEndOfData = 0xF9;
constexpr uint8_t kEndOfSession = 0xFA;
constexpr uint8_t kStartTransaction = 0xFB;
constexpr uint8_t kEndTransaction = 0xFC;
constexpr uint8_t kEmpty = 0xFF;
}  // namespace token

enum class TokenKind : uint8_t {
  kUint,
  kInt,
  kBytes,
  kStartList,
  kEndList,
  kStartName,
  kEndName,
  kCall,
  kEndOfData,
  kEndOfSession,
  kStartTransaction,
  kEndTransaction,
  kEmpty,
};

const char* TokenKindName(TokenKind kind);

// One decoded token. For kUint `uint` holds the value, for kInt `sint`, for kBytes `bytes`.
struct Token {
  TokenKind kind = TokenKind::kEmpty;
  uint64_t uint = 0;
  int64_t sint = 0;
  std::vector<uint8_t> bytes;
  size_t offset = 0;  // where it started in the decoded stream (for error messages)
};

// Appends encoded tokens. Integers use the shortest atom that holds them (tiny 0..63 / -32..31,
// else short). Byte strings use short (<=15), medium (<=2047) or long (<=16 MiB - 1) atoms.
class TokenWriter {
 public:
  TokenWriter() = default;
  TokenWriter(const TokenWriter&) = delete;
  TokenWriter& operator=(const TokenWriter&) = delete;
  ~TokenWriter();

  TokenWriter& Uint(uint64_t value);
  TokenWriter& Int(int64_t value);
  TokenWriter& Bool(bool value) { return Uint(value ? 1 : 0); }
  TokenWriter& Bytes(const uint8_t* data, size_t size);
  TokenWriter& Bytes(const std::vector<uint8_t>& data) { return Bytes(data.data(), data.size()); }
  TokenWriter& String(const std::string& text);
  // An 8-byte UID (table row, method, authority, SP) as a bytes atom.
  TokenWriter& Uid(uint64_t uid);
  TokenWriter& StartList() { return Control(token::kStartList); }
  TokenWriter& EndList() { return Control(token::kEndList); }
  TokenWriter& StartName() { return Control(token::kStartName); }
  TokenWriter& EndName() { return Control(token::kEndName); }
  TokenWriter& Call() { return Control(token::kCall); }
  TokenWriter& EndOfData() { return Control(token::kEndOfData); }
  TokenWriter& EndOfSession() { return Control(token::kEndOfSession); }
  TokenWriter& StartTransaction() { return Control(token::kStartTransaction); }
  TokenWriter& EndTransaction() { return Control(token::kEndTransaction); }
  TokenWriter& Empty() { return Control(token::kEmpty); }
  TokenWriter& Control(uint8_t control);
  // Appends already-encoded token bytes as they are.
  TokenWriter& Raw(const uint8_t* data, size_t size);

  // Named values: StartName <name> <value> EndName.
  TokenWriter& NamedUint(uint64_t name, uint64_t value) { return StartName().Uint(name).Uint(value).EndName(); }
  TokenWriter& NamedBytes(uint64_t name, const uint8_t* data, size_t size) {
    return StartName().Uint(name).Bytes(data, size).EndName();
  }
  TokenWriter& NamedUid(uint64_t name, uint64_t uid) { return StartName().Uint(name).Uid(uid).EndName(); }

  // The method status list that ends every method call/response: EndOfData [status 0 0].
  TokenWriter& StatusList(uint8_t status) { return EndOfData().StartList().Uint(status).Uint(0).Uint(0).EndList(); }

  const std::vector<uint8_t>& bytes() const { return bytes_; }
  // Hands the buffer over; the caller becomes responsible for wiping it if it holds secrets.
  std::vector<uint8_t> Take();

 private:
  void Header(bool is_bytes, bool is_signed, size_t length);
  std::vector<uint8_t> bytes_;
};

// Splits `size` bytes into tokens. Throws CodedError("TCG_MALFORMED_TOKENS") on reserved token
// bytes, atoms running past the end, or integers wider than 8 bytes.
std::vector<Token> DecodeTokens(const uint8_t* data, size_t size);
inline std::vector<Token> DecodeTokens(const std::vector<uint8_t>& data) { return DecodeTokens(data.data(), data.size()); }

// A value tree. Lists own their items; a Name owns exactly two children (name, value).
class Value {
 public:
  enum class Kind : uint8_t {
    kUint,
    kInt,
    kBytes,
    kList,
    kName,
    kCall,
    kEndOfData,
    kEndOfSession,
    kStartTransaction,
    kEndTransaction,
    kEmpty,
  };

  static Value MakeUint(uint64_t v);
  static Value MakeInt(int64_t v);
  static Value MakeBytes(std::vector<uint8_t> v);
  static Value MakeUid(uint64_t uid);
  static Value MakeList(std::vector<Value> items = {});
  static Value MakeName(Value name, Value value);
  static Value MakeControl(Kind kind);

  Kind kind() const { return kind_; }
  bool IsUint() const { return kind_ == Kind::kUint; }
  bool IsInt() const { return kind_ == Kind::kInt; }
  bool IsBytes() const { return kind_ == Kind::kBytes; }
  bool IsList() const { return kind_ == Kind::kList; }
  bool IsName() const { return kind_ == Kind::kName; }

  // Accessors throw CodedError("TCG_UNEXPECTED_VALUE") when the kind does not match.
  uint64_t AsUint() const;
  int64_t AsInt() const;
  const std::vector<uint8_t>& AsBytes() const;
  // Bytes atom of exactly 8 bytes, read big-endian.
  uint64_t AsUid() const;
  const std::vector<Value>& Items() const;  // list items
  std::vector<Value>& MutableItems();
  const Value& NameKey() const;  // for kName
  const Value& NameValue() const;

  // For a list of Name pairs with integer names: the value named `name`, or nullptr.
  const Value* FindNamed(uint64_t name) const;
  // Same for string names (Properties use strings as names).
  const Value* FindNamed(const std::string& name) const;

  std::string Describe() const;  // short text form for messages and tests

  // Zeroes every byte string in this tree (for trees that carried PINs or keys).
  void Wipe();

 private:
  Kind kind_ = Kind::kEmpty;
  uint64_t uint_ = 0;
  int64_t sint_ = 0;
  std::vector<uint8_t> bytes_;
  std::vector<Value> items_;  // list items, or {name, value} for kName
};

// Builds the tree: top-level values in order. Throws TCG_MALFORMED_TOKENS on an EndList without a
// StartList, an unclosed list, or a Name that is not exactly StartName <atom> <value> EndName.
std::vector<Value> ParseValues(const std::vector<Token>& tokens);
// Decodes and parses; the intermediate tokens (which may hold PINs) are wiped on every path.
std::vector<Value> ParseValues(const uint8_t* data, size_t size);
// Zeroes the byte atoms of decoded tokens.
void WipeTokens(std::vector<Token>& tokens);

void EncodeValue(const Value& value, TokenWriter& out);

}  // namespace tcg
}  // namespace kmip_agent
