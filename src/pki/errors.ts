/**
 * Typed failures of the pki layer. Codes are stable (PKI_*); each message says what is wrong and what to
 * do about it, and `hint` carries the fix alone (the CLI prints it, `--json` includes it).
 */
import { KmipAgentError } from '../errors.js';

export const PKI_CODES = [
  'PKI_PEM_MALFORMED',
  'PKI_KEY_ENCRYPTED',
  'PKI_KEY_PASSPHRASE_WRONG',
  'PKI_KEY_UNSUPPORTED',
  'PKI_KEY_MISMATCH',
  'PKI_NOT_YET_VALID',
  'PKI_EXPIRED',
  'PKI_NO_CLIENT_AUTH',
  'PKI_WEAK_KEY',
  'PKI_WEAK_SIGNATURE',
  'PKI_CHAIN_BROKEN',
  'PKI_BAD_SUBJECT',
  'PKI_BAD_SAN',
  'PKI_BAD_VALIDITY',
] as const;

export type PkiCode = (typeof PKI_CODES)[number];

export class PkiError extends KmipAgentError {
  declare readonly code: PkiCode;
  /** What to do next, for people; part of the JSON form. */
  readonly hint?: string;

  constructor(
    message: string,
    code: PkiCode,
    options?: { cause?: unknown; hint?: string; details?: Record<string, unknown> },
  ) {
    super(message, code, options);
    if (options?.hint !== undefined) this.hint = options.hint;
  }

  override details(): Record<string, unknown> | undefined {
    const base = super.details();
    return this.hint === undefined ? base : { ...base, hint: this.hint };
  }
}

/** A PkiError whose message is "<problem>: <fix>" and whose hint is the fix. */
export function pkiError(
  code: PkiCode,
  problem: string,
  fix: string,
  options?: { cause?: unknown; details?: Record<string, unknown> },
): PkiError {
  return new PkiError(`${problem}: ${fix}`, code, { ...options, hint: fix });
}
