/**
 * Following a job to its end, the one way every waiting command shows progress: on a terminal a bar
 * (cli-progress) on stderr; otherwise (logs, pipes) one plain line per change; with --json nothing on
 * stderr, and the progress events seen are returned to go into the one JSON document.
 */
import cliProgress from 'cli-progress';
import type { JobView } from '../agent/jobs.js';
import { systemClock } from '../agent/clock.js';
import { printable, type CommandContext } from './framework.js';

export const POLL_MS = 500;

/** One change of a job's progress as the waiting command saw it. */
export interface ProgressEvent {
  done: number;
  total: number;
  step: string | null;
  status: JobView['status'];
}

function eventOf(job: JobView): ProgressEvent {
  return {
    done: job.progress?.done ?? 0,
    total: job.progress?.total ?? 0,
    step: job.steps.at(-1)?.name ?? null,
    status: job.status,
  };
}

const progressText = (e: ProgressEvent) => (e.total > 0 ? `${e.done} of ${e.total}` : '-');

/** Reads the job (`read`) until it is no longer running; resolves with its end and the progress seen. */
export async function followJob(
  ctx: CommandContext,
  read: () => Promise<JobView>,
  options: {
    pollMs?: number;
    /** Where the bar goes (default stderr); it is drawn only when this is a terminal. */
    stream?: NodeJS.WriteStream;
    sleep?: (ms: number) => Promise<void>;
  } = {},
): Promise<{ job: JobView; events: ProgressEvent[] }> {
  const stream = options.stream ?? process.stderr;
  const tty = !ctx.json && stream.isTTY === true;
  const sleep = options.sleep ?? ((ms: number) => systemClock.sleep(ms));
  const events: ProgressEvent[] = [];
  let bar: cliProgress.SingleBar | undefined;
  let last = '';
  try {
    for (;;) {
      const job = await read();
      const event = eventOf(job);
      const key = JSON.stringify(event);
      if (key !== last) {
        events.push(event);
        if (tty) {
          if (!bar) {
            bar = new cliProgress.SingleBar(
              {
                stream,
                format: `${printable(job.kind)} [{bar}] {value}/{total} {step}`,
                hideCursor: true,
              },
              cliProgress.Presets.legacy,
            );
            bar.start(Math.max(event.total, 1), event.done, { step: event.step ?? '' });
          } else {
            bar.setTotal(Math.max(event.total, 1));
            bar.update(event.done, { step: printable(event.step ?? '') });
          }
        } else if (!ctx.json) {
          ctx.io.stderr(`${printable(`${job.kind}: ${progressText(event)}${event.step ? `, ${event.step}` : ''}`)}\n`);
        }
        last = key;
      }
      if (job.status !== 'running') return { job, events };
      await sleep(options.pollMs ?? POLL_MS);
    }
  } finally {
    bar?.stop();
  }
}
