/**
 * The agent: what the daemon, the local API and the CLI ask for. It knows the configuration, the state,
 * the faults and, per managed drive or volume, its current condition; it unlocks what should be unlocked
 * at boot and keeps retrying what is still locked (capped exponential backoff with full jitter) without
 * ever resending a key a drive refused. It constructs nothing: daemon.ts hands it a key source, the
 * unlockers and a clock, so the same logic runs under systemd and in tests.
 */
import type { AgentConfig } from './config.js';
import { retryDelayMs, SERVER_REFUSED_CODE, type Clock, type Random, type Timer } from './clock.js';
import { FaultRegistry, type Fault, type Health } from './faults.js';
import type { KeySource } from './key-source.js';
import type { StateStore } from './state.js';
import {
  unlockTargets,
  type OutcomeState,
  type TargetKind,
  type UnlockOutcome,
  type UnlockTarget,
  type Unlocker,
} from './unlock.js';

/** The logger the agent writes to (pino's shape); key material is never passed to it. */
export interface AgentLog {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

/** A managed drive or volume as operators see it. */
export type TargetState =
  | 'pending'
  | 'unlocked'
  | 'served'
  | 'locked'
  | 'key-not-found'
  | 'key-refused'
  | 'lockout-risk'
  | 'missing'
  | 'not-supported';

export interface TargetStatus {
  id: string;
  kind: TargetKind;
  device: string;
  keyUid: string;
  keyName: string;
  unlockAtBoot: boolean;
  state: TargetState;
  since: Date;
  attempts: number;
  lastError?: { code: string; message: string };
  /** When its key is next due for rotation (rotation-policy.ts); absent when no policy covers it. */
  nextRotation?: Date;
}

export interface AgentStatus {
  ready: boolean;
  /** Boot finished with everything unlocked (`normal`) or at the deadline with something still locked. */
  mode: 'starting' | 'normal' | 'degraded';
  health: Health;
  applianceId: string;
  keyMode: AgentConfig['keyMode'];
  drives: TargetStatus[];
  faults: Fault[];
}

export interface AgentOptions {
  config: AgentConfig;
  state: StateStore;
  keys: KeySource;
  unlockers: Record<TargetKind, Unlocker>;
  clock: Clock;
  random: Random;
  log: AgentLog;
  faults?: FaultRegistry;
  /** Told about progress: one line for systemd's STATUS=. */
  onProgress?: (line: string) => void;
  /** The rotation policy's next due date of a target (status shows it). */
  nextRotation?: (id: string) => Date | undefined;
}

/** Codes that mean the drive refused the key itself: retrying the same key can only burn tries. */
const KEY_REFUSED_CODES = new Set(['DRIVE_PIN_REFUSED', 'DRIVE_PIN_ALREADY_REFUSED', 'LUKS_WRONG_KEY']);
const LOCKOUT_CODES = new Set(['DRIVE_LOCKOUT_RISK', 'TCG_AUTHORITY_LOCKED_OUT']);
const MISSING_CODES = new Set(['DRIVE_NOT_FOUND', 'LUKS_DEVICE_NOT_FOUND', 'EMU_NOT_FOUND', 'EMU_STATE_MISSING']);
const NOT_SUPPORTED_HERE = new Set(['LUKS_DM_NOT_AVAILABLE']);
/** TLS and KMIP authentication refusals: the provider is reachable but will not serve us. */
const isAuthCode = (code: string) =>
  code.startsWith('KMIP_TLS_') || code === 'KMIP_AUTHENTICATION_FAILED' || code === 'KMIP_PERMISSION_DENIED';

/** States from which the agent keeps trying on its own. */
const RETRIED: ReadonlySet<TargetState> = new Set(['pending', 'locked', 'key-not-found', 'missing']);
const DONE: ReadonlySet<TargetState> = new Set(['unlocked', 'served']);
/** Nothing more to do at boot: done, or impossible on this machine (a volume without device-mapper). */
const SETTLED: ReadonlySet<TargetState> = new Set([...DONE, 'not-supported']);

export class Agent {
  readonly faults: FaultRegistry;
  private readonly targets = new Map<string, TargetStatus>();
  private ready = false;
  private retryTimer: Timer | undefined;
  private retryAttempt = 0;
  /** The last run's key fetch found nothing listening at the key server (see boot.refusedRetryCapSeconds). */
  private serverRefused = false;
  private running: Promise<UnlockOutcome[]> | undefined;
  private stopped = false;
  /** Targets no run may unlock (DisableEncryptionAtRest is taking them apart): see hold(). */
  private readonly held = new Set<string>();

