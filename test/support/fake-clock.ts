/**
 * A Clock that moves only when the test says so: timers and sleeps fire in time order as `advance` passes
 * them, so backoff, deadlines and the watchdog are tested without real waiting.
 */
import type { Clock, Timer } from '../../src/agent/clock.js';

interface Pending {
  at: number;
  seq: number;
  fire: () => void;
}

export class FakeClock implements Clock {
  private nowMs = 0;
  private seq = 0;
  private pending: Pending[] = [];
  /** Every delay asked for, in order (to check backoff). */
  readonly delays: number[] = [];

  constructor(private wallStart = Date.parse('2026-12-01T10:00:00.000Z')) {}

  monotonicMs(): number {
    return this.nowMs;
  }

  now(): Date {
    return new Date(this.wallStart + this.nowMs);
  }

  after(ms: number, fn: () => void): Timer {
    this.delays.push(ms);
    const entry: Pending = { at: this.nowMs + ms, seq: this.seq++, fire: fn };
    this.pending.push(entry);
    return { cancel: () => (this.pending = this.pending.filter((p) => p !== entry)) };
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = this.after(ms, resolve);
      signal?.addEventListener('abort', () => {
        timer.cancel();
        reject(signal.reason as Error);
      });
    });
  }

  /** How many timers are waiting. */
  get waiting(): number {
    return this.pending.length;
  }

  /** Moves time forward by `ms`, firing due timers in order and letting promise chains run between them. */
  async advance(ms: number): Promise<void> {
    const end = this.nowMs + ms;
    for (;;) {
      await settle();
      this.pending.sort((a, b) => a.at - b.at || a.seq - b.seq);
      const next = this.pending[0];
      if (!next || next.at > end) break;
      this.pending.shift();
      this.nowMs = next.at;
      next.fire();
    }
    this.nowMs = end;
    await settle();
  }

  /** Advances to the next timer (whatever its delay) and fires it. */
  async fireNext(): Promise<void> {
    await settle();
    this.pending.sort((a, b) => a.at - b.at || a.seq - b.seq);
    const next = this.pending[0];
    if (next) await this.advance(next.at - this.nowMs);
  }
}

/** Lets queued promise reactions (and the I/O callbacks they wait on) run. */
export async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
}
