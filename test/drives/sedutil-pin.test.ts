import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { sedutilPin, sedutilSalt } from '../../src/drives/sedutil-pin.js';

/** An independent implementation of the same derivation: Python's hashlib. */
function pythonPbkdf2(password: string, salt: Buffer): Buffer {
  const script =
    'import hashlib,sys; print(hashlib.pbkdf2_hmac("sha1", sys.argv[1].encode(), bytes.fromhex(sys.argv[2]), 75000, 32).hex())';
  return Buffer.from(
    execFileSync('python3', ['-c', script, password, salt.toString('hex')], { encoding: 'utf8' }).trim(),
    'hex',
  );
}

describe('sedutil-compatible PINs', () => {
  it('PBKDF2-HMAC-SHA1, 75000 iterations, 32 bytes, salted with the 20-byte serial', async () => {
    const serial = 'S3EVNX0K123456A     ';
    const pin = await sedutilPin(Buffer.from('operator password'), serial);
    expect(pin.length).toBe(32);
    expect(pin).toEqual(pythonPbkdf2('operator password', Buffer.from(serial, 'latin1')));
  });

  it('short serials are space padded and long ones cut at 20 bytes', () => {
    expect(sedutilSalt('ABC').toString('latin1')).toBe('ABC' + ' '.repeat(17));
    expect(sedutilSalt('0123456789012345678901234').toString('latin1')).toBe('01234567890123456789');
  });

  it('different serials give different PINs for the same password', async () => {
    const a = await sedutilPin(Buffer.from('pw'), 'SERIAL-A');
    const b = await sedutilPin(Buffer.from('pw'), 'SERIAL-B');
    expect(a.equals(b)).toBe(false);
  });

  it('an empty password or serial is a typed error', async () => {
    await expect(sedutilPin(Buffer.alloc(0), 'S')).rejects.toMatchObject({ code: 'SEDUTIL_EMPTY_PASSWORD' });
    await expect(sedutilPin(Buffer.from('pw'), '')).rejects.toMatchObject({ code: 'SEDUTIL_NO_SERIAL' });
  });
});
