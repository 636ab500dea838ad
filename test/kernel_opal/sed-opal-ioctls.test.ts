/**
 * The sed-opal ioctl path, tested through the test addon's recording ioctl port behind the real
 * kernelOpal handle (every ioctl number and the bytes of its struct are checked against the
 * kernel's uapi layout) and, where this machine allows, against real files and loop devices, which
 * have no sed-opal and must say so.
 */
import { describe, expect, it } from 'vitest';
import { runScriptedKernelOpal as scripted, testSeams } from '../support/addon.js';
import { useScratchLoopDevice } from '../support/loop.js';
import { KmipAgentError } from '../../src/errors.js';
import { KernelOpalDrive, kernelOpalNative, type KernelOpalHandle } from '../../src/drives/kernel-opal.js';

const native = kernelOpalNative();
const KEY = Buffer.from('correct horse battery staple 32b');

// _IOC(dir, 'p', nr, size) as in include/uapi/asm-generic/ioctl.h: dir 1 = write, 2 = read.
const ioc = (dir: number, nr: number, size: number) => ((dir << 30) | (size << 16) | (0x70 << 8) | nr) >>> 0;
const W = 1;
const R = 2;

describe('sed-opal ioctl numbers (uapi sed-opal.h, struct sizes from its layout)', () => {
  const table: [string, number, number, number][] = [
    ['IOC_OPAL_SAVE', W, 220, 280],
    ['IOC_OPAL_LOCK_UNLOCK', W, 221, 280],
    ['IOC_OPAL_TAKE_OWNERSHIP', W, 222, 264],
    ['IOC_OPAL_ACTIVATE_LSP', W, 223, 280],
    ['IOC_OPAL_SET_PW', W, 224, 544],
    ['IOC_OPAL_ACTIVATE_USR', W, 225, 272],
    ['IOC_OPAL_REVERT_TPR', W, 226, 264],
    ['IOC_OPAL_LR_SETUP', W, 227, 296],
    ['IOC_OPAL_ADD_USR_TO_LR', W, 228, 280],
    ['IOC_OPAL_ENABLE_DISABLE_MBR', W, 229, 272],
    ['IOC_OPAL_ERASE_LR', W, 230, 272],
    ['IOC_OPAL_SECURE_ERASE_LR', W, 231, 272],
    ['IOC_OPAL_PSID_REVERT_TPR', W, 232, 264],
    ['IOC_OPAL_MBR_DONE', W, 233, 272],
    ['IOC_OPAL_WRITE_SHADOW_MBR', W, 234, 288],
    ['IOC_OPAL_GENERIC_TABLE_RW', W, 235, 312],
    ['IOC_OPAL_GET_STATUS', R, 236, 8],
    ['IOC_OPAL_GET_LR_STATUS', W, 237, 304],
    ['IOC_OPAL_GET_GEOMETRY', R, 238, 32],
    ['IOC_OPAL_DISCOVERY', W, 239, 16],
    ['IOC_OPAL_REVERT_LSP', W, 240, 272],
    ['IOC_OPAL_SET_SID_PW', W, 241, 544],
  ];
  it.each(table)('%s', (name, dir, nr, size) => {
    expect(native.ioctls()[name]).toBe(ioc(dir, nr, size));
  });
});

/** Expects an opal_key at `at`: lr, key_len, key_type 0 (included), zero padding, key bytes, zero tail. */
function expectOpalKey(struct: Buffer, at: number, range: number, key: Buffer): void {
  expect(struct[at]).toBe(range);
  expect(struct[at + 1]).toBe(key.length);
  expect(struct[at + 2]).toBe(0);
  expect(struct.subarray(at + 3, at + 8).every((b) => b === 0)).toBe(true);
  expect(struct.subarray(at + 8, at + 8 + key.length).equals(key)).toBe(true);
  expect(struct.subarray(at + 8 + key.length, at + 264).every((b) => b === 0)).toBe(true);
}

const admin1 = { who: 0, key: KEY };
const user1 = { who: 1, key: KEY };

