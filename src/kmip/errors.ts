/**
 * Typed KMIP failures. Codes are stable; callers switch on them:
 * - KMIP_OPERATION_FAILED: the server answered and refused (KmipOperationError carries its reason);
 *   KMIP_OPERATION_NOT_SUPPORTED when the reason is Operation Not Supported (CLI exit 3).
 * - KMIP_TLS_*: handshake, chain or host name verification failed.
 * - KMIP_CONNECTION_*: could not connect, or the connection dropped.
 * - KMIP_TIMEOUT: no complete answer within the request timeout.
 * - KMIP_PROTOCOL_*: the peer's bytes are not a valid answer to what we sent.
 * Each may carry a `hint`: what to do next, written by this library (never text from the server).
 */
import { KmipAgentError } from './coded-error.js';
import { ResultReason, T, valueName } from './spec.js';

export interface KmipErrorOptions {
  cause?: unknown;
  status?: number;
  details?: Record<string, unknown>;
  /** What to do next (e.g. "reissue the client certificate with extendedKeyUsage clientAuth"). */
  hint?: string;
}

export class KmipError extends KmipAgentError {
  /**
   * False when the failure happened before the request was written (connect, TLS, negotiation): the
   * server cannot have acted on it, so even a Create may be sent elsewhere. Undefined when unknown.
   */
  requestSent?: boolean;
  /** What to do next, for people (the CLI prints it under the message); part of the JSON form. */
  hint?: string;

  constructor(message: string, code: string, options?: KmipErrorOptions) {
    super(message, code, options);
    if (options?.hint !== undefined) this.hint = options.hint;
  }

  override details(): Record<string, unknown> | undefined {
    const base = super.details();
    return this.hint === undefined ? base : { ...base, hint: this.hint };
  }

  /** True when the failure is about reaching the server (failover may help), not about the request. */
  get isTransport(): boolean {
    return isTransportCode(this.code);
  }
}

export function isTransportCode(code: string): boolean {
  return code === 'KMIP_TIMEOUT' || code.startsWith('KMIP_TLS_') || code.startsWith('KMIP_CONNECTION_');
}

export interface ResultReasonInfo {
  /** Registry name, e.g. "ItemNotFound" (hex string for values the registry does not know). */
  name: string;
  code: number;
}

/** The server processed the request item and refused it. */
export class KmipOperationError extends KmipError {
  readonly operation: string;
  readonly resultStatus: { name: string; code: number };
  readonly resultReason?: ResultReasonInfo;
  readonly resultMessage?: string;

  constructor(
    operation: number,
    resultStatus: number,
    resultReason: number | undefined,
    resultMessage: string | undefined,
    /** Set when the server lacks the operation but refused it with another reason (e.g. Invalid Message). */
    notSupported = false,
  ) {
    const op = valueName(T.Operation, operation);
    const reason =
      resultReason === undefined ? undefined : { name: valueName(T.ResultReason, resultReason), code: resultReason };
    const status = valueName(T.ResultStatus, resultStatus);
    const text = `KMIP ${op} failed: ${reason ? reason.name : status}` + (resultMessage ? ` (${resultMessage})` : '');
    super(
      text,
      notSupported || resultReason === ResultReason.OperationNotSupported
        ? 'KMIP_OPERATION_NOT_SUPPORTED'
        : 'KMIP_OPERATION_FAILED',
      {
        ...(resultReason === undefined ? {} : { status: resultReason }),
        ...(resultReason === ResultReason.AuthenticationNotSuccessful ? { hint: AUTHENTICATION_HINT } : {}),
      },
    );
    this.operation = op;
    this.resultStatus = { name: status, code: resultStatus };
    if (reason) this.resultReason = reason;
    if (resultMessage !== undefined) this.resultMessage = resultMessage;
  }

  /** The server's answer, added to the JSON form. */
  override details(): Record<string, unknown> {
    return {
      ...super.details(),
      operation: this.operation,
      resultStatus: this.resultStatus.name,
      resultReason: this.resultReason?.name,
      resultMessage: this.resultMessage,
    };
  }
}

/**
 * PyKMIP (and others) answer every request with Authentication Not Successful when the client
 * certificate lacks extendedKeyUsage clientAuth, or names an identity the server does not know.
 */
export const AUTHENTICATION_HINT =
  'the server did not accept this client certificate: it needs extendedKeyUsage clientAuth (reissue it with EKU clientAuth) and a subject the server knows';

/** True when `e` is a server refusal with the given Result Reason. */
export function hasResultReason(e: unknown, reason: number): e is KmipOperationError {
  return e instanceof KmipOperationError && e.resultReason?.code === reason;
}
