/**
 * Jobs (async work with handles): the lifecycle journaled in state.jobs with the injected clock, one job
 * per lane, a job left `running` by a crash found interrupted by the next runner, the journal kept
 * bounded; the order DisableEncryptionAtRest works in (over fake drive ports); and, through the real
 * daemon, API, PyKMIP and emulated drives, EnableEncryptionAtRest and DisableEncryptionAtRest.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ApiClient } from '../../src/api/client.js';
import { loadConfig, saveConfig } from '../../src/agent/config.js';
import { JobRunner, pruneJobs, type JobContext, type JobView } from '../../src/agent/jobs.js';
import { JobJournal, journalError, stepsOf } from '../../src/agent/journal.js';
import {
  DISABLE_JOB,
  disableEncryptionAtRest,
  enableEncryptionAtRest,
  handedBackDrives,
  kmipKeyState,
  type DisableDrive,
  type EnableResult,
} from '../../src/agent/encryption-at-rest.js';
import type { InventoryItem } from '../../src/agent/inventory.js';
import { KmipKeySource, type FetchedKey, type KeySource } from '../../src/agent/key-source.js';
import { StateStore, type Job } from '../../src/agent/state.js';
import { KmipProvider, RevocationReasonCode, State } from '../../src/kmip/index.js';
import { FakeClock } from '../support/fake-clock.js';
import { Appliance, cli, daemonSuite, ok, readBlock, writeBlock } from '../support/daemon-harness.js';
import { startPykmip, type PykmipServer } from '../support/pykmip.js';

const dirs: string[] = [];
afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));

async function store(clock: FakeClock): Promise<StateStore> {
  const dir = mkdtempSync(join(tmpdir(), 'kmip-agent-jobs-'));
  dirs.push(dir);
  const state = new StateStore({ dir, now: () => clock.now() });
  await state.load();
  return state;
}

function deferred<T = void>() {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => ((resolve = res), (reject = rej)));
  return { promise, resolve, reject };
}

const codeOf = async (p: Promise<unknown>) =>
  p.then(
    () => undefined,
    (e: { code?: string; details?: () => unknown }) => e,
  );

let ids = 0;
const newId = () => `id${++ids}`;

describe('JobJournal (the journal every multi-step operation writes)', () => {
  it('begins, steps, resumes, ends done with the record in the same write, or failed with the code', async () => {
    const clock = new FakeClock();
    const state = await store(clock);
    const journal = new JobJournal(state, clock, 'j1');
    await journal.begin('enroll', { target: 'D1', steps: [journal.stepEntry('chosen', { n: 1 })] });
    await journal.step('key-created', { uid: 'u1' });
    await clock.advance(5_000);
    await journal.fail(Object.assign(new Error('drive gone'), { code: 'DRIVE_NOT_FOUND' }));
    expect(state.snapshot().jobs[0]).toEqual({
      id: 'j1',
      kind: 'enroll',
      target: 'D1',
      status: 'failed',
      startedAt: '2026-12-01T10:00:00.000Z',
      endedAt: '2026-12-01T10:00:05.000Z',
      steps: [
        { name: 'chosen', at: '2026-12-01T10:00:00.000Z', detail: { n: 1 } },
        { name: 'key-created', at: '2026-12-01T10:00:00.000Z', detail: { uid: 'u1' } },
      ],
      error: { code: 'DRIVE_NOT_FOUND', message: 'drive gone' },
    });
    expect([...stepsOf(state.snapshot().jobs[0])]).toEqual(['chosen', 'key-created']);
    await journal.resume();
    expect(state.snapshot().jobs[0]).toMatchObject({ status: 'running' });
    expect(state.snapshot().jobs[0]).not.toHaveProperty('error');
    await journal.done([{ name: 'recorded' }], (s) => {
      s.masterKeyUid = 'written-with-it';
    });
    expect(state.snapshot()).toMatchObject({ masterKeyUid: 'written-with-it', jobs: [{ status: 'done' }] });
    expect(journalError('plain')).toEqual({ code: 'INTERNAL', message: 'plain' });
  });
});

describe('JobRunner', () => {
  it('journals a job from running to done: handle, steps, n of m, result, times from the injected clock', async () => {
    const clock = new FakeClock();
    const state = await store(clock);
    const runner = new JobRunner({ state, clock, newId });
    const gate = deferred();
    const reached = deferred();
    const { asyncHandle } = await runner.start('demo', async (job) => {
      await job.progress(0, 2);
      await job.step('first', { n: 1 });
      reached.resolve();
      await gate.promise;
      await job.progress(2, 2);
      return { answer: 42 };
    });
    await reached.promise;
    const running = runner.get(asyncHandle);
    expect(running).toMatchObject({
      asyncHandle,
      kind: 'demo',
      status: 'running',
      progress: { done: 0, total: 2 },
      startedAt: '2026-12-01T10:00:00.000Z',
    });
    expect(running.steps.map((s) => s.name)).toEqual(['first']);
    expect(running.endedAt).toBeUndefined();
    await clock.advance(5_000);
    gate.resolve();
    await runner.idle();
    const done = runner.get(asyncHandle);
    expect(done).toMatchObject({
      status: 'done',
      progress: { done: 2, total: 2 },
      result: { answer: 42 },
      endedAt: '2026-12-01T10:00:05.000Z',
    });
    // On disk, not only in memory: a new store reads the same journal.
    const reread = new StateStore({ dir: join(state.path, '..') });
    expect((await reread.load()).body.jobs.find((j) => j.id === asyncHandle)?.status).toBe('done');
  });

  it('a failed job keeps the error code and message (and the partial result it carried)', async () => {
    const clock = new FakeClock();
    const runner = new JobRunner({ state: await store(clock), clock, newId });
    const { asyncHandle } = await runner.start('demo', () => {
      const error = Object.assign(new Error('drive 2 refused'), { code: 'DRIVE_X', partialResult: { done: [1] } });
      return Promise.reject(error);
    });
    await runner.idle();
    expect(runner.get(asyncHandle)).toMatchObject({
      status: 'failed',
      error: { code: 'DRIVE_X', message: 'drive 2 refused' },
      result: { done: [1] },
    });
  });

  it('one job per lane: a second start gets JOB_ALREADY_RUNNING with the running handle; after it ends, it starts', async () => {
    const clock = new FakeClock();
    const runner = new JobRunner({ state: await store(clock), clock, newId });
    const gate = deferred();
    const first = await runner.start('enable', () => gate.promise, { lane: 'ear' });
    const again = (await codeOf(runner.start('enable', async () => undefined, { lane: 'ear' }))) as {
      code: string;
      asyncHandle: string;
    };
    expect(again.code).toBe('JOB_ALREADY_RUNNING');
    expect(again.asyncHandle).toBe(first.asyncHandle);
    // Another kind in the same lane is refused too; another lane is not.
    expect(
      ((await codeOf(runner.start('disable', async () => undefined, { lane: 'ear' }))) as { code: string }).code,
    ).toBe('JOB_ALREADY_RUNNING');
    const other = await runner.start('unrelated', async () => 'x');
    expect((await runner.settled(other.asyncHandle)).status).toBe('done');
    gate.resolve();
    await runner.idle();
    const second = await runner.start('enable', async () => undefined, { lane: 'ear' });
    await runner.idle();
    expect(runner.get(second.asyncHandle).status).toBe('done');
    expect(runner.list().map((j) => j.status)).toEqual(['done', 'done', 'done']);
  });

  it('a job left running by a crash is interrupted at the next start, naming the step it reached', async () => {
    const clock = new FakeClock();
    const state = await store(clock);
    const crashed = new JobRunner({ state, clock, newId });
    const never = deferred();
    const reached = deferred();
    const { asyncHandle } = await crashed.start('disable', async (job) => {
      await job.step('unlocked', { id: 'D1' });
      await job.step('locking-disabled', { id: 'D1' });
      reached.resolve();
      await never.promise;
    });
    await reached.promise;
    // Also an enrollment journaled by enroll.ts that never finished.
    await state.update((s) => {
      s.jobs.push({
        id: 'enroll-x',
        kind: 'enroll',
        status: 'running',
        startedAt: clock.now().toISOString(),
        steps: [],
      });
    });
    // "Restart": a new store reads the file the dead process left; a new runner takes over.
    await clock.advance(60_000);
    const reopened = new StateStore({ dir: join(state.path, '..'), now: () => clock.now() });
    await reopened.load();
    const runner = new JobRunner({ state: reopened, clock, newId });
    const interrupted = await runner.markInterrupted();
    expect(interrupted.map((j) => j.asyncHandle).sort()).toEqual([asyncHandle, 'enroll-x'].sort());
    const job = runner.get(asyncHandle);
    expect(job.status).toBe('interrupted');
    expect(job.endedAt).toBe('2026-12-01T10:01:00.000Z');
    expect(job.error).toEqual({
      code: 'JOB_INTERRUPTED',
      message: 'the agent stopped while this disable job ran (last step: locking-disabled)',
    });
    expect(runner.get('enroll-x').error?.message).toContain('before its first step');
    expect(await runner.markInterrupted()).toEqual([]);
    // The lane is free again in the new process.
    await runner.start('disable', async () => undefined);
    await runner.idle();
  });

  it('keeps finished jobs bounded, never dropping a running one or the newest of a kind', async () => {
    const at = '2026-12-01T10:00:00.000Z';
    const job = (id: string, kind: string, status: Job['status'] = 'done'): Job => ({
      id,
      kind,
      status,
      startedAt: at,
      steps: [],
    });
    const jobs = [
      job('r0', 'recover'),
      job('run', 'x', 'running'),
      ...Array.from({ length: 6 }, (_, i) => job(`e${i}`, 'e')),
    ];
    expect(pruneJobs(jobs, 2).map((j) => j.id)).toEqual(['r0', 'run', 'e3', 'e4', 'e5']);

    const clock = new FakeClock();
    const runner = new JobRunner({ state: await store(clock), clock, newId, keepFinished: 3 });
    for (let i = 0; i < 6; i++) {
      await runner.start('k', async () => i);
      await runner.idle();
    }
    expect(runner.list().map((j) => j.result)).toEqual([2, 3, 4, 5]);
    expect(await codeOf(Promise.resolve().then(() => runner.get('k-none')))).toMatchObject({ code: 'JOB_UNKNOWN' });
  });
});

/** A job context that records steps in memory. */
function recorder(): JobContext & { steps: string[] } {
  const steps: string[] = [];
  return {
    id: 'test',
    steps,
    step: async (name, detail) => {
      steps.push(`${name}${detail?.id ? ` ${String(detail.id)}` : ''}`);
    },
    progress: async () => undefined,
  };
}

