/**
 * sedutil-compatible PIN derivation, checked against the openssl CLI's PBKDF2 (a real, independent
 * implementation), and used end to end: a drive owned with a derived PIN opens with the raw one.
 */
import { execFileSync } from 'node:child_process';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { OpalDrive } from '../../src/drives/opal.js';
import { sedutilPin } from '../../src/drives/sedutil.js';
import { SID } from '../../src/drives/types.js';
import { createImage, emulatorNative, type EmulatedImage } from './emulated-support.js';

function opensslPbkdf2(password: string, salt: string): Buffer {
  const out = execFileSync('openssl', [
    'kdf',
    '-keylen',
    '32',
    '-kdfopt',
    'digest:SHA1',
    '-kdfopt',
    `pass:${password}`,
    '-kdfopt',
    `salt:${salt}`,
    '-kdfopt',
    'iter:75000',
    'PBKDF2',
  ]).toString();
  return Buffer.from(out.trim().replace(/:/g, ''), 'hex');
}

describe('sedutil PIN derivation', () => {
  it('matches PBKDF2-HMAC-SHA1/75000 with the 20-byte serial field as salt', async () => {
    expect(await sedutilPin(Buffer.from('password'), 'EMU-TEST-0001')).toEqual(
      opensslPbkdf2('password', 'EMU-TEST-0001       '),
    );
    // Serials longer than the field are cut to 20 bytes.
    expect(await sedutilPin(Buffer.from('pw'), 'S3Z1NB0K123456XYZ9876543')).toEqual(
      opensslPbkdf2('pw', 'S3Z1NB0K123456XYZ987'),
    );
  });

  it('refuses to derive without a serial', async () => {
    await expect(sedutilPin(Buffer.from('pw'), '')).rejects.toMatchObject({ code: 'TCG_SERIAL_UNKNOWN' });
  });
});

const emu = emulatorNative();

describe('adopting a sedutil-style drive', () => {
  let image: EmulatedImage;
  beforeEach(async () => {
    image = await createImage(emu);
  });
  afterEach(() => image.cleanup());

  it('owns with the derived PIN, which the drive then accepts as the raw SID PIN', async () => {
    const password = Buffer.from('operator password');
    const sedutilStyle = await OpalDrive.open(image.spec, { pinDerivation: 'sedutil' });
    await sedutilStyle.takeOwnership(password);
    await sedutilStyle.verify(password, SID);
    await sedutilStyle.close();

    const raw = await OpalDrive.open(image.spec);
    await expect(raw.verify(password, SID)).rejects.toMatchObject({ code: 'TCG_NOT_AUTHORIZED' });
    await raw.verify(opensslPbkdf2('operator password', 'EMU-TEST-0001       '), SID);
    await raw.close();
  });
});
