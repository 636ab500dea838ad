/**
 * The bounded fuzz run of the normal suite: every target (test/fuzz/targets.ts) at its quick count,
 * seeded so a failure replays (`npm run fuzz -- --quick --seed <seed> <target>`). Every input must end
 * as a valid result or a typed error; none may crash or exceed its target's time bound. The full
 * counts run with `npm run fuzz`.
 */
import { describe, expect, it } from 'vitest';
import { formatCounts, runTarget } from './runner.js';
import { QUICK_COUNTS } from './quick.js';
import { TARGETS } from './targets.js';

// Fixed unless asked for another, so CI runs are reproducible; printed with the counts.
const SEED = Number(process.env.KMIP_AGENT_FUZZ_SEED ?? 20261201);

describe(`fuzzing, quick counts (seed ${SEED})`, () => {
  it('covers every target with a quick count', () => {
    expect(TARGETS.map((t) => t.name).sort()).toEqual(Object.keys(QUICK_COUNTS).sort());
  });

  it.each(TARGETS.map((t) => [t.name, t] as const))(
    '%s: every input a valid result or a typed error',
    async (_name, target) => {
      const counts = await runTarget(target, SEED, QUICK_COUNTS[target.name]!);
      console.log(formatCounts(counts));
      expect(counts.failures).toEqual([]);
      expect(counts.crashes).toBe(0);
      expect(counts.hangs).toBe(0);
      expect(counts.inputs).toBe(QUICK_COUNTS[target.name]);
      expect(counts.valid + counts.typed).toBe(counts.inputs);
      // Mutations that never get past the first check, or never break it, would fuzz nothing.
      expect(counts.typed).toBeGreaterThan(0);
      expect(counts.valid).toBeGreaterThan(0);
    },
  );
});
