/**
 * `kmip-agent rekey --shallow`: envelope mode's shallow rekey (see src/agent/envelope.ts): a new master
 * key, every drive's and volume's key rewrapped with it in one durable state write, then the previous
 * master key revoked. The drives and volumes keep their keys. Like `recover`, it needs the state to
 * itself, so with a daemon running it is refused (STATE_LOCKED): stop it, rekey, start it.
 * `kmip-agent rekey --deep`: a new key for every drive and volume, one at a time (rotation.ts): in the
 * daemon as a job when it runs (progress n of m in GetAsyncResult), else here.
 */
import { openAgentRuntime } from '../../agent/daemon.js';
import type { ShallowRekeyResult } from '../../agent/envelope.js';
import { KmipAgentError } from '../../errors.js';
import { command, emit, ExitCode } from '../framework.js';
import { DIR_OPTIONS, dirsFrom, fromDaemon, quietLog } from './agent.js';
import { runDeepRekey } from './rotate.js';

function reportText(r: ShallowRekeyResult): string {
  return [
    `new master key ${r.masterKeyUid}; ${r.rewrapped.length} key(s) rewrapped with it, state written`,
    r.previousMasterKeyUid === undefined
      ? 'there was no previous master key'
      : r.previousRevoked
        ? `previous master key ${r.previousMasterKeyUid} revoked`
        : `previous master key ${r.previousMasterKeyUid} NOT revoked (${r.revokeError?.code}: ${r.revokeError?.message}): revoke it on the key server`,
  ].join('\n');
}

export const rekeyCommand = command({
  name: 'rekey',
  usage: '--shallow | --deep [--wait]',
  summary: 'replace the master key and rewrap (--shallow), or every drive and volume key (--deep)',
  description: `--shallow: creates a new master key on the key server (left Pre-Active, its UID journaled at once),
rewraps every drive's and volume's key with it (keys recorded unwrapped, e.g. by recover, are wrapped too),
writes the state once, then activates the new key and only then revokes the previous master key
(Deactivated, reason Superseded). Nothing changes when a key cannot be read. Interrupted, it resumes when
run again: the same new key, from the step its journal reached.
The drives and volumes keep their keys. Refused while the daemon runs: stop it first. Exit 0 when the
previous master key was revoked (or there was none), 1 when it is still active.
--deep: every managed drive's and volume's key is rotated, one at a time (as \`drive rotate\` / \`volume
rotate\` do each), as a job: in the daemon when it runs (--wait follows its progress), else here. Another
rekey or rotation running is refused (JOB_ALREADY_RUNNING, naming it). Interrupted, run it again: each
unfinished rotation resumes from its journal. Exit 0 when every old key was destroyed.`,
  options: {
    shallow: { type: 'boolean', help: 'new master key, rewrap (envelope mode)' },
    deep: { type: 'boolean', help: 'a new key for every drive and volume' },
    wait: { type: 'boolean', help: '--deep with a daemon: wait until the job ends' },
    ...DIR_OPTIONS,
  },
  async run({ values }, ctx) {
    if ((values.shallow === true) === (values.deep === true))
      throw new KmipAgentError(
        'say which rekey: --shallow (a new master key, keys rewrapped) or --deep (a new key for every drive and volume)',
        'REKEY_KIND_MISSING',
      );
    const dirs = dirsFrom(values);
    if (values.deep === true) return runDeepRekey(ctx, dirs, values.wait === true);
    if (await fromDaemon(dirs, 'GetStatus'))
      throw new KmipAgentError(
        'the kmip-agent daemon owns the state: stop it (systemctl stop kmip-agent), run `kmip-agent rekey --shallow`, start it again',
        'STATE_LOCKED',
      );
    const runtime = await openAgentRuntime({ dirs, role: 'cli', log: await quietLog() });
    try {
      if (!runtime.envelope)
        throw new KmipAgentError(
          `appliance ${runtime.config.applianceId} is in ${runtime.config.keyMode} key mode: a shallow rekey needs keyMode "envelope"`,
          'KEY_MODE_NOT_ENVELOPE',
        );
      const result = await runtime.envelope.rekeyShallow();
      runtime.log.info({ event: 'rekey', ...result }, 'shallow rekey done');
      emit(ctx, result, reportText(result));
      return result.previousMasterKeyUid === undefined || result.previousRevoked ? ExitCode.Ok : ExitCode.Failed;
    } finally {
      await runtime.close();
    }
  },
});
