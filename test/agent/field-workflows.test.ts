/**
 * The field workflows' decisions a real PyKMIP server and emulated drive cannot show, over fake ports:
 * a least-privilege client identity the server refuses Revoke or Destroy to (the drive is still removed,
 * the key reported as left on the server and journaled), a server that drops mid-removal (the job fails,
 * the record stays, a rerun resumes after the journaled steps), a replacement that cannot be proven (the
 * old key is never touched), readd refused with the drive's reason, and the key audit's orphans and
 * missing keys.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  checkDriveRemovable,
  readdDrive,
  removeDrive,
  replaceDrive,
  revertedDrives,
  type FieldPorts,
  type RemovableDrive,
  type ReplacePorts,
} from '../../src/agent/field-workflows.js';
import { JobRunner } from '../../src/agent/jobs.js';
import { KmipAgentError } from '../../src/errors.js';
import { auditKeys } from '../../src/agent/key-audit.js';
import type { FetchedKey, KeySource } from '../../src/agent/key-source.js';
import { StateStore, type ManagedDrive } from '../../src/agent/state.js';
import { KmipError, KmipOperationError, Operation, ResultReason, ResultStatus, State } from '../../src/kmip/index.js';
import { FakeClock } from '../support/fake-clock.js';

const dirs: string[] = [];
afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));

const drive = (id: string, uid: string): ManagedDrive => ({
  id,
  device: `emu:/x/${id}.img`,
  key: { uid, name: `kmip-agent/app/${id}`, provider: 'default' },
  enrolledAt: '2026-12-01T10:00:00.000Z',
  unlockAtBoot: true,
});

async function setup(drives: ManagedDrive[]) {
  const clock = new FakeClock();
  const dir = mkdtempSync(join(tmpdir(), 'kmip-agent-field-'));
  dirs.push(dir);
  const state = new StateStore({ dir, now: () => clock.now() });
  await state.load();
  await state.update((s) => s.drives.push(...drives));
  let n = 0;
  const jobs = new JobRunner({ state, clock, newId: () => `j${++n}` });
  return { state, jobs };
}

/** A key table: every recorded key fetchable. */
const keys = (uids: string[]): KeySource => ({
  fetch: async (list) =>
    new Map(
      list.map((u): [string, FetchedKey] => [
        u,
        uids.includes(u)
          ? { ok: true, key: Buffer.alloc(32, 7) }
          : { ok: false, error: { code: 'KMIP_ITEM_NOT_FOUND', message: 'gone', notFound: true } },
      ]),
    ),
  findByName: async () => [],
  findByGroup: async () => [],
  createKey: async () => {
    throw new Error('not here');
  },
});

const denied = (op: number) =>
  new KmipOperationError(op, ResultStatus.OperationFailed, ResultReason.PermissionDenied, 'not allowed');

function fakeDrive(calls: string[]): RemovableDrive {
  return {
    isFactoryFresh: async () => calls.includes('revert'),
    eraseGlobalRange: async () => void calls.push('erase'),
    revertToFactory: async () => void calls.push('revert'),
    close: async () => undefined,
  };
}

