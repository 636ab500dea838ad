/**
 * rotateKey (src/agent/rotation.ts) over an in-memory key server and drive: what a failure at each kind of
 * point leaves. Before the drive is touched it rolls back (the Pre-Active key destroyed, the record and the
 * old key untouched); after, it stays resumable with the state naming the key the drive holds, and a rerun
 * completes it; a Destroy the server refuses leaves the old key reported, not silently kept; an adopted
 * drive whose SID PIN is not the key keeps its SID PIN.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { CreatedKey, FetchedKey } from '../../src/agent/key-source.js';
import {
  rotateKey,
  ROTATION_STEPS as S,
  type RotationKeyServer,
  type RotationOptions,
  type RotationPorts,
} from '../../src/agent/rotation.js';
import { StateStore } from '../../src/agent/state.js';
import { KmipAgentError } from '../../src/errors.js';
import { KmipOperationError, Operation, ResultReason, ResultStatus } from '../../src/kmip/index.js';
import { FakeClock } from '../support/fake-clock.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

class MemoryKeys implements RotationKeyServer {
  readonly objects = new Map<string, { key: Buffer; state: 'pre-active' | 'active' | 'deactivated' }>();
  fail: Partial<Record<'activate' | 'destroy' | 'revoke' | 'create', Error>> = {};
  private next = 1;

  add(key: Buffer): string {
    const uid = `k${this.next++}`;
    this.objects.set(uid, { key: Buffer.from(key), state: 'active' });
    return uid;
  }
  async createPreActive(): Promise<CreatedKey> {
    if (this.fail.create) throw this.fail.create;
    const key = randomBytes(32);
    const uid = `k${this.next++}`;
    this.objects.set(uid, { key: Buffer.from(key), state: 'pre-active' });
    return { uid, key };
  }
  async fetch(uids: string[]): Promise<Map<string, FetchedKey>> {
    const out = new Map<string, FetchedKey>();
    for (const uid of uids) {
      const o = this.objects.get(uid);
      out.set(
        uid,
        o
          ? { ok: true, key: Buffer.from(o.key) }
          : { ok: false, error: { code: 'KMIP_ITEM_NOT_FOUND', message: 'no such object', notFound: true } },
      );
    }
    return out;
  }
  async activate(uid: string): Promise<void> {
    if (this.fail.activate) throw this.fail.activate;
    this.objects.get(uid)!.state = 'active';
  }
  async revoke(uid: string): Promise<void> {
    if (this.fail.revoke) throw this.fail.revoke;
    this.objects.get(uid)!.state = 'deactivated';
  }
  async destroy(uid: string): Promise<void> {
    if (this.fail.destroy) throw this.fail.destroy;
    if (!this.objects.delete(uid))
      throw new KmipOperationError(Operation.Destroy, ResultStatus.OperationFailed, ResultReason.ItemNotFound, uid);
  }
}

/** A drive with Admin1 and SID PINs; counts refused authentications. */
class MemoryDrive {
  pins: Record<'admin1' | 'sid', Buffer>;
  refused = 0;
  openFails: Error | undefined;
  constructor(admin1: Buffer, sid: Buffer) {
    this.pins = { admin1: Buffer.from(admin1), sid: Buffer.from(sid) };
  }
  ports(): RotationPorts {
    return {
      openOpal: async () => {
        if (this.openFails) throw this.openFails;
        return {
          verify: async (a, pin) => {
            const ok = this.pins[a].equals(pin);
            if (!ok) this.refused++;
            return ok;
          },
          setPin: async (a, pin, newPin) => {
            if (!this.pins[a].equals(pin)) {
              this.refused++;
              throw new KmipAgentError('refused', 'DRIVE_PIN_REFUSED');
            }
            this.pins[a] = Buffer.from(newPin);
          },
          close: async () => undefined,
        };
      },
      luksSlotOf: () => Promise.reject(new Error('no LUKS here')),
      luksAddKey: () => Promise.reject(new Error('no LUKS here')),
      luksRemoveSlot: () => Promise.reject(new Error('no LUKS here')),
    };
  }
}

async function setup(sidIsKey = true) {
  const dir = mkdtempSync(join(tmpdir(), 'kmip-agent-rotation-'));
  dirs.push(dir);
  const clock = new FakeClock();
  const state = new StateStore({ dir, now: () => clock.now() });
  await state.load();
  const keys = new MemoryKeys();
  const oldKey = randomBytes(32);
  const oldUid = keys.add(oldKey);
  const drive = new MemoryDrive(oldKey, sidIsKey ? oldKey : randomBytes(32));
  await state.update((s) => {
    s.drives.push({
      id: 'wwn-1',
      device: 'emu:/d.img',
      key: { uid: oldUid, name: 'kmip-agent/app/wwn-1', provider: 'default' },
      enrolledAt: clock.now().toISOString(),
      unlockAtBoot: true,
    });
  });
  let n = 0;
  const options: RotationOptions = {
    applianceId: 'app',
    provider: 'default',
    keys,
    ports: drive.ports(),
    state,
    clock,
    newJobId: () => `rotate-${++n}`,
  };
  const lastJob = () => state.snapshot().jobs.at(-1)!;
  return { state, keys, drive, oldKey, oldUid, options, lastJob };
}

