/** Figures for the boot-storm scenarios: histograms and summaries of what was counted. */

/** Counts of `timesMs` per bucket of `bucketMs`, from 0 to the last one (empty buckets included). */
export function attemptHistogram(timesMs: number[], bucketMs: number): number[] {
  const buckets: number[] = [];
  for (const t of timesMs) {
    const b = Math.max(0, Math.floor(t / bucketMs));
    while (buckets.length <= b) buckets.push(0);
    buckets[b]! += 1;
  }
  return buckets;
}

export function summary(values: number[]): { min: number; median: number; mean: number; max: number } {
  const sorted = [...values].sort((a, b) => a - b);
  return {
    min: sorted[0] ?? 0,
    median: sorted[Math.floor(sorted.length / 2)] ?? 0,
    mean: sorted.reduce((n, v) => n + v, 0) / Math.max(1, sorted.length),
    max: sorted[sorted.length - 1] ?? 0,
  };
}

/** The most of `timesMs` inside any window of `windowMs` (sliding), and its share of them all. */
export function busiestShare(timesMs: number[], windowMs: number): { count: number; share: number } {
  const sorted = [...timesMs].sort((a, b) => a - b);
  let count = 0;
  for (let start = 0, end = 0; end < sorted.length; end++) {
    while (sorted[end]! - sorted[start]! >= windowMs) start++;
    count = Math.max(count, end - start + 1);
  }
  return { count, share: sorted.length === 0 ? 0 : count / sorted.length };
}
