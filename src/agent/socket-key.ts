/**
 * The key of a key-socket volume, fetched when systemd-cryptsetup asks for it (daemon.ts hands this to
 * the key socket's lookup). At boot the crypttab volume is asked for right after READY, which at the boot
 * deadline may be before the key server is up: a server that does not answer is waited for (retrying with
 * the boot's capped, jittered backoff) until `waitMs` has passed, so the volume opens once the server
 * arrives instead of failing at the first try (systemd-cryptsetup asks once). A server that answers
 * without the key (not found, unusable) fails the request at once: waiting cannot change that.
 */
import { KmipAgentError } from '../errors.js';
import { retryDelayMs, SERVER_REFUSED_CODE, type Clock, type Random } from './clock.js';
import type { FetchedKey, KeySource } from './key-source.js';

export interface SocketKeyOptions {
  keys: KeySource;
  clock: Clock;
  random: Random;
  /** How long a key server that does not answer is waited for. */
  waitMs: number;
  /** Upper bound of the delay between two tries (the boot's retryCapSeconds). */
  retryCapMs: number;
  /** The bound instead while the key server refuses connections (the boot's refusedRetryCapSeconds). */
  refusedRetryCapMs: number;
  /** Told about each failed try (for the log), with the code of why no key came back. */
  onRetry?: (code: string, attempt: number) => void;
  /** Ends the wait (the agent is stopping): the request fails with the last failure's code. */
  signal?: AbortSignal;
}

/** Why no key came back from a fetch that threw or answered without it, and whether waiting may help. */
function failureOf(result: FetchedKey | undefined, thrown: unknown): { code: string; message: string; wait: boolean } {
  if (thrown !== undefined) {
    const code = (thrown as { code?: unknown }).code;
    return {
      code: typeof code === 'string' ? code : 'KMIP_CONNECTION_FAILED',
      message: thrown instanceof Error ? thrown.message : String(thrown),
      wait: true,
    };
  }
  if (!result) return { code: 'KEY_NOT_FETCHED', message: 'no answer for this key', wait: true };
  if (result.ok) throw new Error('unreachable: a fetched key is not a failure');
  // As unlock.ts reads it: not found and unusable are the server's answer; anything else is no answer.
  return { ...result.error, wait: !result.error.notFound && !result.error.unusable };
}

/**
 * `onRetry` for the log: a refusing server is retried every second, so only the first failure, a change of
 * failure, and then one line per `intervalMs` of the same failure are passed on to `write`.
 */
export function throttledRetries(
  clock: Clock,
  intervalMs: number,
  write: (code: string, attempt: number) => void,
): (code: string, attempt: number) => void {
  let last: { code: string; atMs: number } | undefined;
  return (code, attempt) => {
    const now = clock.monotonicMs();
    if (last && last.code === code && now - last.atMs < intervalMs) return;
    last = { code, atMs: now };
    write(code, attempt);
  };
}

/** The key (the caller owns and zeroes it), or a KmipAgentError with the code of why not. */
export async function fetchSocketKey(uid: string, options: SocketKeyOptions): Promise<Buffer> {
  const { clock } = options;
  const deadline = clock.monotonicMs() + options.waitMs;
  for (let attempt = 0; ; attempt++) {
    let result: FetchedKey | undefined;
    let thrown: unknown;
    try {
      result = (await options.keys.fetch([uid])).get(uid);
    } catch (error) {
      thrown = error ?? new Error('fetch failed');
    }
    if (result?.ok) return result.key;
    const failure = failureOf(result, thrown);
    const left = deadline - clock.monotonicMs();
    const giveUp = () => new KmipAgentError(`no key for the key socket: ${failure.message}`, failure.code);
    if (!failure.wait || left <= 0 || options.signal?.aborted) throw giveUp();
    options.onRetry?.(failure.code, attempt + 1);
    const delay = retryDelayMs(attempt, {
      capMs: options.retryCapMs,
      refusedCapMs: options.refusedRetryCapMs,
      refused: failure.code === SERVER_REFUSED_CODE,
      random: options.random,
    });
    // Never sleep past the deadline (one last try is made there).
    await clock.sleep(Math.min(left, delay), options.signal).catch(() => {
      throw giveUp();
    });
  }
}