describe('struct contents of each flow, byte for byte', () => {
  it('lock/unlock: opal_lock_unlock with session (sum, who, key with range) and l_state', async () => {
    const { calls, error } = await scripted((k) => k.lockUnlock(user1, 3, 'unlocked'));
    expect(error).toBeUndefined();
    expect(calls).toHaveLength(1);
    const [call] = calls;
    expect(call.name).toBe('IOC_OPAL_LOCK_UNLOCK');
    expect(call.struct.length).toBe(280);
    expect(call.struct.readUInt32LE(0)).toBe(0); // sum
    expect(call.struct.readUInt32LE(4)).toBe(1); // who = User1
    expectOpalKey(call.struct, 8, 3, KEY);
    expect(call.struct.readUInt32LE(272)).toBe(0x02); // OPAL_RW (unlocked)
    expect(call.struct.readUInt16LE(276)).toBe(0); // no flags
  });

  it('save for resume: IOC_OPAL_SAVE with OPAL_SAVE_FOR_LOCK', async () => {
    const { calls } = await scripted((k) => k.saveForResume(admin1, 0, 'unlocked'));
    expect(calls[0].name).toBe('IOC_OPAL_SAVE');
    expect(calls[0].struct.readUInt16LE(276)).toBe(1);
  });

  it('locking range setup: start, length, RLE/WLE, then the Admin1 session naming the range', async () => {
    const { calls } = await scripted((k) => k.setupRange(admin1, 1, 2048n, 1048576n, true, true));
    const s = calls[0].struct;
    expect(calls[0].name).toBe('IOC_OPAL_LR_SETUP');
    expect(s.readBigUInt64LE(0)).toBe(2048n);
    expect(s.readBigUInt64LE(8)).toBe(1048576n);
    expect(s.readUInt32LE(16)).toBe(1);
    expect(s.readUInt32LE(20)).toBe(1);
    expect(s.readUInt32LE(24)).toBe(0); // sum
    expect(s.readUInt32LE(28)).toBe(0); // Admin1
    expectOpalKey(s, 32, 1, KEY);
  });

  it('activate Locking SP: SID key, then sum, num_lrs and the SUM range list', async () => {
    const { calls } = await scripted((k) => k.activateLockingSp(KEY, [1, 2]));
    const s = calls[0].struct;
    expect(calls[0].name).toBe('IOC_OPAL_ACTIVATE_LSP');
    expectOpalKey(s, 0, 0, KEY);
    expect(s.readUInt32LE(264)).toBe(1);
    expect(s[268]).toBe(2);
    expect([...s.subarray(269, 278)]).toEqual([1, 2, 0, 0, 0, 0, 0, 0, 0]);
  });

  it('set PIN: the authenticating session, then the user whose PIN changes', async () => {
    const newPin = Buffer.alloc(32, 0xab);
    const { calls } = await scripted((k) => k.setPassword(admin1, { who: 1, key: newPin }));
    const s = calls[0].struct;
    expect(calls[0].name).toBe('IOC_OPAL_SET_PW');
    expect(s.length).toBe(544);
    expect(s.readUInt32LE(4)).toBe(0);
    expectOpalKey(s, 8, 0, KEY);
    expect(s.readUInt32LE(272 + 4)).toBe(1);
    expectOpalKey(s, 272 + 8, 0, newPin);
  });

  it('add user to range: user in session.who, access in l_state, range in the key', async () => {
    const { calls } = await scripted((k) => k.addUserToRange(admin1, 2, 4, 'read'));
    const s = calls[0].struct;
    expect(calls[0].name).toBe('IOC_OPAL_ADD_USR_TO_LR');
    expect(s.readUInt32LE(4)).toBe(2);
    expectOpalKey(s, 8, 4, KEY);
    expect(s.readUInt32LE(272)).toBe(0x01);
  });

  it('take ownership, revert, PSID revert, MBR and erase flows use their own ioctls', async () => {
    expect((await scripted((k) => k.takeOwnership(KEY))).calls[0].name).toBe('IOC_OPAL_TAKE_OWNERSHIP');
    expect((await scripted((k) => k.revertTper(KEY))).calls[0].name).toBe('IOC_OPAL_REVERT_TPR');
    expect((await scripted((k) => k.psidRevert(KEY))).calls[0].name).toBe('IOC_OPAL_PSID_REVERT_TPR');
    const mbr = (await scripted((k) => k.enableMbr(KEY, true))).calls[0];
    expect(mbr.name).toBe('IOC_OPAL_ENABLE_DISABLE_MBR');
    expect(mbr.struct[264]).toBe(0); // OPAL_MBR_ENABLE
    const done = (await scripted((k) => k.setMbrDone(KEY, true))).calls[0];
    expect(done.name).toBe('IOC_OPAL_MBR_DONE');
    expect(done.struct[264]).toBe(1);
    const erase = (await scripted((k) => k.secureEraseRange(admin1, 2))).calls[0];
    expect(erase.name).toBe('IOC_OPAL_SECURE_ERASE_LR');
    expectOpalKey(erase.struct, 8, 2, KEY);
    const revertLsp = (await scripted((k) => k.revertLockingSp(KEY, true))).calls[0];
    expect(revertLsp.name).toBe('IOC_OPAL_REVERT_LSP');
    expect(revertLsp.struct.readUInt32LE(264)).toBe(1); // OPAL_PRESERVE
    const activateUser = (await scripted((k) => k.activateUser(admin1, 1))).calls[0];
    expect(activateUser.name).toBe('IOC_OPAL_ACTIVATE_USR');
    expect(activateUser.struct.readUInt32LE(4)).toBe(1);
    const sid = (await scripted((k) => k.setSidPassword(KEY, Buffer.from('new')))).calls[0];
    expect(sid.name).toBe('IOC_OPAL_SET_SID_PW');
    expectOpalKey(sid.struct, 280, 0, Buffer.from('new'));
  });
});