describe('drive remove over fake ports', () => {
  it('a server that refuses Revoke: the drive is still removed, the key reported as left and journaled', async () => {
    const { state, jobs } = await setup([drive('D1', 'u1')]);
    const calls: string[] = [];
    const left: string[] = [];
    const ports: FieldPorts = {
      state,
      keys: keys(['u1']),
      openDrive: async () => fakeDrive(calls),
      retire: {
        revoke: async () => {
          throw denied(Operation.Revoke);
        },
        destroy: async () => void calls.push('destroy'),
        keyState: async () => State.Active,
        leftOnServer: (uid, target, e) => left.push(`${uid} ${target} ${e.code}`),
      },
    };
    const { asyncHandle } = await jobs.start('remove-drive', (job) => removeDrive(job, ports, 'D1'));
    const job = await jobs.settled(asyncHandle);
    expect(job.status).toBe('done');
    expect(job.result).toMatchObject({
      key: { keyUid: 'u1', revoked: false, destroyed: false, leftOnServer: { code: 'KMIP_OPERATION_FAILED' } },
    });
    expect(calls).toEqual(['erase', 'revert']);
    expect(left).toEqual(['u1 D1 KMIP_OPERATION_FAILED']);
    expect(job.steps.map((s) => s.name)).toContain('key-left-on-server');
    expect(state.snapshot().drives).toEqual([]);
  });

  it('a server that refuses Destroy after the Revoke: revoked, left on the server, reported', async () => {
    const { state, jobs } = await setup([drive('D1', 'u1')]);
    const ports: FieldPorts = {
      state,
      keys: keys(['u1']),
      openDrive: async () => fakeDrive([]),
      retire: {
        revoke: async () => undefined,
        destroy: async () => {
          throw denied(Operation.Destroy);
        },
        keyState: async () => State.Deactivated,
      },
    };
    const job = await jobs.settled((await jobs.start('remove-drive', (j) => removeDrive(j, ports, 'D1'))).asyncHandle);
    expect(job.result).toMatchObject({
      key: { revoked: true, destroyed: false, leftOnServer: { code: 'KMIP_OPERATION_FAILED' } },
    });
    expect(job.steps.map((s) => s.name)).toEqual([
      'started',
      'drive-erased',
      'drive-reverted',
      'key-revoked',
      'key-left-on-server',
      'record-removed',
    ]);
  });

  it('a server that drops mid-way: the job fails, the record stays, a rerun resumes after the journaled steps', async () => {
    const { state, jobs } = await setup([drive('D1', 'u1')]);
    const calls: string[] = [];
    let up = false;
    const ports: FieldPorts = {
      state,
      keys: keys(['u1']),
      openDrive: async () => fakeDrive(calls),
      retire: {
        revoke: async () => {
          if (!up) throw new KmipError('connection refused', 'KMIP_CONNECTION_FAILED');
        },
        destroy: async () => undefined,
        keyState: async () => {
          throw new KmipError('connection refused', 'KMIP_CONNECTION_FAILED');
        },
      },
    };
    const first = await jobs.settled(
      (await jobs.start('remove-drive', (j) => removeDrive(j, ports, 'D1'))).asyncHandle,
    );
    expect(first).toMatchObject({ status: 'failed', error: { code: 'KMIP_CONNECTION_FAILED' } });
    expect(state.snapshot().drives.map((d) => d.id)).toEqual(['D1']);
    // Reverted already: the agent must not send it the key until the rerun drops the record.
    expect(revertedDrives(state.snapshot())).toEqual(['D1']);
    up = true;
    const second = await jobs.settled(
      (await jobs.start('remove-drive', (j) => removeDrive(j, ports, 'D1'))).asyncHandle,
    );
    expect(second.status).toBe('done');
    expect(second.result).toMatchObject({ resumedAfter: ['drive-erased', 'drive-reverted'], key: { destroyed: true } });
    // The drive was not erased again: the rerun started after the revert.
    expect(calls).toEqual(['erase', 'revert']);
    expect(state.snapshot().drives).toEqual([]);
  });
});