  constructor(private readonly options: AgentOptions) {
    this.faults =
      options.faults ??
      new FaultRegistry(
        () => options.clock.now(),
        (e) =>
          (e.type === 'raised' ? options.log.warn : options.log.info)(
            { fault: e.fault.code, subject: e.fault.subject, affects: e.fault.affects, event: `fault_${e.type}` },
            `${e.type === 'raised' ? 'fault' : 'fault cleared'}: ${e.fault.code} (${e.fault.subject}): ${e.fault.summary}`,
          ),
      );
    this.refreshTargets();
  }

  /** Rebuilds the target table from the state (after enrollment or recovery), keeping known conditions. */
  refreshTargets(): void {
    const body = this.options.state.snapshot();
    const now = this.options.clock.now();
    const seen = new Set<string>();
    const add = (
      kind: TargetKind,
      t: { id: string; device: string; key: { uid: string; name: string }; unlockAtBoot: boolean },
    ) => {
      seen.add(t.id);
      const known = this.targets.get(t.id);
      this.targets.set(t.id, {
        id: t.id,
        kind,
        device: t.device,
        keyUid: t.key.uid,
        keyName: t.key.name,
        unlockAtBoot: t.unlockAtBoot,
        state: known && known.keyUid === t.key.uid ? known.state : 'pending',
        since: known?.since ?? now,
        attempts: known?.attempts ?? 0,
        ...(known?.lastError ? { lastError: known.lastError } : {}),
      });
    };
    for (const d of body.drives) add('opal', d);
    for (const v of body.volumes) add('luks', v);
    for (const id of [...this.targets.keys()]) if (!seen.has(id)) this.targets.delete(id);
  }

  status(): AgentStatus {
    return {
      ready: this.ready,
      mode: this.mode(),
      health: this.faults.health(),
      applianceId: this.options.config.applianceId,
      keyMode: this.options.config.keyMode,
      drives: [...this.targets.values()].map((t) => {
        const nextRotation = this.options.nextRotation?.(t.id);
        return { ...t, ...(nextRotation ? { nextRotation } : {}) };
      }),
      faults: this.faults.list(),
    };
  }

  private mode(): AgentStatus['mode'] {
    if (!this.ready) return 'starting';
    // With the state corrupt the agent does not know what it should unlock: never "normal".
    if (this.faults.has('StateCorrupt')) return 'degraded';
    return this.pending(() => true).length === 0 ? 'normal' : 'degraded';
  }

  /** Targets due at boot that are not unlocked yet. */
  private pending(filter: (t: TargetStatus) => boolean): TargetStatus[] {
    return [...this.targets.values()].filter((t) => t.unlockAtBoot && !SETTLED.has(t.state) && filter(t));
  }

  /** What the agent retries on its own: still locked for a reason that may pass, and not held. */
  private retried(): TargetStatus[] {
    return this.pending((t) => RETRIED.has(t.state) && !this.held.has(t.id));
  }

  /**
   * Keeps `id` out of every unlock (boot, background retries, unlockNow) until `release`: a drive being
   * disabled must not be sent its key while its locking is taken apart. Resolves once a run that started
   * before, and may include it, has ended.
   */
  async hold(id: string): Promise<void> {
    this.held.add(id);
    await this.running?.catch(() => undefined);
  }

  /** Lets the agent unlock `id` again (a disable that failed before the drive was handed back). */
  release(id: string): void {
    if (!this.held.delete(id)) return;
    if (this.ready) this.scheduleRetry();
  }