describe('answers from the kernel are decoded', () => {
  it('GET_STATUS flags', async () => {
    const out = Buffer.alloc(8);
    out.writeUInt32LE(0x01 | 0x02 | 0x04 | 0x08 | 0x40, 0);
    const { result } = await scripted((k) => k.status(), [{ ret: 0, structOut: out }]);
    expect(result).toMatchObject({
      supported: true,
      lockingSupported: true,
      lockingEnabled: true,
      locked: true,
      mbrEnabled: false,
      mbrDone: false,
      sumSupported: true,
    });
  });

  it('GET_LR_STATUS range fields after the session', async () => {
    const out = Buffer.alloc(304);
    out.writeBigUInt64LE(4096n, 272);
    out.writeBigUInt64LE(8192n, 280);
    out.writeUInt32LE(1, 288);
    out.writeUInt32LE(0, 292);
    out.writeUInt32LE(0x01, 296);
    const { result, calls } = await scripted((k) => k.rangeStatus(admin1, 1), [{ ret: 0, structOut: out }]);
    expect(calls[0].name).toBe('IOC_OPAL_GET_LR_STATUS');
    expect(result).toEqual({
      start: 4096n,
      length: 8192n,
      readLockEnabled: true,
      writeLockEnabled: false,
      state: 'read-only',
    });
  });

  it('DISCOVERY fills the caller buffer and returns its length', async () => {
    const level0 = Buffer.from('000000300000000100000000000000000000000000000000000000000000000000010000', 'hex');
    const { result, calls } = await scripted((k) => k.discovery(1024), [{ ret: level0.length, bufferOut: level0 }]);
    expect(calls[0].name).toBe('IOC_OPAL_DISCOVERY');
    expect(calls[0].struct.readBigUInt64LE(8)).toBe(1024n);
    expect((result as Buffer).equals(level0)).toBe(true);
  });

  it('GET_GEOMETRY', async () => {
    const out = Buffer.alloc(32);
    out.writeUInt32LE(4096, 4);
    out.writeBigUInt64LE(8n, 8);
    out.writeBigUInt64LE(0n, 16);
    const { result } = await scripted((k) => k.geometry(), [{ ret: 0, structOut: out }]);
    expect(result).toEqual({
      alignRequired: false,
      logicalBlockSize: 4096,
      alignmentGranularity: 8n,
      lowestAlignedLba: 0n,
    });
  });
});

