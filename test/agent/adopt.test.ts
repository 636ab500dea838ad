/**
 * `kmip-agent drive enroll <drive> --sid-pin-file F [--admin1-pin-file F]`: adopting an emulated Opal drive
 * that already has an owner, against the run's PyKMIP server. The new KMIP key replaces the SID and Admin1
 * PINs and locks the global range; wrong PINs leave no key behind and are never sent twice; an adoption
 * interrupted after its key was made (the old PIN still works) or after the Admin1 change (the key is the
 * Admin1 PIN) resumes with the same key.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { adoptOpalDrive, type AdoptDrive } from '../../src/agent/adopt.js';
import { KmipKeySource } from '../../src/agent/key-source.js';
import { decodeState, StateStore } from '../../src/agent/state.js';
import { emulatedDriveInfo } from '../../src/drives/emulator.js';
import { ADMIN1, OpalDrive, powerCycleEmulatedDrive, SID } from '../../src/drives/index.js';
import { KmipAgentError } from '../../src/errors.js';
import { FakeClock } from '../support/fake-clock.js';
import { appliancesForEachTest, TestAppliance } from './appliance.js';

const appliance = appliancesForEachTest();

/** An emulated drive someone else set up: SID PIN `sid`, Locking SP active, Admin1 PIN `admin1`. */
async function ownedDrive(a: TestAppliance, serial: string, sid: Buffer, admin1: Buffer): Promise<string> {
  const device = await a.emulatedDrive(serial);
  const drive = await OpalDrive.open(device);
  try {
    await drive.takeOwnership(sid);
    await drive.activate(sid);
    await drive.setPin({ authority: ADMIN1, pin: sid, newPin: admin1 });
  } finally {
    await drive.close();
  }
  return device;
}

async function accepts(device: string, pin: Buffer, authority = ADMIN1): Promise<boolean> {
  const drive = await OpalDrive.open(device);
  try {
    await drive.verify(pin, authority);
    return true;
  } catch {
    return false;
  } finally {
    await drive.close();
  }
}

async function serverKey(a: TestAppliance, uid: string): Promise<Buffer> {
  const fetched = (await new KmipKeySource(a.provider()).fetch([uid])).get(uid);
  if (!fetched?.ok) throw new Error(`no key ${uid}`);
  return fetched.key;
}

const state = (a: TestAppliance) => decodeState(readFileSync(a.statePath, 'utf8'), a.statePath).body;
const group = (a: TestAppliance) => new KmipKeySource(a.provider()).findByGroup(`kmip-agent/${a.id}`);

