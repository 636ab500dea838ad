/**
 * Time and chance, injected: the daemon's deadlines, retries and watchdog run on a Clock and draw jitter
 * from a Random, so tests drive them step by step instead of sleeping.
 */

export interface Timer {
  cancel(): void;
}

export interface Clock {
  /** Milliseconds on a monotonic scale (differences only). */
  monotonicMs(): number;
  /** Wall-clock time, for records people read. */
  now(): Date;
  /** Runs `fn` once after `ms`. The timer never keeps the process alive by itself. */
  after(ms: number, fn: () => void): Timer;
  /** Resolves after `ms` (rejects with the signal's reason when aborted). */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

/** A number in [0, 1). */
export type Random = () => number;

export const systemClock: Clock = {
  monotonicMs: () => performance.now(),
  now: () => new Date(),
  after(ms, fn) {
    const handle = setTimeout(fn, ms);
    handle.unref();
    return { cancel: () => clearTimeout(handle) };
  },
  sleep(ms, signal) {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason as Error);
      const handle = setTimeout(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      }, ms);
      const onAbort = () => {
        clearTimeout(handle);
        reject(signal!.reason as Error);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  },
};

/**
 * Capped exponential backoff with full jitter: attempt n waits a uniformly random time in
 * [0, min(cap, base * 2^n)), so many appliances rebooting together do not hit the key server in step.
 */
export function backoffDelayMs(attempt: number, options: { baseMs: number; capMs: number; random: Random }): number {
  const ceiling = Math.min(options.capMs, options.baseMs * 2 ** Math.min(attempt, 30));
  return Math.floor(options.random() * ceiling);
}

/** Every key server refused the connection: nothing listens there (KmipProvider aggregates so). */
export const SERVER_REFUSED_CODE = 'KMIP_CONNECTION_REFUSED';

/**
 * The agent's wait before it tries a key fetch again (boot retries, a key-socket request): full jitter
 * from 1 s doubling, never under 100 ms (no spinning when the draw is 0), within `capMs`, or within
 * `refusedCapMs` while the server refused the connection: a refusal costs a server nothing, so the
 * fetch is retried often and succeeds about that long after it returns (boot.refusedRetryCapSeconds).
 */
export function retryDelayMs(
  attempt: number,
  options: { capMs: number; refusedCapMs: number; refused: boolean; random: Random },
): number {
  const capMs = options.refused ? Math.min(options.capMs, options.refusedCapMs) : options.capMs;
  return Math.max(100, backoffDelayMs(attempt, { baseMs: 1000, capMs, random: options.random }));
}