  /**
   * Unlocks what is still locked now (`all`: also targets parked after a refusal or lockout risk, on an
   * operator's request; the lockout guard still stands). Concurrent calls share one run.
   */
  unlockNow(options: { all?: boolean } = {}): Promise<UnlockOutcome[]> {
    if (this.running) return this.running;
    const due = this.pending((t) => !this.held.has(t.id) && (options.all === true || RETRIED.has(t.state)));
    const run = this.runUnlock(due).finally(() => {
      this.running = undefined;
    });
    this.running = run;
    return run;
  }

  /**
   * Unlocks the one target `id` now, whatever it is parked as (drive readd: an operator says the failure
   * was spurious); no longer held. The lockout guard and refused-key memory still stand.
   */
  async unlockOne(id: string): Promise<UnlockOutcome | undefined> {
    const t = this.targets.get(id);
    if (!t) return undefined;
    await this.running?.catch(() => undefined);
    this.held.delete(id);
    const run = this.runUnlock([t]).finally(() => {
      this.running = undefined;
    });
    this.running = run;
    return (await run)[0];
  }

  private async runUnlock(due: TargetStatus[]): Promise<UnlockOutcome[]> {
    if (due.length === 0) return [];
    const targets: UnlockTarget[] = due.map((t) => ({ id: t.id, kind: t.kind, device: t.device, keyUid: t.keyUid }));
    for (const t of due) t.attempts += 1;
    const outcomes = await unlockTargets(targets, this.options.keys, this.options.unlockers, {
      concurrency: this.options.config.boot.concurrency,
      clock: this.options.clock,
      onOutcome: (o) => this.apply(o),
    });
    this.afterRun(outcomes);
    this.options.onProgress?.(this.progressLine());
    return outcomes;
  }

  /** Records one target's outcome and raises or clears its faults. */
  private apply(outcome: UnlockOutcome): void {
    const t = this.targets.get(outcome.target.id);
    if (!t) return;
    const state = this.stateOf(outcome.state, outcome.error?.code);
    if (state !== t.state) t.since = this.options.clock.now();
    t.state = state;
    if (outcome.error) t.lastError = outcome.error;
    else delete t.lastError;
    const log = { drive: t.id, kind: t.kind, keyUid: t.keyUid, durationMs: Math.round(outcome.durationMs) };
    if (DONE.has(state)) {
      this.options.log.info({ ...log, event: 'unlock', result: state }, `${t.id}: ${state}`);
      for (const code of ['DriveUnlockFailed', 'KeyNotFound', 'DriveMissing', 'DriveLockoutRisk'] as const)
        this.faults.clear(code, t.id);
      return;
    }
    this.options.log.warn({ ...log, event: 'unlock', result: state, error: outcome.error }, `${t.id}: ${state}`);
    // A volume this system cannot activate (no device-mapper) is a fact about the machine, not a fault.
    if (state === 'not-supported') return;
    const details = { device: t.device, keyUid: t.keyUid, ...(outcome.error ? { error: outcome.error } : {}) };
    const affects = [t.id];
    if (state === 'key-not-found') this.faults.raise('KeyNotFound', t.id, { affects, details });
    else if (state === 'missing') this.faults.raise('DriveMissing', t.id, { affects, details });
    else if (state === 'lockout-risk') this.faults.raise('DriveLockoutRisk', t.id, { affects, details });
    else if (state === 'key-refused' || outcome.state === 'failed')
      this.faults.raise('DriveUnlockFailed', t.id, { affects, details });
  }

  private stateOf(outcome: OutcomeState, code: string | undefined): TargetState {
    if (outcome === 'unlocked' || outcome === 'served') return outcome;
    if (outcome === 'key-not-found') return 'key-not-found';
    if (outcome === 'key-unavailable') return 'locked';
    if (code && KEY_REFUSED_CODES.has(code)) return 'key-refused';
    if (code && LOCKOUT_CODES.has(code)) return 'lockout-risk';
    if (code && MISSING_CODES.has(code)) return 'missing';
    if (code && NOT_SUPPORTED_HERE.has(code)) return 'not-supported';
    return 'locked';
  }