describe('failures map to typed errors', () => {
  const cases: [string, number, string, RegExp][] = [
    ['ENOTTY (no sed-opal in this kernel)', -25, 'KOPAL_NOT_SUPPORTED', /no sed-opal support/],
    ['EOPNOTSUPP (drive not Opal)', -95, 'KOPAL_NOT_SUPPORTED', /no sed-opal support/],
    ['kernel ENOTSUPP (no opal_dev)', -524, 'KOPAL_NOT_SUPPORTED', /no sed-opal support/],
    ['EACCES', -13, 'KOPAL_PERMISSION_DENIED', /CAP_SYS_ADMIN/],
    ['EPERM', -1, 'KOPAL_PERMISSION_DENIED', /CAP_SYS_ADMIN/],
    ['EIO', -5, 'KOPAL_IO_ERROR', /Input\/output error/],
    ['TCG NOT_AUTHORIZED', 0x01, 'TCG_NOT_AUTHORIZED', /NOT_AUTHORIZED/],
    ['TCG AUTHORITY_LOCKED_OUT', 0x12, 'TCG_AUTHORITY_LOCKED_OUT', /AUTHORITY_LOCKED_OUT/],
  ];
  it.each(cases)('%s', async (_label, ret, code, message) => {
    const { error } = await scripted((k) => k.lockUnlock(user1, 0, 'unlocked'), [{ ret }]);
    expect(error).toBeInstanceOf(KmipAgentError);
    expect((error as KmipAgentError).code).toBe(code);
    expect((error as KmipAgentError).message).toMatch(message);
    expect((error as KmipAgentError).message).toContain('IOC_OPAL_LOCK_UNLOCK');
    if (ret > 0) expect((error as KmipAgentError).status).toBe(ret);
  });

  it('EINVAL from a device that answers GET_STATUS is a refused argument', async () => {
    const supported = Buffer.alloc(8);
    supported.writeUInt32LE(0x01, 0);
    const { error, calls } = await scripted(
      (k) => k.lockUnlock(user1, 0, 'unlocked'),
      [{ ret: -22 }, { ret: 0, structOut: supported }],
    );
    expect((error as KmipAgentError).code).toBe('KOPAL_INVALID_ARGUMENT');
    expect(calls.map((c) => c.name)).toEqual(['IOC_OPAL_LOCK_UNLOCK', 'IOC_OPAL_GET_STATUS']);
  });

  it('EINVAL from a device that does not answer GET_STATUS (a loop device) is "not supported"', async () => {
    const { error } = await scripted((k) => k.lockUnlock(user1, 0, 'unlocked'), [{ ret: -22 }, { ret: -22 }]);
    expect((error as KmipAgentError).code).toBe('KOPAL_NOT_SUPPORTED');
  });

  it('bad arguments are refused before any ioctl', async () => {
    const tooLong = Buffer.alloc(257, 1);
    const { error, calls } = await scripted((k) => k.takeOwnership(tooLong));
    expect((error as KmipAgentError).code).toBe('KOPAL_INVALID_ARGUMENT');
    expect(calls).toHaveLength(0);
    // Read on the JS thread by the one strict reader (core/js_args.h): typed, naming the argument.
    const refused: [string, (k: KernelOpalHandle) => Promise<unknown>, RegExp][] = [
      ['an unknown state', (k) => k.lockUnlock(user1, 0, 'open' as never), /state/],
      ["the kernel's old 'rw' spelling", (k) => k.lockUnlock(user1, 0, 'rw' as never), /state/],
      ['who beyond User9', (k) => k.lockUnlock({ who: 12, key: KEY }, 0, 'unlocked'), /auth\.who .* 0 to 9/],
      ['a fractional range', (k) => k.lockUnlock(user1, 1.5, 'unlocked'), /range .* 0 to 8/],
      ['range 9 of 0..8', (k) => k.rangeStatus(admin1, 9), /range .* 0 to 8/],
      ['a range as a string', (k) => k.eraseRange(admin1, '1' as never), /range/],
      ['user 0', (k) => k.activateUser(admin1, 0), /user .* 1 to 9/],
      ['a negative start', (k) => k.setupRange(admin1, 1, -1n, 8n, true, true), /start/],
      ['a start beyond 2^64', (k) => k.setupRange(admin1, 1, 1n << 64n, 8n, true, true), /start/],
      ['an unsafe Number start', (k) => k.setupRange(admin1, 1, (2 ** 60) as never, 8n, true, true), /start/],
      ['maxBytes 0', (k) => k.discovery(0), /maxBytes .* 1 to 65536/],
      ['a flag that is not a boolean', (k) => k.enableMbr(KEY, 1 as never), /enable/],
      ['a key that is not a Buffer', (k) => k.psidRevert('PSID' as never), /PSID/],
    ];
    for (const [label, run, message] of refused) {
      const handle = testSeams().openScriptedKernelOpal([{ ret: 0 }]);
      expect(() => run(handle), label).toThrow(
        expect.objectContaining({ code: 'KOPAL_INVALID_ARGUMENT', message: expect.stringMatching(message) }),
      );
      expect(handle.calls(), label).toHaveLength(0);
    }
  });
});

describe('on this machine (no sed-opal in the kernel): real devices say so', () => {
  const scratch = useScratchLoopDevice('kopal');

  it('a regular file is not a drive', async () => {
    const drive = KernelOpalDrive.open(scratch.image);
    await expect(drive.status()).rejects.toMatchObject({ code: 'KOPAL_NOT_SUPPORTED' });
  });

  it('a missing device is named', async () => {
    await expect(KernelOpalDrive.open('/dev/kmip-agent-no-such-disk').status()).rejects.toMatchObject({
      code: 'KOPAL_DEVICE_NOT_FOUND',
    });
  });

  it('a loop device has no sed-opal: KOPAL_NOT_SUPPORTED from the real ioctl', async (ctx) => {
    if (!scratch.loop) {
      ctx.skip(scratch.unavailable);
      return;
    }
    const drive = KernelOpalDrive.open(scratch.loop);
    await expect(drive.status()).rejects.toMatchObject({
      code: 'KOPAL_NOT_SUPPORTED',
      message: expect.stringContaining('IOC_OPAL_GET_STATUS'),
    });
    await expect(drive.lockUnlock({ who: 1, key: KEY }, 0, 'unlocked')).rejects.toMatchObject({
      code: 'KOPAL_NOT_SUPPORTED',
    });
  });
});
