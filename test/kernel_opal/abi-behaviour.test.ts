/**
 * The sed-opal ioctls as the kernel answers them, through the recording ioctl seam (structs byte
 * for byte): opal_geometry.align is the drive's ALIGN bit, not padding; IOC_OPAL_ADD_USR_TO_LR never
 * sets session.sum (the kernel answers EINVAL); IOC_OPAL_DISCOVERY copies only the header's Length
 * bytes, 4 short of the response, and that still parses whole and without a warning; a TCG refusal
 * from an ioctl that authenticates is marked `authRefused` like a refused StartSession.
 */
import { describe, expect, it } from 'vitest';
import { tcgNative } from '../../src/drives/backend.js';
import { runScriptedKernelOpal as scripted } from '../support/addon.js';
import { discoveryFixtures } from '../support/shared.js';

const tcg = tcgNative();
const KEY = Buffer.from('admin1 key for the kernel abi');
const admin1 = { who: 0, key: KEY };

describe('IOC_OPAL_GET_GEOMETRY', () => {
  const geometry = async (align: number) => {
    const out = Buffer.alloc(32);
    out[0] = align;
    out.writeUInt32LE(512, 4);
    out.writeBigUInt64LE(8n, 8);
    out.writeBigUInt64LE(0n, 16);
    return (await scripted((k) => k.geometry(), [{ ret: 0, structOut: out }])).result;
  };

  it('byte 0 (align) is the ALIGN bit and is kept: set means ranges must be aligned', async () => {
    expect(await geometry(1)).toEqual({
      alignRequired: true,
      logicalBlockSize: 512,
      alignmentGranularity: 8n,
      lowestAlignedLba: 0n,
    });
    expect(await geometry(0)).toMatchObject({ alignRequired: false, logicalBlockSize: 512 });
  });
});

describe('IOC_OPAL_ADD_USR_TO_LR', () => {
  it('session.sum is 0 (the kernel refuses it with EINVAL), who is the user, the key names the range', async () => {
    const { calls, error } = await scripted((k) => k.addUserToRange(admin1, 3, 2, 'write'));
    expect(error).toBeUndefined();
    const s = calls[0].struct;
    expect(calls[0].name).toBe('IOC_OPAL_ADD_USR_TO_LR');
    expect(s.readUInt32LE(0)).toBe(0); // session.sum
    expect(s.readUInt32LE(4)).toBe(3); // session.who = User3
    expect(s[8]).toBe(2); // opal_key.lr
    expect(s.readUInt32LE(272)).toBe(0x02); // OPAL_RW
  });

  it('a Single User Mode request is refused before any ioctl', async () => {
    const { calls, error } = await scripted((k) => k.addUserToRange({ ...admin1, sum: true }, 1, 1, 'read'));
    expect(error).toMatchObject({
      code: 'KOPAL_INVALID_ARGUMENT',
      message: expect.stringContaining('Single User Mode'),
    });
    expect(calls).toHaveLength(0);
  });
});

describe('IOC_OPAL_DISCOVERY copying the header Length bytes', () => {
  it.each(discoveryFixtures().map((f) => [f.model, f.data] as const))('%s', async (_model, response) => {
    const length = response.readUInt32BE(0);
    const whole = tcg.parseDiscovery(response.subarray(0, length + 4));
    // What the kernel copies: Length bytes (Length does not count its own 4), returning that count.
    const copied = response.subarray(0, length);
    const { result, error } = await scripted((k) => k.discovery(4096), [{ ret: length, bufferOut: copied }]);
    expect(error).toBeUndefined();
    const data = result as Buffer;
    expect(data.length).toBe(length + 4);
    expect(data.subarray(0, length)).toEqual(copied);
    expect(data.subarray(length).every((b) => b === 0)).toBe(true);
    const parsed = tcg.parseDiscovery(data);
    expect(parsed.warnings.filter((w) => /header Length/.test(w))).toEqual([]);
    // (Some fixtures were themselves read through the kernel: Length bytes, no more.)
    expect(parsed.warnings).toEqual(whole.warnings.filter((w) => !/header Length|declares|expected/.test(w)));
    expect(parsed.features.map((f) => f.code)).toEqual(whole.features.map((f) => f.code));
  });

  it('a full copy (Length + 4 bytes) is kept as it is', async () => {
    const response = discoveryFixtures()[0].data;
    const full = response.subarray(0, response.readUInt32BE(0) + 4);
    const { result } = await scripted((k) => k.discovery(4096), [{ ret: full.length, bufferOut: full }]);
    expect(result).toEqual(full);
  });
});

describe('TCG refusals through the kernel', () => {
  it.each([
    ['NOT_AUTHORIZED', 0x01, 'TCG_NOT_AUTHORIZED'],
    ['AUTHORITY_LOCKED_OUT', 0x12, 'TCG_AUTHORITY_LOCKED_OUT'],
  ])('%s from an ioctl carrying a key is a refused authentication (authRefused)', async (_name, ret, code) => {
    const { error } = await scripted((k) => k.lockUnlock(admin1, 0, 'unlocked'), [{ ret }]);
    expect(error).toMatchObject({ code, status: ret, authRefused: true });
  });

  it('another status (SP_BUSY) is not, and neither is a refusal of an ioctl without a key', async () => {
    const busy = await scripted((k) => k.lockUnlock(admin1, 0, 'unlocked'), [{ ret: 0x03 }]);
    expect(busy.error).toMatchObject({ code: 'TCG_SP_BUSY' });
    expect((busy.error as { authRefused?: boolean }).authRefused).toBeUndefined();
    const geometry = await scripted((k) => k.geometry(), [{ ret: 0x01 }]);
    expect(geometry.error).toMatchObject({ code: 'TCG_NOT_AUTHORIZED' });
    expect((geometry.error as { authRefused?: boolean }).authRefused).toBeUndefined();
  });
});