  /** Provider-wide faults: raised when no key came back for transport or authentication reasons. */
  private afterRun(outcomes: UnlockOutcome[]): void {
    const unavailable = outcomes.filter((o) => o.state === 'key-unavailable');
    const answered = outcomes.some((o) => o.state !== 'key-unavailable');
    this.serverRefused = unavailable.length > 0 && unavailable.every((o) => o.error?.code === SERVER_REFUSED_CODE);
    if (answered) {
      this.faults.clear('KmipServerFault');
      this.faults.clear('KmipAuthFault');
      this.faults.clear('KmipClientDisabled');
    }
    if (unavailable.length === 0) return;
    const code = unavailable[0]!.error?.code ?? 'KMIP_CONNECTION_FAILED';
    const affects = unavailable.map((o) => o.target.id);
    const details = { error: unavailable[0]!.error };
    if (code === 'KMIP_CLIENT_DISABLED') this.faults.raise('KmipClientDisabled', 'client', { affects, details });
    else if (isAuthCode(code)) this.faults.raise('KmipAuthFault', 'provider:default', { affects, details });
    else this.faults.raise('KmipServerFault', 'provider:default', { affects, details });
  }

  progressLine(): string {
    const due = [...this.targets.values()].filter((t) => t.unlockAtBoot);
    const count = (kind: TargetKind) => {
      const all = due.filter((t) => t.kind === kind && t.state !== 'not-supported');
      return { all: all.length, done: all.filter((t) => DONE.has(t.state)).length };
    };
    const drives = count('opal');
    const volumes = count('luks');
    const parts = [`${drives.done}/${drives.all} drives unlocked`];
    if (volumes.all > 0) parts.push(`${volumes.done}/${volumes.all} volumes`);
    const impossible = due.filter((t) => t.state === 'not-supported').length;
    if (impossible > 0) parts.push(`${impossible} volume(s) cannot be activated here (no device-mapper)`);
    const faults = this.faults.list();
    if (faults.length) parts.push(`${faults.length} fault(s): ${[...new Set(faults.map((f) => f.code))].join(', ')}`);
    const head = { starting: 'booting: ', normal: '', degraded: 'degraded: ' }[this.mode()];
    return head + parts.join('; ');
  }

  /**
   * The boot: unlock, then retry what is still locked until everything is unlocked or the deadline passes,
   * and resolve then (READY=1 follows). Retrying goes on in the background afterwards, forever, until
   * `stop()`. `onWaiting` is called before each wait within the deadline (EXTEND_TIMEOUT_USEC).
   */
  async boot(options: { deadlineMs: number; onWaiting?: (remainingMs: number) => void }): Promise<AgentStatus> {
    const { clock } = this.options;
    const deadline = clock.monotonicMs() + options.deadlineMs;
    await this.unlockNow();
    while (!this.stopped && this.retried().length > 0) {
      const remaining = deadline - clock.monotonicMs();
      if (remaining <= 0) break;
      const wait = Math.min(remaining, this.nextDelayMs());
      options.onWaiting?.(remaining);
      await clock.sleep(wait);
      if (this.stopped) break;
      await this.unlockNow();
    }
    this.ready = true;
    this.options.onProgress?.(this.progressLine());
    this.scheduleRetry();
    return this.status();
  }

  private nextDelayMs(): number {
    const { retryCapSeconds, refusedRetryCapSeconds } = this.options.config.boot;
    const delay = retryDelayMs(this.retryAttempt, {
      capMs: retryCapSeconds * 1000,
      refusedCapMs: refusedRetryCapSeconds * 1000,
      refused: this.serverRefused,
      random: this.options.random,
    });
    this.retryAttempt += 1;
    return delay;
  }

  /** After boot: retry what is still locked in the background; back to normal mode when all is unlocked. */
  private scheduleRetry(): void {
    this.retryTimer?.cancel();
    if (this.stopped) return;
    if (this.retried().length === 0) {
      this.retryAttempt = 0;
      return;
    }
    this.retryTimer = this.options.clock.after(this.nextDelayMs(), () => {
      this.unlockNow()
        .catch((error: unknown) => this.options.log.error({ err: error }, 'retry failed'))
        .finally(() => this.scheduleRetry());
    });
  }

  stop(): void {
    this.stopped = true;
    this.retryTimer?.cancel();
  }
}
