/**
 * The job journal (state.jobs) as the agent's multi-step work writes it: one job begun, its steps
 * recorded as they are done (each written durably before the next step starts, so a crash leaves the
 * last step on record), and its end. Enrollment, adoption, volume formatting, the shallow rekey and the
 * JobRunner's jobs all journal through this, and a rerun reads back what an earlier run did with
 * `stepsOf`.
 */
import type { Clock } from './clock.js';
import type { Job, StateBody, StateStore } from './state.js';

type Step = Job['steps'][number];

/** A job's error as the journal keeps it: the error's code (INTERNAL without one) and message. */
export function journalError(error: unknown): { code: string; message: string } {
  const code = (error as { code?: unknown } | null)?.code;
  return {
    code: typeof code === 'string' ? code : code === undefined || code === null ? 'INTERNAL' : String(code),
    message: (error as Error | null)?.message ?? String(error),
  };
}

/** The names of the steps a job journaled (what a rerun need not do again). */
export function stepsOf(job: Job | undefined): Set<string> {
  return new Set(job?.steps.map((s) => s.name) ?? []);
}

/** One job of the journal, by id. */
export class JobJournal {
  constructor(
    private readonly state: StateStore,
    private readonly clock: Clock,
    readonly id: string,
  ) {}

  private entry(name: string, detail?: Record<string, unknown>): Step {
    return { name, at: this.clock.now().toISOString(), ...(detail ? { detail } : {}) };
  }

  /** Journals the job as running, with the steps it starts with. */
  async begin(kind: string, options: { target?: string; steps?: Step[] } = {}): Promise<void> {
    await this.state.update((s) => {
      s.jobs.push({
        id: this.id,
        kind,
        ...(options.target !== undefined ? { target: options.target } : {}),
        status: 'running',
        startedAt: this.clock.now().toISOString(),
        steps: options.steps ?? [],
      });
    });
  }

  /** A step as begin's `steps` takes it (dated now). */
  stepEntry(name: string, detail?: Record<string, unknown>): Step {
    return this.entry(name, detail);
  }

  /** Marks a job an earlier run left unfinished running again (this run resumes it). */
  async resume(): Promise<void> {
    await this.change((j) => {
      j.status = 'running';
      delete j.error;
      delete j.endedAt;
    });
  }

  async step(name: string, detail?: Record<string, unknown>): Promise<void> {
    await this.change((j) => j.steps.push(this.entry(name, detail)));
  }

  /**
   * Changes the job, and with `also` the rest of the state, in one durable write (e.g. the record that
   * makes enrollment done and the step saying so). A job no longer in the journal changes nothing.
   */
  change(fn: (job: Job) => void, also?: (state: StateBody) => void): Promise<StateBody> {
    return this.state.update((s) => {
      also?.(s);
      const job = s.jobs.find((j) => j.id === this.id);
      if (job) fn(job);
    });
  }

  /** Ends the job done, after its last steps, in the same write as `also`. */
  done(steps: { name: string; detail?: Record<string, unknown> }[] = [], also?: (state: StateBody) => void) {
    return this.change((j) => {
      j.steps.push(...steps.map((s) => this.entry(s.name, s.detail)));
      j.status = 'done';
      j.endedAt = this.clock.now().toISOString();
    }, also);
  }

  /** Ends the job failed with `error`. Never throws: the caller is already reporting a failure. */
  async fail(error: unknown): Promise<void> {
    await this.change((j) => {
      j.status = 'failed';
      j.endedAt = this.clock.now().toISOString();
      j.error = journalError(error);
    }).catch(() => undefined);
  }
}
