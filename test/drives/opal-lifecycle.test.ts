/**
 * The whole Opal life cycle through the TS API (OpalDrive) on an emulated drive: take ownership,
 * activate, configure a range, lock, power cycle, refused reads, wrong PINs counting up, lockout
 * after TryLimit and its reset by a power cycle, unlock with data intact, crypto erase, reverts.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { OpalDrive } from '../../src/drives/opal.js';
import { ADMIN1, SID, userAuthority } from '../../src/drives/types.js';
import { createImage, emulatorNative, type EmulatedImage } from './emulated-support.js';

const emu = emulatorNative();
const SID_PIN = Buffer.from('sid pin: 32 random bytes, live');
const ADMIN_PIN = Buffer.from('admin1 pin');
const USER_PIN = Buffer.from('user1 pin');
const RANGE1 = { range: 1, start: 2048, length: 4096, readLockEnabled: true, writeLockEnabled: true };
const pattern = Buffer.from(Array.from({ length: 4 * 512 }, (_, i) => (i * 7 + 3) & 0xff));

describe('Opal life cycle on an emulated drive', () => {
  let image: EmulatedImage;
  let drive: OpalDrive;

  beforeEach(async () => {
    image = await createImage(emu);
    drive = await OpalDrive.open(image.spec);
  });
  afterEach(async () => {
    await drive.close();
    image.cleanup();
  });

  /** Power-cycles the emulated drive (the image lock must be free, so the handle is reopened). */
  async function powerCycle(): Promise<void> {
    await drive.close();
    await emu.powerCycle(image.path);
    drive = await OpalDrive.open(image.spec);
  }

  async function readBlocks(lba: number, count: number): Promise<Buffer> {
    await drive.close();
    try {
      return await emu.read(image.path, lba, count);
    } finally {
      drive = await OpalDrive.open(image.spec);
    }
  }

  async function writeBlocks(lba: number, data: Buffer): Promise<void> {
    await drive.close();
    try {
      await emu.write(image.path, lba, data);
    } finally {
      drive = await OpalDrive.open(image.spec);
    }
  }

  async function ownAndConfigure(): Promise<void> {
    await drive.takeOwnership(SID_PIN);
    await drive.activate(SID_PIN);
    await drive.setPin({ authority: ADMIN1, pin: SID_PIN, newPin: ADMIN_PIN });
    await drive.setupRange(ADMIN_PIN, RANGE1);
  }

  it('factory state: Opal 2 discovery, Locking SP inactive, SID == MSID', async () => {
    const status = await drive.status({ probeSid: true });
    expect(status.discovery.opal2?.baseComId).toBeGreaterThan(0);
    expect(status.lockingSupported).toBe(true);
    expect(status.lockingEnabled).toBe(false);
    expect(status.lockingSpLifecycle).toBe(8);
    expect(status.sidIsMsid).toBe(true);
    expect((await drive.readMsid()).length).toBeGreaterThan(0);
  });

  it('take ownership, activate, configure, lock, power cycle, unlock: data intact', async () => {
    await ownAndConfigure();
    const status = await drive.status({ probeSid: true });
    expect(status).toMatchObject({ lockingEnabled: true, lockingSpLifecycle: 9, sidIsMsid: false });
    // MSID no longer opens SID; Admin1 took the SID PIN at activation and then its own.
    await expect(drive.verify(SID_PIN, SID)).resolves.toBeUndefined();
    await expect(drive.verify(ADMIN_PIN)).resolves.toBeUndefined();

    await writeBlocks(RANGE1.start, pattern);
    await drive.lock(ADMIN_PIN, { range: 1 });
    const ranges = await drive.ranges(ADMIN_PIN);
    expect(ranges.find((r) => r.range === 1)).toMatchObject({
      start: 2048,
      length: 4096,
      readLocked: true,
      writeLocked: true,
    });

    await powerCycle();
    await expect(readBlocks(RANGE1.start, 4)).rejects.toMatchObject({ code: 'EMU_DATA_PROTECT' });
    // Outside the range the (unlocked, never locked) global range still reads.
    await expect(readBlocks(0, 1)).resolves.toHaveLength(512);

    await drive.unlock(ADMIN_PIN, { range: 1, readOnly: true });
    expect(await readBlocks(RANGE1.start, 4)).toEqual(pattern);
    await expect(writeBlocks(RANGE1.start, Buffer.alloc(512))).rejects.toMatchObject({ code: 'EMU_DATA_PROTECT' });
    await drive.unlock(ADMIN_PIN, { range: 1 });
    await writeBlocks(RANGE1.start + 8, pattern.subarray(0, 512));
    expect(await readBlocks(RANGE1.start + 8, 1)).toEqual(pattern.subarray(0, 512));
  });

  it('wrong PINs count up, TryLimit locks the authority out, a power cycle resets it', async () => {
    await ownAndConfigure();
    await drive.setPin({ authority: ADMIN1, pin: ADMIN_PIN, target: userAuthority(1), newPin: USER_PIN });
    await drive.enableUser(ADMIN_PIN, 1, { ranges: [1] });
    await drive.lock(USER_PIN, { range: 1, authority: userAuthority(1) });
    await powerCycle();

    const user1 = userAuthority(1);
    const asAdmin = { authority: ADMIN1, pin: ADMIN_PIN };
    const before = await drive.tries(user1, asAdmin);
    expect(before).toMatchObject({ tries: 0 });
    const limit = before!.tryLimit;
    expect(limit).toBeGreaterThan(1);

    await expect(drive.unlock(Buffer.from('wrong-0'), { range: 1, authority: user1 })).rejects.toMatchObject({
      code: 'TCG_NOT_AUTHORIZED',
      status: 1,
    });
    expect(await drive.tries(user1, asAdmin)).toMatchObject({ tries: 1 });
    // The same wrong PIN is not sent again: the drive's counter does not move.
    await expect(drive.unlock(Buffer.from('wrong-0'), { range: 1, authority: user1 })).rejects.toMatchObject({
      code: 'TCG_PIN_KNOWN_WRONG',
    });
    expect(await drive.tries(user1, asAdmin)).toMatchObject({ tries: 1 });

    for (let i = 1; i < limit; i++) {
      await expect(drive.unlock(Buffer.from(`wrong-${i}`), { range: 1, authority: user1 })).rejects.toMatchObject({
        code: 'TCG_NOT_AUTHORIZED',
      });
    }
    // At the limit even the right PIN is refused until a power cycle.
    await expect(drive.unlock(USER_PIN, { range: 1, authority: user1 })).rejects.toMatchObject({
      code: 'TCG_AUTHORITY_LOCKED_OUT',
      status: 0x12,
    });
    await powerCycle();
    expect(await drive.tries(user1, asAdmin)).toMatchObject({ tries: 0 });
    await drive.unlock(USER_PIN, { range: 1, authority: user1 });
    expect((await drive.ranges(ADMIN_PIN)).find((r) => r.range === 1)).toMatchObject({ readLocked: false });
  });

  it('crypto erase makes the old data unreadable', async () => {
    await ownAndConfigure();
    await writeBlocks(RANGE1.start, pattern);
    expect(await readBlocks(RANGE1.start, 4)).toEqual(pattern);
    await drive.erase(ADMIN_PIN, { range: 1 });
    await drive.unlock(ADMIN_PIN, { range: 1 });
    const after = await readBlocks(RANGE1.start, 4);
    expect(after).toHaveLength(pattern.length);
    expect(after.equals(pattern)).toBe(false);
  });

  it('revert with SID returns factory state; so does PSID revert', async () => {
    await ownAndConfigure();
    await expect(drive.revert(Buffer.from('not the SID PIN'))).rejects.toMatchObject({ code: 'TCG_NOT_AUTHORIZED' });
    await drive.revert(SID_PIN);
    let status = await drive.status({ probeSid: true });
    expect(status).toMatchObject({ lockingEnabled: false, lockingSpLifecycle: 8, sidIsMsid: true });

    await ownAndConfigure();
    await drive.lock(ADMIN_PIN, { range: 1 });
    await drive.psidRevert(Buffer.from(image.psid));
    status = await drive.status({ probeSid: true });
    expect(status).toMatchObject({ lockingEnabled: false, lockingSpLifecycle: 8, sidIsMsid: true });
    await expect(readBlocks(RANGE1.start, 1)).resolves.toHaveLength(512);
  });

  it('MBR control: enable and done are set by Admin1', async () => {
    await ownAndConfigure();
    await drive.setMbr(ADMIN_PIN, { enable: true, done: true });
    const status = await drive.status();
    expect(status).toMatchObject({ mbrEnabled: true, mbrDone: true });
  });

  it('a second opener of the same image gets a typed busy error', async () => {
    await drive.discover();
    await expect(OpalDrive.open(image.spec)).rejects.toMatchObject({ code: 'EMU_BUSY' });
  });
});
