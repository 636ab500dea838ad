/**
 * Field-engineer commands: `drive remove`, `drive replace`, `drive readd`, `volume remove` and `audit keys`
 * (field-workflows.ts has the order of each and why). They run in the daemon when one runs (the API's
 * RemoveDrive, ReplaceDrive, ReaddDrive, RemoveVolume, AuditKeys), else here with the state to this process;
 * remove and replace are jobs, followed to their end with progress (progress.ts). Run again after an
 * interruption, remove and replace resume from the journal.
 */
import { openAgentRuntime, type AgentRuntime } from '../../agent/daemon.js';
import type { ReaddResult, RemoveResult, ReplaceResult } from '../../agent/field-workflows.js';
import type { JobView } from '../../agent/jobs.js';
import type { KeyAuditReport } from '../../agent/key-audit.js';
import type { AgentDirs } from '../../agent/paths.js';
import { systemClock } from '../../agent/clock.js';
import { KmipAgentError } from '../../errors.js';
import { command, emit, ExitCode, printable, UsageError, type CommandContext } from '../framework.js';
import { followJob } from '../progress.js';
import { DIR_OPTIONS, dirsFrom, fromDaemon, quietLog } from './agent.js';

/** With no daemon, how often the job run here is looked at (it also ends the wait as soon as it settles). */
const LOCAL_POLL_MS = 100;

async function here<T>(dirs: AgentDirs, fn: (runtime: AgentRuntime) => Promise<T>): Promise<T> {
  const runtime = await openAgentRuntime({ dirs, role: 'cli', log: await quietLog() });
  try {
    // The state lock is this process's: a job still `running` was left by a process that died.
    await runtime.jobs.markInterrupted();
    return await fn(runtime);
  } finally {
    await runtime.close();
  }
}

/** Starts the job (in the daemon, else here) and follows it to its end. */
async function runJob(
  ctx: CommandContext,
  dirs: AgentDirs,
  method: string,
  params: Record<string, unknown>,
  start: (runtime: AgentRuntime) => Promise<{ asyncHandle: string }>,
) {
  const started = await fromDaemon<{ asyncHandle: string }>(dirs, method, params);
  if (started)
    return followJob(ctx, async () => {
      const job = await fromDaemon<JobView>(dirs, 'GetAsyncResult', { asyncHandle: started.asyncHandle });
      if (!job) throw new KmipAgentError('the daemon stopped while the job ran', 'API_NOT_RUNNING');
      return job;
    });
  return here(dirs, async (runtime) => {
    const { asyncHandle } = await start(runtime);
    const settled = runtime.jobs.settled(asyncHandle);
    return followJob(ctx, async () => runtime.jobs.get(asyncHandle), {
      pollMs: LOCAL_POLL_MS,
      sleep: (ms) => Promise.race([settled.then(() => undefined), systemClock.sleep(ms)]),
    });
  });
}

function keyLine(key: RemoveResult['key'] | undefined): string {
  if (!key) return '';
  if (key.kept) return `key ${key.keyUid} kept on the key server (--keep-key; audit keys lists it)`;
  if (key.leftOnServer)
    return `WARNING: the key server refused to retire key ${key.keyUid} (${key.leftOnServer.code}: ${key.leftOnServer.message}); it is LEFT ON THE SERVER: have it destroyed there (kmip-agent audit keys lists it)`;
  return `key ${key.keyUid} ${key.destroyed ? 'revoked and destroyed' : key.revoked ? 'revoked' : 'untouched'}`;
}

function jobOutcome(ctx: CommandContext, done: { job: JobView; events: unknown[] }, human: (result: never) => string) {
  const { job, events } = done;
  const text =
    job.status === 'done'
      ? human(job.result as never)
      : `${job.asyncHandle} ${job.status}: ${job.error?.code ?? ''} ${job.error?.message ?? ''} (run the command again to resume)`;
  emit(ctx, { ...job, progressEvents: events }, printable(text));
  return job.status === 'done' ? ExitCode.Ok : ExitCode.Failed;
}

const confirmRequired = (what: string) =>
  new UsageError(`${what}: add --yes to confirm (nothing was done)`, 'USAGE_CONFIRM_REQUIRED');

