/**
 * Taking ownership of a drive that already has an owner must never spend SID tries towards a
 * lockout when the drive shows it is owned, and must say so clearly when it does not.
 */
import { beforeEach, describe, expect, it } from 'vitest';
import { SID } from '../../src/drives/types.js';
import { useFreshDrive } from './emulated-support.js';

const SID_PIN = Buffer.alloc(32, 0x5a);

describe('take ownership of an owned drive', () => {
  const t = useFreshDrive();
  beforeEach(() => t.drive.takeOwnership(SID_PIN));

  it('SID changed but Locking SP inactive: the refusal is DRIVE_ALREADY_OWNED, and the right PIN still works', async () => {
    await expect(t.drive.takeOwnership(Buffer.alloc(32, 1))).rejects.toMatchObject({
      code: 'DRIVE_ALREADY_OWNED',
      message: expect.stringMatching(/already has an owner.*revert/),
    });
    await t.drive.activate(SID_PIN);
    expect(await t.drive.tries(SID, { authority: SID, pin: SID_PIN })).toMatchObject({ tries: 0 });
  });

  it('Locking SP active: refused before any authentication, so no SID try is spent', async () => {
    await t.drive.activate(SID_PIN);
    for (let i = 0; i < 6; i++) {
      await expect(t.drive.takeOwnership(Buffer.alloc(32, 2))).rejects.toMatchObject({
        code: 'DRIVE_ALREADY_OWNED',
        message: expect.stringContaining('Locking SP is already active'),
      });
    }
    // Six refusals, more than TryLimit: had they authenticated, SID would now be locked out.
    expect(await t.drive.tries(SID, { authority: SID, pin: SID_PIN })).toMatchObject({ tries: 0 });
  });
});

describe('drive errors that say what went wrong', () => {
  const t = useFreshDrive();

  it('a PIN longer than Opal allows is refused before it reaches the drive', async () => {
    await expect(t.drive.takeOwnership(Buffer.alloc(33, 1))).rejects.toMatchObject({
      code: 'DRIVE_PIN_LENGTH_INVALID',
    });
    await expect(t.drive.takeOwnership(Buffer.alloc(0))).rejects.toMatchObject({ code: 'DRIVE_PIN_LENGTH_INVALID' });
    await t.drive.takeOwnership(SID_PIN); // still unowned: nothing was sent
  });

  it('overlapping ranges: the drive says invalid parameter, the error names the likely causes', async () => {
    await t.drive.takeOwnership(SID_PIN);
    await t.drive.activate(SID_PIN);
    const range = { readLockEnabled: true, writeLockEnabled: true };
    await t.drive.setupRange(SID_PIN, { range: 1, start: 0, length: 100, ...range });
    await expect(t.drive.setupRange(SID_PIN, { range: 2, start: 50, length: 100, ...range })).rejects.toMatchObject({
      code: 'TCG_INVALID_PARAMETER',
      message: expect.stringContaining('ranges may not overlap'),
    });
  });
});
