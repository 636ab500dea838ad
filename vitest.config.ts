import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/support/global-setup.ts'],
    // In a recorded run (scripts/test.sh), what tests remove is kept for the secrets hygiene scan.
    setupFiles: ['test/support/keep-for-scan.ts'],
    // PyKMIP answers in tens of milliseconds but starts in seconds; TLS tests make real certificates.
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // Two cores: more workers only fight over them.
    maxWorkers: 2,
    reporters: ['default'],
  },
});
