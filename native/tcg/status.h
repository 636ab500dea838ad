// Method status codes (TCG Storage Architecture Core Spec 2.01, 5.1.5 "Method Status Codes").
// Each maps to a stable error code "TCG_<NAME>" (e.g. 0x01 -> TCG_NOT_AUTHORIZED) carried with the
// numeric status, for both the host (errors to callers) and the emulated TPer (status to send).
#pragma once
#include <cstdint>
#include <string>

namespace kmip_agent {
namespace tcg {

namespace status {
constexpr uint8_t kSuccess = 0x00;
constexpr uint8_t kNotAuthorized = 0x01;
constexpr uint8_t kObsolete = 0x02;
constexpr uint8_t kSpBusy = 0x03;
constexpr uint8_t kSpFailed = 0x04;
constexpr uint8_t kSpDisabled = 0x05;
constexpr uint8_t kSpFrozen = 0x06;
constexpr uint8_t kNoSessionsAvailable = 0x07;
constexpr uint8_t kUniquenessConflict = 0x08;
constexpr uint8_t kInsufficientSpace = 0x09;
constexpr uint8_t kInsufficientRows = 0x0A;
constexpr uint8_t kInvalidParameter = 0x0C;
constexpr uint8_t kObsolete0D = 0x0D;
constexpr uint8_t kObsolete0E = 0x0E;
constexpr uint8_t kTperMalfunction = 0x0F;
constexpr uint8_t kTransactionFailure = 0x10;
constexpr uint8_t kResponseOverflow = 0x11;
constexpr uint8_t kAuthorityLockedOut = 0x12;
constexpr uint8_t kFail = 0x3F;
}  // namespace status

// "NOT_AUTHORIZED", "SP_BUSY", ...; "UNKNOWN_STATUS_0xNN" for codes the spec does not define.
std::string StatusName(uint32_t status);
// "TCG_" + StatusName(status).
std::string StatusErrorCode(uint32_t status);
// Short human text for messages ("the authority is locked out after too many failed attempts").
std::string StatusDescription(uint32_t status);

// Throws CodedError(StatusErrorCode(status), "<context>: <description>", status) unless SUCCESS.
void ThrowIfFailed(uint32_t status, const std::string& context);

// The answers that refuse an authentication: NOT_AUTHORIZED (wrong proof) and AUTHORITY_LOCKED_OUT.
bool RefusesAuthentication(uint32_t status);

// ThrowIfFailed for the answer to an authentication (StartSession with a HostChallenge,
// Authenticate): a refusal is marked auth_refused, so a wrong PIN is told apart from a method
// the authority may not run, which also answers NOT_AUTHORIZED.
void ThrowIfAuthenticationFailed(uint32_t status, const std::string& context);

}  // namespace tcg
}  // namespace kmip_agent
