/**
 * A single damaged byte in either LUKS2 header area is reported as LUKS_CORRUPT_HEADER and never
 * "repaired" behind the operator's back (libcryptsetup would rewrite the damaged copy on load).
 */
import { randomBytes } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkKey, luksInfo, LuksError } from '../../src/drives/luks.js';
import { luksFormat, sha256 } from './images.js';

/** Both header areas of cryptsetup's default layout: primary [0, 16K), secondary [16K, 32K). */
const HEADER_AREAS = 32768;
/**
 * The checksum field is 64 bytes; sha256 fills the first 32. libcryptsetup ignores the rest, and so
 * does the agent (being stricter would refuse volumes cryptsetup opens).
 */
function inUnusedChecksumTail(offset: number): boolean {
  const inHeader = offset % 16384;
  return inHeader >= 448 + 32 && inHeader < 448 + 64;
}

function readRange(path: string, length: number): Buffer {
  const fd = openSync(path, 'r');
  try {
    const out = Buffer.alloc(length);
    readSync(fd, out, 0, length, 0);
    return out;
  } finally {
    closeSync(fd);
  }
}

function writeByte(path: string, offset: number, value: number): void {
  const fd = openSync(path, 'r+');
  try {
    writeSync(fd, Buffer.of(value), 0, 1, offset);
  } finally {
    closeSync(fd);
  }
}

describe('damaged LUKS2 headers', () => {
  let dir: string;
  let image: string;
  let pristine: string;
  const key = randomBytes(32);

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'kmip-agent-luks-fuzz-'));
    image = join(dir, 'volume.img');
    luksFormat(image, key);
    pristine = sha256(image);
  });

  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('one flipped byte in the header areas: LUKS_CORRUPT_HEADER (unless libcryptsetup ignores it), nothing written', async () => {
    const original = readRange(image, HEADER_AREAS);
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          // The binary headers (magic, version, sizes, offsets, checksums) more often than the JSON.
          fc.integer({ min: 0, max: 511 }),
          fc.integer({ min: 16384, max: 16384 + 511 }),
          fc.integer({ min: 0, max: HEADER_AREAS - 1 }),
        ),
        fc.integer({ min: 1, max: 255 }),
        async (offset, mask) => {
          const damaged = original[offset] ^ mask;
          writeByte(image, offset, damaged);
          try {
            const expected = Buffer.from(original);
            expected[offset] = damaged;
            for (const attempt of [() => luksInfo(image), () => checkKey(image, key)]) {
              const error = await attempt().then(
                () => undefined,
                (e: unknown) => e,
              );
              if (inUnusedChecksumTail(offset)) {
                expect(error).toBeUndefined();
              } else {
                expect(error).toBeInstanceOf(LuksError);
                expect((error as LuksError).code).toBe('LUKS_CORRUPT_HEADER');
              }
            }
            expect(readRange(image, HEADER_AREAS).equals(expected)).toBe(true);
          } finally {
            writeByte(image, offset, original[offset]);
          }
        },
      ),
      { numRuns: 150 },
    );
    expect(sha256(image)).toBe(pristine);
    expect(await checkKey(image, key)).toEqual({ slot: 0 });
  });
});