describe('the encryption-at-rest work (fake ports)', () => {
  it('Enable enrolls unmanaged fresh Opal drives, skips owned, managed and non-Opal ones', async () => {
    const clock = new FakeClock();
    const state = await store(clock);
    await state.update((s) => {
      s.drives.push({
        id: 'M',
        device: 'emu:/m',
        key: { uid: '9', name: 'n', provider: 'default' },
        enrolledAt: clock.now().toISOString(),
        unlockAtBoot: true,
      });
    });
    const item = (identity: string, device: string, opal: InventoryItem['opal']): InventoryItem => ({
      identity,
      aliases: [],
      kind: 'opal',
      device,
      source: 'config',
      ...(opal ? { opal } : {}),
    });
    const enrolled: string[] = [];
    const result = await enableEncryptionAtRest(recorder(), {
      state,
      inventory: async () => [
        item('A', 'emu:/a', { supported: true, lockingEnabled: false }),
        item('M', 'emu:/m', { supported: true, lockingEnabled: true }),
        item('O', 'emu:/o', { supported: true, lockingEnabled: true }),
        item('N', '/dev/sdz', { supported: false }),
        item('S', 'emu:/s', { supported: true, lockingEnabled: false }),
      ],
      enroll: async (device) => {
        if (device === 'emu:/s') throw Object.assign(new Error('SID is not the MSID'), { code: 'DRIVE_ALREADY_OWNED' });
        enrolled.push(device);
        return { id: 'A', device, keyUid: '1', keyName: 'k' };
      },
    });
    expect(enrolled).toEqual(['emu:/a']);
    expect(result.enrolled).toEqual([{ id: 'A', device: 'emu:/a', keyUid: '1' }]);
    expect(result.skipped.map((s) => [s.device, s.code])).toEqual([
      ['emu:/o', 'DRIVE_ALREADY_OWNED'],
      ['emu:/s', 'DRIVE_ALREADY_OWNED'],
    ]);
    expect(result.failed).toEqual([]);
  });

  async function disableWith(fail?: keyof DisableDrive) {
    const clock = new FakeClock();
    const state = await store(clock);
    await state.update((s) => {
      for (const id of ['D1', 'D2'])
        s.drives.push({
          id,
          device: `emu:/${id}`,
          key: { uid: `u-${id}`, name: `n-${id}`, provider: 'default' },
          enrolledAt: clock.now().toISOString(),
          unlockAtBoot: true,
        });
    });
    const calls: string[] = [];
    const keysHanded: Buffer[] = [];
    const keys: KeySource = {
      fetch: async (uids) => {
        calls.push(`fetch ${uids.join(',')}`);
        return new Map(
          uids.map((u): [string, FetchedKey] => {
            const key = Buffer.alloc(32, 7);
            keysHanded.push(key);
            return [u, { ok: true, key }];
          }),
        );
      },
      findByName: async () => [],
      findByGroup: async () => [],
      createKey: async () => {
        throw new Error('not here');
      },
    };
    const job = recorder();
    const op = (id: string, name: keyof DisableDrive) => async () => {
      calls.push(`${name} ${id}`);
      if (name === fail && id === 'D2') throw Object.assign(new Error('not supported'), { code: 'TCG_NOT_SUPPORTED' });
    };
    const outcome = disableEncryptionAtRest(job, {
      state,
      keys,
      open: async (device) => {
        const id = device.slice(5);
        return {
          lockingSpActive: async () => true,
          unlock: op(id, 'unlock'),
          disableGlobalRangeLocking: op(id, 'disableGlobalRangeLocking'),
          revertLockingSpKeepingData: op(id, 'revertLockingSpKeepingData'),
          resetSidToMsid: op(id, 'resetSidToMsid'),
          close: op(id, 'close'),
        };
      },
      revokeKey: async (uid) => {
        calls.push(`revoke ${uid}`);
      },
      keyState: async () => State.Active,
      hold: async (id) => {
        calls.push(`hold ${id}`);
      },
      release: (id) => calls.push(`release ${id}`),
    });
    return { outcome, calls, state, job, keysHanded };
  }

  it('Disable: one batched Get, then per drive unlock, locking off, revert keeping data, SID reset, revoke, record removed', async () => {
    const { outcome, calls, state, job, keysHanded } = await disableWith();
    expect(await outcome).toMatchObject({ disabled: [{ id: 'D1' }, { id: 'D2' }], failed: [] });
    const perDrive = (id: string) => [
      `hold ${id}`,
      `unlock ${id}`,
      `disableGlobalRangeLocking ${id}`,
      `revertLockingSpKeepingData ${id}`,
      `resetSidToMsid ${id}`,
      `close ${id}`,
      `revoke u-${id}`,
    ];
    expect(calls).toEqual(['fetch u-D1,u-D2', ...perDrive('D1'), ...perDrive('D2')]);
    expect(job.steps.slice(0, 6)).toEqual([
      'unlocked D1',
      'locking-disabled D1',
      'locking-sp-reverted D1',
      'sid-reset D1',
      'key-revoked D1',
      'record-removed D1',
    ]);
    expect(state.snapshot().drives).toEqual([]);
    expect(keysHanded.every((k) => k.every((b) => b === 0))).toBe(true);
  });

  it('Disable: a drive that cannot revert keeps its key (not revoked) and its record; the others go on', async () => {
    const { outcome, calls, state } = await disableWith('revertLockingSpKeepingData');
    const error = (await codeOf(outcome)) as {
      code: string;
      partialResult: { disabled: unknown[]; failed: unknown[] };
    };
    expect(error.code).toBe('TCG_NOT_SUPPORTED');
    expect(error.partialResult.disabled).toHaveLength(1);
    expect(error.partialResult.failed).toMatchObject([{ id: 'D2', code: 'TCG_NOT_SUPPORTED' }]);
    expect(calls).toContain('revoke u-D1');
    expect(calls).not.toContain('revoke u-D2');
    expect(calls).not.toContain('resetSidToMsid D2');
    expect(calls).toContain('close D2');
    // Not handed back: the agent may unlock it again.
    expect(calls.at(-1)).toBe('release D2');
    expect(calls).not.toContain('release D1');
    expect(state.snapshot().drives.map((d) => d.id)).toEqual(['D2']);
  });
});

