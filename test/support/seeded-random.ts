/** Reproducible randomness for tests that inject a Random (src/agent/clock.ts). */

/** A seeded Random in [0, 1) (mulberry32): each simulated appliance's own, reproducible jitter. */
export function mulberry32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
