/**
 * PINs as sedutil-cli derives them from a password, so drives it set up can be adopted:
 * PBKDF2-HMAC-SHA1, 75000 iterations, 32-byte output, salt = the drive's 20-byte serial number
 * field. Serials shorter than 20 bytes (a transport that trimmed the field) are padded with spaces
 * on the right, the way ATA IDENTIFY and NVMe Identify pad them.
 */
import { pbkdf2 } from 'node:crypto';
import { OpalError } from './errors.js';

export const SEDUTIL_ITERATIONS = 75000;
const SEDUTIL_KEY_LENGTH = 32;
const SERIAL_FIELD_LENGTH = 20;

export function sedutilPin(password: Buffer, serial: string): Promise<Buffer> {
  if (serial.length === 0) {
    return Promise.reject(
      new OpalError('the drive reports no serial number: cannot derive a sedutil PIN', 'TCG_SERIAL_UNKNOWN'),
    );
  }
  const salt = Buffer.alloc(SERIAL_FIELD_LENGTH, 0x20);
  Buffer.from(serial, 'latin1').copy(salt, 0, 0, SERIAL_FIELD_LENGTH);
  return new Promise((resolve, reject) => {
    pbkdf2(password, salt, SEDUTIL_ITERATIONS, SEDUTIL_KEY_LENGTH, 'sha1', (error, key) =>
      error ? reject(error) : resolve(key),
    );
  });
}
