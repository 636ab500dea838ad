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
