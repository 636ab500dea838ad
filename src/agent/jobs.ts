/**
 * Jobs: long work (enrolling every drive, disabling encryption at rest) started by an API call that
 * answers at once with a handle (asyncHandle); GetAsyncResult reads the job by it. Each job is journaled
 * in state.jobs as it goes (status, steps, n of m, the result), so an answer survives a restart and a job
 * the process did not finish is found `running` by the next start and marked `interrupted`, naming the
 * last step it journaled. At most one job of a kind runs at a time; finished jobs are kept bounded.
 */
import { randomUUID } from 'node:crypto';
import { KmipAgentError } from '../errors.js';
import type { Clock } from './clock.js';
import { JobJournal, journalError } from './journal.js';
import type { Job, StateStore } from './state.js';

/** Finished jobs kept in the journal by default (running ones are always kept). */
export const KEEP_FINISHED_JOBS = 100;

export type JobStatus = Job['status'];

/** A job as the API shows it. */
export interface JobView {
  asyncHandle: string;
  kind: string;
  status: JobStatus;
  progress?: { done: number; total: number };
  result?: unknown;
  error?: { code: string; message: string };
  startedAt: string;
  endedAt?: string;
  /** Element's names: when the job was made, and when it last journaled anything (jobView sets both). */
  createTime?: string;
  lastUpdateTime?: string;
  /** A master rekey's keys, once its journal names them: the one it makes and the one it retires. */
  newKey?: unknown;
  keyToDecommission?: unknown;
  steps: Job['steps'];
}

/** What the work of a job reports through. */
export interface JobContext {
  readonly id: string;
  /** Journals a step (written before it returns: a crash after it leaves the step on record). */
  step(name: string, detail?: Record<string, unknown>): Promise<void>;
  progress(done: number, total: number): Promise<void>;
}

/** The work; what it resolves with is the job's result. A rejection fails the job with its code. */
export type JobWork = (job: JobContext) => Promise<unknown>;

export class JobAlreadyRunningError extends KmipAgentError {
  constructor(
    kind: string,
    readonly asyncHandle: string,
  ) {
    super(`a ${kind} job is already running (asyncHandle ${asyncHandle})`, 'JOB_ALREADY_RUNNING', {
      details: { kind, asyncHandle },
    });
  }
}

export interface JobRunnerOptions {
  state: StateStore;
  clock: Clock;
  newId?: () => string;
  keepFinished?: number;
  /** Told when journaling a job's end failed (the job itself is over either way). */
  onError?: (error: unknown, job: string) => void;
}

export function jobView(job: Job): JobView {
  const { id, ...rest } = job;
  const times = [job.startedAt, ...job.steps.map((s) => s.at), ...(job.endedAt ? [job.endedAt] : [])];
  const keys = job.steps.findLast((s) => s.detail?.newKey !== undefined)?.detail;
  return {
    asyncHandle: id,
    ...rest,
    createTime: job.startedAt,
    lastUpdateTime: times.reduce((a, b) => (Date.parse(b) > Date.parse(a) ? b : a)),
    ...(keys?.newKey !== undefined ? { newKey: keys.newKey } : {}),
    ...(keys?.keyToDecommission !== undefined ? { keyToDecommission: keys.keyToDecommission } : {}),
  };
}

/**
 * Drops the oldest finished jobs beyond `keep`, never a running one nor the newest job of a kind (what
 * readers such as the StateRecovered check look at).
 */
export function pruneJobs(jobs: Job[], keep: number): Job[] {
  const newestOfKind = new Map(jobs.map((j) => [j.kind, j]));
  const finished = jobs.filter((j) => j.status !== 'running' && newestOfKind.get(j.kind) !== j);
  const drop = new Set(finished.slice(0, Math.max(0, finished.length - keep)));
  return jobs.filter((j) => !drop.has(j));
}

export class JobRunner {
  private readonly running = new Map<string, { id: string; kind: string; done: Promise<void> }>();
  private readonly newId: () => string;
  private readonly keep: number;

  constructor(private readonly options: JobRunnerOptions) {
    this.newId = options.newId ?? randomUUID;
    this.keep = options.keepFinished ?? KEEP_FINISHED_JOBS;
  }

