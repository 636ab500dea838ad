/**
 * `kmip-agent recover`: rebuilds the state from the key server (see src/agent/recovery.ts). It needs the
 * state to itself, so with a daemon running it is refused (STATE_LOCKED): recovery may spend an Opal
 * try, and an operator should see its report before the daemon acts on it. Stop the daemon, recover,
 * start it. A state that already records drives is only added to, and only with --yes.
 */
import type { RecoveryEntry, RecoveryReport } from '../../agent/recovery.js';
import { openAgentRuntime } from '../../agent/daemon.js';
import { KmipAgentError } from '../../errors.js';
import { command, emit, ExitCode, printable, textTable } from '../framework.js';
import { DIR_OPTIONS, dirsFrom, fromDaemon, quietLog } from './agent.js';

const WHAT: Record<RecoveryEntry['outcome'], string> = {
  found: 'key found and verified, recorded',
  recorded: 'already recorded, kept',
  missing: 'no key with its name on the server',
  ambiguous: 'several keys with its name: none recorded (resolve on the server)',
  rejected: 'the key did not open it: not recorded',
  'refused-before': 'the drive refused this key before: not tried again',
  'lockout-risk': 'too few tries left: not tried',
  failed: 'could not be checked',
  'no-identity': 'no stable identity',
  unmanaged: 'locking not enabled: never enrolled',
};

function reportText(r: RecoveryReport): string {
  const rows = [
    ['ID', 'KIND', 'DEVICE', 'RESULT', 'KEY', 'WHY'],
    ...r.entries.map((e) => [
      e.id ?? '-',
      e.kind,
      e.device,
      e.outcome,
      e.keyUids.join(','),
      `${WHAT[e.outcome]}${e.error ? ` [${e.error.code}]` : ''}`,
    ]),
  ];
  return [
    `recovery for appliance ${r.applianceId}: ${r.serverKeys} object(s) in group ${r.group}`,
    ...(r.entries.length ? [textTable(rows)] : ['nothing in the inventory to recover']),
    ...r.unmatched.map((u) => `key ${printable(u.name)} (${u.uid}) matches no drive or volume here`),
    ...r.corruptFiles.map((f) => `corrupt state kept at ${f}`),
    ...(r.previousKeptAt ? [`previous generation kept at ${r.previousKeptAt}`] : []),
    r.written ? 'state written' : 'nothing written',
  ].join('\n');
}

export const recoverCommand = command({
  name: 'recover',
  usage: '[--yes]',
  summary: 'rebuild a missing or corrupt state from the key server (keys found by name and verified)',
  description: `Locates the appliance's keys (Object Group kmip-agent/<appliance>), matches their names
kmip-agent/<appliance>/<id> to the drives and volumes here, verifies each before recording it (LUKS2: against
the header, no try spent; Opal: one Admin1 authentication at most, never with a key the drive refused
before, never within the tries reserve) and reports found / missing / ambiguous. Nothing is deleted: a
corrupt state file stays where it was put aside. Refused while the daemon runs: stop it first.
Exit 0 when everything found was recorded and nothing is missing or ambiguous, else 1.`,
  options: {
    yes: { type: 'boolean', help: 'also add to a state that already records drives or volumes' },
    ...DIR_OPTIONS,
  },
  async run({ values }, ctx) {
    const dirs = dirsFrom(values);
    if (await fromDaemon(dirs, 'GetStatus'))
      throw new KmipAgentError(
        'the kmip-agent daemon owns the state: stop it (systemctl stop kmip-agent), run `kmip-agent recover`, start it again',
        'STATE_LOCKED',
      );
    const runtime = await openAgentRuntime({ dirs, role: 'cli', log: await quietLog() });
    try {
      const body = runtime.state.snapshot();
      if (body.drives.length + body.volumes.length > 0 && values.yes !== true)
        throw new KmipAgentError(
          `the state records ${body.drives.length} drive(s) and ${body.volumes.length} volume(s): it is neither missing nor corrupt; --yes adds what is found to it`,
          'RECOVER_STATE_PRESENT',
        );
      const report = await runtime.recover();
      const faults = runtime.faults.list().map((f) => ({ code: f.code, severity: f.severity, affects: f.affects }));
      emit(ctx, { ...report, faults }, reportText(report));
      const settled = report.entries.every((e) => ['found', 'recorded', 'unmanaged'].includes(e.outcome));
      return settled ? ExitCode.Ok : ExitCode.Failed;
    } finally {
      await runtime.close();
    }
  },
});
