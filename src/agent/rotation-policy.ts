/**
 * The rotation policy: config `rotation.everyDays` per appliance, `rotateEveryDays` per drive or volume
 * entry. A key is due that many days after it was made (the rotation's record time, else enrollment),
 * moved later by a random part of `spreadHours` per target (drawn once per process), so drives enrolled
 * together do not all come due at the same moment.
 *
 * The scheduler, in the daemon, rotates due keys one at a time (the next one `gapMinutes` after the
 * previous ended, never two at once; through the same job lane as a manual rotation or deep rekey, so a
 * busy lane just waits), through the injected clock. RotationFailed stands from a failed attempt until the
 * target's next success (retried `retryHours` later); RotationOverdue once a target is `graceDays` past due,
 * until it is rotated.
 */
import type { Clock, Random, Timer } from './clock.js';
import type { AgentConfig } from './config.js';
import type { FaultRegistry } from './faults.js';
import type { StateBody } from './state.js';

const DAY_MS = 86_400_000;
const HOUR_MS = 3_600_000;
/** Timers are re-armed at least this often (long timeouts overflow, and the config may change). */
const MAX_TIMER_MS = 6 * HOUR_MS;

export type RotationKind = 'drive' | 'volume';

export interface RotationTarget {
  kind: RotationKind;
  id: string;
  /** When the current key was made. */
  keyMadeAt: Date;
  everyDays: number;
  due: Date;
}

/** Which targets rotate, and when: pure over the config and the state (plus each target's spread). */
export class RotationPlan {
  private readonly spread = new Map<string, number>();

  constructor(
    private readonly config: () => Pick<AgentConfig, 'rotation' | 'drives' | 'volumes'>,
    private readonly state: () => Readonly<StateBody>,
    private readonly random: Random,
  ) {}

  private spreadOf(id: string): number {
    let ms = this.spread.get(id);
    if (ms === undefined) {
      ms = Math.floor(this.random() * this.config().rotation.spreadHours * HOUR_MS);
      this.spread.set(id, ms);
    }
    return ms;
  }

  /** Every target under a rotation policy, soonest due first. */
  targets(): RotationTarget[] {
    const config = this.config();
    const s = this.state();
    const out: RotationTarget[] = [];
    const add = (
      kind: RotationKind,
      r: { id: string; device: string; enrolledAt: string; key: { createdAt?: string | undefined } },
      entry: { rotateEveryDays?: number | undefined } | undefined,
    ) => {
      const everyDays = entry?.rotateEveryDays ?? config.rotation.everyDays;
      if (everyDays === undefined) return;
      const keyMadeAt = new Date(r.key.createdAt ?? r.enrolledAt);
      const due = new Date(keyMadeAt.getTime() + everyDays * DAY_MS + this.spreadOf(r.id));
      out.push({ kind, id: r.id, keyMadeAt, everyDays, due });
    };
    for (const d of s.drives)
      add(
        'drive',
        d,
        config.drives.find((e) => e.device === d.device),
      );
    for (const v of s.volumes)
      add(
        'volume',
        v,
        config.volumes.find((e) => e.device === v.device),
      );
    return out.sort((a, b) => a.due.getTime() - b.due.getTime());
  }

  /** When `id`'s key is next due (undefined: no policy covers it). */
  nextRotation(id: string): Date | undefined {
    return this.targets().find((t) => t.id === id)?.due;
  }
}

export interface RotationSchedulerOptions {
  plan: RotationPlan;
  config: () => Pick<AgentConfig, 'rotation'>;
  clock: Clock;
  faults: FaultRegistry;
  /** Rotates one key (the daemon: a RotateDriveKey job, awaited); rejects when it failed. */
  rotate(kind: RotationKind, id: string): Promise<unknown>;
  log?: (event: { event: string; id?: string; error?: unknown }) => void;
}

/** A lane already busy (a manual rotation or deep rekey): not this target's failure, just later. */
const isBusy = (error: unknown) => (error as { code?: string } | null)?.code === 'JOB_ALREADY_RUNNING';

export class RotationScheduler {
  private timer: Timer | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;
  /** Not before this (the gap after the previous rotation). */
  private notBefore = 0;
  /** Targets whose last attempt failed: when they may be tried again. */
  private readonly retryAt = new Map<string, number>();

  constructor(private readonly options: RotationSchedulerOptions) {}

  /** Checks now, then whenever the next rotation comes due. */
  start(): void {
    this.stopped = false;
    this.arm(0);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.timer?.cancel();
    this.timer = undefined;
    await this.running;
  }

  /** When a target may next be rotated: its due time, the retry time after a failure, the gap. */
  private readyAt(t: RotationTarget): number {
    return Math.max(t.due.getTime(), this.retryAt.get(t.id) ?? 0, this.notBefore);
  }

  private arm(ms: number): void {
    if (this.stopped) return;
    this.timer?.cancel();
    this.timer = this.options.clock.after(Math.max(0, Math.min(ms, MAX_TIMER_MS)), () => {
      this.timer = undefined;
      this.running = this.tick().finally(() => (this.running = undefined));
    });
  }

  /** Raises or clears RotationOverdue for every target; returns the targets. */
  private syncOverdue(now: number): RotationTarget[] {
    const { faults, config } = this.options;
    const graceMs = config().rotation.graceDays * DAY_MS;
    const targets = this.options.plan.targets();
    for (const t of targets) {
      if (now > t.due.getTime() + graceMs)
        faults.raise('RotationOverdue', t.id, { affects: [t.id], details: { due: t.due.toISOString() } });
      else faults.clear('RotationOverdue', t.id);
    }
    return targets;
  }

  /** One step: at most one rotation (the soonest ready), then the timer for the next. */
  async tick(): Promise<void> {
    const { clock, faults, config } = this.options;
    const now = clock.now().getTime();
    const targets = this.syncOverdue(now);
    const ready = targets.filter((t) => this.readyAt(t) <= now).sort((a, b) => this.readyAt(a) - this.readyAt(b));
    const next = ready[0];
    if (next) {
      const { rotation } = config();
      try {
        await this.options.rotate(next.kind, next.id);
        this.retryAt.delete(next.id);
        faults.clear('RotationFailed', next.id);
        this.options.log?.({ event: 'rotation_scheduled_done', id: next.id });
      } catch (error) {
        if (isBusy(error)) {
          this.options.log?.({ event: 'rotation_deferred', id: next.id });
        } else {
          this.retryAt.set(next.id, clock.now().getTime() + rotation.retryHours * HOUR_MS);
          const code = (error as { code?: string } | null)?.code ?? 'INTERNAL';
          faults.raise('RotationFailed', next.id, {
            affects: [next.id],
            details: { code, message: (error as Error | null)?.message ?? String(error) },
          });
          this.options.log?.({ event: 'rotation_failed', id: next.id, error });
        }
      }
      this.notBefore = clock.now().getTime() + rotation.gapMinutes * 60_000;
      this.syncOverdue(clock.now().getTime());
    }
    if (this.stopped) return;
    const at = clock.now().getTime();
    const graceMs = config().rotation.graceDays * DAY_MS;
    const after = this.options.plan.targets();
    // Woken for the next rotation, and for the moment a target becomes overdue (to raise the fault then).
    const overdueAt = after.map((t) => t.due.getTime() + graceMs + 1).filter((t) => t > at);
    const soonest = Math.min(...after.map((t) => this.readyAt(t)), ...overdueAt, at + MAX_TIMER_MS);
    this.arm(soonest - at);
  }
}
