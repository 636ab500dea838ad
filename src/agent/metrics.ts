/**
 * The agent's Prometheus metrics, on a Registry of its own (never prom-client's global one, so tests and
 * several agents in one process do not mix): unlock durations, drives and volumes by state, active faults
 * by code, KMIP requests, errors and latency per key server, key operations by result, READY and the boot
 * time, build info. Served at GET /metrics on the API socket and, when configured, written atomically to a
 * node_exporter textfile-collector directory (TextfileExporter).
 *
 * Fed from outside through narrow calls: the provider's attempts (observeKmipAttempt), audit events
 * (observeAudit), READY (markReady); drive states and faults are read from the agent's status at scrape time.
 */
import { join } from 'node:path';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { AuditEvent } from './audit.js';
import type { Clock, Timer } from './clock.js';
import { writeDurably } from './durable-file.js';
import { FAULT_DEFINITIONS, type FaultCode } from './faults.js';

export const TEXTFILE_NAME = 'kmip_agent.prom';

/** As much of the agent's status as the metrics read. */
export interface MetricsStatus {
  ready: boolean;
  drives: { kind: string; state: string }[];
  faults: { code: string }[];
}

/** One server tried for one KMIP request (the provider's onAttempt). */
export interface KmipAttempt {
  endpoint: string;
  outcome: 'answered' | 'failed';
  code?: string;
  latencyMs: number;
}

export class AgentMetrics {
  readonly registry = new Registry();
  private status: (() => MetricsStatus) | undefined;
  private readonly unlockSeconds: Histogram<'kind' | 'result'>;
  private readonly keyOperations: Counter<'operation' | 'result'>;
  private readonly kmipRequests: Counter<'server' | 'outcome'>;
  private readonly kmipErrors: Counter<'server' | 'code'>;
  private readonly kmipSeconds: Histogram<'server'>;
  private readonly bootSeconds: Gauge;