describe('rotateKey (in-memory server and drive)', () => {
  it('rotates: both PINs on the new key, recorded with createdAt, new key active, old destroyed', async () => {
    const t = await setup();
    const r = await rotateKey('drive', 'wwn-1', t.options);
    expect(r).toMatchObject({ previousKeyUid: t.oldUid, oldKeyDestroyed: true, resumed: false });
    const newKey = t.keys.objects.get(r.keyUid)!;
    expect(newKey.state).toBe('active');
    expect(t.drive.pins.admin1.equals(newKey.key) && t.drive.pins.sid.equals(newKey.key)).toBe(true);
    expect(t.keys.objects.has(t.oldUid)).toBe(false);
    expect(t.state.snapshot().drives[0]!.key).toMatchObject({ uid: r.keyUid, createdAt: expect.any(String) });
    expect(t.lastJob().steps.map((s) => s.name)).toEqual([
      S.keyCreated,
      S.admin1Changing,
      S.admin1Changed,
      S.sidChanging,
      S.sidChanged,
      S.proven,
      S.recorded,
      S.activated,
      S.oldRevoked,
      S.oldDestroyed,
    ]);
    expect(t.drive.refused).toBe(0);
  });

  it('rolls back when it fails before the drive is touched: the Pre-Active key destroyed, nothing else changed', async () => {
    const t = await setup();
    t.drive.openFails = new KmipAgentError('no such drive', 'DRIVE_NOT_FOUND');
    await expect(rotateKey('drive', 'wwn-1', t.options)).rejects.toMatchObject({ code: 'DRIVE_NOT_FOUND' });
    const job = t.lastJob();
    expect(job).toMatchObject({ status: 'failed', error: { code: 'DRIVE_NOT_FOUND' } });
    expect(job.steps.map((s) => s.name)).toEqual([S.keyCreated, S.rolledBack]);
    expect([...t.keys.objects.keys()]).toEqual([t.oldUid]);
    expect(t.state.snapshot().drives[0]!.key.uid).toBe(t.oldUid);
    expect(t.drive.pins.admin1.equals(t.oldKey)).toBe(true);
    // A rolled-back rotation is not resumed: the next run starts a new one.
    t.drive.openFails = undefined;
    expect((await rotateKey('drive', 'wwn-1', t.options)).resumed).toBe(false);
  });

  it('a key server failing at the activation: resumable, the state already names the key the drive holds', async () => {
    const t = await setup();
    t.keys.fail.activate = new KmipAgentError('connection reset', 'KMIP_CONNECTION_LOST');
    await expect(rotateKey('drive', 'wwn-1', t.options)).rejects.toMatchObject({ code: 'KMIP_CONNECTION_LOST' });
    const job = t.lastJob();
    expect(job.status).toBe('failed');
    expect(job.steps.at(-1)!.name).toBe(S.recorded);
    const newUid = String(job.steps[0]!.detail!.uid);
    expect(t.state.snapshot().drives[0]!.key.uid).toBe(newUid);
    // Both keys still on the server until the old one is retired.
    expect(t.keys.objects.get(t.oldUid)?.state).toBe('active');
    expect(t.keys.objects.get(newUid)?.state).toBe('pre-active');
    delete t.keys.fail.activate;
    const r = await rotateKey('drive', 'wwn-1', t.options);
    expect(r).toMatchObject({ resumed: true, keyUid: newUid, previousKeyUid: t.oldUid, oldKeyDestroyed: true });
    expect(t.state.snapshot().jobs).toHaveLength(1);
    expect(t.drive.refused).toBe(0);
  });

  it('a Destroy the server refuses: the rotation is done, the old key reported as kept (revoked)', async () => {
    const t = await setup();
    t.keys.fail.destroy = new KmipAgentError('permission denied', 'KMIP_PERMISSION_DENIED');
    const r = await rotateKey('drive', 'wwn-1', t.options);
    expect(r).toMatchObject({ oldKeyDestroyed: false, oldKeyError: { code: 'KMIP_PERMISSION_DENIED' } });
    expect(t.keys.objects.get(t.oldUid)?.state).toBe('deactivated');
    expect(t.lastJob()).toMatchObject({ status: 'done' });
    expect(t.lastJob().steps.at(-1)).toMatchObject({ name: S.oldKept, detail: { uid: t.oldUid } });
  });

  it('a crash between the Destroy and the end of the journal: the rerun finds the old key gone and ends done', async () => {
    const t = await setup();
    const crash = new Error('killed');
    await expect(
      rotateKey('drive', 'wwn-1', {
        ...t.options,
        afterJournal: (step) => {
          if (step === S.oldRevoked) throw crash;
        },
      }),
    ).rejects.toBe(crash);
    // The crashed run got as far as the Destroy.
    await t.keys.destroy(t.oldUid);
    const r = await rotateKey('drive', 'wwn-1', t.options);
    expect(r).toMatchObject({ resumed: true, oldKeyDestroyed: true });
    expect(t.lastJob()).toMatchObject({ status: 'done' });
    expect(t.lastJob().steps.at(-1)!.name).toBe(S.oldDestroyed);
  });

  it("an adopted drive whose SID PIN is not the key keeps its SID PIN (one refused check, journaled 'sid-kept')", async () => {
    const t = await setup(false);
    const sid = Buffer.from(t.drive.pins.sid);
    const r = await rotateKey('drive', 'wwn-1', t.options);
    expect(t.drive.pins.sid.equals(sid)).toBe(true);
    expect(t.drive.pins.admin1.equals(t.keys.objects.get(r.keyUid)!.key)).toBe(true);
    expect(t.lastJob().steps.map((s) => s.name)).toContain(S.sidKept);
    expect(t.drive.refused).toBe(1);
  });

  it('refuses an unmanaged drive before contacting the server', async () => {
    const t = await setup();
    t.keys.fail.create = new Error('must not be called');
    await expect(rotateKey('drive', 'nope', t.options)).rejects.toMatchObject({ code: 'DRIVE_NOT_MANAGED' });
    await expect(rotateKey('volume', 'wwn-1', t.options)).rejects.toMatchObject({ code: 'VOLUME_NOT_MANAGED' });
    expect(t.state.snapshot().jobs).toEqual([]);
  });
});
