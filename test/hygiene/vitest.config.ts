import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

/** The secrets hygiene scan, run by scripts/test.sh after the whole suite (not part of `vitest run`). */
export default defineConfig({
  test: {
    root: fileURLToPath(new URL('../..', import.meta.url)),
    include: ['test/hygiene/**/*.scan.ts'],
    testTimeout: 600_000,
    reporters: ['default'],
  },
});
