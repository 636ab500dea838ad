/**
 * More Opal flows on an emulated drive: authenticating with the Authenticate method instead of at
 * StartSession, range enumeration (Next on the Locking table), users enabled per range, RevertSP of
 * the Locking SP, reading tries, and the serial number. Skipped without the emulator.
 */
import { describe, expect, it } from 'vitest';
import { ADMIN1, SID, userAuthority } from '../../src/drives/types.js';
import { useOwnedDrive } from './emulated-support.js';

const SID_PIN = Buffer.from('another sid pin');
const ADMIN_PIN = Buffer.from('another admin pin');

describe('more Opal flows on an emulated drive', () => {
  const t = useOwnedDrive({ sid: SID_PIN, admin: ADMIN_PIN }, { authenticateWithMethod: true });

  it('authenticates with ThisSP.Authenticate: right PIN works, wrong PIN is refused and remembered', async () => {
    await t.drive.setupRange(ADMIN_PIN, {
      range: 2,
      start: 4096,
      length: 1024,
      readLockEnabled: true,
      writeLockEnabled: true,
    });
    await t.drive.lock(ADMIN_PIN, { range: 2 });
    const wrong = Buffer.from('not it');
    await expect(t.drive.unlock(wrong, { range: 2 })).rejects.toMatchObject({ code: 'TCG_NOT_AUTHORIZED', status: 1 });
    expect(await t.drive.isKnownWrong(ADMIN1, wrong)).toBe(true);
    // Tries of Admin1 read as SID is not allowed across SPs; read as Admin1 itself.
    expect(await t.drive.tries(ADMIN1, { authority: ADMIN1, pin: ADMIN_PIN })).toMatchObject({ tries: 0 });
    await t.drive.unlock(ADMIN_PIN, { range: 2 });
    expect((await t.drive.ranges(ADMIN_PIN)).find((r) => r.range === 2)).toMatchObject({
      start: 4096,
      length: 1024,
      readLocked: false,
      writeLocked: false,
    });
  });

  it('enumerates the global range and every numbered range', async () => {
    const ranges = await t.drive.ranges(ADMIN_PIN);
    expect(ranges[0].range).toBe(0);
    expect(ranges.length).toBeGreaterThan(1);
    expect(ranges.map((r) => r.range)).toEqual([...ranges.keys()]);
  });

  it('a user enabled for one range can lock it but not another', async () => {
    await t.drive.setupRange(ADMIN_PIN, {
      range: 1,
      start: 0,
      length: 1024,
      readLockEnabled: true,
      writeLockEnabled: true,
    });
    await t.drive.setupRange(ADMIN_PIN, {
      range: 2,
      start: 1024,
      length: 1024,
      readLockEnabled: true,
      writeLockEnabled: true,
    });
    const user2 = userAuthority(2);
    const userPin = Buffer.from('user two pin');
    await t.drive.setPin({ pin: ADMIN_PIN, target: user2, newPin: userPin });
    await t.drive.enableUser(ADMIN_PIN, 2, { ranges: [1] });
    await t.drive.lock(userPin, { range: 1, authority: user2 });
    // NOT_AUTHORIZED on the Set (an ACL refusal) does not mark the PIN as wrong.
    await expect(t.drive.lock(userPin, { range: 2, authority: user2 })).rejects.toMatchObject({
      code: 'TCG_NOT_AUTHORIZED',
    });
    expect(await t.drive.isKnownWrong(user2, userPin)).toBe(false);
    await t.drive.unlock(userPin, { range: 1, authority: user2 });
  });

  it('RevertSP returns the Locking SP to Manufactured-Inactive and keeps SID', async () => {
    await t.drive.revertLockingSp(ADMIN_PIN);
    const status = await t.drive.status();
    expect(status.lockingSpLifecycle).toBe(8);
    expect(status.lockingEnabled).toBe(false);
    await expect(t.drive.verify(SID_PIN, SID)).resolves.toBeUndefined();
  });

  it('erases a range with the Erase method as well as with GenKey', async () => {
    await t.drive.setupRange(ADMIN_PIN, {
      range: 3,
      start: 8192,
      length: 64,
      readLockEnabled: true,
      writeLockEnabled: true,
    });
    await t.drive.unlock(ADMIN_PIN, { range: 3 });
    const pattern = Buffer.alloc(4 * 512, 0x5a);
    for (const method of ['erase', undefined] as const) {
      await t.write(8192, pattern);
      expect((await t.read(8192, 4)).equals(pattern)).toBe(true);
      await t.drive.erase(ADMIN_PIN, { range: 3, ...(method ? { method } : {}) });
      // A new media key: the old data no longer reads back (the range is unlocked again to read it).
      await t.drive.unlock(ADMIN_PIN, { range: 3 });
      const after = await t.read(8192, 4);
      expect(after, `after ${method ?? 'GenKey'}`).toHaveLength(pattern.length);
      expect(after.equals(pattern), `after ${method ?? 'GenKey'}`).toBe(false);
    }
    expect((await t.drive.ranges(ADMIN_PIN)).find((r) => r.range === 3)).toMatchObject({ start: 8192, length: 64 });
  });

  it('reports the serial number the drive gives', () => {
    expect(t.drive.serial()).toBe('EMU-TEST-0001');
  });
});