export const driveRemoveCommand = command({
  name: 'remove',
  usage: '<id> --yes [--force]',
  summary: 'take a managed drive out for good: crypto erase, factory revert, its key revoked and destroyed',
  description: `In this order, each step journaled before the next: the global range is crypto-erased (new media key:
ALL DATA ON THE DRIVE IS LOST), the drive is reverted to factory state, its key is revoked and destroyed on the
key server, then its record and config entry are dropped. Run again after an interruption, it resumes. A key the
server refuses to revoke or destroy (a client identity without the right) is reported and left there: the drive
is still removed and \`kmip-agent audit keys\` lists the key until it is destroyed on the server.
A drive that cannot be reached (gone, dead) cannot be erased: refused (DRIVE_UNREACHABLE) unless --force, which
revokes and destroys its key anyway and records (journal, result) that the drive was NOT erased.`,
  options: {
    yes: { type: 'boolean', help: 'confirm: the drive is erased and its key destroyed' },
    force: { type: 'boolean', help: 'also when the drive cannot be reached: key destroyed, drive NOT erased' },
    ...DIR_OPTIONS,
  },
  positionals: 1,
  async run({ values, positionals: [id] }, ctx) {
    if (values.yes !== true) throw confirmRequired(`drive remove erases ${id} (ALL DATA LOST) and destroys its key`);
    const force = values.force === true;
    const done = await runJob(ctx, dirsFrom(values), 'RemoveDrive', { id, confirm: true, force }, (r) =>
      r.field.removeDrive(id!, { force }),
    );
    return jobOutcome(ctx, done, (r: RemoveResult) =>
      r.erased === false
        ? `${r.id} (${r.device}): NOT erased (unreachable: ${r.notErasedReason?.code}), record dropped; ${keyLine(r.key)}`
        : `${r.id} (${r.device}): erased, reverted to factory state; ${keyLine(r.key)}`,
    );
  },
});

export const driveReplaceCommand = command({
  name: 'replace',
  usage: '<old-id> <new-drive> [--keep-key]',
  summary:
    "a new, factory-fresh drive takes a managed drive's role; the old key is destroyed once the new drive is proven",
  description: `The new drive (a device path or emu:/path/to/image; refused when it is managed already or has an owner)
is enrolled with a key of its own, proven by a fresh authentication with that key, and takes the old drive's
role (unlock at boot, config entry). Only then is the old key revoked and destroyed (--keep-key: left on the key
server, listed by \`kmip-agent audit keys\`) and the old record dropped. The old drive itself is not touched.
Each step is journaled: run it again after an interruption and it resumes.`,
  options: {
    'keep-key': { type: 'boolean', help: 'leave the old key on the key server (not revoked, not destroyed)' },
    ...DIR_OPTIONS,
  },
  positionals: 2,
  async run({ values, positionals: [oldId, newDevice] }, ctx) {
    const keepKey = values['keep-key'] === true;
    const done = await runJob(ctx, dirsFrom(values), 'ReplaceDrive', { oldId, newDevice, keepKey }, (r) =>
      r.field.replaceDrive(oldId!, newDevice!, { keepKey }),
    );
    return jobOutcome(
      ctx,
      done,
      (r: ReplaceResult) =>
        `${r.oldId} replaced by ${r.newId} (${r.newDevice}, key ${r.newKeyUid}, proven); old ${keyLine(r.oldKey)}`,
    );
  },
});

export const driveReaddCommand = command({
  name: 'readd',
  usage: '<id>',
  summary: 'a managed drive marked failed or missing comes back: unlocked with its key, its faults cleared',
  description: `For a drive whose failure was spurious (a cable, a power blip): its recorded key must still be on the key
server (else refused: READD_KEY_DESTROYED, with what to do), then it is unlocked with it, through the lockout
guard (a key the drive refused before is never sent again), and its faults (DriveUnlockFailed, DriveMissing,
KeyNotFound, DriveLockoutRisk) are cleared.`,
  options: { ...DIR_OPTIONS },
  positionals: 1,
  async run({ values, positionals: [id] }, ctx) {
    const dirs = dirsFrom(values);
    const result =
      (await fromDaemon<ReaddResult>(dirs, 'ReaddDrive', { id })) ?? (await here(dirs, (r) => r.field.readdDrive(id!)));
    emit(ctx, result, printable(`${result.id} (${result.device}): back, ${result.state} with key ${result.keyUid}`));
  },
});

