/**
 * Runs fuzz targets and counts what happened to every input: a valid result, a typed refusal
 * (KmipAgentError with a code), or a failure (anything else thrown: a crash of the layer). An input
 * slower than the target's bound is a hang. Used by the quick suite (test/fuzz/fuzz.test.ts) and
 * by `npm run fuzz` (test/fuzz/run.ts).
 */
import { KmipAgentError } from '../../src/errors.js';
import { inputRng } from './mutate.js';
import type { FuzzTarget, PreparedTarget } from './targets.js';

export interface Failure {
  index: number;
  error: string;
}

export interface TargetCounts {
  target: string;
  seed: number;
  inputs: number;
  valid: number;
  typed: number;
  /** Inputs that threw something other than a typed error. */
  crashes: number;
  /** Inputs slower than the target's time bound. */
  hangs: number;
  /** Typed error codes seen, with how often. */
  codes: Record<string, number>;
  slowest: { index: number; ms: number };
  seconds: number;
  /** The first few failures and hangs, by input index (replay: same seed, same index). */
  failures: Failure[];
}

const KEEP_FAILURES = 20;

/**
 * An input still running this long never returns by itself (native work cannot be interrupted): the
 * caller is told once, with the index to replay, so a stuck run says where it is stuck.
 */
const stallAfterMs = (target: FuzzTarget) => Math.max(30_000, 10 * target.timeBoundMs);

export async function runTarget(
  target: FuzzTarget,
  seed: number,
  count: number,
  progress?: (done: number) => void,
  onStall: (index: number, ms: number) => void = (index, ms) =>
    console.error(
      `fuzz: ${target.name} input #${index} (seed ${seed}) still running after ${(ms / 1000).toFixed(0)} s`,
    ),
): Promise<TargetCounts> {
  const counts: TargetCounts = {
    target: target.name,
    seed,
    inputs: 0,
    valid: 0,
    typed: 0,
    crashes: 0,
    hangs: 0,
    codes: {},
    slowest: { index: -1, ms: 0 },
    seconds: 0,
    failures: [],
  };
  const prepared = await target.prepare();
  const started = performance.now();
  let current = { index: -1, since: 0, told: false };
  const watchdog = setInterval(() => {
    const ms = performance.now() - current.since;
    if (current.index >= 0 && !current.told && ms > stallAfterMs(target)) {
      current.told = true;
      onStall(current.index, ms);
    }
  }, 1000).unref();
  try {
    for (let index = 0; index < count; index++) {
      current = { index, since: performance.now(), told: false };
      let ms = await timed(prepared, seed, index, counts);
      // A slow input is replayed (inputs are deterministic): only one slow every time is a hang, not
      // a pause of the garbage collector or of a machine shared with other work.
      for (let replay = 0; replay < 2 && ms > target.timeBoundMs; replay++)
        ms = Math.min(ms, await timed(prepared, seed, index));
      counts.inputs++;
      if (ms > counts.slowest.ms) counts.slowest = { index, ms };
      if (ms > target.timeBoundMs) {
        counts.hangs++;
        if (counts.failures.length < KEEP_FAILURES)
          counts.failures.push({
            index,
            error: `took ${ms.toFixed(1)} ms every time (bound ${target.timeBoundMs} ms)`,
          });
      }
      if (progress && (index + 1) % 10_000 === 0) progress(index + 1);
    }
  } finally {
    clearInterval(watchdog);
    counts.seconds = (performance.now() - started) / 1000;
    await prepared.close();
  }
  return counts;
}

/** Runs input `index`, counting its outcome into `counts` (replays pass none); returns its time in ms. */
async function timed(prepared: PreparedTarget, seed: number, index: number, counts?: TargetCounts): Promise<number> {
  const rng = inputRng(seed, index);
  const t0 = performance.now();
  try {
    const result = prepared.one(rng);
    if (result !== 'valid' && (await result) !== 'valid') throw new Error('the target returned no outcome');
    if (counts) counts.valid++;
  } catch (error) {
    if (!counts) return performance.now() - t0;
    if (error instanceof KmipAgentError && typeof error.code === 'string' && error.code !== '') {
      counts.typed++;
      counts.codes[error.code] = (counts.codes[error.code] ?? 0) + 1;
    } else {
      counts.crashes++;
      const text = error instanceof Error ? (error.stack ?? error.message) : String(error);
      if (counts.failures.length < KEEP_FAILURES) counts.failures.push({ index, error: text });
    }
  }
  return performance.now() - t0;
}

export function formatCounts(c: TargetCounts): string {
  const codes = Object.entries(c.codes)
    .sort((a, b) => b[1] - a[1])
    .slice(0, 6)
    .map(([code, n]) => `${code} ${n}`)
    .join(', ');
  const lines = [
    `${c.target}: ${c.inputs} inputs (seed ${c.seed}) in ${c.seconds.toFixed(1)} s: ${c.valid} valid, ${c.typed} typed errors, ` +
      `${c.crashes} crashes, ${c.hangs} hangs; slowest input #${c.slowest.index} ${c.slowest.ms.toFixed(2)} ms`,
    `  typed errors: ${codes || 'none'}`,
  ];
  for (const f of c.failures) lines.push(`  FAILED input #${f.index}: ${f.error.split('\n').slice(0, 4).join(' | ')}`);
  return lines.join('\n');
}
