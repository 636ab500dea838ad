/**
 * The sed-opal ioctl path, tested through the addon's recording seam (every ioctl number and the
 * bytes of its struct are checked against the kernel's uapi layout) and, where this machine allows,
 * against real files and loop devices, which have no sed-opal and must say so.
 */
import { describe, expect, it } from 'vitest';
import { useScratchLoopDevice } from '../support/loop.js';
import { KmipAgentError } from '../../src/errors.js';
import { KernelOpalDrive, type KernelOpalNative } from '../../src/drives/kernel-opal.js';
import { addonModule } from '../../src/native/addon.js';

const native = addonModule<KernelOpalNative>('kernelOpal');
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

function scripted(op: string, params: Record<string, unknown>, answers = [{ ret: 0 }]) {
  return native.runScripted(answers, op, params);
}

describe('struct contents of each flow, byte for byte', () => {
  it('lock/unlock: opal_lock_unlock with session (sum, who, key with range) and l_state', () => {
    const { calls, error } = scripted('lockUnlock', { authWho: 1, authKey: KEY, range: 3, state: 'rw' });
    expect(error).toBeUndefined();
    expect(calls).toHaveLength(1);
    const [call] = calls;
    expect(call.name).toBe('IOC_OPAL_LOCK_UNLOCK');
    expect(call.struct.length).toBe(280);
    expect(call.struct.readUInt32LE(0)).toBe(0); // sum
    expect(call.struct.readUInt32LE(4)).toBe(1); // who = User1
    expectOpalKey(call.struct, 8, 3, KEY);
    expect(call.struct.readUInt32LE(272)).toBe(0x02); // OPAL_RW
    expect(call.struct.readUInt16LE(276)).toBe(0); // no flags
  });

  it('save for resume: IOC_OPAL_SAVE with OPAL_SAVE_FOR_LOCK', () => {
    const { calls } = scripted('saveForResume', { authWho: 0, authKey: KEY, range: 0, state: 'rw' });
    expect(calls[0].name).toBe('IOC_OPAL_SAVE');
    expect(calls[0].struct.readUInt16LE(276)).toBe(1);
  });

  it('locking range setup: start, length, RLE/WLE, then the Admin1 session naming the range', () => {
    const { calls } = scripted('setupRange', {
      authWho: 0,
      authKey: KEY,
      range: 1,
      start: 2048n,
      length: 1048576n,
      readLockEnabled: true,
      writeLockEnabled: true,
    });
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

  it('activate Locking SP: SID key, then sum, num_lrs and the SUM range list', () => {
    const { calls } = scripted('activateLockingSp', { authKey: KEY, sumRanges: [1, 2] });
    const s = calls[0].struct;
    expect(calls[0].name).toBe('IOC_OPAL_ACTIVATE_LSP');
    expectOpalKey(s, 0, 0, KEY);
    expect(s.readUInt32LE(264)).toBe(1);
    expect(s[268]).toBe(2);
    expect([...s.subarray(269, 278)]).toEqual([1, 2, 0, 0, 0, 0, 0, 0, 0]);
  });

  it('set PIN: the authenticating session, then the user whose PIN changes', () => {
    const newPin = Buffer.alloc(32, 0xab);
    const { calls } = scripted('setPassword', { authWho: 0, authKey: KEY, targetWho: 1, targetKey: newPin });
    const s = calls[0].struct;
    expect(calls[0].name).toBe('IOC_OPAL_SET_PW');
    expect(s.length).toBe(544);
    expect(s.readUInt32LE(4)).toBe(0);
    expectOpalKey(s, 8, 0, KEY);
    expect(s.readUInt32LE(272 + 4)).toBe(1);
    expectOpalKey(s, 272 + 8, 0, newPin);
  });

  it('add user to range: user in session.who, access in l_state, range in the key', () => {
    const { calls } = scripted('addUserToRange', { authKey: KEY, user: 2, range: 4, access: 'ro' });
    const s = calls[0].struct;
    expect(calls[0].name).toBe('IOC_OPAL_ADD_USR_TO_LR');
    expect(s.readUInt32LE(4)).toBe(2);
    expectOpalKey(s, 8, 4, KEY);
    expect(s.readUInt32LE(272)).toBe(0x01);
  });

  it('take ownership, revert, PSID revert, MBR and erase flows use their own ioctls', () => {
    expect(scripted('takeOwnership', { authKey: KEY }).calls[0].name).toBe('IOC_OPAL_TAKE_OWNERSHIP');
    expect(scripted('revertTper', { authKey: KEY }).calls[0].name).toBe('IOC_OPAL_REVERT_TPR');
    expect(scripted('psidRevert', { authKey: KEY }).calls[0].name).toBe('IOC_OPAL_PSID_REVERT_TPR');
    const mbr = scripted('enableMbr', { authKey: KEY, enable: true }).calls[0];
    expect(mbr.name).toBe('IOC_OPAL_ENABLE_DISABLE_MBR');
    expect(mbr.struct[264]).toBe(0); // OPAL_MBR_ENABLE
    const done = scripted('setMbrDone', { authKey: KEY, done: true }).calls[0];
    expect(done.name).toBe('IOC_OPAL_MBR_DONE');
    expect(done.struct[264]).toBe(1);
    const erase = scripted('secureEraseRange', { authWho: 0, authKey: KEY, range: 2 }).calls[0];
    expect(erase.name).toBe('IOC_OPAL_SECURE_ERASE_LR');
    expectOpalKey(erase.struct, 8, 2, KEY);
    const revertLsp = scripted('revertLockingSp', { authKey: KEY, keepGlobalRangeKey: true }).calls[0];
    expect(revertLsp.name).toBe('IOC_OPAL_REVERT_LSP');
    expect(revertLsp.struct.readUInt32LE(264)).toBe(1); // OPAL_PRESERVE
    const activateUser = scripted('activateUser', { authKey: KEY, user: 1 }).calls[0];
    expect(activateUser.name).toBe('IOC_OPAL_ACTIVATE_USR');
    expect(activateUser.struct.readUInt32LE(4)).toBe(1);
    const sid = scripted('setSidPassword', { authKey: KEY, newKey: Buffer.from('new') }).calls[0];
    expect(sid.name).toBe('IOC_OPAL_SET_SID_PW');
    expectOpalKey(sid.struct, 280, 0, Buffer.from('new'));
  });
});

describe('answers from the kernel are decoded', () => {
  it('GET_STATUS flags', () => {
    const out = Buffer.alloc(8);
    out.writeUInt32LE(0x01 | 0x02 | 0x04 | 0x08 | 0x40, 0);
    const { result } = scripted('status', {}, [{ ret: 0, structOut: out }] as never);
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

  it('GET_LR_STATUS range fields after the session', () => {
    const out = Buffer.alloc(304);
    out.writeBigUInt64LE(4096n, 272);
    out.writeBigUInt64LE(8192n, 280);
    out.writeUInt32LE(1, 288);
    out.writeUInt32LE(0, 292);
    out.writeUInt32LE(0x01, 296);
    const { result, calls } = scripted('rangeStatus', { authWho: 0, authKey: KEY, range: 1 }, [
      { ret: 0, structOut: out },
    ] as never);
    expect(calls[0].name).toBe('IOC_OPAL_GET_LR_STATUS');
    expect(result).toEqual({
      start: 4096n,
      length: 8192n,
      readLockEnabled: true,
      writeLockEnabled: false,
      state: 'ro',
    });
  });

  it('DISCOVERY fills the caller buffer and returns its length', () => {
    const level0 = Buffer.from('000000300000000100000000000000000000000000000000000000000000000000010000', 'hex');
    const { result, calls } = scripted('discovery', { maxBytes: 1024 }, [
      { ret: level0.length, bufferOut: level0 },
    ] as never);
    expect(calls[0].name).toBe('IOC_OPAL_DISCOVERY');
    expect(calls[0].struct.readBigUInt64LE(8)).toBe(1024n);
    expect((result?.data as Buffer).equals(level0)).toBe(true);
  });

  it('GET_GEOMETRY', () => {
    const out = Buffer.alloc(32);
    out.writeUInt32LE(4096, 4);
    out.writeBigUInt64LE(8n, 8);
    out.writeBigUInt64LE(0n, 16);
    const { result } = scripted('geometry', {}, [{ ret: 0, structOut: out }] as never);
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
  it.each(cases)('%s', (_label, ret, code, message) => {
    const { error } = scripted('lockUnlock', { authWho: 1, authKey: KEY, range: 0, state: 'rw' }, [{ ret }]);
    expect(error).toBeInstanceOf(KmipAgentError);
    expect((error as KmipAgentError).code).toBe(code);
    expect((error as KmipAgentError).message).toMatch(message);
    expect((error as KmipAgentError).message).toContain('IOC_OPAL_LOCK_UNLOCK');
    if (ret > 0) expect((error as KmipAgentError).status).toBe(ret);
  });

  it('EINVAL from a device that answers GET_STATUS is a refused argument', () => {
    const supported = Buffer.alloc(8);
    supported.writeUInt32LE(0x01, 0);
    const { error, calls } = scripted('lockUnlock', { authWho: 1, authKey: KEY, range: 0, state: 'rw' }, [
      { ret: -22 },
      { ret: 0, structOut: supported },
    ] as never);
    expect((error as KmipAgentError).code).toBe('KOPAL_INVALID_ARGUMENT');
    expect(calls.map((c) => c.name)).toEqual(['IOC_OPAL_LOCK_UNLOCK', 'IOC_OPAL_GET_STATUS']);
  });

  it('EINVAL from a device that does not answer GET_STATUS (a loop device) is "not supported"', () => {
    const { error } = scripted('lockUnlock', { authWho: 1, authKey: KEY, range: 0, state: 'rw' }, [
      { ret: -22 },
      { ret: -22 },
    ]);
    expect((error as KmipAgentError).code).toBe('KOPAL_NOT_SUPPORTED');
  });

  it('bad arguments are refused before any ioctl', () => {
    const tooLong = Buffer.alloc(257, 1);
    const { error, calls } = scripted('takeOwnership', { authKey: tooLong });
    expect((error as KmipAgentError).code).toBe('KOPAL_INVALID_ARGUMENT');
    expect(calls).toHaveLength(0);
    expect(() => scripted('lockUnlock', { authWho: 1, authKey: KEY, range: 0, state: 'open' })).toThrow(
      expect.objectContaining({ code: 'KOPAL_INVALID_ARGUMENT' }),
    );
    expect(() => scripted('lockUnlock', { authWho: 12, authKey: KEY, range: 0, state: 'rw' })).toThrow(
      expect.objectContaining({ code: 'KOPAL_INVALID_ARGUMENT' }),
    );
    expect(() => scripted('frobnicate', {})).toThrow(expect.objectContaining({ code: 'KOPAL_INVALID_ARGUMENT' }));
  });
});

describe('on this machine (no sed-opal in the kernel): real devices say so', () => {
  const scratch = useScratchLoopDevice('kopal');

  it('a regular file is not a drive', async () => {
    const drive = new KernelOpalDrive(scratch.image);
    await expect(drive.status()).rejects.toMatchObject({ code: 'KOPAL_NOT_SUPPORTED' });
  });

  it('a missing device is named', async () => {
    await expect(new KernelOpalDrive('/dev/kmip-agent-no-such-disk').status()).rejects.toMatchObject({
      code: 'KOPAL_DEVICE_NOT_FOUND',
    });
  });

  it('a loop device has no sed-opal: KOPAL_NOT_SUPPORTED from the real ioctl', async (ctx) => {
    if (!scratch.loop) {
      ctx.skip('losetup could not attach a loop device on this machine');
      return;
    }
    const drive = new KernelOpalDrive(scratch.loop);
    await expect(drive.status()).rejects.toMatchObject({
      code: 'KOPAL_NOT_SUPPORTED',
      message: expect.stringContaining('IOC_OPAL_GET_STATUS'),
    });
    await expect(drive.lockUnlock({ who: 1, key: KEY }, 0, 'rw')).rejects.toMatchObject({
      code: 'KOPAL_NOT_SUPPORTED',
    });
  });
});
