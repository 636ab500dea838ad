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
  error?: { code: string; message: string };
}

export interface KmipProviderOptions extends Omit<KmipClientOptions, 'host' | 'port'> {
  /** Servers in failover order; each may override the shared TLS settings (e.g. its own servername). */
  servers: (Pick<TlsEndpoint, 'host' | 'port'> & Partial<KmipClientOptions>)[];
  /**
   * How long a server that just failed is tried only after the others (default 30 s). Afterwards the
   * list order applies again, so the group returns to its first server once it recovers.
   */
  cooldownMs?: number;
}

export class KmipProvider extends KmipOperationsApi {
  private readonly clients: KmipClient[];
  private readonly healthByIndex: ServerHealth[];
  private readonly cooldownMs: number;
  private lastServed = 0;

  constructor(options: KmipProviderOptions) {
    super();
    if (options.servers.length === 0)
      throw new KmipError('a KMIP provider needs at least one server', 'CONFIG_KMIP_NO_SERVER');
    const { servers, cooldownMs, ...shared } = options;
    this.cooldownMs = cooldownMs ?? 30_000;
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
  private attemptOrder(): number[] {
    const now = Date.now();
    const cooling = (i: number) => {
      const h = this.healthByIndex[i]!;
      if (!h.lastFailure || now - h.lastFailure.at.getTime() >= this.cooldownMs) return false;
      return !h.lastSuccess || h.lastSuccess < h.lastFailure.at;
    };
    const indexes = this.clients.map((_, i) => i);
    return [...indexes.filter((i) => !cooling(i)), ...indexes.filter(cooling)];
  }

  override async batch<const R extends readonly BatchRequest[]>(
    requests: R,
    options?: CallOptions,
  ): Promise<Results<R>> {
    const idempotent = requests.every((r) => r.spec.idempotent);
    const failures: KmipError[] = [];
    for (const index of this.attemptOrder()) {
      const client = this.clients[index]!;
      const started = performance.now();
      try {
        const results = await client.batch(requests, options);
        this.recordSuccess(index, started);
        this.lastServed = index;
        return results;
      } catch (error) {
        if (!(error instanceof KmipError) || error instanceof KmipOperationError) throw error;
        this.recordFailure(index, error);
        failures.push(error);
        // Unsent requests may go elsewhere; a sent Create/Register/Destroy may have happened: never resend it.
        if (!idempotent && error.requestSent !== false) throw error;
      }
    }
    const last = failures.at(-1)!;
    if (failures.length === 1) throw last;
    throw new KmipError(
      `no KMIP server of the group answered: ${failures.map((f) => f.message).join('; ')}`,
      last.code,
      { cause: new AggregateError(failures) },
    );
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
            error: { code: e.code, message: e.message },
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
