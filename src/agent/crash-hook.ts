/**
 * The crash tests' hook: `crashPoint(stateDir, step)` kills this process with SIGKILL, as a power loss
 * would, right after the named journal step was written, so a test can prove that a rerun completes.
 *
 * Why it cannot fire on an appliance: it needs two things no appliance has, both put there by the test
 * harness. The environment variable KMIP_AGENT_TEST_CRASH_AT must name the step (one exact name, e.g.
 * `remove-drive:erased`), AND the state directory must hold the marker file `.test-crash-hook` (the state
 * directory is root's, 0700: nothing but the harness writes there). Either alone does nothing; with
 * neither set the hook is one environment lookup. The marker is read only when the variable names this
 * step, so production runs never touch the file system for it.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';

export const CRASH_AT_ENV = 'KMIP_AGENT_TEST_CRASH_AT';
export const CRASH_MARKER = '.test-crash-hook';

/** A named point where the crash tests may kill the process (inert unless armed; see above). */
export function crashPoint(stateDir: string, step: string, env: NodeJS.ProcessEnv = process.env): void {
  if (env[CRASH_AT_ENV] !== step) return;
  if (!existsSync(join(stateDir, CRASH_MARKER))) return;
  process.kill(process.pid, 'SIGKILL');
}
