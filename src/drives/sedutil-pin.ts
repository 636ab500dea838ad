/**
 * Drives set up with sedutil carry a hashed form of the operator's password as their PIN:
 * PBKDF2-HMAC-SHA1, 75000 iterations, 32 bytes, salted with the drive's serial number (its first
 * 20 bytes, as the drive reports it; ATA serials are 20 characters, space padded). Adopting such a
 * drive means deriving the same PIN from the password the operator gives, once, when asked.
 */
import { pbkdf2 } from 'node:crypto';
import { promisify } from 'node:util';
import { KmipAgentError } from '../errors.js';

const pbkdf2Async = promisify(pbkdf2);

export const SEDUTIL_ITERATIONS = 75_000;
export const SEDUTIL_SALT_BYTES = 20;
export const SEDUTIL_PIN_BYTES = 32;

/** The salt sedutil uses: the serial's first 20 bytes, space padded when the serial is shorter. */
export function sedutilSalt(serial: string | Buffer): Buffer {
  const raw = typeof serial === 'string' ? Buffer.from(serial, 'latin1') : serial;
  if (raw.length === 0) {
    throw new KmipAgentError('the drive reported no serial number: cannot derive a sedutil PIN', 'SEDUTIL_NO_SERIAL');
  }
  const salt = Buffer.alloc(SEDUTIL_SALT_BYTES, 0x20);
  raw.copy(salt, 0, 0, Math.min(raw.length, SEDUTIL_SALT_BYTES));
  return salt;
}

/** The 32-byte PIN sedutil would have set for `password` on the drive with `serial`. */
export async function sedutilPin(password: Buffer, serial: string | Buffer): Promise<Buffer> {
  if (password.length === 0) throw new KmipAgentError('the sedutil password is empty', 'SEDUTIL_EMPTY_PASSWORD');
  return pbkdf2Async(password, sedutilSalt(serial), SEDUTIL_ITERATIONS, SEDUTIL_PIN_BYTES, 'sha1');
}
