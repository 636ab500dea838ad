/**
 * Whole host-side flows against the emulated drive, driven through the `tcg` addon module (the
 * real host stack): cryptsetup's hw-opal sequence (DESIGN.md) and sedutil's usual setup with a
 * shadow MBR, then the ways back to factory state.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { emulatedDriveInfo, readEmulatedDrive, writeEmulatedDrive } from '../../src/drives/emulator.js';
import { addonModule } from '../../src/native/addon.js';
import { makeDrive, METHOD, named, RawTcg, setArgs, UID } from './support.js';

type Who = { kind: 'sid' | 'psid' | 'admin' | 'user' | 'anybody'; index?: number };
interface HostDrive {
  status(probe?: boolean): Promise<{ lockingEnabled: boolean; locked: boolean; mbrEnabled: boolean; mbrDone: boolean }>;
  readMsid(): Promise<Buffer>;
  takeOwnership(pin: Buffer): Promise<void>;
  activate(sidPin: Buffer): Promise<void>;
  enableUser(adminPin: Buffer, user: number, enabled: boolean, ranges: number[]): Promise<void>;
  setPin(who: Who, pin: Buffer, target: Who, newPin: Buffer): Promise<void>;
  setupRange(
    adminPin: Buffer,
    range: number,
    start: number | undefined,
    length: number | undefined,
    rle: boolean,
    wle: boolean,
  ): Promise<void>;
  ranges(
    who: Who,
    pin: Buffer,
  ): Promise<{ range: number; start: number; length: number; readLocked: boolean; writeLocked: boolean }[]>;
  setLock(who: Who, pin: Buffer, range: number, state: 'locked' | 'read-only' | 'unlocked'): Promise<void>;
  revert(sidPin: Buffer): Promise<void>;
  psidRevert(psid: Buffer): Promise<void>;
  revertLockingSp(adminPin: Buffer, keepGlobalRangeKey: boolean): Promise<void>;
  erase(adminPin: Buffer, range: number, useEraseMethod: boolean): Promise<void>;
  setMbr(adminPin: Buffer, enable?: boolean, done?: boolean): Promise<void>;
  close(): Promise<void>;
}
const host = () => addonModule<{ open(spec: string): HostDrive }>('tcg');

const SID = Buffer.from('a'.repeat(32));
const USER1 = Buffer.from('b'.repeat(32));
const ADMIN: Who = { kind: 'admin', index: 1 };
const USER: Who = { kind: 'user', index: 1 };

let drive: Awaited<ReturnType<typeof makeDrive>>;
beforeEach(async () => {
  drive = await makeDrive(32, 'FLOWS0001');
});
afterEach(() => drive.cleanup());

async function withHost<T>(body: (d: HostDrive) => Promise<T>): Promise<T> {
  const d = host().open(`emu:${drive.path}`);
  try {
    return await body(d);
  } finally {
    await d.close();
  }
}

const data = (seed: number, blocks: number) => Buffer.alloc(blocks * 512, seed);

describe('cryptsetup hw-opal sequence', () => {
  it('takes ownership, sets up range 1 for User1, locks and unlocks it', async () => {
    const start = 8192;
    const length = 16384;
    await withHost(async (d) => {
      const before = await d.status(true);
      expect(before.lockingEnabled).toBe(false);
      await d.takeOwnership(SID);
      await d.activate(SID);
      await d.enableUser(SID, 1, true, []);
      await d.setPin(ADMIN, SID, USER, USER1);
      await d.setupRange(SID, 1, start, length, true, true);
      await d.enableUser(SID, 1, true, [1]); // ADD_USR_TO_LR
    });
    // A new range has its own key: data is written once it exists (as cryptsetup formats after setup).
    await writeEmulatedDrive(drive.path, start, data(1, 8));
    await withHost(async (d) => {
      await d.setLock(USER, USER1, 1, 'locked');
      const ranges = await d.ranges(ADMIN, SID);
      expect(ranges.find((r) => r.range === 1)).toMatchObject({ start, length, readLocked: true, writeLocked: true });
      expect((await d.status(true)).locked).toBe(true);
    });
    await expect(readEmulatedDrive(drive.path, start, 1)).rejects.toMatchObject({ code: 'EMU_DATA_PROTECT' });
    await expect(readEmulatedDrive(drive.path, start - 1, 1)).resolves.toHaveLength(512); // global range is open
    await withHost((d) => d.setLock(USER, USER1, 1, 'read-only'));
    expect(await readEmulatedDrive(drive.path, start, 8)).toEqual(data(1, 8));
    await expect(writeEmulatedDrive(drive.path, start, data(2, 1))).rejects.toMatchObject({ code: 'EMU_DATA_PROTECT' });
    await withHost((d) => d.setLock(USER, USER1, 1, 'unlocked'));
    await writeEmulatedDrive(drive.path, start, data(2, 1));
    expect(await readEmulatedDrive(drive.path, start, 1)).toEqual(data(2, 1));
    // A wrong user PIN is refused with the TCG status as a typed error.
    await withHost(async (d) => {
      await expect(d.setLock(USER, Buffer.from('wrong'), 1, 'locked')).rejects.toMatchObject({
        code: 'TCG_NOT_AUTHORIZED',
        status: 0x01,
      });
    });
    // Secure erase (GenKey on the ActiveKey), then Erase: the data is gone, the range still works.
    await withHost((d) => d.erase(SID, 1, false));
    expect(await readEmulatedDrive(drive.path, start, 1)).not.toEqual(data(2, 1));
    await writeEmulatedDrive(drive.path, start, data(3, 1));
    await withHost((d) => d.erase(SID, 1, true));
    expect(await readEmulatedDrive(drive.path, start, 1)).not.toEqual(data(3, 1));
  });
});

describe('sedutil setup with a shadow MBR', () => {
  it('locks the global range, shadows the MBR until Done, and reverts', async () => {
    await writeEmulatedDrive(drive.path, 0, data(9, 4));
    await withHost(async (d) => {
      await d.takeOwnership(SID);
      await d.activate(SID);
      await d.setupRange(SID, 0, undefined, undefined, true, true);
      await d.setLock(ADMIN, SID, 0, 'unlocked');
    });
    // loadpba: write the pre-boot image into the MBR table (Set with Where), then enable shadowing.
    const pba = Buffer.alloc(1024, 0x5a);
    await RawTcg.using(drive.path, (raw) =>
      raw.withSession(UID.lockingSp, UID.admin1, SID, async (call) => {
        expect((await call('0000080400000000', METHOD.set, [named(0, 0), named(1, pba)])).status).toBe(0);
        expect(
          (
            await call(
              UID.mbrControl,
              METHOD.set,
              setArgs([
                [1, 1],
                [2, 0],
              ]),
            )
          ).status,
        ).toBe(0);
      }),
    );
    expect(await readEmulatedDrive(drive.path, 0, 2)).toEqual(pba);
    await expect(writeEmulatedDrive(drive.path, 0, data(1, 1))).rejects.toMatchObject({ code: 'EMU_DATA_PROTECT' });
    await withHost(async (d) => {
      const st = await d.status(true);
      expect(st).toMatchObject({ mbrEnabled: true, mbrDone: false });
      await d.setMbr(SID, undefined, true);
    });
    expect(await readEmulatedDrive(drive.path, 0, 4)).toEqual(data(9, 4));
    // RevertSP keeping the global key: the Locking SP is factory-fresh, the data survives.
    await withHost((d) => d.revertLockingSp(SID, true));
    const info = await emulatedDriveInfo(drive.path);
    expect(info).toMatchObject({ lockingSpActive: false, mbr: { enable: false, done: false } });
    expect(await readEmulatedDrive(drive.path, 0, 4)).toEqual(data(9, 4));
    // Revert the TPer with the SID PIN: everything is gone and the MSID opens the SID again.
    await withHost(async (d) => {
      await d.revert(SID);
      await d.takeOwnership(SID);
    });
    expect(await readEmulatedDrive(drive.path, 0, 4)).not.toEqual(data(9, 4));
  });

  it('a read across the end of the shadowed area returns MBR bytes, then media data', async () => {
    // The shadow covers the 128 MiB MBR table, so this test needs a drive larger than that (sparse).
    drive.cleanup();
    drive = await makeDrive(130, 'FLOWS0002');
    const boundary = (128 << 20) / 512;
    await writeEmulatedDrive(drive.path, boundary, data(7, 2));
    await withHost(async (d) => {
      await d.takeOwnership(SID);
      await d.activate(SID);
    });
    const tail = Buffer.alloc(1024, 0x5a);
    await RawTcg.using(drive.path, (raw) =>
      raw.withSession(UID.lockingSp, UID.admin1, SID, async (call) => {
        expect(
          (await call('0000080400000000', METHOD.set, [named(0, (128 << 20) - 1024), named(1, tail)])).status,
        ).toBe(0);
      }),
    );
    await withHost((d) => d.setMbr(SID, true, false));
    expect(await readEmulatedDrive(drive.path, boundary - 3, 5)).toEqual(
      Buffer.concat([Buffer.alloc(512), tail, data(7, 2)]),
    );
  });

  it('PSID revert works with the PSID printed at create time', async () => {
    await withHost(async (d) => {
      await d.takeOwnership(SID);
      await d.activate(SID);
      await expect(d.psidRevert(Buffer.from('NOT-THE-PSID'))).rejects.toMatchObject({ code: 'TCG_NOT_AUTHORIZED' });
      await d.psidRevert(Buffer.from(drive.psid));
      expect(await d.readMsid()).toBeInstanceOf(Buffer);
      await d.takeOwnership(SID); // SID is the MSID again
    });
    expect((await emulatedDriveInfo(drive.path)).lockingSpActive).toBe(false);
  });
});
