/**
 * Unlocking what the state says should be unlocked: plan the keys, fetch them all at once (one batched
 * Get), unlock drives and volumes in parallel with bounded concurrency, zero every key as soon as its
 * target is done. Each target ends in one outcome with a stable code; nothing here decides about faults
 * or retries (the agent does), so this runs the same at boot, on `kmip-agent unlock` and in tests.
 */
import type { Clock } from './clock.js';
import type { KeySource } from './key-source.js';

export type TargetKind = 'opal' | 'luks';

export interface UnlockTarget {
  /** Stable identity (WWN/serial for drives, LUKS UUID for volumes). */
  id: string;
  kind: TargetKind;
  device: string;
  keyUid: string;
}

/** What unlocks one kind of target with its key. Throws a KmipAgentError with a stable code on failure. */
export interface Unlocker {
  /** Unlocks `target` with `key` (which the unlocker must not keep). Returns the resulting state. */
  unlock(target: UnlockTarget, key: Buffer): Promise<UnlockedState>;
}

/** `served`: the volume's key is served on the crypttab key socket for systemd-cryptsetup to activate. */
export type UnlockedState = 'unlocked' | 'served';

export type OutcomeState =
  | UnlockedState
  /** The key server did not answer: try again later. */
  | 'key-unavailable'
  /** The key is not on the key server (destroyed, or wrong UID recorded). */
  | 'key-not-found'
  /** The unlock was attempted and failed (see error.code: refused key, drive missing, not supported...). */
  | 'failed';

export interface UnlockOutcome {
  target: UnlockTarget;
  state: OutcomeState;
  error?: { code: string; message: string };
  durationMs: number;
}

export interface UnlockRunOptions {
  concurrency: number;
  clock: Clock;
  /** Called as each target finishes (progress for STATUS= and the API). */
  onOutcome?: (outcome: UnlockOutcome) => void;
}

function codeAndMessage(error: unknown): { code: string; message: string } {
  const code = (error as { code?: unknown }).code;
  return {
    code: typeof code === 'string' ? code : 'INTERNAL',
    message: error instanceof Error ? error.message : String(error),
  };
}

/** Runs `work` over `items` with at most `limit` running at once; results in item order. */
export async function mapBounded<T, R>(
  items: readonly T[],
  limit: number,
  work: (item: T) => Promise<R>,
): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const lane = async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await work(items[index]!);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, lane));
  return results;
}

/**
 * Fetches the keys of `targets` in one call to the key source, then unlocks each with its kind's unlocker.
 * A failed fetch (no server answered) gives every target `key-unavailable`; no unlock is attempted then.
 */
export async function unlockTargets(
  targets: readonly UnlockTarget[],
  keys: KeySource,
  unlockers: Record<TargetKind, Unlocker>,
  options: UnlockRunOptions,
): Promise<UnlockOutcome[]> {
  const started = options.clock.monotonicMs();
  const finish = (target: UnlockTarget, state: OutcomeState, error?: { code: string; message: string }) => {
    const outcome: UnlockOutcome = {
      target,
      state,
      ...(error ? { error } : {}),
      durationMs: options.clock.monotonicMs() - started,
    };
    options.onOutcome?.(outcome);
    return outcome;
  };
  if (targets.length === 0) return [];

  let fetched: Awaited<ReturnType<KeySource['fetch']>>;
  try {
    fetched = await keys.fetch([...new Set(targets.map((t) => t.keyUid))]);
  } catch (error) {
    const reason = codeAndMessage(error);
    return targets.map((t) => finish(t, 'key-unavailable', reason));
  }
  // Each key is zeroed as soon as the last target using it is done (two targets may share a UID).
  const users = new Map<string, number>();
  for (const t of targets) users.set(t.keyUid, (users.get(t.keyUid) ?? 0) + 1);
  const release = (uid: string) => {
    const left = (users.get(uid) ?? 1) - 1;
    users.set(uid, left);
    const result = fetched.get(uid);
    if (left === 0 && result?.ok) result.key.fill(0);
  };
  try {
    return await mapBounded(targets, options.concurrency, async (target) => {
      try {
        return await unlockOne(target);
      } finally {
        release(target.keyUid);
      }
    });
  } finally {
    for (const result of fetched.values()) if (result.ok) result.key.fill(0);
  }

  async function unlockOne(target: UnlockTarget): Promise<UnlockOutcome> {
    const result = fetched.get(target.keyUid);
    if (!result)
      return finish(target, 'key-unavailable', { code: 'KEY_NOT_FETCHED', message: 'no answer for this key' });
    if (!result.ok) {
      // An unusable key (it did not unwrap) is this target's failure, not the server's; it is never sent.
      const state = result.error.notFound ? 'key-not-found' : result.error.unusable ? 'failed' : 'key-unavailable';
      return finish(target, state, { code: result.error.code, message: result.error.message });
    }
    try {
      const state = await unlockers[target.kind].unlock(target, result.key);
      return finish(target, state);
    } catch (error) {
      return finish(target, 'failed', codeAndMessage(error));
    }
  }
}