  constructor(options: { version: string }) {
    const registers = [this.registry];
    const read = () => this.status?.();
    new Gauge({
      name: 'kmip_agent_build_info',
      help: 'kmip-agent build: 1, labelled with the version and the Node.js runtime',
      labelNames: ['version', 'node'],
      registers,
    }).set({ version: options.version, node: process.version }, 1);
    this.unlockSeconds = new Histogram({
      name: 'kmip_agent_unlock_duration_seconds',
      help: 'time one drive or volume took to unlock with its key (the drive operation, not the key fetch)',
      labelNames: ['kind', 'result'],
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    this.keyOperations = new Counter({
      name: 'kmip_agent_key_operations_total',
      help: 'key operations of the audit trail, by operation and result',
      labelNames: ['operation', 'result'],
      registers,
    });
    this.kmipRequests = new Counter({
      name: 'kmip_agent_kmip_requests_total',
      help: 'KMIP requests sent per key server: answered, or failed (the server was passed over)',
      labelNames: ['server', 'outcome'],
      registers,
    });
    this.kmipErrors = new Counter({
      name: 'kmip_agent_kmip_errors_total',
      help: 'KMIP requests per key server that failed or were refused, by error code',
      labelNames: ['server', 'code'],
      registers,
    });
    this.kmipSeconds = new Histogram({
      name: 'kmip_agent_kmip_request_duration_seconds',
      help: 'KMIP request latency per key server (until answer or failure)',
      labelNames: ['server'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15, 30],
      registers,
    });
    this.bootSeconds = new Gauge({
      name: 'kmip_agent_boot_duration_seconds',
      help: 'time from daemon start to READY=1',
      registers,
    });
    new Gauge({
      name: 'kmip_agent_ready',
      help: '1 once the daemon told systemd READY=1',
      registers,
      collect() {
        this.set(read()?.ready ? 1 : 0);
      },
    });
    new Gauge({
      name: 'kmip_agent_drives',
      help: 'managed drives (kind opal) and volumes (kind luks) by state',
      labelNames: ['kind', 'state'],
      registers,
      collect() {
        this.reset();
        const counts = new Map<string, { kind: string; state: string; n: number }>();
        for (const d of read()?.drives ?? []) {
          const key = `${d.kind}\0${d.state}`;
          const entry = counts.get(key) ?? { kind: d.kind, state: d.state, n: 0 };
          entry.n += 1;
          counts.set(key, entry);
        }
        for (const c of counts.values()) this.set({ kind: c.kind, state: c.state }, c.n);
      },
    });
    new Gauge({
      name: 'kmip_agent_faults',
      help: 'active faults by code (every known code is listed, 0 when not active)',
      labelNames: ['code', 'severity'],
      registers,
      collect() {
        const active = read()?.faults ?? [];
        for (const [code, definition] of Object.entries(FAULT_DEFINITIONS))
          this.set(
            { code, severity: definition.severity },
            active.filter((f) => f.code === (code as FaultCode)).length,
          );
      },
    });
  }

  /** Where drive states, faults and readiness are read from at scrape time. */
  bindStatus(status: () => MetricsStatus): void {
    this.status = status;
  }

  observeKmipAttempt(attempt: KmipAttempt): void {
    const server = attempt.endpoint;
    this.kmipRequests.inc({ server, outcome: attempt.outcome });
    if (attempt.outcome === 'failed' || attempt.code) this.kmipErrors.inc({ server, code: attempt.code ?? 'UNKNOWN' });
    this.kmipSeconds.observe({ server }, attempt.latencyMs / 1000);
  }

  observeAudit(event: AuditEvent): void {
    this.keyOperations.inc({ operation: event.operation, result: event.result });
    if (event.operation === 'unlock' && event.durationMs !== undefined)
      this.unlockSeconds.observe({ kind: event.kind ?? 'unknown', result: event.result }, event.durationMs / 1000);
  }

  markReady(bootMs: number): void {
    this.bootSeconds.set(bootMs / 1000);
  }

  /** The exposition text (Prometheus text format 0.0.4). */
  text(): Promise<string> {
    return this.registry.metrics();
  }
}

export interface TextfileOptions {
  /** The node_exporter textfile-collector directory. */
  dir: string;
  metrics: AgentMetrics;
  clock: Clock;
  /** Rewritten at least this often (default 15 s), besides on every change. */
  intervalMs?: number;
  onError?: (error: Error) => void;
}

/**
 * Keeps <dir>/kmip_agent.prom current: written on every change and periodically, atomically (node_exporter
 * reads only *.prom, never the temp file beside it), mode 0644 so node_exporter's user can read it.
 * Changes that arrive during a write are coalesced into one more write.
 */
export class TextfileExporter {
  readonly path: string;
  private timer: Timer | undefined;
  private writing: Promise<void> | undefined;
  private dirty = false;
  private stopped = false;
  writes = 0;

  constructor(private readonly options: TextfileOptions) {
    this.path = join(options.dir, TEXTFILE_NAME);
  }

  start(): void {
    this.stopped = false;
    this.changed();
    this.schedule();
  }

  /** Something the metrics show changed: write soon. */
  changed(): void {
    if (this.stopped) return;
    this.dirty = true;
    this.writing ??= this.drain().finally(() => (this.writing = undefined));
  }

  /** Resolves when no write is pending. */
  async flush(): Promise<void> {
    while (this.writing) await this.writing;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.timer?.cancel();
    await this.flush();
  }

  private schedule(): void {
    this.timer = this.options.clock.after(this.options.intervalMs ?? 15_000, () => {
      if (this.stopped) return;
      this.changed();
      this.schedule();
    });
  }

  private async drain(): Promise<void> {
    while (this.dirty) {
      this.dirty = false;
      try {
        await writeDurably(this.path, await this.options.metrics.text(), { mode: 0o644 });
        this.writes += 1;
      } catch (error) {
        this.options.onError?.(error as Error);
      }
    }
  }
}