  /**
   * Marks the jobs a previous process left `running` as interrupted, with the step each reached. Call
   * once at start, holding the state lock (so no other process runs them); returns those jobs.
   */
  async markInterrupted(): Promise<JobView[]> {
    const left = this.options.state.snapshot().jobs.filter((j) => j.status === 'running');
    if (left.length === 0) return [];
    const at = this.options.clock.now().toISOString();
    const body = await this.options.state.update((s) => {
      for (const job of s.jobs.filter((j) => j.status === 'running')) {
        const reached = job.steps.at(-1)?.name;
        job.status = 'interrupted';
        job.endedAt = at;
        job.error = {
          code: 'JOB_INTERRUPTED',
          message: `the agent stopped while this ${job.kind} job ran (${reached ? `last step: ${reached}` : 'before its first step'})`,
        };
      }
    });
    const ids = new Set(left.map((j) => j.id));
    return body.jobs.filter((j) => ids.has(j.id)).map(jobView);
  }

  /**
   * Starts `work` as a job of `kind`; resolves with its handle once the job is journaled. One job per
   * `lane` (default: its kind) at a time: kinds that must not overlap share a lane.
   */
  async start(kind: string, work: JobWork, options: { lane?: string } = {}): Promise<{ asyncHandle: string }> {
    const lane = options.lane ?? kind;
    const busy = this.running.get(lane);
    if (busy) throw new JobAlreadyRunningError(busy.kind, busy.id);
    const id = `${kind}-${this.newId()}`;
    let release!: () => void;
    this.running.set(lane, { id, kind, done: new Promise<void>((r) => (release = r)) });
    const { state, clock } = this.options;
    const journal = new JobJournal(state, clock, id);
    try {
      await journal.begin(kind);
    } catch (error) {
      this.running.delete(lane);
      release();
      throw error;
    }
    const context: JobContext = {
      id,
      step: (name, detail) => journal.step(name, detail),
      progress: async (done, total) => {
        await journal.change((j) => {
          j.progress = { done, total };
        });
      },
    };
    const finish = (fn: (job: Job) => void) =>
      state
        .update((s) => {
          const job = s.jobs.find((j) => j.id === id);
          if (job) {
            fn(job);
            job.endedAt = clock.now().toISOString();
          }
          s.jobs = pruneJobs(s.jobs, this.keep);
        })
        .catch((error: unknown) => this.options.onError?.(error, id));
    void Promise.resolve()
      .then(() => work(context))
      .then(
        (result) =>
          finish((j) => {
            j.status = 'done';
            if (result !== undefined) j.result = JSON.parse(JSON.stringify(result)) as unknown;
          }),
        (error: unknown) =>
          finish((j) => {
            j.status = 'failed';
            j.error = journalError(error);
            const partial = (error as { partialResult?: unknown })?.partialResult;
            if (partial !== undefined) j.result = JSON.parse(JSON.stringify(partial)) as unknown;
          }),
      )
      .finally(() => {
        this.running.delete(lane);
        release();
      });
    return { asyncHandle: id };
  }

  /** The job with this handle (running or finished, while the journal keeps it). */
  get(asyncHandle: string): JobView {
    const job = this.options.state.snapshot().jobs.find((j) => j.id === asyncHandle);
    if (!job) throw new KmipAgentError(`no job ${asyncHandle} (finished jobs are kept bounded)`, 'JOB_UNKNOWN');
    return jobView(job);
  }

  /** Every journaled job, oldest first. */
  list(): JobView[] {
    return this.options.state.snapshot().jobs.map(jobView);
  }

  /** Resolves once the job with this handle, started here, has ended and its end is journaled. */
  async settled(asyncHandle: string): Promise<JobView> {
    for (const r of this.running.values()) if (r.id === asyncHandle) await r.done;
    return this.get(asyncHandle);
  }

  /** Resolves once no job started here is running (shutdown and tests). */
  async idle(): Promise<void> {
    while (this.running.size > 0) await Promise.all([...this.running.values()].map((r) => r.done));
  }
}
