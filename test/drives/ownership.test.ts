/**
 * Taking ownership of a drive that already has an owner must never spend SID tries towards a
 * lockout when the drive shows it is owned, and must say so clearly when it does not.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { OpalDrive } from '../../src/drives/opal.js';
import { SID } from '../../src/drives/types.js';
import { createImage, emulatorNative, type EmulatedImage } from './emulated-support.js';

const emu = emulatorNative();
const SID_PIN = Buffer.alloc(32, 0x5a);

describe('take ownership of an owned drive', () => {
  let image: EmulatedImage;
  let drive: OpalDrive;

  beforeEach(async () => {
    image = await createImage(emu);
    drive = await OpalDrive.open(image.spec);
    await drive.takeOwnership(SID_PIN);
  });
  afterEach(async () => {
    await drive.close();
    image.cleanup();
  });

  it('SID changed but Locking SP inactive: the refusal is DRIVE_ALREADY_OWNED, and the right PIN still works', async () => {
    await expect(drive.takeOwnership(Buffer.alloc(32, 1))).rejects.toMatchObject({
      code: 'DRIVE_ALREADY_OWNED',
      message: expect.stringMatching(/already has an owner.*revert/),
    });
    await drive.activate(SID_PIN);
    expect(await drive.tries(SID, { authority: SID, pin: SID_PIN })).toMatchObject({ tries: 0 });
  });

  it('Locking SP active: refused before any authentication, so no SID try is spent', async () => {
    await drive.activate(SID_PIN);
    for (let i = 0; i < 6; i++) {
      await expect(drive.takeOwnership(Buffer.alloc(32, 2))).rejects.toMatchObject({
        code: 'DRIVE_ALREADY_OWNED',
        message: expect.stringContaining('Locking SP is already active'),
      });
    }
    // Six refusals, more than TryLimit: had they authenticated, SID would now be locked out.
    expect(await drive.tries(SID, { authority: SID, pin: SID_PIN })).toMatchObject({ tries: 0 });
  });
});

describe('drive errors that say what went wrong', () => {
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

  it('a PIN longer than Opal allows is refused before it reaches the drive', async () => {
    await expect(drive.takeOwnership(Buffer.alloc(33, 1))).rejects.toMatchObject({ code: 'DRIVE_PIN_LENGTH_INVALID' });
    await expect(drive.takeOwnership(Buffer.alloc(0))).rejects.toMatchObject({ code: 'DRIVE_PIN_LENGTH_INVALID' });
    await drive.takeOwnership(SID_PIN); // still unowned: nothing was sent
  });

  it('overlapping ranges: the drive says invalid parameter, the error names the likely causes', async () => {
    await drive.takeOwnership(SID_PIN);
    await drive.activate(SID_PIN);
    const range = { readLockEnabled: true, writeLockEnabled: true };
    await drive.setupRange(SID_PIN, { range: 1, start: 0, length: 100, ...range });
    await expect(drive.setupRange(SID_PIN, { range: 2, start: 50, length: 100, ...range })).rejects.toMatchObject({
      code: 'TCG_INVALID_PARAMETER',
      message: expect.stringContaining('ranges may not overlap'),
    });
  });
});
