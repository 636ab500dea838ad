/**
 * The agent's error base. It is defined in the KMIP library (src/kmip/coded-error.ts), which must stay
 * self-contained to ship as its own npm package: one class, so a KmipError is a KmipAgentError here.
 */
import { KmipAgentError } from './kmip/coded-error.js';

export { KmipAgentError };

/** Errors raised inside the C++ addon arrive as this class (handed to the addon at load). */
export class NativeError extends KmipAgentError {
  /** Set (true) by the addon where a drive refused to authenticate an authority (see OpalError). */
  declare authRefused?: boolean;

  constructor(message: string, code: string) {
    super(message, code);
  }
}

export function isKmipAgentError(e: unknown, code?: string): e is KmipAgentError {
  return e instanceof KmipAgentError && (code === undefined || e.code === code);
}
