/** Typed errors of the drives layer. */
import { KmipAgentError } from '../errors.js';

/**
 * A TCG / Opal failure. `code` is stable: `TCG_<STATUS NAME>` for method status codes
 * (TCG_NOT_AUTHORIZED, TCG_SP_BUSY, TCG_AUTHORITY_LOCKED_OUT, TCG_INVALID_PARAMETER, ...) with the
 * numeric status in `.status`; TCG_MALFORMED_* / TCG_SESSION_* / TCG_TIMEOUT for protocol faults;
 * DRIVE_* for backends (DRIVE_BACKEND_NOT_SUPPORTED, DRIVE_CLOSED, ...).
 */
export class OpalError extends KmipAgentError {
  /** The TCG status name when the drive answered with a method status ("NOT_AUTHORIZED"). */
  readonly statusName?: string;

  /**
   * The drive refused to authenticate the authority: TCG_NOT_AUTHORIZED (a wrong PIN or PSID) or
   * TCG_AUTHORITY_LOCKED_OUT, as the addon marks it where an authentication is answered
   * (StartSession with a HostChallenge, Authenticate, a sed-opal ioctl carrying a key). A
   * NOT_AUTHORIZED for a method the authority may not run is not one. An error wrapping another of
   * the same code keeps its mark.
   */
  readonly authRefused: boolean;

  constructor(
    message: string,
    code: string,
    options?: { cause?: unknown; status?: number; authRefused?: boolean; details?: Record<string, unknown> },
  ) {
    super(message, code, options);
    if (code.startsWith('TCG_') && options?.status !== undefined) this.statusName = code.slice(4);
    const cause = options?.cause as { code?: unknown } | undefined;
    this.authRefused = options?.authRefused ?? (isAuthRefusal(cause) && cause?.code === code);
  }

  /** The JSON form says `authRefused: true` too, for scripts reading `--json` errors. */
  override details(): Record<string, unknown> | undefined {
    const base = super.details();
    return this.authRefused ? { ...base, authRefused: true } : base;
  }
}

/** True for an error the addon marked as a refused authentication (`authRefused`). */
export function isAuthRefusal(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { authRefused?: unknown }).authRefused === true;
}

/** Wraps whatever the native layer threw into an OpalError, keeping code and status. */
export function toOpalError(error: unknown, context?: string): OpalError {
  if (error instanceof OpalError) return error;
  if (error instanceof KmipAgentError) {
    const message = context ? `${context}: ${error.message}` : error.message;
    return new OpalError(message, error.code, { cause: error, status: error.status });
  }
  const message = error instanceof Error ? error.message : String(error);
  return new OpalError(context ? `${context}: ${message}` : message, 'TCG_INTERNAL', { cause: error });
}
