/**
 * `kmip-agent rekey master [--internal | --external] [--provider NAME] [--deep] [--wait]`: the Element
 * style master rekey (RekeySoftwareEncryptionAtRestMasterKey) as a job: a new master key where asked
 * (master-key.ts: internal, sealed on this machine, or on a configured provider), every key rewrapped, the
 * previous master key retired on its holder last. `kmip-agent rekey info`: GetSoftwareEncryptionAtRestInfo.
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
import { exitOf, jobSummary } from './jobs.js';
import { inDaemon, runDeepRekey } from './rotate.js';
import type { AgentDirs } from '../../agent/paths.js';
import type { CommandContext } from '../framework.js';
import type { SoftwareEncryptionAtRestInfo } from '../../agent/daemon.js';

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

const keyText = (k: unknown) => {
  const key = k as { keyID?: string; keyManagementType?: string; keyProviderID?: string | null } | undefined;
  return key?.keyID
    ? `${key.keyID} (${key.keyManagementType}${key.keyProviderID ? `, provider ${key.keyProviderID}` : ''})`
    : 'none';
};

function infoText(i: SoftwareEncryptionAtRestInfo): string {
  const m = i.masterKeyInfo;
  return [
    `software encryption at rest ${i.state} (key mode ${i.mode})`,
    m
      ? `master key ${keyText(m)}, created ${m.keyCreatedTime ?? 'before creation times were recorded'}`
      : 'no master key yet',
    ...(i.rekeyMasterKeyAsyncResultID ? [`last master rekey: ${i.rekeyMasterKeyAsyncResultID}`] : []),
  ].join('\n');
}

/** `rekey master`: in the daemon as a job, else here (the same job, run to its end). */
async function runMasterRekey(ctx: CommandContext, dirs: AgentDirs, params: Record<string, unknown>, wait: boolean) {
  const code = await inDaemon(ctx, dirs, 'RekeySoftwareEncryptionAtRestMasterKey', params, wait);
  if (code !== undefined) return code;
  const runtime = await openAgentRuntime({ dirs, role: 'cli', log: await quietLog() });
  try {
    // A rekey an earlier run left unfinished is finished first, and is what this run reports (it knows
    // where its new key goes; a new rekey is the next run's).
    const resumed = await runtime.resumeMasterRekey();
    const { asyncHandle } = resumed
      ? { asyncHandle: resumed }
      : await runtime.startMasterRekey(params as { deep?: boolean });
    const job = await runtime.jobs.settled(asyncHandle);
    emit(
      ctx,
      job,
      [
        jobSummary(job),
        `new master key: ${keyText(job.newKey)}`,
        `decommissioned: ${keyText(job.keyToDecommission)}`,
      ].join('\n'),
    );
    return exitOf(job);
  } finally {
    await runtime.close();
  }
}

async function runInfo(ctx: CommandContext, dirs: AgentDirs): Promise<number> {
  let info = await fromDaemon<SoftwareEncryptionAtRestInfo>(dirs, 'GetSoftwareEncryptionAtRestInfo');
  if (!info) {
    const runtime = await openAgentRuntime({ dirs, role: 'cli', log: await quietLog() });
    try {
      info = runtime.softwareEncryptionAtRestInfo();
    } finally {
      await runtime.close();
    }
  }
  emit(ctx, info, infoText(info));
  return ExitCode.Ok;
}

export const rekeyCommand = command({
  name: 'rekey',
  usage: 'master [--internal | --external] [--provider NAME] [--deep] [--wait] | info | --shallow | --deep [--wait]',
  summary: 'replace the master key (master), show it (info), or replace every drive and volume key (--deep)',
  description: `master: the master rekey of envelope mode (API RekeySoftwareEncryptionAtRestMasterKey), a job that
answers with its asyncHandle at once (--wait follows it; \`kmip-agent job <handle>\` shows newKey and
keyToDecommission). A new master key is made where asked: --internal keeps it on this appliance, sealed
with systemd-creds (host key, and the TPM2 when there is one) in a 0600 file of the state directory;
--external / --provider NAME puts it on that configured key provider (default: where the current one
is). It is made Pre-Active and journaled, every drive's and volume's key is rewrapped with it in one
durable state write, it is activated, and only then is the previous master key retired on its own
holder (revoked on its provider, or its sealed file deleted). Interrupted, run it again (or start the
daemon): it resumes from its journal with the new key it made. With --deep, every drive's and volume's
key is rotated afterwards as well. Internal <-> external and provider to provider both work; each key
keeps its plain recovery copy on the default provider, so \`recover\` works whatever holds the master key.
info: the key mode and the current master key (keyID, keyManagementType, keyProviderID, keyCreatedTime).
--shallow: creates a new master key on the key server (left Pre-Active, its UID journaled at once),
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
    internal: { type: 'boolean', help: 'master: keep the new master key on this appliance (sealed)' },
    external: { type: 'boolean', help: 'master: put the new master key on a key provider' },
    provider: { type: 'string', value: 'NAME', help: 'master: the key provider for the new master key' },
    shallow: { type: 'boolean', help: 'new master key, rewrap (envelope mode), here, daemon stopped' },
    deep: { type: 'boolean', help: 'a new key for every drive and volume' },
    wait: { type: 'boolean', help: 'with a daemon: wait until the job ends' },
    ...DIR_OPTIONS,
  },
  positionals: [0, 1],
  async run({ values, positionals }, ctx) {
    const dirs = dirsFrom(values);
    const sub = positionals[0];
    if (sub !== undefined && sub !== 'master' && sub !== 'info')
      throw new KmipAgentError(`rekey ${sub}: say master or info`, 'REKEY_KIND_MISSING');
    if (sub === 'info') return runInfo(ctx, dirs);
    if (sub === 'master') {
      if (values.internal === true && (values.external === true || values.provider !== undefined))
        throw new KmipAgentError(
          'an internal master key is held on this appliance: --internal goes without --external and --provider',
          'REKEY_INVALID_KEY_MANAGEMENT',
        );
      if (values.shallow === true)
        throw new KmipAgentError('rekey master is the shallow rekey already: drop --shallow', 'REKEY_KIND_MISSING');
      const params = {
        ...(values.internal === true ? { keyManagementType: 'internal' } : {}),
        ...(values.external === true ? { keyManagementType: 'external' } : {}),
        ...(values.provider !== undefined ? { keyProviderID: values.provider } : {}),
        deep: values.deep === true,
      };
      return runMasterRekey(ctx, dirs, params, values.wait === true);
    }
    if (values.internal === true || values.external === true || values.provider !== undefined)
      throw new KmipAgentError('--internal, --external and --provider go with `rekey master`', 'REKEY_KIND_MISSING');
    if ((values.shallow === true) === (values.deep === true))
      throw new KmipAgentError(
        'say which rekey: --shallow (a new master key, keys rewrapped) or --deep (a new key for every drive and volume)',
        'REKEY_KIND_MISSING',
      );
    if (values.deep === true) return runDeepRekey(ctx, dirs, values.wait === true);
    if (await fromDaemon(dirs, 'GetStatus'))
      throw new KmipAgentError(
        'the kmip-agent daemon owns the state: `kmip-agent rekey master` runs the shallow rekey in it (or stop it and run `kmip-agent rekey --shallow`)',
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
