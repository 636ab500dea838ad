// Method status names, Core Spec 5.1.5 Table 166.
#include "tcg/status.h"

#include <cstdio>

#include "core/errors.h"

namespace kmip_agent {
namespace tcg {

std::string StatusName(uint32_t s) {
  switch (s) {
    case status::kSuccess: return "SUCCESS";
    case status::kNotAuthorized: return "NOT_AUTHORIZED";
    case status::kObsolete:
    case status::kObsolete0D:
    case status::kObsolete0E: return "OBSOLETE";
    case status::kSpBusy: return "SP_BUSY";
    case status::kSpFailed: return "SP_FAILED";
    case status::kSpDisabled: return "SP_DISABLED";
    case status::kSpFrozen: return "SP_FROZEN";
    case status::kNoSessionsAvailable: return "NO_SESSIONS_AVAILABLE";
    case status::kUniquenessConflict: return "UNIQUENESS_CONFLICT";
    case status::kInsufficientSpace: return "INSUFFICIENT_SPACE";
    case status::kInsufficientRows: return "INSUFFICIENT_ROWS";
    case status::kInvalidParameter: return "INVALID_PARAMETER";
    case status::kTperMalfunction: return "TPER_MALFUNCTION";
    case status::kTransactionFailure: return "TRANSACTION_FAILURE";
    case status::kResponseOverflow: return "RESPONSE_OVERFLOW";
    case status::kAuthorityLockedOut: return "AUTHORITY_LOCKED_OUT";
    case status::kFail: return "FAIL";
    default: {
      char buf[32];
      std::snprintf(buf, sizeof buf, "UNKNOWN_STATUS_0x%02X", s);
      return buf;
    }
  }
}

std::string StatusErrorCode(uint32_t s) { return "TCG_" + StatusName(s); }

std::string StatusDescription(uint32_t s) {
  switch (s) {
    case status::kSuccess: return "success";
    case status::kNotAuthorized: return "not authorized (wrong PIN or the authority may not do this)";
    case status::kSpBusy: return "the SP is busy (another session is open)";
    case status::kSpFailed: return "the SP has failed";
    case status::kSpDisabled: return "the SP is disabled";
    case status::kSpFrozen: return "the SP is frozen";
    case status::kNoSessionsAvailable: return "no sessions available";
    case status::kUniquenessConflict: return "uniqueness conflict";
    case status::kInsufficientSpace: return "insufficient space";
    case status::kInsufficientRows: return "insufficient rows";
    case status::kInvalidParameter: return "invalid parameter";
    case status::kTperMalfunction: return "the TPer malfunctioned";
    case status::kTransactionFailure: return "transaction failure";
    case status::kResponseOverflow: return "response overflow";
    case status::kAuthorityLockedOut:
      return "the authority is locked out after too many failed attempts (power cycle the drive to reset)";
    case status::kFail: return "failed";
    default: return "status " + StatusName(s);
  }
}

void ThrowIfFailed(uint32_t s, const std::string& context) {
  if (s == status::kSuccess) return;
  throw CodedError(StatusErrorCode(s), context + ": " + StatusDescription(s), static_cast<int>(s));
}

bool RefusesAuthentication(uint32_t s) { return s == status::kNotAuthorized || s == status::kAuthorityLockedOut; }

void ThrowIfAuthenticationFailed(uint32_t s, const std::string& context) {
  if (s == status::kSuccess) return;
  CodedError error(StatusErrorCode(s), context + ": " + StatusDescription(s), static_cast<int>(s));
  if (RefusesAuthentication(s)) error.MarkAuthRefused();
  throw error;
}

}  // namespace tcg
}  // namespace kmip_agent
