/**
 * The one error class of kmip-agent. Every failure a caller can act on carries a stable `code`
 * (e.g. "KMIP_TTLV_BAD_PADDING", "TCG_NOT_AUTHORIZED", "ADDON_NOT_BUILT"); messages may change,
 * codes may not. Layers subclass it to add typed detail (KMIP result reason, TCG status, ...).
 */
export class KmipAgentError extends Error {
  readonly code: string;
  /** Protocol status behind the error (TCG method status, errno, ...), when there is one. */
  declare status?: number;

  /** Extra fields for machine readers, given at construction (subclasses may compute their own). */
  private readonly extra?: Record<string, unknown>;

  constructor(
    message: string,
    code: string,
    options?: { cause?: unknown; status?: number; details?: Record<string, unknown> },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    if (options?.status !== undefined) this.status = options.status;
    if (options?.details !== undefined) this.extra = options.details;
  }

  /** Structured detail for machine readers (e.g. what was tried), added to the JSON form. */
  details(): Record<string, unknown> | undefined {
    return this.extra;
  }

  toJSON(): { code: string; message: string; status?: number; [detail: string]: unknown } {
    return {
      ...this.details(),
      code: this.code,
      message: this.message,
      ...(this.status === undefined ? {} : { status: this.status }),
    };
  }
}