describe('drive replace over fake ports', () => {
  it('a new drive that fails its proof: the old key and record are left as they were', async () => {
    const { state, jobs } = await setup([drive('OLD', 'u1')]);
    const retired: string[] = [];
    const ports: ReplacePorts = {
      state,
      keys: keys(['u1', 'u2']),
      openDrive: async () => fakeDrive([]),
      retire: {
        revoke: async (u) => void retired.push(u),
        destroy: async (u) => void retired.push(u),
        keyState: async () => State.Active,
      },
      inspect: async () => ({ id: 'NEW', aliases: [], factoryFresh: true }),
      enroll: async (device) => {
        await state.update((s) => s.drives.push({ ...drive('NEW', 'u2'), device }));
        return { id: 'NEW', device, keyUid: 'u2', keyName: 'kmip-agent/app/NEW' };
      },
      prove: async () => {
        throw Object.assign(new Error('refused'), { code: 'DRIVE_PIN_REFUSED' });
      },
      takeRole: async () => undefined,
    };
    const job = await jobs.settled(
      (await jobs.start('replace-drive', (j) => replaceDrive(j, ports, 'OLD', 'emu:/x/NEW.img', { keepKey: false })))
        .asyncHandle,
    );
    expect(job).toMatchObject({ status: 'failed', error: { code: 'DRIVE_PIN_REFUSED' } });
    expect(retired).toEqual([]);
    expect(state.snapshot().drives.map((d) => d.id)).toEqual(['OLD', 'NEW']);
  });
});

describe('drive readd over fake ports', () => {
  it('says why a drive did not come back (refused key: the lockout guard stands)', async () => {
    const { state } = await setup([drive('D1', 'u1')]);
    const error = await readdDrive(
      {
        state,
        keys: keys(['u1']),
        unlockOne: async () => ({
          target: { id: 'D1', kind: 'opal', device: 'x', keyUid: 'u1' },
          state: 'failed',
          error: { code: 'DRIVE_PIN_ALREADY_REFUSED', message: 'refused before: not sent again' },
          durationMs: 1,
        }),
      },
      'D1',
    ).catch((e: { code: string }) => e);
    expect(error).toMatchObject({ code: 'DRIVE_PIN_ALREADY_REFUSED' });
  });
});

describe('drive remove of an unreachable drive over fake ports', () => {
  it('refused before a job without force; forced, the key is retired and the journal says not erased', async () => {
    const { state, jobs } = await setup([drive('D1', 'u1')]);
    const calls: string[] = [];
    const ports: FieldPorts = {
      state,
      keys: keys(['u1']),
      openDrive: async () => {
        throw Object.assign(new Error('no such device'), { code: 'DRIVE_OPEN_FAILED' });
      },
      retire: {
        revoke: async (uid) => void calls.push(`revoke ${uid}`),
        destroy: async (uid) => void calls.push(`destroy ${uid}`),
        keyState: async () => State.Active,
      },
    };
    await expect(checkDriveRemovable(ports, 'D1')).rejects.toMatchObject({
      code: 'DRIVE_UNREACHABLE',
      message: expect.stringContaining('DRIVE_OPEN_FAILED') as unknown,
    });
    await checkDriveRemovable(ports, 'D1', { force: true });
    // Without force the job refuses too (a drive that went away after the check).
    const unforced = await jobs.settled(
      (await jobs.start('remove-drive', (j) => removeDrive(j, ports, 'D1'))).asyncHandle,
    );
    expect(unforced).toMatchObject({ status: 'failed', error: { code: 'DRIVE_UNREACHABLE' } });
    expect(calls).toEqual([]);
    expect(state.snapshot().drives).toHaveLength(1);

    const job = await jobs.settled(
      (await jobs.start('remove-drive', (j) => removeDrive(j, ports, 'D1', { force: true }))).asyncHandle,
    );
    expect(job.status).toBe('done');
    expect(job.result).toMatchObject({ erased: false, key: { revoked: true, destroyed: true } });
    expect(job.steps.find((s) => s.name === 'drive-not-erased')?.detail).toMatchObject({
      id: 'D1',
      reason: { code: 'DRIVE_UNREACHABLE' },
    });
    expect(calls).toEqual(['revoke u1', 'destroy u1']);
    expect(state.snapshot().drives).toEqual([]);
  });
});