export const volumeRemoveCommand = command({
  name: 'remove',
  usage: '<id> --yes [--destroy-data]',
  summary: 'take a managed LUKS2 volume out: its KMIP keyslot removed, its key revoked and destroyed',
  description: `The keyslot holding the volume's KMIP key is removed from the LUKS2 header, then the key is revoked and
destroyed on the key server and the record and config entry dropped, each step journaled (run it again after an
interruption). When that keyslot is the volume's only one, removing it makes all its data unreadable for good:
refused (VOLUME_LAST_KEYSLOT) unless --destroy-data says so.`,
  options: {
    yes: { type: 'boolean', help: "confirm: the volume's KMIP key is destroyed" },
    'destroy-data': { type: 'boolean', help: 'also when it is the only keyslot: ALL DATA ON THE VOLUME IS LOST' },
    ...DIR_OPTIONS,
  },
  positionals: 1,
  async run({ values, positionals: [id] }, ctx) {
    if (values.yes !== true) throw confirmRequired(`volume remove destroys the KMIP key of ${id}`);
    const destroyData = values['destroy-data'] === true;
    const done = await runJob(ctx, dirsFrom(values), 'RemoveVolume', { id, confirm: true, destroyData }, (r) =>
      r.field.removeVolume(id!, { destroyData }),
    );
    return jobOutcome(ctx, done, (r: RemoveResult) => `${r.id} (${r.device}): KMIP keyslot removed; ${keyLine(r.key)}`);
  },
});

function auditLines(report: KeyAuditReport): string {
  const on = (provider: string) => (report.providers.length > 1 ? ` (on ${provider})` : '');
  const lines = [
    `${report.group}: ${report.serverObjects} object(s) on the key servers, ${report.recorded} record(s)`,
    ...report.providers.map((p) =>
      p.error
        ? `  provider ${p.name}: NOT AUDITED: ${p.error.code}: ${p.error.message}`
        : `  provider ${p.name}: ${p.serverObjects} object(s)`,
    ),
    ...report.orphans.map(
      (o) => `  orphan: ${o.uid}${on(o.provider)} ${o.state} ${o.name ?? '(no name)'}: no drive or volume uses it`,
    ),
    ...report.inFlight.map(
      (k) =>
        `  in-flight (job ${k.job}, step ${k.step ?? 'none'}): ${k.uid}${on(k.provider)} ${k.state} ${k.name ?? '(no name)'}: its ${k.kind} job finishes or rolls it back when run again`,
    ),
    ...report.retired.map(
      (k) =>
        `  retired master key: ${k.uid}${on(k.provider)} ${k.state} ${k.name ?? '(no name)'}: superseded by a rekey; destroy it once no state backup needs it`,
    ),
    ...report.missing.map((m) =>
      m.kind === 'master-key'
        ? `  missing: the master key ${m.keyUid} is not on provider ${m.provider}: no wrapped key can be unwrapped`
        : `  missing: ${m.kind} ${m.id} (${m.device}): its key ${m.keyUid} is not on provider ${m.provider}`,
    ),
  ];
  if (report.clean) lines.push('clean: every key is recorded and every record has its key');
  else if (report.providers.some((p) => p.error)) lines.push('incomplete: a provider could not be audited');
  return printable(lines.join('\n'));
}

export const auditKeysCommand = command({
  name: 'keys',
  usage: '',
  summary: "the appliance's keys on the server against its records: orphans and records whose key is missing",
  options: { ...DIR_OPTIONS },
  async run({ values }, ctx) {
    const dirs = dirsFrom(values);
    const report =
      (await fromDaemon<KeyAuditReport>(dirs, 'AuditKeys')) ?? (await here(dirs, (r) => r.field.auditKeys()));
    emit(ctx, report, auditLines(report));
    return report.clean ? ExitCode.Ok : ExitCode.Failed;
  },
});

export const driveFieldCommands = [driveRemoveCommand, driveReplaceCommand, driveReaddCommand];
