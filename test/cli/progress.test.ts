/**
 * The one job follower every waiting command uses (src/cli/progress.ts): a cli-progress bar on a
 * terminal, one plain line per change otherwise, nothing on stderr with --json (the events seen are
 * returned for the JSON document); it returns once the job is no longer running.
 */
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import type { JobView } from '../../src/agent/jobs.js';
import { followJob } from '../../src/cli/progress.js';
import type { CommandContext } from '../../src/cli/framework.js';

const view = (done: number, status: JobView['status'], step: string): JobView => ({
  asyncHandle: 'remove-drive-1',
  kind: 'remove-drive',
  status,
  progress: { done, total: 3 },
  startedAt: '2026-12-01T10:00:00.000Z',
  steps: [{ name: step, at: '2026-12-01T10:00:00.000Z' }],
});

/** The job as three reads see it (the middle one twice: no new line for no change). */
function reads() {
  const seq = [
    view(1, 'running', 'drive-erased'),
    view(1, 'running', 'drive-erased'),
    view(3, 'done', 'record-removed'),
  ];
  let i = 0;
  return async () => seq[Math.min(i++, seq.length - 1)]!;
}

function context(json: boolean) {
  const err: string[] = [];
  const ctx: CommandContext = {
    json,
    io: { stdout: () => undefined, stderr: (t: string) => void err.push(t) } as never,
  };
  return { ctx, err };
}

const noWait = async () => undefined;

describe('followJob', () => {
  it('plain lines when stderr is no terminal, one per change', async () => {
    const { ctx, err } = context(false);
    const stream = Object.assign(new PassThrough(), { isTTY: false }) as unknown as NodeJS.WriteStream;
    const { job, events } = await followJob(ctx, reads(), { sleep: noWait, stream });
    expect(job.status).toBe('done');
    expect(err).toEqual(['remove-drive: 1 of 3, drive-erased\n', 'remove-drive: 3 of 3, record-removed\n']);
    expect(events).toHaveLength(2);
  });

  it('with --json: nothing on stderr, the events returned', async () => {
    const { ctx, err } = context(true);
    const { events } = await followJob(ctx, reads(), { sleep: noWait });
    expect(err).toEqual([]);
    expect(events).toEqual([
      { done: 1, total: 3, step: 'drive-erased', status: 'running' },
      { done: 3, total: 3, step: 'record-removed', status: 'done' },
    ]);
  });

  it('a bar on a terminal (cli-progress), ending at the total', async () => {
    const { ctx, err } = context(false);
    const out = new PassThrough();
    let drawn = '';
    out.on('data', (c: Buffer) => (drawn += c.toString()));
    const stream = Object.assign(out, {
      isTTY: true,
      columns: 100,
      cursorTo: () => true,
      clearLine: () => true,
      moveCursor: () => true,
    }) as unknown as NodeJS.WriteStream;
    await followJob(ctx, reads(), { sleep: noWait, stream });
    expect(err).toEqual([]);
    expect(drawn).toMatch(/remove-drive \[[=-]+\] 3\/3 record-removed/);
  });
});