describe('auditKeys', () => {
  it("marks an unfinished job's journaled new key in-flight (job, step), not orphan; a rolled-back one is orphan", async () => {
    const { state } = await setup([drive('D1', 'u1')]);
    const at = '2026-12-01T10:00:00.000Z';
    await state.update((s) => {
      s.jobs.push(
        {
          id: 'rotate-1',
          kind: 'rotate-drive',
          target: 'D1',
          status: 'interrupted',
          startedAt: at,
          steps: [
            { name: 'key-created', at, detail: { uid: 'u7', previous: 'u1' } },
            { name: 'admin1-changing', at },
          ],
        },
        {
          id: 'rotate-0',
          kind: 'rotate-drive',
          target: 'D1',
          status: 'failed',
          startedAt: at,
          steps: [
            { name: 'key-created', at, detail: { uid: 'u6' } },
            { name: 'rolled-back', at },
          ],
        },
      );
    });
    const report = await auditKeys('app', state.snapshot(), [
      {
        name: 'default',
        ports: {
          findByGroup: async () => ['u1', 'u6', 'u7'],
          namesOf: async (uids) => new Map(uids.map((u) => [u, [`kmip-agent/app/D1`]])),
          keyState: async (u) => (u === 'u7' ? State.PreActive : State.Destroyed),
        },
      },
    ]);
    expect(report.inFlight).toEqual([
      {
        uid: 'u7',
        provider: 'default',
        name: 'kmip-agent/app/D1',
        state: 'PreActive',
        job: 'rotate-1',
        kind: 'rotate-drive',
        step: 'admin1-changing',
      },
    ]);
    expect(report.orphans.map((o) => o.uid)).toEqual(['u6']);
  });

  it('lists a superseded, Deactivated master key as retired, not orphan; an unused Active one stays an orphan', async () => {
    const { state } = await setup([drive('D1', 'u1')]);
    const report = await auditKeys('app', state.snapshot(), [
      {
        name: 'default',
        ports: {
          findByGroup: async () => ['u1', 'm-old', 'm-stray'],
          namesOf: async (uids) =>
            new Map(uids.map((u) => [u, [u === 'u1' ? 'kmip-agent/app/D1' : 'kmip-agent/app/master-key']])),
          keyState: async (u) => (u === 'm-old' ? State.Deactivated : State.Active),
        },
      },
    ]);
    const master = { provider: 'default', name: 'kmip-agent/app/master-key' };
    expect(report.retired).toEqual([{ uid: 'm-old', ...master, state: 'Deactivated' }]);
    expect(report.orphans).toEqual([{ uid: 'm-stray', ...master, state: 'Active' }]);
    expect(report.clean).toBe(false);
  });

  /** A provider's server holding `objects` (UID -> Name and State) in the appliance's group. */
  const server = (objects: Record<string, [string, number]>) => ({
    findByGroup: async () => Object.keys(objects),
    namesOf: async (uids: string[]) => new Map(uids.map((u) => [u, [objects[u]![0]]])),
    keyState: async (u: string) => objects[u]?.[1] ?? null,
  });
  const masterOn = (keyProviderID: string, uid: string) => async (state: StateStore) =>
    state.update((s) => {
      s.masterKeyUid = uid;
      s.masterKey = { uid, keyManagementType: 'external', keyProviderID };
    });

  it('audits every configured provider: a master key on another one, UIDs that repeat across servers', async () => {
    const { state } = await setup([drive('D1', '1')]);
    await masterOn('vault', '1')(state);
    const master = 'kmip-agent/app/master-key';
    const report = await auditKeys('app', state.snapshot(), [
      // Both servers number their objects from 1: the drive's '1' on default, the master key's '1' on vault.
      { name: 'default', ports: server({ '1': ['kmip-agent/app/D1', State.Active], '2': ['stray', State.Active] }) },
      { name: 'vault', ports: server({ '1': [master, State.Active], '2': [master, State.Deactivated] }) },
    ]);
    expect(report).toMatchObject({
      serverObjects: 4,
      providers: [
        { name: 'default', serverObjects: 2 },
        { name: 'vault', serverObjects: 2 },
      ],
      orphans: [{ uid: '2', provider: 'default', name: 'stray', state: 'Active' }],
      retired: [{ uid: '2', provider: 'vault', name: master, state: 'Deactivated' }],
      missing: [],
      clean: false,
    });
  });

  it('reports the master key missing on its provider, and a provider that cannot be asked makes the audit incomplete', async () => {
    const { state } = await setup([drive('D1', '1')]);
    await masterOn('vault', 'm1')(state);
    const drives = { name: 'default', ports: server({ '1': ['kmip-agent/app/D1', State.Active] }) };
    const gone = await auditKeys('app', state.snapshot(), [drives, { name: 'vault', ports: server({}) }]);
    expect(gone.missing).toEqual([
      { kind: 'master-key', id: 'm1', provider: 'vault', keyUid: 'm1', keyName: 'kmip-agent/app/master-key' },
    ]);
    expect(gone.clean).toBe(false);
    const refused = new KmipAgentError('connection refused by vault:5696', 'KMIP_CONNECTION_REFUSED');
    const unreachable = {
      name: 'vault',
      ports: { ...server({}), findByGroup: () => Promise.reject(refused) },
    };
    const report = await auditKeys('app', state.snapshot(), [drives, unreachable]);
    expect(report).toMatchObject({
      serverObjects: 1,
      providers: [
        { name: 'default', serverObjects: 1 },
        { name: 'vault', serverObjects: null, error: { code: 'KMIP_CONNECTION_REFUSED' } },
      ],
      orphans: [],
      missing: [],
      clean: false,
    });
    // One that fails halfway (Locate answers, State does not) adds none of its findings, only its error.
    let asked = 0;
    const halfway = {
      name: 'vault',
      ports: {
        ...server({ m1: ['kmip-agent/app/master-key', State.Active], s1: ['stray', State.Active], s2: ['stray', 1] }),
        keyState: () => (++asked === 1 ? Promise.resolve(State.Active) : Promise.reject(refused)),
      },
    };
    expect(await auditKeys('app', state.snapshot(), [drives, halfway])).toMatchObject({
      serverObjects: 1,
      providers: [
        { name: 'default' },
        { name: 'vault', serverObjects: null, error: { code: 'KMIP_CONNECTION_REFUSED' } },
      ],
      orphans: [],
      missing: [],
      clean: false,
    });
    // The same state with the default provider alone configured: the master key's provider is unknown.
    const unknown = await auditKeys('app', state.snapshot(), [drives]);
    expect(unknown.providers).toEqual([
      expect.objectContaining({
        name: 'vault',
        serverObjects: null,
        error: expect.objectContaining({ code: 'CONFIG_PROVIDER_UNKNOWN' }),
      }),
      { name: 'default', serverObjects: 1 },
    ]);
    expect(unknown.clean).toBe(false);
    // Everything in place: clean.
    const fine = await auditKeys('app', state.snapshot(), [
      drives,
      { name: 'vault', ports: server({ m1: ['kmip-agent/app/master-key', State.Active] }) },
    ]);
    expect(fine).toMatchObject({ clean: true, orphans: [], missing: [], serverObjects: 2 });
  });

  it('lists objects no record uses (with State and Name) and records whose key the server lacks', async () => {
    const { state } = await setup([drive('D1', 'u1'), drive('D2', 'u9')]);
    const report = await auditKeys('app', state.snapshot(), [
      {
        name: 'default',
        ports: {
          findByGroup: async (g) => (g === 'kmip-agent/app' ? ['u1', 'u5'] : []),
          namesOf: async (uids) => new Map(uids.map((u) => [u, [`kmip-agent/app/name-${u}`]])),
          keyState: async (u) => (u === 'u5' ? State.Deactivated : null),
        },
      },
    ]);
    expect(report).toMatchObject({
      serverObjects: 2,
      recorded: 2,
      orphans: [{ uid: 'u5', name: 'kmip-agent/app/name-u5', state: 'Deactivated' }],
      missing: [{ kind: 'drive', id: 'D2', keyUid: 'u9' }],
      clean: false,
    });
  });
});
