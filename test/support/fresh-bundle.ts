/**
 * The CLI the tests and the bench spawn is the bundle, dist/kmip-agent.mjs, built from dist/src: after a
 * plain `npx tsc` it would be stale, and a test would run yesterday's CLI. Rebuilt here when any of its
 * inputs is newer than it (scripts/build-bundle.mjs --if-stale: a second or so, nothing when fresh).
 * A vitest global setup (vitest.config.ts, test/vm/vitest.config.ts) and the bench's first step.
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { packageRoot } from '../../src/native/addon.js';

export function ensureFreshBundle(): void {
  execFileSync(process.execPath, [join(packageRoot(), 'scripts', 'build-bundle.mjs'), '--if-stale'], {
    stdio: 'inherit',
  });
}

export function setup(): void {
  ensureFreshBundle();
}
