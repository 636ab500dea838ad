/**
 * A failover group: an ordered list of KMIP servers holding the same keys. Requests go down the list,
 * moving on when a server cannot be reached, fails TLS, times out or answers garbage; a server that just
 * failed is tried last for a cooldown, then the list order applies again (fail back to the first).
 * A refusal from a healthy server (KmipOperationError) is the answer and does not fail over. Non-idempotent operations (Create, Register, ReKey, Destroy...) move on only when the
 * failure happened before the request could have reached the server.
 */
import { KmipClient, type KmipClientOptions } from './client.js';
import { KmipError, KmipOperationError } from './errors.js';
import type { BatchRequest } from './operations.js';
import { KmipOperationsApi, type CallOptions, type Results } from './api.js';
import { formatVersion } from './fields.js';
import { QueryFunction } from './spec.js';
import type { TlsEndpoint } from './connection.js';

export interface ServerHealth {
  endpoint: string;
  lastSuccess?: Date;
  lastFailure?: { at: Date; code: string; message: string };
  /** Round trip of the last request answered (any result), in milliseconds. */
  latencyMs?: number;
  protocolVersion?: string;
}

export interface ConnectionTest {
  endpoint: string;
  ok: boolean;
  latencyMs: number;
  protocolVersion?: string;
  tlsVersion?: string;
  /** `hint`: what to do next, when the library knows (e.g. a client certificate without EKU clientAuth). */
  error?: { code: string; message: string; hint?: string };
}

/** One server tried for one request (see `onAttempt`): failover is never silent. */
export interface ServerAttempt {
  endpoint: string;
  /** `answered`: the server gave a KMIP answer (success or refusal); `failed`: it was passed over. */
  outcome: 'answered' | 'failed';
  /** The failure's code (or the refusal's, for an answer that refused the request). */
  code?: string;
  message?: string;
  latencyMs: number;
  /** Tried late because it failed within the cooldown. */
  demoted?: boolean;
}

export interface KmipProviderOptions extends Omit<KmipClientOptions, 'host' | 'port'> {
  /** Servers in failover order; each may override the shared TLS settings (e.g. its own servername). */
  servers: (Pick<TlsEndpoint, 'host' | 'port'> & Partial<KmipClientOptions>)[];
  /**
   * How long a server that just failed is tried only after the others (default 30 s). Afterwards the
   * list order applies again, so the group returns to its first server once it recovers.
   */
  cooldownMs?: number;
  /**
   * Called for every server a request is tried on, in order, with why it was passed over. The error
   * thrown when no server could serve the request carries the same list as `attempts` (details/JSON).
   */
  onAttempt?: (attempt: ServerAttempt) => void;
}

export class KmipProvider extends KmipOperationsApi {
  private readonly clients: KmipClient[];
  private readonly healthByIndex: ServerHealth[];
  private readonly cooldownMs: number;
  private readonly onAttempt: ((attempt: ServerAttempt) => void) | undefined;
  private lastServed = 0;

  constructor(options: KmipProviderOptions) {
    super();
    if (options.servers.length === 0)
      throw new KmipError('a KMIP provider needs at least one server', 'CONFIG_KMIP_NO_SERVER');
    const { servers, cooldownMs, onAttempt, ...shared } = options;
    this.cooldownMs = cooldownMs ?? 30_000;
    this.onAttempt = onAttempt;
    this.clients = servers.map((server) => new KmipClient({ ...shared, ...server }));
    this.healthByIndex = this.clients.map((c) => ({ endpoint: c.endpoint }));
  }

  /** Per-server health, in failover order. */
  health(): ServerHealth[] {
    return this.healthByIndex.map((h) => ({ ...h }));
  }

  /** The server that answered the last request. */
  get activeEndpoint(): string {
    return this.clients[this.lastServed]!.endpoint;
  }

  /** List order, except that servers which failed within the cooldown (and not since succeeded) go last. */
  private attemptOrder(): { index: number; demoted: boolean }[] {
    const now = Date.now();
    const cooling = (i: number) => {
      const h = this.healthByIndex[i]!;
      if (!h.lastFailure || now - h.lastFailure.at.getTime() >= this.cooldownMs) return false;
      return !h.lastSuccess || h.lastSuccess < h.lastFailure.at;
    };
    const indexes = this.clients.map((_, i) => i);
    return [
      ...indexes.filter((i) => !cooling(i)).map((index) => ({ index, demoted: false })),
      ...indexes.filter(cooling).map((index) => ({ index, demoted: true })),
    ];
  }

