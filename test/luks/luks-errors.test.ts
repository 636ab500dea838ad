/**
 * Bad input to the LUKS addon: not LUKS, LUKS1, damaged headers, missing paths, refused keyslot
 * changes, bad arguments. Every case must give a typed error and leave the device byte-identical.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, openSync, closeSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  addKey,
  checkKey,
  close,
  luksInfo,
  LuksError,
  open,
  removeKey,
  type LuksErrorCode,
} from '../../src/drives/luks.js';
import { cryptsetupAccepts, editHeaderJson, luksFormat, makeImage, sha256 } from './images.js';

async function codeOf(promise: Promise<unknown>): Promise<LuksErrorCode> {
  try {
    await promise;
  } catch (e) {
    if (e instanceof LuksError) return e.code;
    throw e;
  }
  throw new Error('expected a LuksError, the call succeeded');
}

function overwrite(path: string, offset: number, bytes: Buffer): void {
  const fd = openSync(path, 'r+');
  try {
    writeSync(fd, bytes, 0, bytes.length, offset);
  } finally {
    closeSync(fd);
  }
}

/** Primary LUKS2 header at 0, secondary at the header area size (16 KiB for cryptsetup's default). */
const SECONDARY = 16384;
const JSON_AREA = 4096;

describe('LUKS errors leave devices untouched', () => {
  let dir: string;
  const key = randomBytes(32);
  const otherKey = randomBytes(32);

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'kmip-agent-luks-errors-'));
  });

  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  function luks2(name = 'volume.img'): string {
    const path = join(dir, name);
    luksFormat(path, key);
    return path;
  }

  const cases: [string, LuksErrorCode, () => string][] = [
    [
      'a LUKS1 image',
      'LUKS_UNSUPPORTED_VERSION',
      () => {
        const path = join(dir, 'luks1.img');
        luksFormat(path, key, 'luks1');
        return path;
      },
    ],
    [
      'a LUKS2 image with the primary magic zeroed',
      'LUKS_CORRUPT_HEADER',
      () => {
        const path = luks2();
        overwrite(path, 0, Buffer.alloc(6));
        return path;
      },
    ],
    [
      'a LUKS2 image with a damaged primary JSON area',
      'LUKS_CORRUPT_HEADER',
      () => {
        const path = luks2();
        overwrite(path, JSON_AREA + 2, Buffer.from('X'));
        return path;
      },
    ],
    [
      'a LUKS2 image with a damaged secondary header',
      'LUKS_CORRUPT_HEADER',
      () => {
        const path = luks2();
        overwrite(path, SECONDARY + JSON_AREA + 2, Buffer.from('X'));
        return path;
      },
    ],
    [
      'a LUKS2 image with both magics zeroed',
      'LUKS_NOT_LUKS',
      () => {
        const path = luks2();
        overwrite(path, 0, Buffer.alloc(6));
        overwrite(path, SECONDARY, Buffer.alloc(6));
        return path;
      },
    ],
    [
      'a plain file of random bytes',
      'LUKS_NOT_LUKS',
      () => {
        const path = join(dir, 'random.img');
        writeFileSync(path, randomBytes(1024 * 1024));
        return path;
      },
    ],
    [
      'an all-zero image',
      'LUKS_NOT_LUKS',
      () => {
        const path = join(dir, 'zero.img');
        makeImage(path);
        return path;
      },
    ],
    [
      'a file shorter than a header',
      'LUKS_NOT_LUKS',
      () => {
        const path = join(dir, 'short');
        writeFileSync(path, 'LUKS');
        return path;
      },
    ],
    [
      'a directory',
      'LUKS_NOT_LUKS',
      () => {
        const path = join(dir, 'a-directory');
        mkdirSync(path);
        return path;
      },
    ],
  ];

  it.each(cases)('%s: typed error from every operation, file unchanged', async (_what, code, make) => {
    const path = make();
    const before = path.endsWith('a-directory') ? '' : sha256(path);
    expect(await codeOf(luksInfo(path))).toBe(code);
    expect(await codeOf(checkKey(path, key))).toBe(code);
    expect(await codeOf(open(path, 'kmip-agent-test', key))).toBe(code);
    expect(await codeOf(addKey(path, key, otherKey))).toBe(code);
    expect(await codeOf(removeKey(path, key, { slot: 0 }, { force: true }))).toBe(code);
    if (before !== '') expect(sha256(path)).toBe(before);
  });

  it('a missing path is LUKS_DEVICE_NOT_FOUND', async () => {
    const path = join(dir, 'no-such-image');
    expect(await codeOf(luksInfo(path))).toBe('LUKS_DEVICE_NOT_FOUND');
    expect(await codeOf(checkKey(path, key))).toBe('LUKS_DEVICE_NOT_FOUND');
    expect(await codeOf(addKey(path, key, otherKey))).toBe('LUKS_DEVICE_NOT_FOUND');
    expect(await codeOf(luksInfo(join(dir, 'no-dir', 'x')))).toBe('LUKS_DEVICE_NOT_FOUND');
  });

  it('cryptsetup itself rewrites a half-damaged header on a mere dump; the addon does not', async () => {
    const path = luks2();
    overwrite(path, 0, Buffer.alloc(6));
    const copy = join(dir, 'copy.img');
    copyFileSync(path, copy);
    const before = sha256(path);
    execFileSync('cryptsetup', ['luksDump', copy], { stdio: 'ignore' });
    // libcryptsetup restored the primary header from the secondary, writing to the device...
    expect(sha256(copy)).not.toBe(before);
    // ...which is why the addon checks headers itself and refuses instead.
    expect(await codeOf(luksInfo(path))).toBe('LUKS_CORRUPT_HEADER');
    expect(sha256(path)).toBe(before);
  });

  describe('a refused add-key leaves the header byte-identical', () => {
    it.each<[string, LuksErrorCode, (path: string) => Promise<unknown>]>([
      ['a wrong authorizing key', 'LUKS_WRONG_KEY', (p) => addKey(p, otherKey, randomBytes(32))],
      ['a slot in use', 'LUKS_KEYSLOT_IN_USE', (p) => addKey(p, key, otherKey, { slot: 0 })],
      ['a slot out of range', 'LUKS_KEYSLOT_INVALID', (p) => addKey(p, key, otherKey, { slot: 32 })],
      ['a negative slot', 'LUKS_KEYSLOT_INVALID', (p) => addKey(p, key, otherKey, { slot: -5 })],
      ['an empty new key', 'LUKS_INVALID_ARGUMENT', (p) => addKey(p, key, Buffer.alloc(0))],
    ])('%s', async (_what, code, attempt) => {
      const path = luks2();
      const before = sha256(path);
      expect(await codeOf(attempt(path))).toBe(code);
      expect(sha256(path)).toBe(before);
      expect(cryptsetupAccepts(path, otherKey)).toBe(false);
    });

    it('no free keyslot', async () => {
      const path = luks2();
      for (let slot = 1; slot < 32; slot++) await addKey(path, key, key, { slot });
      const before = sha256(path);
      expect(await codeOf(addKey(path, key, otherKey))).toBe('LUKS_KEYSLOT_FULL');
      expect(sha256(path)).toBe(before);
    });
  });

  describe('a refused remove-key leaves the header byte-identical', () => {
    it.each<[string, LuksErrorCode, (path: string) => Promise<unknown>]>([
      ['a wrong authorizing key', 'LUKS_WRONG_KEY', (p) => removeKey(p, otherKey, { slot: 0 }, { force: true })],
      ['an empty slot', 'LUKS_KEYSLOT_INACTIVE', (p) => removeKey(p, key, { slot: 3 })],
      ['a slot out of range', 'LUKS_KEYSLOT_INVALID', (p) => removeKey(p, key, { slot: 40 })],
      ['a key no slot accepts', 'LUKS_KEYSLOT_NOT_FOUND', (p) => removeKey(p, key, { key: otherKey })],
      ['the last keyslot', 'LUKS_KEYSLOT_LAST', (p) => removeKey(p, key, { key })],
    ])('%s', async (_what, code, attempt) => {
      const path = luks2();
      const before = sha256(path);
      expect(await codeOf(attempt(path))).toBe(code);
      expect(sha256(path)).toBe(before);
      expect(cryptsetupAccepts(path, key, 0)).toBe(true);
    });
  });

  it('read-only operations never write', async () => {
    const path = luks2();
    const before = sha256(path);
    await luksInfo(path);
    await checkKey(path, key);
    await codeOf(checkKey(path, otherKey));
    expect(sha256(path)).toBe(before);
  });

  it('bad arguments are LUKS_INVALID_ARGUMENT', async () => {
    const path = luks2();
    expect(await codeOf(checkKey(path, Buffer.alloc(0)))).toBe('LUKS_INVALID_ARGUMENT');
    expect(await codeOf(checkKey(path, Buffer.alloc(8193)))).toBe('LUKS_INVALID_ARGUMENT');
    expect(await codeOf(checkKey(path, 'a string key' as unknown as Buffer))).toBe('LUKS_INVALID_ARGUMENT');
    expect(await codeOf(checkKey('', key))).toBe('LUKS_INVALID_ARGUMENT');
    expect(await codeOf(open(path, 'a/b', key))).toBe('LUKS_INVALID_ARGUMENT');
    expect(await codeOf(open(path, 'x'.repeat(128), key))).toBe('LUKS_INVALID_ARGUMENT');
    expect(await codeOf(close(''))).toBe('LUKS_INVALID_ARGUMENT');
  });

  it('many checks at once all complete (calls take turns in libcryptsetup)', async () => {
    const path = luks2();
    const results = await Promise.all(
      Array.from({ length: 8 }, (_, i) => (i % 2 === 0 ? checkKey(path, key) : codeOf(checkKey(path, otherKey)))),
    );
    expect(results).toEqual(Array.from({ length: 8 }, (_, i) => (i % 2 === 0 ? { slot: 0 } : 'LUKS_WRONG_KEY')));
  });
  describe('a header asking for a key derivation of many minutes is refused, not run (found by the fuzzer)', () => {
    // libcryptsetup clamps an absurd count to INT32_MAX: ~20 min of PBKDF2 here, while every LUKS call of
    // the process waits on the library's lock. Each case must answer within the test's timeout at once.
    it('a keyslot with 2^31 - 1 PBKDF2 iterations: LUKS_KEYSLOT_COST_EXCESSIVE, header untouched', async () => {
      const path = luks2();
      editHeaderJson(path, (json) => (json.keyslots['0']!.kdf.iterations = 2 ** 31 - 1));
      const before = sha256(path);
      const error = await checkKey(path, key).catch((e: unknown) => e as LuksError);
      expect(error).toMatchObject({ code: 'LUKS_KEYSLOT_COST_EXCESSIVE' });
      expect((error as LuksError).message).toMatch(/keyslot 0 \(pbkdf2 with 2147483647 iterations\).*luksDump/);
      // open() takes the same path (ActivateByKey), after its device-mapper check, which this machine fails.
      expect(sha256(path)).toBe(before);
    });

    it("an Argon2 keyslot beyond libcryptsetup's memory maximum is passed over: the key of another keyslot still opens", async () => {
      const path = luks2();
      await addKey(path, key, otherKey);
      editHeaderJson(path, (json) => {
        json.keyslots['0']!.kdf = {
          type: 'argon2id',
          time: 4,
          memory: 8 * 1024 * 1024,
          cpus: 4,
          salt: json.keyslots['0']!.kdf.salt,
        };
      });
      // The agent's keyslot (1) opens without keyslot 0 ever being run.
      expect(await checkKey(path, otherKey)).toEqual({ slot: 1 });
      // The key of the passed-over keyslot opens nothing else: that is the error, naming the keyslot.
      const error = await checkKey(path, key).catch((e: unknown) => e as LuksError);
      expect(error).toMatchObject({ code: 'LUKS_KEYSLOT_COST_EXCESSIVE' });
      expect((error as LuksError).message).toMatch(/keyslot 0 \(argon2id with 4 passes over 8388608 KiB\)/);
    });

    it('a volume key digest with a negative iteration count (read as huge): refused before any keyslot', async () => {
      const path = luks2();
      editHeaderJson(path, (json) => (json.digests['0']!.iterations = '-512'));
      expect(await codeOf(checkKey(path, key))).toBe('LUKS_KEYSLOT_COST_EXCESSIVE');
      editHeaderJson(path, (json) => (json.digests['0']!.iterations = 2 ** 53));
      expect(await codeOf(checkKey(path, key))).toBe('LUKS_KEYSLOT_COST_EXCESSIVE');
    });
  });
});
