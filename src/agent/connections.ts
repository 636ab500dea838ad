/**
 * The last connection result per key server endpoint, kept in state.connections for status and support.
 * Written only when an endpoint's outcome changes (ok/failed, or the failure's code), never per request:
 * a daemon retrying a dead server every minute does not rewrite its state file every minute.
 */
import type { ConnectionResult, StateStore } from './state.js';

/** One server tried for one request (KmipProvider's onAttempt) plus what the provider knows of it. */
export interface ConnectionAttempt {
  endpoint: string;
  outcome: 'answered' | 'failed';
  code?: string;
  message?: string;
  latencyMs: number;
  protocolVersion?: string;
}

const errorCode = (r: Pick<ConnectionResult, 'ok' | 'error'>) => (r.ok ? '' : (r.error?.code ?? ''));

export class ConnectionRecorder {
  constructor(
    private readonly state: StateStore,
    private readonly now: () => Date,
    /** False while the state must not be written (e.g. a corrupt file was just put aside). */
    private readonly writable: () => boolean = () => true,
  ) {}

  /** Records `attempt` when it changes what state.connections says of its endpoint; resolves when written. */
  record(attempt: ConnectionAttempt): Promise<void> {
    // A server that answered (even with a refusal of the request) was reachable: the connection is ok.
    const result: ConnectionResult = {
      endpoint: attempt.endpoint,
      at: this.now().toISOString(),
      ok: attempt.outcome === 'answered',
      latencyMs: Math.round(attempt.latencyMs),
      ...(attempt.protocolVersion ? { protocolVersion: attempt.protocolVersion } : {}),
      ...(attempt.outcome === 'failed'
        ? { error: { code: attempt.code ?? 'KMIP_CONNECTION_FAILED', message: attempt.message ?? '' } }
        : {}),
    };
    let known: ConnectionResult | undefined;
    try {
      known = this.state.snapshot().connections.find((c) => c.endpoint === attempt.endpoint);
    } catch {
      return Promise.resolve();
    }
    if (!this.writable() || (known && known.ok === result.ok && errorCode(known) === errorCode(result)))
      return Promise.resolve();
    return this.state
      .update((s) => {
        s.connections = [...s.connections.filter((c) => c.endpoint !== attempt.endpoint), result];
      })
      .then(() => undefined);
  }
}