describe('DisableEncryptionAtRest resumes after a crash (PyKMIP, fake drives)', { timeout: 120_000 }, () => {
  let kmip: PykmipServer;
  let provider: KmipProvider;
  beforeAll(async () => {
    kmip = await startPykmip();
    provider = new KmipProvider({
      servers: [{ host: kmip.host, port: kmip.port, servername: 'localhost' }],
      ca: readFileSync(kmip.ca),
      cert: readFileSync(kmip.clientCert),
      key: readFileSync(kmip.clientKey),
    });
  });
  afterAll(async () => {
    provider?.close();
    await kmip?.stop();
  });

  const crash = () => Object.assign(new Error('power lost'), { code: 'TEST_CRASH' });
  const stateOf = async (uid: string) =>
    (await provider.getAttributes(uid, ['State'])).attributes.find((a) => a.name === 'State')?.value;

  /** One enrolled drive D1 whose key is on PyKMIP (Active); fake drive ports that keep the drive's state. */
  async function oneDrive() {
    const clock = new FakeClock();
    const state = await store(clock);
    const keys = new KmipKeySource(provider);
    const { uid, key } = await keys.createKey(`kmip-agent/nas1/D1-${randomBytes(4).toString('hex')}`, 'g');
    key.fill(0);
    await state.update((s) => {
      s.drives.push({
        id: 'D1',
        device: 'emu:/D1',
        key: { uid, name: 'n', provider: 'default' },
        enrolledAt: clock.now().toISOString(),
        unlockAtBoot: true,
      });
    });
    const calls: string[] = [];
    let lockingSp = true;
    const drive: DisableDrive = {
      lockingSpActive: async () => lockingSp,
      unlock: async () => void calls.push('unlock'),
      disableGlobalRangeLocking: async () => void calls.push('locking-off'),
      revertLockingSpKeepingData: async () => {
        calls.push('revert');
        lockingSp = false;
      },
      resetSidToMsid: async () => void calls.push('sid-reset'),
      close: async () => undefined,
    };
    const runner = new JobRunner({ state, clock, newId });
    const ports = (over: Partial<Parameters<typeof disableEncryptionAtRest>[1]> = {}) => ({
      state,
      keys: {
        ...keys,
        fetch: (uids: string[]) => {
          calls.push(`fetch ${uids.join(',')}`);
          return keys.fetch(uids);
        },
        findByName: (n: string) => keys.findByName(n),
        findByGroup: (g: string) => keys.findByGroup(g),
        createKey: (n: string, g: string) => keys.createKey(n, g),
      },
      open: async () => {
        calls.push('open');
        return drive;
      },
      revokeKey: async (u: string) => {
        calls.push('revoke');
        await provider.revoke({ uniqueIdentifier: u, reason: RevocationReasonCode.CessationOfOperation });
      },
      keyState: kmipKeyState(provider),
      hold: async (id: string) => void calls.push(`hold ${id}`),
      release: (id: string) => void calls.push(`release ${id}`),
      ...over,
    });
    /** Runs a disable job; `step` (an injected crash) stands in for the job's journaling. */
    const run = async (
      p: ReturnType<typeof ports>,
      step?: (this: JobContext, ...a: Parameters<JobContext['step']>) => Promise<void>,
    ) => {
      const { asyncHandle } = await runner.start(DISABLE_JOB, (job) =>
        disableEncryptionAtRest(step ? { ...job, step: (n, d) => step.call(job, n, d) } : job, p),
      );
      return runner.settled(asyncHandle);
    };
    return { state, uid, calls, ports, run };
  }

  it('a crash after the revoke reached the server, before it was journaled: the rerun finds the key Deactivated and completes', async () => {
    const t = await oneDrive();
    // The process dies the moment the revoke returned: its journal entry is never written.
    const first = await t.run(t.ports(), async function (this: JobContext, name, detail) {
      if (name === 'key-revoked') throw crash();
      await this.step(name, detail);
    });
    expect(first).toMatchObject({ status: 'failed', error: { code: 'TEST_CRASH' } });
    expect(first.steps.map((s) => s.name)).not.toContain('key-revoked');
    expect(await stateOf(t.uid)).toBe(State.Deactivated);
    expect(t.state.snapshot().drives.map((d) => d.id)).toEqual(['D1']);
    // Handed back, still recorded: the agent keeps it out of unlocking (now and after a restart).
    expect(t.calls).not.toContain('release D1');
    expect(handedBackDrives(t.state.snapshot())).toEqual(['D1']);

    t.calls.length = 0;
    const second = await t.run(t.ports());
    expect(second.status, JSON.stringify(second)).toBe('done');
    // The drive is not opened nor its key fetched again; the server refused a second revoke.
    expect(t.calls).toEqual(['hold D1', 'revoke']);
    expect(second.steps.map((s) => [s.name, s.detail?.alreadyRevoked])).toEqual([
      ['key-revoked', true],
      ['record-removed', undefined],
    ]);
    expect(t.state.snapshot().drives).toEqual([]);
    expect(handedBackDrives(t.state.snapshot())).toEqual([]);
  });

  it('a crash after the revoke was journaled: the rerun does not revoke again, it drops the record', async () => {
    const t = await oneDrive();
    const first = await t.run(t.ports(), async function (this: JobContext, name, detail) {
      await this.step(name, detail);
      if (name === 'key-revoked') throw crash();
    });
    expect(first).toMatchObject({ status: 'failed', error: { code: 'TEST_CRASH' } });
    // Destroyed meanwhile (an operator): the journal is enough, the server is not asked.
    await provider.destroy(t.uid);
    t.calls.length = 0;
    const second = await t.run(t.ports());
    expect(second.status, JSON.stringify(second)).toBe('done');
    expect(t.calls).toEqual(['hold D1']);
    expect(t.state.snapshot().drives).toEqual([]);
  });

  it('any other revoke error stands: the key is still Active, the record stays', async () => {
    const t = await oneDrive();
    const refused = Object.assign(new Error('connection refused'), { code: 'KMIP_CONNECTION_REFUSED' });
    const first = await t.run(
      t.ports({
        revokeKey: async () => {
          throw refused;
        },
      }),
    );
    expect(first).toMatchObject({ status: 'failed', error: { code: 'KMIP_CONNECTION_REFUSED' } });
    expect(await stateOf(t.uid)).toBe(State.Active);
    expect(t.state.snapshot().drives.map((d) => d.id)).toEqual(['D1']);
    // Retired and destroyed meanwhile (an operator): Item Not Found counts as revoked on the rerun.
    await provider.revoke({ uniqueIdentifier: t.uid, reason: RevocationReasonCode.CessationOfOperation });
    await provider.destroy(t.uid);
    const second = await t.run(t.ports());
    expect(second.status, JSON.stringify(second)).toBe('done');
    expect(second.steps.find((s) => s.name === 'key-revoked')?.detail).toMatchObject({ alreadyRevoked: true });
  });
});