  override async batch<const R extends readonly BatchRequest[]>(
    requests: R,
    options?: CallOptions,
  ): Promise<Results<R>> {
    const idempotent = requests.every((r) => r.spec.idempotent);
    const failures: KmipError[] = [];
    const attempts: ServerAttempt[] = [];
    const record = (attempt: ServerAttempt) => {
      attempts.push(attempt);
      this.onAttempt?.(attempt);
    };
    for (const { index, demoted } of this.attemptOrder()) {
      const client = this.clients[index]!;
      const started = performance.now();
      const tried = (outcome: ServerAttempt['outcome'], error?: KmipError): ServerAttempt => ({
        endpoint: client.endpoint,
        outcome,
        ...(error ? { code: error.code, message: error.message } : {}),
        latencyMs: performance.now() - started,
        ...(demoted ? { demoted } : {}),
      });
      try {
        const results = await client.batch(requests, options);
        this.recordSuccess(index, started);
        this.lastServed = index;
        record(tried('answered'));
        return results;
      } catch (error) {
        if (error instanceof KmipOperationError) {
          // The server answered and refused: that is the answer, no failover.
          record(tried('answered', error));
          throw error;
        }
        if (!(error instanceof KmipError)) throw error;
        this.recordFailure(index, error);
        failures.push(error);
        record(tried('failed', error));
        // Unsent requests may go elsewhere; a sent Create/Register/Destroy may have happened: never resend it.
        if (!idempotent && error.requestSent !== false) throw withAttempts(error, error.message, attempts);
      }
    }
    // The group's code is the last failure's, but "refused" only when every server refused: a caller that
    // retries refusals quickly (nothing listening costs nothing) must not hammer a server that is timing out.
    const last = failures.findLast((f) => f.code !== 'KMIP_CONNECTION_REFUSED') ?? failures.at(-1)!;
    const message =
      failures.length === 1
        ? last.message
        : `no KMIP server of the group answered: ${failures.map((f) => f.message).join('; ')}`;
    throw withAttempts(last, message, attempts, failures.length === 1 ? last : new AggregateError(failures));
  }

  /** Connects to every server (each on its own), negotiates and runs a Query; never throws. */
  async testConnection(): Promise<ConnectionTest[]> {
    return Promise.all(
      this.clients.map(async (client, index): Promise<ConnectionTest> => {
        const started = performance.now();
        try {
          const version = await client.connect();
          await client.query([QueryFunction.QueryOperations]);
          this.recordSuccess(index, started);
          const test: ConnectionTest = {
            endpoint: client.endpoint,
            ok: true,
            latencyMs: performance.now() - started,
            protocolVersion: formatVersion(version),
          };
          if (client.tlsVersion) test.tlsVersion = client.tlsVersion;
          return test;
        } catch (error) {
          const e = error instanceof KmipError ? error : new KmipError(String(error), 'KMIP_CONNECTION_FAILED');
          this.recordFailure(index, e);
          return {
            endpoint: client.endpoint,
            ok: false,
            latencyMs: performance.now() - started,
            error: { code: e.code, message: e.message, ...(e.hint === undefined ? {} : { hint: e.hint }) },
          };
        }
      }),
    );
  }

  close(): void {
    for (const client of this.clients) client.close();
  }

  private recordSuccess(index: number, started: number): void {
    const health = this.healthByIndex[index]!;
    health.lastSuccess = new Date();
    health.latencyMs = performance.now() - started;
    const version = this.clients[index]!.protocolVersion;
    if (version) health.protocolVersion = formatVersion(version);
  }

  private recordFailure(index: number, error: KmipError): void {
    this.healthByIndex[index]!.lastFailure = { at: new Date(), code: error.code, message: error.message };
  }
}

/** The failure the caller sees: `last`'s code, hint and `requestSent`, plus every attempt. */
function withAttempts(last: KmipError, message: string, attempts: ServerAttempt[], cause: unknown = last): KmipError {
  const error = new KmipError(message, last.code, {
    cause,
    details: { attempts: attempts.map((a) => ({ ...a })) },
    ...(last.hint === undefined ? {} : { hint: last.hint }),
  });
  if (last.requestSent !== undefined) error.requestSent = last.requestSent;
  return error;
}
