/**
 * One real PyKMIP server for the whole test run, handed to tests with `inject('pykmip')`.
 * Suites that need a server with other settings start their own with startPykmip().
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { requireTestAddon } from './addon.js';
import { startPykmip, type PykmipServer, type PykmipServerInfo } from './pykmip.js';
import { removeTestDir } from './test-run.js';

declare module 'vitest' {
  export interface ProvidedContext {
    pykmip: PykmipServerInfo;
  }
}

let server: PykmipServer | undefined;
let emulatorRamDir: string | undefined;
let agentDirs: string | undefined;

export async function setup(project: TestProject): Promise<void> {
  // Tests load the test addon (the shipped one plus native/test's seams); workers and the CLI
  // processes they spawn inherit this. A missing test addon stops the run here, saying what to build.
  process.env.KMIP_AGENT_ADDON ??= requireTestAddon();
  // The emulated drives' volatile key caches ("drive RAM") go to a directory of this run, removed at
  // the end, instead of piling up in /dev/shm. Workers start after this and inherit it.
  emulatorRamDir = mkdtempSync(join(tmpdir(), 'kmip-agent-emu-ram-'));
  process.env.KMIP_AGENT_EMU_RAM_DIR ??= emulatorRamDir;
  // Drive commands keep the agent's refused-key memory in the state directory and read the tries reserve
  // from the config: never the machine's /var/lib/kmip-agent or /etc/kmip-agent during tests.
  agentDirs = mkdtempSync(join(tmpdir(), 'kmip-agent-test-dirs-'));
  process.env.KMIP_AGENT_STATE_DIR ??= join(agentDirs, 'state');
  process.env.KMIP_AGENT_CONFIG_DIR ??= join(agentDirs, 'config');
  // For quick local runs of suites that never talk KMIP; CI never sets it, and tests that
  // inject('pykmip') then fail loudly rather than skip.
  if (process.env.KMIP_AGENT_SKIP_PYKMIP === '1') return;
  server = await startPykmip();
  const { host, port, ca, clientCert, clientKey, dir, logPath } = server;
  project.provide('pykmip', { host, port, ca, clientCert, clientKey, dir, logPath });
}

export async function teardown(): Promise<void> {
  // In a recorded run (scripts/test.sh) they are kept for the secrets hygiene scan (test-run.ts).
  if (emulatorRamDir) removeTestDir(emulatorRamDir);
  if (agentDirs) removeTestDir(agentDirs);
  await server?.stop();
  server = undefined;
}
