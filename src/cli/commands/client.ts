/**
 * `kmip-agent client status|enable|disable|reset`: the KMIP client switch (see src/agent/kmip-client-admin.ts
 * for the rules). With a daemon running the change is made through its API (EnableKmipClient,
 * DisableKmipClient, ResetKmipClient), which reloads its configuration; with none, here under the state lock,
 * so no other process of the agent changes the configuration meanwhile.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { loadConfig } from '../../agent/config.js';
import {
  clientStatus,
  disableClient,
  enableClient,
  planReset,
  resetClient,
  resetWarning,
  type ClientDependent,
  type ClientStatus,
  type DisableResult,
  type ResetPlan,
} from '../../agent/kmip-client-admin.js';
import type { AgentDirs } from '../../agent/paths.js';
import { acquireStateLock } from '../../agent/state-lock.js';
import { decodeState, emptyState, STATE_FILE, type StateBody } from '../../agent/state.js';
import { KmipAgentError } from '../../errors.js';
import { command, emit, group, printable } from '../framework.js';
import { DIR_OPTIONS, dirsFrom, fromDaemon } from './agent.js';

/** The state as recorded (reading needs no lock); an empty one when there is none yet. */
async function recordedState(dirs: AgentDirs): Promise<StateBody> {
  const path = join(dirs.state, STATE_FILE);
  try {
    return decodeState(await readFile(path, 'utf8'), path).body;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return emptyState();
    throw error;
  }
}

/** Runs `change` under the state lock, so no other process of the agent writes the configuration meanwhile. */
async function locally<T>(dirs: AgentDirs, change: () => Promise<T>): Promise<T> {
  const lock = await acquireStateLock(dirs.state, 'cli');
  try {
    return await change();
  } finally {
    await lock.release();
  }
}

const dependentLine = (d: ClientDependent) =>
  printable(`  ${d.kind} ${d.id} (${d.device}): ${d.keyName}, UID ${d.keyUid}`);

const statusCommand = command({
  name: 'status',
  usage: '',
  summary: 'whether the KMIP client is enabled, and what depends on it',
  options: { ...DIR_OPTIONS },
  async run({ values }, ctx) {
    const dirs = dirsFrom(values);
    const status =
      (await fromDaemon<ClientStatus>(dirs, 'GetKmipClient')) ??
      clientStatus(await loadConfig(dirs.config), await recordedState(dirs));
    emit(
      ctx,
      status,
      [
        `KMIP client: ${status.enabled ? 'enabled' : 'disabled'}`,
        `  certificate: ${status.certificate ?? 'none'}`,
        `  key servers: ${status.servers.join(', ') || 'none'}; providers: ${status.providers.join(', ') || 'none'}`,
        `  ${status.dependents.length} managed drive(s)/volume(s) depend on it`,
        ...status.dependents.map(dependentLine),
      ].join('\n'),
    );
  },
});

const enableCommand = command({
  name: 'enable',
  usage: '',
  summary: 'enable the KMIP client (needs a client certificate and a default provider)',
  options: { ...DIR_OPTIONS },
  async run({ values }, ctx) {
    const dirs = dirsFrom(values);
    const done =
      (await fromDaemon<{ enabled: boolean }>(dirs, 'EnableKmipClient')) ??
      (await locally(dirs, async () => ({ enabled: (await enableClient(dirs.config)).client.enabled })));
    emit(ctx, done, 'KMIP client enabled');
  },
});

const disableCommand = command({
  name: 'disable',
  usage: '[--force]',
  summary: 'disable the KMIP client: no key server is contacted (refused while drives or volumes need it)',
  description: `Refused while managed drives or volumes need the key server to unlock at boot (they are named).
--force disables anyway: those stay locked at the next boot until the client is enabled again.`,
  options: {
    force: { type: 'boolean', help: 'disable even though drives or volumes need it (they stay locked)' },
    ...DIR_OPTIONS,
  },
  async run({ values }, ctx) {
    const dirs = dirsFrom(values);
    const force = values.force === true;
    const done =
      (await fromDaemon<{ enabled: boolean; stranded: ClientDependent[] }>(dirs, 'DisableKmipClient', { force })) ??
      (await locally(dirs, async () => {
        const r: DisableResult = await disableClient(dirs.config, await recordedState(dirs), { force });
        return { enabled: r.config.client.enabled, stranded: r.stranded };
      }));
    emit(
      ctx,
      done,
      [
        'KMIP client disabled',
        ...(done.stranded.length > 0
          ? ['these stay locked at the next boot until it is enabled again:', ...done.stranded.map(dependentLine)]
          : []),
      ].join('\n'),
    );
  },
});

const resetCommand = command({
  name: 'reset',
  usage: '[--yes]',
  summary: 'forget the key servers, providers and client certificate (only when the client is disabled)',
  description: `Shows what becomes unreachable and, with --yes, forgets every key server, provider and the
client certificate (its files are deleted; config.json.prev keeps the previous settings). The state is kept:
its key UIDs and names let \`kmip-agent setup\` with the same server, then unlock (or \`recover\`), restore
access. Without --yes nothing changes.`,
  options: {
    yes: { type: 'boolean', help: 'reset: without it, only show what would become unreachable' },
    ...DIR_OPTIONS,
  },
  async run({ values }, ctx) {
    const dirs = dirsFrom(values);
    const confirm = values.yes === true;
    const plan =
      (await fromDaemon<ResetPlan>(dirs, 'ResetKmipClient', { confirm })) ??
      (await locally(dirs, async () =>
        confirm
          ? resetClient(dirs.config, await recordedState(dirs))
          : planReset(await loadConfig(dirs.config), await recordedState(dirs)),
      ));
    if (!confirm) {
      ctx.io.stderr(`${resetWarning(plan)}\nNothing changed: --yes resets.\n`);
      throw new KmipAgentError('resetting the KMIP client needs --yes', 'USAGE_CONFIRM_REQUIRED', {
        details: { plan },
      });
    }
    emit(ctx, { reset: true, ...plan }, `${resetWarning(plan)}\nKMIP client reset.`);
  },
});

export const clientCommand = group({
  name: 'client',
  summary: 'the KMIP client: status, enable, disable, reset',
  commands: [statusCommand, enableCommand, disableCommand, resetCommand],
});
