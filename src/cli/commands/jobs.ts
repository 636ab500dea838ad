/**
 * Jobs from the command line: `kmip-agent jobs` (the journal), `kmip-agent job <handle> [--wait]`, and
 * `kmip-agent encryption-at-rest enable|disable [--wait]`, which start EnableEncryptionAtRest or
 * DisableEncryptionAtRest in the running daemon. Waiting shows progress: a bar on a terminal, plain lines
 * otherwise (logs, pipes). Jobs run in the daemon only: with none running the journal is read from the
 * state file (reading needs no lock).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { jobView, type JobView } from '../../agent/jobs.js';
import { decodeState, STATE_FILE } from '../../agent/state.js';
import { followJob } from '../progress.js';
import { KmipAgentError } from '../../errors.js';
import { command, emit, ExitCode, group, printable, UsageError, type CommandContext } from '../framework.js';
import { DIR_OPTIONS, dirsFrom, fromDaemon } from './agent.js';
import type { AgentDirs } from '../../agent/paths.js';

const noDaemon = () =>
  new KmipAgentError(
    'no kmip-agent daemon is running: jobs run in the daemon (start it with systemctl start kmip-agent)',
    'API_NOT_RUNNING',
  );

function progressText(job: JobView): string {
  const p = job.progress;
  return p ? `${p.done} of ${p.total}` : '-';
}

function jobLine(job: JobView): string {
  const why = job.error ? ` ${job.error.code}: ${job.error.message}` : '';
  return printable(
    `${job.asyncHandle}  ${job.status.padEnd(11)} ${progressText(job).padEnd(8)} ${job.startedAt}${job.endedAt ? ` .. ${job.endedAt}` : ''}${why}`,
  );
}

/** What the job did, one line per drive (from its result), for people. */
export function jobSummary(job: JobView): string {
  const lines = [jobLine(job)];
  const result = (job.result ?? {}) as Record<string, { id?: string; device: string; code?: string }[] | undefined>;
  for (const [what, list] of Object.entries(result)) {
    if (!Array.isArray(list)) continue;
    for (const d of list)
      lines.push(printable(`  ${what}: ${d.device}${d.id ? ` (${d.id})` : ''}${d.code ? ` ${d.code}` : ''}`));
  }
  return lines.join('\n');
}

/** Follows the job in the daemon to its end, showing progress (progress.ts: a bar on a terminal). */
export async function waitFor(ctx: CommandContext, dirs: AgentDirs, asyncHandle: string): Promise<JobView> {
  const { job } = await followJob(ctx, async () => {
    const job = await fromDaemon<JobView>(dirs, 'GetAsyncResult', { asyncHandle });
    if (!job) throw noDaemon();
    return job;
  });
  return job;
}

export const exitOf = (job: JobView) => (job.status === 'done' ? ExitCode.Ok : ExitCode.Failed);

async function journal(dirs: AgentDirs): Promise<JobView[]> {
  const live = await fromDaemon<{ jobs: JobView[] }>(dirs, 'ListJobs');
  if (live) return live.jobs;
  const path = join(dirs.state, STATE_FILE);
  const text = await readFile(path, 'utf8').catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return undefined;
    throw error;
  });
  if (text === undefined) return [];
  return decodeState(text, path).body.jobs.map(jobView);
}

export const jobsCommand = command({
  name: 'jobs',
  usage: '',
  summary: 'the job journal: enrollments, recoveries, encryption at rest on/off, with status and progress',
  options: { ...DIR_OPTIONS },
  async run({ values }, ctx) {
    const jobs = await journal(dirsFrom(values));
    emit(ctx, { jobs }, jobs.length ? jobs.map(jobLine).join('\n') : 'no jobs');
  },
});

export const jobCommand = command({
  name: 'job',
  usage: '<handle> [--wait]',
  summary: 'one job by its handle (asyncHandle); --wait follows it to the end',
  options: { wait: { type: 'boolean', help: 'wait until the job ends, showing its progress' }, ...DIR_OPTIONS },
  positionals: 1,
  async run({ values, positionals }, ctx) {
    const dirs = dirsFrom(values);
    const handle = positionals[0]!;
    let job: JobView | undefined;
    if (values.wait) job = await waitFor(ctx, dirs, handle);
    else
      job =
        (await fromDaemon<JobView>(dirs, 'GetAsyncResult', { asyncHandle: handle })) ??
        (await journal(dirs)).find((j) => j.asyncHandle === handle);
    if (!job) throw new KmipAgentError(`no job ${handle}`, 'JOB_UNKNOWN');
    emit(ctx, job, jobSummary(job));
    return job.status === 'running' ? ExitCode.Ok : exitOf(job);
  },
});

function startCommand(name: 'enable' | 'disable') {
  const method = name === 'enable' ? 'EnableEncryptionAtRest' : 'DisableEncryptionAtRest';
  return command({
    name,
    usage: name === 'enable' ? '[--wait]' : '--yes [--wait]',
    summary:
      name === 'enable'
        ? 'enroll every unmanaged, factory-fresh Opal drive (a job in the daemon; owned drives are skipped)'
        : 'hand every managed Opal drive back (Opal drives only: LUKS volumes keep their keys): unlocked, locking off, data kept, then its key revoked',
    options: {
      wait: { type: 'boolean', help: 'wait until the job ends, showing its progress' },
      ...(name === 'disable' ? { yes: { type: 'boolean', help: 'confirm: the drives stop being protected' } } : {}),
      ...DIR_OPTIONS,
    } as const,
    async run({ values }, ctx) {
      const yes = (values as { yes?: boolean }).yes === true;
      if (name === 'disable' && !yes)
        throw new UsageError('disable turns encryption at rest off for every managed drive: add --yes to confirm');
      const dirs = dirsFrom(values);
      const started = await fromDaemon<{ asyncHandle: string }>(
        dirs,
        method,
        name === 'disable' ? { confirm: true } : {},
      );
      if (!started) throw noDaemon();
      if (!values.wait) {
        emit(ctx, started, `started ${started.asyncHandle} (kmip-agent job ${started.asyncHandle} --wait)`);
        return ExitCode.Ok;
      }
      const job = await waitFor(ctx, dirs, started.asyncHandle);
      emit(ctx, job, jobSummary(job));
      return exitOf(job);
    },
  });
}

export const encryptionAtRestCommand = group({
  name: 'encryption-at-rest',
  summary:
    'turn encryption at rest on (enroll every fresh Opal drive) or off (Opal drives only), as jobs in the daemon',
  commands: [startCommand('enable'), startCommand('disable')],
});

/** The commands of this file, in the order `kmip-agent --help` lists them. */
export const jobCommands = [jobsCommand, jobCommand, encryptionAtRestCommand];
