/**
 * The test-only crash hook: the crash tests kill the agent at a named journal step of a rotation (SIGKILL
 * to itself, as a power loss would stop it: no cleanup, no finally blocks) and check what a restart does.
 *
 * Inert in production by two independent conditions, both needed: KMIP_AGENT_TEST_CRASH_AT names the step,
 * AND the loaded native addon is the test build (it carries the `testSeams` module, which the shipped
 * kmip_agent_native.node never has: test/foundation/addon.test.ts checks the production addon has none). An
 * appliance runs the production addon, so no environment variable, set by mistake or by an attacker, can
 * make it kill itself mid-rotation. The addon is only consulted when the variable is set.
 */
import { loadAddon } from '../native/addon.js';

export const CRASH_AT_ENV = 'KMIP_AGENT_TEST_CRASH_AT';

/** A hook for RotationOptions.afterJournal, or undefined when crashing is not armed (always so in production). */
export function crashHook(env: NodeJS.ProcessEnv = process.env): ((step: string) => void) | undefined {
  const at = env[CRASH_AT_ENV];
  if (!at) return undefined;
  let testBuild: boolean;
  try {
    testBuild = loadAddon().testSeams !== undefined;
  } catch {
    testBuild = false;
  }
  if (!testBuild) return undefined;
  return (step) => {
    if (step === at) process.kill(process.pid, 'SIGKILL');
  };
}
