/**
 * A locking range the drive does not have is refused by OpalDrive with DRIVE_RANGE_NOT_FOUND naming
 * the ranges that exist (0 = global, 1..N from LockingInfo MaxRanges, read without a PIN), before
 * any PIN is sent: nothing is spent, even with a wrong PIN. On an 8-range emulated drive, and on a
 * scripted TPer whose recorded bytes show that no PIN left the host.
 */
import { describe, expect, it } from 'vitest';
import { OpalDrive } from '../../src/drives/opal.js';
import { ADMIN1 } from '../../src/drives/types.js';
import { testSeams } from '../support/addon.js';
import {
  closed,
  discovery,
  FIRST_HSN,
  getResult,
  propertiesOk,
  startRefused,
  syncSession,
  tcg,
} from '../support/scripted-tper.js';
import { useOwnedDrive } from './emulated-support.js';

const NOT_FOUND = {
  code: 'DRIVE_RANGE_NOT_FOUND',
  message: expect.stringContaining('no locking range 9; its ranges are 0 (global) and 1..8 (LockingInfo MaxRanges 8)'),
};

describe('an 8-range emulated drive', () => {
  const SID_PIN = Buffer.from('sid pin for range checks');
  const ADMIN_PIN = Buffer.from('admin pin for range checks');
  const t = useOwnedDrive({ sid: SID_PIN, admin: ADMIN_PIN });

  it('status() reports MaxRanges without a PIN', async () => {
    expect((await t.drive.status()).maxRanges).toBe(8);
  });

  it('range 9: lock, unlock, set up, erase and enable-user refuse it naming the ranges that exist', async () => {
    const refused = await t.drive.unlock(ADMIN_PIN, { range: 9 }).catch((e: unknown) => e);
    expect(refused).toMatchObject(NOT_FOUND);
    expect((refused as { toJSON(): object }).toJSON()).toMatchObject({
      code: 'DRIVE_RANGE_NOT_FOUND',
      range: 9,
      validRanges: [0, 1, 2, 3, 4, 5, 6, 7, 8],
    });
    await expect(t.drive.lock(ADMIN_PIN, { range: 9 })).rejects.toMatchObject(NOT_FOUND);
    await expect(
      t.drive.setupRange(ADMIN_PIN, { range: 9, start: 0, length: 8, readLockEnabled: true, writeLockEnabled: true }),
    ).rejects.toMatchObject(NOT_FOUND);
    await expect(t.drive.erase(ADMIN_PIN, { range: 9 })).rejects.toMatchObject(NOT_FOUND);
    await expect(t.drive.enableUser(ADMIN_PIN, 1, { ranges: [1, 9] })).rejects.toMatchObject(NOT_FOUND);
    // The last range is there.
    await t.drive.setupRange(ADMIN_PIN, {
      range: 8,
      start: 8192,
      length: 64,
      readLockEnabled: true,
      writeLockEnabled: true,
    });
    await t.drive.lock(ADMIN_PIN, { range: 8 });
    await t.drive.unlock(ADMIN_PIN, { range: 8 });
  });

  it('a wrong PIN with range 9 is not spent: refused for the range, not remembered as wrong', async () => {
    const wrong = Buffer.from('not the admin pin');
    await expect(t.drive.unlock(wrong, { range: 9 })).rejects.toMatchObject(NOT_FOUND);
    expect(await t.drive.isKnownWrong(ADMIN1, wrong)).toBe(false);
    // Tries cannot be read without authenticating (which resets them), so spend the rest instead:
    // TryLimit failures would lock Admin1 out, yet the right PIN still works after as many refusals.
    const { tryLimit } = (await t.drive.tries(ADMIN1, { authority: ADMIN1, pin: ADMIN_PIN }))!;
    for (let i = 0; i < tryLimit + 1; i++) {
      await expect(t.drive.unlock(Buffer.from(`wrong ${i}`), { range: 9 })).rejects.toMatchObject(NOT_FOUND);
    }
    await t.drive.unlock(ADMIN_PIN, { range: 1 });
  });
});

describe('on a scripted TPer: no PIN is sent for a range the drive lacks', () => {
  const seams = testSeams();
  const session = (hsn: number, columns: { name: number; value: unknown }[]) => [
    syncSession(hsn),
    getResult(hsn, columns),
    closed(hsn),
  ];

  it('reads the count once without credentials, then refuses every later call before sending', async () => {
    const backend = seams.openScriptedDrive(discovery, [
      propertiesOk,
      ...session(FIRST_HSN, [{ name: 6, value: 9 }]), // Admin SP: Locking SP life cycle Manufactured
      ...session(FIRST_HSN + 1, [{ name: 4, value: 4 }]), // Locking SP: LockingInfo MaxRanges 4
    ]);
    const drive = OpalDrive.fromBackend('scripted:ranges', backend);
    const pin = Buffer.from('a pin that must stay home');
    await expect(drive.unlock(pin, { range: 5 })).rejects.toMatchObject({
      code: 'DRIVE_RANGE_NOT_FOUND',
      message: expect.stringContaining('its ranges are 0 (global) and 1..4'),
    });
    const sent = backend.sent().map((b) => tcg.parseComPacket(b).packets[0].subpackets[0].payload);
    expect(sent).toHaveLength(7);
    expect(sent.some((p) => p.includes(pin))).toBe(false);
    // Both anonymous StartSessions carry no HostChallenge and no authority (name 0 / name 3).
    for (const start of [sent[1], sent[4]])
      expect(start.toString('hex')).toMatch(/f0824b4[23]a8000002050000000[12]00f1/);
    await expect(drive.erase(pin, { range: 7 })).rejects.toMatchObject({ code: 'DRIVE_RANGE_NOT_FOUND' });
    expect(backend.sent()).toHaveLength(7);
  });

  it('when the drive does not tell (no Locking SP life cycle), the drive decides', async () => {
    const backend = seams.openScriptedDrive(discovery, [
      propertiesOk,
      ...session(FIRST_HSN, []), // the life cycle is not returned: the count stays unknown
      startRefused(0x01), // StartSession with the PIN: refused
    ]);
    const drive = OpalDrive.fromBackend('scripted:unknown-ranges', backend);
    await expect(drive.unlock(Buffer.from('pin'), { range: 9 })).rejects.toMatchObject({ code: 'TCG_NOT_AUTHORIZED' });
    await drive.forgetRefusedPins();
  });
});