describe('drive enroll adopts an owned drive with its current PINs', () => {
  it('the KMIP key replaces SID and Admin1 PINs, the global range locks, and the next unlock uses the key', async () => {
    const a = appliance();
    const sid = randomBytes(32);
    const admin1 = randomBytes(32);
    const device = await ownedDrive(a, 'EMU-ADOPT1', sid, admin1);
    // Without PINs an owned drive is refused, naming the way to adopt it.
    const plain = a.cli(['drive', 'enroll', device]);
    expect(plain.json.error).toMatchObject({ code: 'DRIVE_ALREADY_OWNED' });
    expect(plain.json.error).toMatchObject({ message: expect.stringContaining('--sid-pin-file') });

    const admin1File = join(a.work, 'admin1.pin');
    writeFileSync(admin1File, admin1, { mode: 0o600 });
    const result = a.ok(['drive', 'enroll', device, '--sid-pin-file', '-', '--admin1-pin-file', admin1File], sid);
    const [adopted] = result.enrolled as { id: string; keyUid: string; keyName: string; sidChanged: boolean }[];
    expect(adopted).toMatchObject({ id: 'EMU-ADOPT1', keyName: `kmip-agent/${a.id}/EMU-ADOPT1`, sidChanged: true });

    const key = await serverKey(a, adopted!.keyUid);
    expect(await accepts(device, key, SID)).toBe(true);
    expect(await accepts(device, key, ADMIN1)).toBe(true);
    expect(await accepts(device, sid, SID)).toBe(false);
    const job = state(a).jobs.find((j) => j.kind === 'adopt')!;
    expect(job.status).toBe('done');
    expect(job.steps.map((s) => s.name)).toEqual([
      'key-created',
      'admin1-pin-changed',
      'sid-pin-changed',
      'range-locking-enabled',
      'recorded',
    ]);

    await powerCycleEmulatedDrive(device.slice(4));
    expect((await emulatedDriveInfo(device.slice(4))).ranges[0]).toMatchObject({ readLocked: true, writeLocked: true });
    const unlocked = a.ok(['unlock']);
    expect(unlocked.drives).toEqual([expect.objectContaining({ id: 'EMU-ADOPT1', state: 'unlocked' })]);
  });

  it('a wrong PIN leaves no key on the server and is never sent to the drive again', async () => {
    const a = appliance();
    const sid = randomBytes(32);
    const device = await ownedDrive(a, 'EMU-ADOPT2', sid, sid);
    const wrong = randomBytes(32);
    const first = a.cli(['drive', 'enroll', device, '--sid-pin-file', '-'], wrong);
    expect(first.code).toBe(1);
    expect(await group(a)).toEqual([]);
    const second = a.cli(['drive', 'enroll', device, '--sid-pin-file', '-'], wrong);
    expect(second.json.error).toMatchObject({ code: 'TCG_PIN_KNOWN_WRONG' });
    expect(await group(a)).toEqual([]);
    // The right PIN still adopts it (Admin1 defaults to the SID PIN).
    const ok = a.ok(['drive', 'enroll', device, '--sid-pin-file', '-'], sid);
    expect((ok.enrolled as { sidChanged: boolean }[])[0]!.sidChanged).toBe(true);
  });

  it('usage: one drive at a time, and a factory-fresh drive is enrolled without PIN files', async () => {
    const a = appliance();
    const fresh = await a.emulatedDrive('EMU-FRESH');
    const many = a.cli(['drive', 'enroll', fresh, fresh, '--sid-pin-file', '-'], randomBytes(32));
    expect(many.code).toBe(2);
    const notOwned = a.cli(['drive', 'enroll', fresh, '--sid-pin-file', '-'], randomBytes(32));
    expect(notOwned.json.error).toMatchObject({ code: 'DRIVE_NOT_OWNED' });
    expect(await group(a)).toEqual([]);
  });

  it.each([
    ['after the key was made (the old PINs still work)', 'admin1'],
    ['after the Admin1 change (the key is the Admin1 PIN)', 'sid'],
  ] as const)('an adoption interrupted %s resumes with the same key', async (_, crashAt) => {
    const a = appliance();
    const sid = randomBytes(32);
    const admin1 = randomBytes(32);
    const device = await ownedDrive(a, `EMU-CRASH-${crashAt}`, sid, admin1);
    mkdirSync(a.dirs.state, { recursive: true, mode: 0o700 });
    const store = new StateStore({ dir: a.dirs.state, now: () => new Date() });
    await store.load();
    const crash = new KmipAgentError('power lost', 'TEST_CRASH');
    const port = {
      open: async (d: string): Promise<AdoptDrive> => {
        const drive = await OpalDrive.open(d);
        const auth = (x: 'sid' | 'admin1') => (x === 'sid' ? SID : ADMIN1);
        return {
          identity: () => drive.identity(),
          aliases: () => drive.identityAliases(),
          isFactoryFresh: async () => false,
          lockingSpActive: async () => (await drive.status()).lockingEnabled,
          verify: (x, pin) => drive.verify(pin, auth(x)),
          activateLockingSp: (pin) => drive.activate(pin),
          setPin: async (x, pin, newPin) => {
            if (x === crashAt) throw crash;
            await drive.setPin({ authority: auth(x), pin, newPin });
          },
          enableGlobalRangeLocking: (pin) =>
            drive.setupRange(pin, { range: 0, readLockEnabled: true, writeLockEnabled: true }),
          close: () => drive.close(),
        };
      },
    };
    await expect(
      adoptOpalDrive(device, { sid, admin1 }, port, {
        applianceId: a.id,
        provider: 'default',
        keys: new KmipKeySource(a.provider()),
        state: store,
        clock: new FakeClock(),
        newJobId: () => `adopt-${randomUUID()}`,
      }),
    ).rejects.toBe(crash);
    const [uid] = await group(a);
    const key = await serverKey(a, uid!);
    expect(await accepts(device, crashAt === 'admin1' ? admin1 : key, ADMIN1)).toBe(true);
    expect(state(a).jobs[0]).toMatchObject({ status: 'failed', error: { code: 'TEST_CRASH' } });

    const admin1File = join(a.work, 'admin1.pin');
    writeFileSync(admin1File, admin1, { mode: 0o600 });
    const result = a.ok(['drive', 'enroll', device, '--sid-pin-file', '-', '--admin1-pin-file', admin1File], sid);
    expect(result.enrolled).toEqual([expect.objectContaining({ keyUid: uid, resumed: true, sidChanged: true })]);
    expect(await group(a)).toEqual([uid]);
    expect(await accepts(device, key, SID)).toBe(true);
    expect(await accepts(device, key, ADMIN1)).toBe(true);
    const jobs = state(a).jobs;
    expect(jobs).toHaveLength(1);
    expect(jobs[0]).toMatchObject({ status: 'done' });
    expect(jobs[0]!.error).toBeUndefined();
  });
});
