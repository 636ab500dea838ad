import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // The VM boots (QEMU/TCG, minutes each on two cores) run with `npm run vm-test`, its own config:
    // inside this run they would take the cores from every other suite and break CI's time budget.
    exclude: ['test/vm/**', '**/node_modules/**'],
    // The spawned CLI is dist/kmip-agent.mjs: rebuilt first if dist/src is newer (test/support/fresh-bundle.ts).
    globalSetup: ['test/support/fresh-bundle.ts', 'test/support/global-setup.ts'],
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
