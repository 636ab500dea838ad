/**
 * `kmip-agent drive rotate <id>` and `kmip-agent volume rotate <id>`: a new key for one managed Opal drive
 * or LUKS volume (see src/agent/rotation.ts for the order and what a crash leaves), and the deep rekey of
 * `kmip-agent rekey --deep` (every key, one by one). In the daemon as a job when it runs (`--wait` follows
 * it), else directly, like `drive enroll`. Run again after an interruption, a rotation resumes from its journal.
 */
import { openAgentRuntime } from '../../agent/daemon.js';
import type { JobView } from '../../agent/jobs.js';
import type { RotationResult } from '../../agent/rotation.js';
import { command, emit, ExitCode, type CommandContext } from '../framework.js';
import { DIR_OPTIONS, dirsFrom, fromDaemon, quietLog } from './agent.js';
import { exitOf, jobSummary, waitFor } from './jobs.js';
import type { AgentDirs } from '../../agent/paths.js';

export function rotationText(r: RotationResult): string {
  return [
    `${r.id}: key rotated${r.resumed ? ' (an interrupted rotation resumed)' : ''}: now ${r.keyName} (KMIP object ${r.keyUid})` +
      (r.keyslot !== undefined ? `, keyslot ${r.keyslot}` : ''),
    r.oldKeyDestroyed
      ? `previous key ${r.previousKeyUid} revoked and destroyed`
      : `previous key ${r.previousKeyUid} NOT destroyed (${r.oldKeyError?.code}: ${r.oldKeyError?.message}): it stays on the key server`,
  ].join('\n');
}

/** Starts `method` in the daemon and follows the job with --wait; undefined when no daemon runs. */
export async function inDaemon(
  ctx: CommandContext,
  dirs: AgentDirs,
  method: string,
  params: Record<string, unknown>,
  wait: boolean,
): Promise<number | undefined> {
  const started = await fromDaemon<{ asyncHandle: string }>(dirs, method, params);
  if (!started) return undefined;
  if (!wait) {
    emit(ctx, started, `started ${started.asyncHandle} (kmip-agent job ${started.asyncHandle} --wait)`);
    return ExitCode.Ok;
  }
  const job: JobView = await waitFor(ctx, dirs, started.asyncHandle);
  emit(ctx, job, jobSummary(job));
  return exitOf(job);
}

function rotateCommand(kind: 'drive' | 'volume') {
  return command({
    name: 'rotate',
    usage: '<id> [--wait]',
    summary:
      kind === 'drive'
        ? 'a new key for a managed Opal drive: PINs changed to it, proven, recorded, old key revoked and destroyed'
        : 'a new key for a managed LUKS2 volume: keyslot added, checked, recorded, old keyslot removed, old key destroyed',
    description:
      kind === 'drive'
        ? `The new key is registered on the key server Pre-Active under the drive's key name and journaled before
the drive is touched; the Admin1 PIN (and the SID PIN when it is the key) is changed to it, a fresh
authentication proves it, then it is recorded and activated, and only then the old key is revoked and
destroyed. Interrupted, run it again (or start the daemon): it resumes from its journal. Runs in the daemon
as a job when one runs (--wait follows it).`
        : `The new key is registered on the key server Pre-Active under the volume's key name and journaled before
the volume is touched; a keyslot for it is added and checked, then it is recorded and activated, and only
then the old keyslot is removed and the old key revoked and destroyed. Interrupted, run it again (or start
the daemon): it resumes from its journal. Runs in the daemon as a job when one runs (--wait follows it).`,
    options: { wait: { type: 'boolean', help: 'with a daemon: wait until the job ends' }, ...DIR_OPTIONS },
    positionals: 1,
    async run({ values, positionals }, ctx) {
      const dirs = dirsFrom(values);
      const id = positionals[0]!;
      const code = await inDaemon(ctx, dirs, 'RotateDriveKey', { id, kind }, values.wait === true);
      if (code !== undefined) return code;
      const runtime = await openAgentRuntime({ dirs, role: 'cli', log: await quietLog() });
      try {
        const result = await runtime.rotateKey(kind, id);
        emit(ctx, result, rotationText(result));
        return result.oldKeyDestroyed ? ExitCode.Ok : ExitCode.Failed;
      } finally {
        await runtime.close();
      }
    },
  });
}

export const driveRotateCommand = rotateCommand('drive');
export const volumeRotateCommand = rotateCommand('volume');

/** `rekey --deep`: in the daemon as a job, else here (the same job, run to its end). */
export async function runDeepRekey(ctx: CommandContext, dirs: AgentDirs, wait: boolean): Promise<number> {
  const code = await inDaemon(ctx, dirs, 'RekeySoftwareEncryptionAtRestMasterKey', { deep: true }, wait);
  if (code !== undefined) return code;
  const runtime = await openAgentRuntime({ dirs, role: 'cli', log: await quietLog() });
  try {
    const { asyncHandle } = await runtime.startDeepRekey();
    const job = await runtime.jobs.settled(asyncHandle);
    emit(ctx, job, jobSummary(job));
    return exitOf(job);
  } finally {
    await runtime.close();
  }
}