describe(
  'EnableEncryptionAtRest / DisableEncryptionAtRest through the daemon (PyKMIP, emulated drives)',
  { timeout: 240_000 },
  () => {
    const suite = daemonSuite('kmip-agent-jobs-e2e-');

    /** `kmip-agent job <handle> --wait --json`: the job once it ended. */
    async function waitJob(nas: Appliance, handle: string): Promise<JobView & { code: number }> {
      const run = await cli(['job', handle, '--wait', '--json', ...nas.dirArgs()]);
      return { ...(JSON.parse(run.stdout) as JobView), code: run.code };
    }

    it('enrolls the 2 fresh drives and skips the owned one; Disable hands them back unlocked, data intact, keys revoked, state empty', async () => {
      const nas = new Appliance('ear1', suite.root());
      await nas.setup(suite.kmip(), suite.kmip());
      const [fresh1, fresh2, owned] = await nas.createDrives(3);
      const pinFile = join(nas.base, 'sid.pin');
      writeFileSync(pinFile, 'someone-else', { mode: 0o600 });
      await ok(['drive', 'take-ownership', owned!, '--new-pin-file', pinFile]);
      await ok(['drive', 'activate', owned!, '--pin-file', pinFile]);
      // The inventory sees emulated drives named in the config.
      const config = await loadConfig(nas.configDir);
      await saveConfig(nas.configDir, {
        ...config,
        drives: nas.devices.map((device) => ({ device, unlockAtBoot: true })),
      });

      const daemon = nas.daemon(undefined);
      await daemon.waitForLog((l) => l.event === 'ready');
      const api = new ApiClient(join(nas.runtimeDir, 'api.sock'));

      const { asyncHandle } = await api.call<{ asyncHandle: string }>('EnableEncryptionAtRest');
      const enabled = await waitJob(nas, asyncHandle);
      expect(enabled.code).toBe(0);
      expect(enabled.status).toBe('done');
      const result = enabled.result as EnableResult;
      expect(result.enrolled.map((e) => e.device).sort()).toEqual([fresh1, fresh2].sort());
      expect(result.skipped).toMatchObject([{ device: owned, code: 'DRIVE_ALREADY_OWNED' }]);
      expect(enabled.progress).toEqual({ done: 3, total: 3 });
      const uids = result.enrolled.map((e) => e.keyUid!);
      const status = await nas.status();
      expect(status.drives.map((d) => d.device).sort()).toEqual([fresh1, fresh2].sort());

      // Data written while encrypted at rest must survive the way back.
      const payloads = [randomBytes(512), randomBytes(512)];
      await writeBlock(fresh1!, payloads[0]!);
      await writeBlock(fresh2!, payloads[1]!);

      await expect(api.call('DisableEncryptionAtRest', {})).rejects.toMatchObject({ code: 'API_CONFIRM_REQUIRED' });
      const disabling = await api.call<{ asyncHandle: string }>('DisableEncryptionAtRest', { confirm: true });
      const disabled = await waitJob(nas, disabling.asyncHandle);
      expect(disabled.status, JSON.stringify(disabled)).toBe('done');
      expect((disabled.result as { disabled: unknown[] }).disabled).toHaveLength(2);
      const order = disabled.steps.filter((s) => s.detail?.id === result.enrolled[0]!.id).map((s) => s.name);
      expect(order).toEqual([
        'unlocked',
        'locking-disabled',
        'locking-sp-reverted',
        'sid-reset',
        'key-revoked',
        'record-removed',
      ]);

      expect((await nas.status()).drives).toEqual([]);
      // Locking is off for good: after a power cycle the data still reads, with no key.
      await nas.powerCycle([fresh1!, fresh2!]);
      expect((await readBlock(fresh1!)).data).toEqual(payloads[0]);
      expect((await readBlock(fresh2!)).data).toEqual(payloads[1]);
      for (const device of [fresh1!, fresh2!]) {
        const s = JSON.parse((await ok(['drive', 'status', device, '--json'])).stdout) as { lockingEnabled: boolean };
        expect(s.lockingEnabled).toBe(false);
      }
      // The keys are retired on the server (Deactivated), not destroyed.
      const provider = new KmipProvider({
        servers: [{ host: suite.kmip().host, port: suite.kmip().port, servername: 'localhost' }],
        ca: readFileSync(suite.kmip().ca),
        cert: readFileSync(suite.kmip().clientCert),
        key: readFileSync(suite.kmip().clientKey),
      });
      try {
        for (const uid of uids) {
          const { attributes } = await provider.getAttributes(uid, ['State']);
          expect(attributes.find((a) => a.name === 'State')?.value).toBe(State.Deactivated);
        }
      } finally {
        provider.close();
      }
      // The journal lists both jobs; after a clean stop the state file has no drive left.
      const jobs = JSON.parse((await ok(['jobs', '--json', ...nas.dirArgs()])).stdout) as { jobs: JobView[] };
      expect(jobs.jobs.filter((j) => j.kind.endsWith('encryption-at-rest')).map((j) => j.status)).toEqual([
        'done',
        'done',
      ]);
      await daemon.stop();
      const state = new StateStore({ dir: nas.stateDir });
      expect((await state.load()).body.drives).toEqual([]);
    });
  },
);
