import { defineConfig } from 'vitest/config';

// `npm run vm-test`: every VM suite (each boots a Debian VM under QEMU/TCG; see test/vm/qemu.ts). One file
// at a time: a VM takes both cores.
export default defineConfig({
  test: {
    include: ['test/vm/**/*.test.ts'],
    // The guest runs the checkout's dist/kmip-agent.mjs: rebuilt first if dist/src is newer.
    globalSetup: ['test/support/fresh-bundle.ts'],
    testTimeout: 60_000,
    hookTimeout: 1_800_000,
    pool: 'forks',
    maxWorkers: 1,
    fileParallelism: false,
    reporters: ['default'],
  },
});
