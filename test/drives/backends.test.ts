/**
 * Backend choice and the kernel sed-opal backend, through the addon's seams: the kernel side runs
 * the real sed-opal code against the recording ioctl port (testSeams.openScriptedKernelOpal), the pass-through
 * side runs the real host TCG stack over a scripted transport (testSeams.openScriptedDrive) answering Level 0
 * discovery with real drives' responses, or the real device detection against a scripted ioctl port
 * that has neither SG_IO nor NVMe. On this machine a loop device and a regular file must fail typed.
 */
import { rmSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  BackendChoiceError,
  defaultProbes,
  selectBackend,
  tcgNative,
  type BackendAttempt,
  type BackendProbes,
} from '../../src/drives/backend.js';
import { KernelOpalBackend, KernelPinRefusedError } from '../../src/drives/kernel-backend.js';
import { KernelOpalDrive } from '../../src/drives/kernel-opal.js';
import { OpalDrive, openOpalDrive } from '../../src/drives/opal.js';
import { ADMIN1, SID, userAuthority, type Discovery, type OpalBackend } from '../../src/drives/types.js';
import { KmipAgentError } from '../../src/errors.js';
import { addonModule } from '../../src/native/addon.js';
import { recordingKernelOpal, testSeams, type RecordedIoctl, type ScriptedAnswer } from '../support/addon.js';
import { runCliCaptured } from '../support/cli.js';
import { discoveryFixture } from '../support/shared.js';
import { useScratchLoopDevice } from '../support/loop.js';

const tcg = tcgNative();
const seams = testSeams();
const passthroughNative = addonModule<{
  scripted(kind: string, answers: unknown[], op: string, params: object): { result?: unknown; error?: Error };
}>('passthrough');

const DEV = '/dev/sdq';
const PIN = Buffer.from('admin1 pin for the kernel backend');
const NEW_PIN = Buffer.from('the next pin');

const ENOTTY = -25;
const EACCES = -13;
const EOPNOTSUPP = -95;
const FL_SUPPORTED = 0x01;
const FL_LOCKING_SUPPORTED = 0x02;
const FL_LOCKING_ENABLED = 0x04;
const FL_LOCKED = 0x08;

/** A discovery with the TPer and Locking features and the Enterprise SSC (0x0100): no Opal family SSC. */
function enterpriseOnlyDiscovery(): Buffer {
  const feature = (code: number, data: Buffer) => {
    const head = Buffer.alloc(4);
    head.writeUInt16BE(code, 0);
    head[2] = 0x10;
    head[3] = data.length;
    return Buffer.concat([head, data]);
  };
  const body = Buffer.concat([
    feature(0x0001, Buffer.from('110000000000000000000000', 'hex')),
    feature(0x0002, Buffer.from('010000000000000000000000', 'hex')),
    feature(0x0100, Buffer.from('07fe000200000000000000000000000000', 'hex').subarray(0, 16)),
  ]);
  const header = Buffer.alloc(48);
  header.writeUInt32BE(44 + body.length, 0);
  header.writeUInt16BE(1, 6);
  return Buffer.concat([header, body]);
}

function statusAnswer(flags: number): ScriptedAnswer {
  const out = Buffer.alloc(8);
  out.writeUInt32LE(flags, 0);
  return { ret: 0, structOut: out };
}

/**
 * A kernel sed-opal drive whose ioctls answer from one script (shared across calls, in order;
 * success once it runs out) and are all recorded: the real sed-opal code runs, only the kernel is scripted.
 */
function scriptedKernel(answers: ScriptedAnswer[]) {
  return recordingKernelOpal([...answers, ...Array.from({ length: 64 }, () => ({ ret: 0 }))]);
}

/** The pass-through seam: the host TCG stack over a scripted TPer answering `discovery`. */
function passthroughAnswering(discovery: Buffer): BackendProbes['openPassthrough'] {
  return () => Promise.resolve(seams.openScriptedDrive(discovery, []));
}

/** The pass-through seam on a device with neither NVMe nor SG_IO: the real detection's error. */
const passthroughUnreachable: BackendProbes['openPassthrough'] = () => {
  const r = passthroughNative.scripted('detect', [], 'detect', {});
  return Promise.reject(r.error);
};

function probes(kernelAnswers: ScriptedAnswer[], openPassthrough: BackendProbes['openPassthrough']) {
  const kernel = scriptedKernel(kernelAnswers);
  const p: BackendProbes = {
    ...defaultProbes,
    kernel: (device) => new KernelOpalDrive(device, kernel.handle),
    openPassthrough,
    // The scripted device (/dev/sdq) exists for these tests unless one says otherwise.
    exists: () => true,
  };
  return { probes: p, calls: kernel.calls };
}

function summary(attempts: BackendAttempt[]) {
  return attempts.map((a) => [a.backend, a.outcome, a.code]);
}

async function choiceError(promise: Promise<unknown>): Promise<BackendChoiceError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(BackendChoiceError);
  return error as BackendChoiceError;
}

describe('backend choice for a device', () => {
  it('kernel sed-opal supports the drive: kernel, with pass-through kept as fallback', async () => {
    const { probes: p, calls } = probes(
      [statusAnswer(FL_SUPPORTED | FL_LOCKING_SUPPORTED)],
      passthroughAnswering(discoveryFixture('Samsung EVO 860')),
    );
    const { choice, backend } = await selectBackend(DEV, {}, p);
    expect(choice.backend).toBe('kernel');
    expect(choice.reason).toMatch(/sed-opal driver supports this drive.*IOC_OPAL_SAVE.*pass-through is kept/);
    expect(summary(choice.attempts)).toEqual([
      ['kernel', 'chosen', undefined],
      ['passthrough', 'fallback', undefined],
    ]);
    expect(choice.attempts[0].detail).toContain('flags 0x03');
    expect(choice.attempts[1].detail).toContain('SSC Opal2');
    expect(calls.map((c) => c.name)).toEqual(['IOC_OPAL_GET_STATUS']);
    expect(backend).toBeInstanceOf(KernelOpalBackend);
    expect(backend.describe()).toMatch(/^kernel sed-opal \/dev\/sdq \(TCG pass-through fallback: scripted/);
    await backend.close();
  });

  it('kernel answers GET_STATUS with Opal supported but pass-through is unreachable: kernel alone', async () => {
    const { probes: p } = probes([statusAnswer(FL_SUPPORTED)], passthroughUnreachable);
    const { choice, backend } = await selectBackend(DEV, {}, p);
    expect(choice.backend).toBe('kernel');
    expect(choice.reason).not.toContain('kept');
    expect(summary(choice.attempts)).toEqual([
      ['kernel', 'chosen', undefined],
      ['passthrough', 'unavailable', 'TRANSPORT_NOT_SUPPORTED'],
    ]);
    // What only pass-through can do now fails typed, naming the backend and why there is no fallback.
    await expect(backend.readMsid()).rejects.toMatchObject({
      code: 'DRIVE_OPERATION_NOT_SUPPORTED',
      message: expect.stringMatching(
        /reading the MSID.*kernel sed-opal backend on \/dev\/sdq.*not a SCSI, ATA or NVMe/,
      ),
    });
  });

  it('kernel has no sed-opal (ENOTTY), drive answers discovery with an Opal SSC: pass-through', async () => {
    const { probes: p, calls } = probes(
      [{ ret: ENOTTY }],
      passthroughAnswering(discoveryFixture('Sabrent Rocket 4.0 2TB')),
    );
    const { choice, backend } = await selectBackend(DEV, {}, p);
    expect(choice.backend).toBe('passthrough');
    expect(summary(choice.attempts)).toEqual([
      ['kernel', 'unavailable', 'KOPAL_NOT_SUPPORTED'],
      ['passthrough', 'chosen', undefined],
    ]);
    expect(choice.attempts[0].detail).toMatch(/no sed-opal support/);
    expect(choice.reason).toMatch(/kernel sed-opal is unavailable \(KOPAL_NOT_SUPPORTED\).*SSC Pyrite/);
    expect(calls.map((c) => c.name)).toEqual(['IOC_OPAL_GET_STATUS']);
    expect((await backend.discover()).features.map((f) => f.name)).toContain('Locking');
    await backend.close();
  });

  it('kernel refuses for lack of CAP_SYS_ADMIN (EACCES), pass-through works: pass-through, reason says why', async () => {
    const { probes: p } = probes([{ ret: EACCES }], passthroughAnswering(discoveryFixture('Samsung EVO 860')));
    const { choice, backend } = await selectBackend(DEV, {}, p);
    expect(choice.backend).toBe('passthrough');
    expect(choice.attempts[0]).toMatchObject({
      backend: 'kernel',
      outcome: 'unavailable',
      code: 'KOPAL_PERMISSION_DENIED',
    });
    expect(choice.attempts[0].detail).toContain('CAP_SYS_ADMIN');
    expect(choice.reason).toContain('KOPAL_PERMISSION_DENIED');
    await backend.close();
  });

  it('kernel sed-opal present but the drive is not Opal (flags 0): pass-through decides', async () => {
    const { probes: p } = probes([statusAnswer(0)], passthroughAnswering(discoveryFixture('Samsung EVO 860')));
    const { choice, backend } = await selectBackend(DEV, {}, p);
    expect(choice.backend).toBe('passthrough');
    expect(choice.attempts[0]).toMatchObject({ code: 'KOPAL_NOT_SUPPORTED' });
    expect(choice.attempts[0].detail).toMatch(/reports no Opal support.*flags 0x00/);
    await backend.close();
  });

  it('drive answers discovery without an Opal family SSC: DRIVE_NOT_OPAL listing the features', async () => {
    const { probes: p } = probes([{ ret: ENOTTY }], passthroughAnswering(enterpriseOnlyDiscovery()));
    const error = await choiceError(selectBackend(DEV, {}, p));
    expect(error.code).toBe('DRIVE_NOT_OPAL');
    expect(summary(error.attempts)).toEqual([
      ['kernel', 'unavailable', 'KOPAL_NOT_SUPPORTED'],
      ['passthrough', 'unavailable', 'DRIVE_NOT_OPAL'],
    ]);
    expect(error.message).toMatch(/\/dev\/sdq is not an Opal drive; tried kernel: .*passthrough: .*Enterprise/);
  });

  it('no path reaches the device: DRIVE_BACKEND_NOT_SUPPORTED with each reason', async () => {
    const { probes: p } = probes([{ ret: ENOTTY }], passthroughUnreachable);
    const error = await choiceError(selectBackend(DEV, {}, p));
    expect(error.code).toBe('DRIVE_BACKEND_NOT_SUPPORTED');
    expect(summary(error.attempts)).toEqual([
      ['kernel', 'unavailable', 'KOPAL_NOT_SUPPORTED'],
      ['passthrough', 'unavailable', 'TRANSPORT_NOT_SUPPORTED'],
    ]);
    expect(error.message).toMatch(/no backend reaches \/dev\/sdq; tried kernel: unavailable \[KOPAL_NOT_SUPPORTED\]/);
    expect(error.message).toMatch(
      /passthrough: unavailable \[TRANSPORT_NOT_SUPPORTED\]: .*not a SCSI, ATA or NVMe disk/,
    );
  });

  it('a disk removed while it is probed (EOPNOTSUPP, then no answer): DRIVE_NOT_FOUND, not "no sed-opal"', async () => {
    const { probes: p } = probes([{ ret: EOPNOTSUPP }], passthroughUnreachable);
    const error = await choiceError(selectBackend(DEV, {}, { ...p, exists: () => false }));
    expect(error.code).toBe('DRIVE_NOT_FOUND');
    expect(error.message).toMatch(/^\/dev\/sdq: no such device; tried kernel: unavailable \[KOPAL_NOT_SUPPORTED\]/);
  });

  it('every path refused for permissions: DRIVE_PERMISSION_DENIED (exit 1, not "unsupported")', async () => {
    const denied: BackendProbes['openPassthrough'] = () =>
      Promise.reject(new KmipAgentError('open /dev/sdq: Permission denied', 'TRANSPORT_PERMISSION_DENIED'));
    const { probes: p } = probes([{ ret: EACCES }], denied);
    const error = await choiceError(selectBackend(DEV, {}, p));
    expect(error.code).toBe('DRIVE_PERMISSION_DENIED');
    expect(error.message).toContain('CAP_SYS_ADMIN');
  });

  it('--backend kernel: only the kernel, no fallback; a kernel without sed-opal is a typed fault', async () => {
    const ok = probes([statusAnswer(FL_SUPPORTED)], passthroughAnswering(discoveryFixture('Samsung EVO 860')));
    const { choice, backend } = await selectBackend(DEV, { backend: 'kernel' }, ok.probes);
    expect(choice.reason).toMatch(/^forced; /);
    expect(summary(choice.attempts)).toEqual([
      ['kernel', 'chosen', undefined],
      ['passthrough', 'not-tried', undefined],
    ]);
    await expect(backend.tries(ADMIN1)).rejects.toMatchObject({ code: 'DRIVE_OPERATION_NOT_SUPPORTED' });

    const none = probes([{ ret: ENOTTY }], passthroughAnswering(discoveryFixture('Samsung EVO 860')));
    const error = await choiceError(selectBackend(DEV, { backend: 'kernel' }, none.probes));
    expect(error.code).toBe('DRIVE_BACKEND_NOT_SUPPORTED');
    expect(summary(error.attempts)).toEqual([
      ['kernel', 'unavailable', 'KOPAL_NOT_SUPPORTED'],
      ['passthrough', 'not-tried', undefined],
    ]);
  });

  it('--backend passthrough: the kernel is not asked', async () => {
    const { probes: p, calls } = probes(
      [statusAnswer(FL_SUPPORTED)],
      passthroughAnswering(discoveryFixture('Samsung EVO 860')),
    );
    const { choice, backend } = await selectBackend(DEV, { backend: 'passthrough' }, p);
    expect(choice.backend).toBe('passthrough');
    expect(choice.reason).toBe('forced; the drive answers Level 0 discovery with SSC Opal2');
    expect(summary(choice.attempts)).toEqual([
      ['kernel', 'not-tried', undefined],
      ['passthrough', 'chosen', undefined],
    ]);
    expect(calls).toHaveLength(0);
    await backend.close();
  });

  it('emu: is the emulated backend; forcing a backend that does not fit the spec is DRIVE_SPEC_INVALID', async () => {
    const fake = { close: () => Promise.resolve() } as unknown as OpalBackend;
    const p: BackendProbes = { ...defaultProbes, openEmulated: () => Promise.resolve(fake) };
    const { choice, backend } = await selectBackend('emu:/tmp/x.img', {}, p);
    expect(backend).toBe(fake);
    expect(summary(choice.attempts)).toEqual([['emulated', 'chosen', undefined]]);
    await expect(selectBackend('emu:/tmp/x.img', { backend: 'kernel' }, p)).rejects.toMatchObject({
      code: 'DRIVE_SPEC_INVALID',
    });
    await expect(selectBackend(DEV, { backend: 'emulated' }, p)).rejects.toMatchObject({ code: 'DRIVE_SPEC_INVALID' });
    await expect(selectBackend('sdq', {}, p)).rejects.toMatchObject({ code: 'DRIVE_SPEC_INVALID' });
  });
});

/** A kernel backend over the scripted kernel, with an optional fallback. */
function kernelBackend(answers: ScriptedAnswer[] = [], fallback: OpalBackend | null = null) {
  const { handle, calls } = scriptedKernel(answers);
  const backend = new KernelOpalBackend(new KernelOpalDrive(DEV, handle), (d) => tcg.parseDiscovery(d), fallback);
  return { backend, calls };
}

/** The opal_key inside a recorded struct at `at`: range, key length and key bytes. */
function keyAt(call: RecordedIoctl, at: number): { range: number; key: Buffer } {
  return { range: call.struct[at], key: call.struct.subarray(at + 8, at + 8 + call.struct[at + 1]) };
}

describe('kernel sed-opal backend: each flow as ioctls', () => {
  it('unlock = LOCK_UNLOCK then SAVE (re-unlock after resume), same session and state', async () => {
    const { backend, calls } = kernelBackend();
    await backend.setLock(userAuthority(2), PIN, 1, 'unlocked');
    expect(calls.map((c) => c.name)).toEqual(['IOC_OPAL_LOCK_UNLOCK', 'IOC_OPAL_SAVE']);
    for (const c of calls) {
      expect(c.struct.readUInt32LE(4)).toBe(2); // who = User2
      expect(keyAt(c, 8)).toEqual({ range: 1, key: PIN });
      expect(c.struct.readUInt32LE(272)).toBe(0x02); // OPAL_RW
    }
    expect(calls[1].struct.readUInt16LE(276)).toBe(1); // OPAL_SAVE_FOR_LOCK
  });

  it('lock and read-only also SAVE, so an older saved unlock is not re-applied after resume', async () => {
    const { backend, calls } = kernelBackend();
    await backend.setLock(ADMIN1, PIN, 0, 'locked');
    await backend.setLock(ADMIN1, PIN, 0, 'read-only');
    expect(calls.map((c) => [c.name, c.struct.readUInt32LE(4), c.struct.readUInt32LE(272)])).toEqual([
      ['IOC_OPAL_LOCK_UNLOCK', 0, 0x04],
      ['IOC_OPAL_SAVE', 0, 0x04],
      ['IOC_OPAL_LOCK_UNLOCK', 0, 0x01],
      ['IOC_OPAL_SAVE', 0, 0x01],
    ]);
  });

  it('take ownership, activate, revert, PSID revert, revert Locking SP: one ioctl each with the PIN', async () => {
    const { backend, calls } = kernelBackend();
    await backend.takeOwnership(NEW_PIN);
    await backend.activate(PIN);
    await backend.revert(PIN);
    await backend.psidRevert(Buffer.from('PSIDPSIDPSIDPSIDPSIDPSIDPSIDPSID'));
    await backend.revertLockingSp(PIN, true);
    expect(calls.map((c) => c.name)).toEqual([
      'IOC_OPAL_TAKE_OWNERSHIP',
      'IOC_OPAL_ACTIVATE_LSP',
      'IOC_OPAL_REVERT_TPR',
      'IOC_OPAL_PSID_REVERT_TPR',
      'IOC_OPAL_REVERT_LSP',
    ]);
    expect(keyAt(calls[0], 0).key).toEqual(NEW_PIN);
    expect(keyAt(calls[1], 0).key).toEqual(PIN); // opal_lr_act: key first
    expect(calls[1].struct.readUInt32LE(264)).toBe(0); // sum = false
    expect(keyAt(calls[3], 0).key.toString()).toBe('PSIDPSIDPSIDPSIDPSIDPSIDPSIDPSID');
  });

  it('setup range, enable user (ACTIVATE_USR then ADD_USR_TO_LR RO and RW per range), set PINs', async () => {
    const { backend, calls } = kernelBackend();
    await backend.setupRange(PIN, 2, 4096, 8192, true, true);
    await backend.enableUser(PIN, 3, true, [1, 2]);
    await backend.setPin(ADMIN1, PIN, userAuthority(3), NEW_PIN);
    await backend.setPin(SID, PIN, SID, NEW_PIN);
    expect(calls.map((c) => c.name)).toEqual([
      'IOC_OPAL_LR_SETUP',
      'IOC_OPAL_ACTIVATE_USR',
      'IOC_OPAL_ADD_USR_TO_LR',
      'IOC_OPAL_ADD_USR_TO_LR',
      'IOC_OPAL_ADD_USR_TO_LR',
      'IOC_OPAL_ADD_USR_TO_LR',
      'IOC_OPAL_SET_PW',
      'IOC_OPAL_SET_SID_PW',
    ]);
    const setup = calls[0];
    expect(setup.struct.readBigUInt64LE(0)).toBe(4096n);
    expect(setup.struct.readBigUInt64LE(8)).toBe(8192n);
    expect(setup.struct.readUInt32LE(16)).toBe(1); // RLE
    expect(setup.struct.readUInt32LE(20)).toBe(1); // WLE
    expect(keyAt(setup, 24 + 8)).toEqual({ range: 2, key: PIN });
    expect(calls[1].struct.readUInt32LE(4)).toBe(3); // ACTIVATE_USR: who = User3
    expect(calls.slice(2, 6).map((c) => [c.struct[8], c.struct.readUInt32LE(4), c.struct.readUInt32LE(272)])).toEqual([
      [1, 3, 0x01],
      [1, 3, 0x02],
      [2, 3, 0x01],
      [2, 3, 0x02],
    ]);
    const setPw = calls[6];
    expect(setPw.struct.readUInt32LE(4)).toBe(0); // session as Admin1
    expect(keyAt(setPw, 8).key).toEqual(PIN);
    expect(setPw.struct.readUInt32LE(272 + 4)).toBe(3); // new_user_pw.who = User3
    expect(keyAt(setPw, 272 + 8).key).toEqual(NEW_PIN);
    expect(keyAt(calls[7], 8).key).toEqual(PIN);
    expect(keyAt(calls[7], 272 + 8).key).toEqual(NEW_PIN);
  });

  it('erase: GenKey (SECURE_ERASE_LR) by default, ERASE_LR for the erase method; MBR enable and done', async () => {
    const { backend, calls } = kernelBackend();
    await backend.erase(PIN, 4, false);
    await backend.erase(PIN, 5, true);
    await backend.setMbr(PIN, true, false);
    expect(calls.map((c) => c.name)).toEqual([
      'IOC_OPAL_SECURE_ERASE_LR',
      'IOC_OPAL_ERASE_LR',
      'IOC_OPAL_ENABLE_DISABLE_MBR',
      'IOC_OPAL_MBR_DONE',
    ]);
    expect(keyAt(calls[0], 8).range).toBe(4);
    expect(keyAt(calls[1], 8).range).toBe(5);
  });

  it('status from GET_STATUS flags, discovery from IOC_OPAL_DISCOVERY when the kernel has it', async () => {
    const level0 = discoveryFixture('Samsung EVO 860');
    const { backend, calls } = kernelBackend([
      statusAnswer(FL_SUPPORTED | FL_LOCKING_SUPPORTED | FL_LOCKING_ENABLED | FL_LOCKED),
      { ret: 0, bufferOut: level0 },
    ]);
    const status = await backend.status(false);
    expect(calls.map((c) => c.name)).toEqual(['IOC_OPAL_GET_STATUS', 'IOC_OPAL_DISCOVERY']);
    expect(status).toMatchObject({ lockingSupported: true, lockingEnabled: true, locked: true, lockingSpLifecycle: 9 });
    expect(status.sidIsMsid).toBeNull();
    expect(status.discovery.opal2?.feature).toBe('Opal2');
  });

  it('a kernel without IOC_OPAL_DISCOVERY: status still answers (flags), discover() is typed unsupported', async () => {
    const { backend } = kernelBackend([statusAnswer(FL_SUPPORTED | FL_LOCKING_SUPPORTED), { ret: ENOTTY }]);
    const status = await backend.status(false);
    expect(status.discovery.warnings[0]).toMatch(/no IOC_OPAL_DISCOVERY/);
    expect(status.lockingSpLifecycle).toBe(8);
    const bare = kernelBackend([{ ret: ENOTTY }, statusAnswer(FL_SUPPORTED)]).backend;
    await expect(bare.discover()).rejects.toMatchObject({
      code: 'DRIVE_OPERATION_NOT_SUPPORTED',
      message: expect.stringContaining('Level 0 discovery is not supported by the kernel sed-opal backend'),
    });
  });

  it('what the kernel cannot do goes to the pass-through fallback; without one it is typed', async () => {
    const used: string[] = [];
    const record =
      (name: string, value: unknown = undefined) =>
      () => {
        used.push(name);
        return Promise.resolve(value);
      };
    const fallback = {
      readMsid: record('readMsid', Buffer.from('MSID')),
      tries: record('tries', { tries: 0, tryLimit: 5 }),
      ranges: record('ranges', []),
      verify: record('verify'),
      enableUser: record('enableUser'),
      setupRange: record('setupRange'),
      setPin: record('setPin'),
      discover: record('discover', {} as Discovery),
      serial: () => 'S3Z9NB0K123456',
      describe: () => 'fallback',
      close: record('close'),
    } as unknown as OpalBackend;
    const { backend, calls } = kernelBackend([{ ret: ENOTTY }, statusAnswer(FL_SUPPORTED)], fallback);
    expect(await backend.readMsid()).toEqual(Buffer.from('MSID'));
    expect(await backend.tries(ADMIN1)).toEqual({ tries: 0, tryLimit: 5 });
    await backend.ranges(ADMIN1, PIN);
    await backend.verify(ADMIN1, PIN);
    await backend.enableUser(PIN, 1, false, []); // the kernel cannot disable a user
    await backend.setupRange(PIN, 1, null, null, true, true); // LR_SETUP cannot keep start/length
    await backend.setPin(SID, PIN, ADMIN1, NEW_PIN); // the kernel cannot authenticate SID for Admin1's PIN
    await backend.discover(); // the kernel answered ENOTTY for IOC_OPAL_DISCOVERY
    expect(backend.serial()).toBe('S3Z9NB0K123456');
    await backend.close();
    expect(used).toEqual([
      'readMsid',
      'tries',
      'ranges',
      'verify',
      'enableUser',
      'setupRange',
      'setPin',
      'discover',
      'close',
    ]);
    // The ENOTTY for DISCOVERY was checked against GET_STATUS (sed-opal answers) before falling back.
    expect(calls.map((c) => c.name)).toEqual(['IOC_OPAL_DISCOVERY']);

    const alone = kernelBackend().backend;
    for (const call of [
      () => alone.readMsid(),
      () => alone.tries(SID),
      () => alone.ranges(ADMIN1, PIN),
      () => alone.enableUser(PIN, 1, false, []),
      () => alone.verify(SID, PIN),
      () => alone.setLock({ kind: 'admin', index: 2 }, PIN, 0, 'unlocked'),
    ]) {
      await expect(call()).rejects.toMatchObject({
        code: 'DRIVE_OPERATION_NOT_SUPPORTED',
        message: expect.stringContaining('kernel sed-opal backend on /dev/sdq'),
      });
    }
  });

  it('verify without a fallback: an authenticated GET_LR_STATUS of the global range as Admin1', async () => {
    const lrStatus = Buffer.alloc(304);
    lrStatus.writeUInt32LE(0x04, 296); // l_state: locked
    const { backend, calls } = kernelBackend([{ ret: 0, structOut: lrStatus }]);
    await backend.verify(ADMIN1, PIN);
    expect(calls.map((c) => c.name)).toEqual(['IOC_OPAL_GET_LR_STATUS']);
    expect(keyAt(calls[0], 8)).toEqual({ range: 0, key: PIN });
  });

  it('NOT_AUTHORIZED through the kernel counts as a refused PIN: OpalDrive never sends it again', async () => {
    const { backend, calls } = kernelBackend([{ ret: 0x01 }]);
    const drive = OpalDrive.fromBackend('/dev/sdq-refused', backend);
    const error = await drive.unlock(PIN).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toMatchObject({ code: 'TCG_NOT_AUTHORIZED', status: 1 });
    expect(error).toBeInstanceOf(KernelPinRefusedError);
    await expect(drive.unlock(PIN)).rejects.toMatchObject({ code: 'TCG_PIN_KNOWN_WRONG' });
    expect(calls.map((c) => c.name)).toEqual(['IOC_OPAL_LOCK_UNLOCK']);
    await drive.forgetRefusedPins();
  });

  it('EACCES from an ioctl: KOPAL_PERMISSION_DENIED explaining CAP_SYS_ADMIN', async () => {
    const { backend } = kernelBackend([{ ret: EACCES }]);
    await expect(backend.revert(PIN)).rejects.toMatchObject({
      code: 'KOPAL_PERMISSION_DENIED',
      message: expect.stringContaining('CAP_SYS_ADMIN'),
    });
  });
});

describe('this machine: a loop device and a regular file have no Opal path', () => {
  const scratch = useScratchLoopDevice('backends');
  const regular = `/dev/shm/kmip-agent-backends-${process.pid}.img`;
  beforeAll(() => writeFileSync(regular, Buffer.alloc(64 * 1024)));
  afterAll(() => rmSync(regular, { force: true }));

  it('openOpalDrive(loop device): DRIVE_BACKEND_NOT_SUPPORTED listing kernel and pass-through', async (ctx) => {
    if (!scratch.loop) ctx.skip(scratch.unavailable);
    const error = await choiceError(openOpalDrive(scratch.loop!));
    expect(error.code).toBe('DRIVE_BACKEND_NOT_SUPPORTED');
    expect(summary(error.attempts)).toEqual([
      ['kernel', 'unavailable', 'KOPAL_NOT_SUPPORTED'],
      ['passthrough', 'unavailable', 'TRANSPORT_NOT_SUPPORTED'],
    ]);
  });

  it('openOpalDrive(regular file under /dev): the same typed fault', async () => {
    const error = await choiceError(openOpalDrive(regular));
    expect(error.code).toBe('DRIVE_BACKEND_NOT_SUPPORTED');
    expect(summary(error.attempts)).toEqual([
      ['kernel', 'unavailable', 'KOPAL_NOT_SUPPORTED'],
      ['passthrough', 'unavailable', 'TRANSPORT_NOT_SUPPORTED'],
    ]);
    expect(error.attempts[0].detail).toContain('not a block device');
  });

  it('forcing pass-through on the loop device: TRANSPORT_NOT_SUPPORTED in the attempts', async (ctx) => {
    if (!scratch.loop) ctx.skip(scratch.unavailable);
    const error = await choiceError(openOpalDrive(scratch.loop!, { backend: 'passthrough' }));
    expect(summary(error.attempts)).toEqual([
      ['kernel', 'not-tried', undefined],
      ['passthrough', 'unavailable', 'TRANSPORT_NOT_SUPPORTED'],
    ]);
  });

  it('CLI drive discover <loop> --json: exit 3, one JSON error with code and attempts', async (ctx) => {
    if (!scratch.loop) ctx.skip(scratch.unavailable);
    const r = await runCliCaptured(['--json', 'drive', 'discover', scratch.loop!]);
    expect(r.code).toBe(3);
    const body = r.json<{ error: { code: string; message: string; attempts: BackendAttempt[] } }>();
    expect(body.error.code).toBe('DRIVE_BACKEND_NOT_SUPPORTED');
    expect(summary(body.error.attempts)).toEqual([
      ['kernel', 'unavailable', 'KOPAL_NOT_SUPPORTED'],
      ['passthrough', 'unavailable', 'TRANSPORT_NOT_SUPPORTED'],
    ]);
  });

  it('CLI drive discover <loop> (human): exit 3, each attempt on stderr', async (ctx) => {
    if (!scratch.loop) ctx.skip(scratch.unavailable);
    const r = await runCliCaptured(['drive', 'discover', scratch.loop!]);
    expect(r.code).toBe(3);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/no usable backend \[DRIVE_BACKEND_NOT_SUPPORTED\]/);
    expect(r.stderr).toMatch(/kernel: unavailable \[KOPAL_NOT_SUPPORTED\]: .*no sed-opal/);
    expect(r.stderr).toMatch(/passthrough: unavailable \[TRANSPORT_NOT_SUPPORTED\]/);
  });

  it('CLI on a regular file and with a forced backend: exit 3 with the typed code', async () => {
    const r = await runCliCaptured(['--json', 'drive', 'unlock', regular, '--pin-file', '-'], Buffer.from('pin'));
    expect(r.code).toBe(3);
    expect(r.json()).toMatchObject({ error: { code: 'DRIVE_BACKEND_NOT_SUPPORTED' } });
    const forced = await runCliCaptured(['--json', 'drive', 'discover', regular, '--backend', 'kernel']);
    expect(forced.code).toBe(3);
    expect(forced.json()).toMatchObject({
      error: { code: 'DRIVE_BACKEND_NOT_SUPPORTED', attempts: [{ backend: 'kernel' }, { outcome: 'not-tried' }] },
    });
  });
});

describe('drive CLI: destructive commands need --yes; --backend is checked', () => {
  it.each([
    [['revert', '/dev/sdq', '--pin-file', '/nonexistent'], /revert destroys every key and ALL DATA on \/dev\/sdq/],
    [['psid-revert', 'emu:/x', '--psid-file', '/nonexistent'], /psid-revert destroys every key and ALL DATA/],
    [['erase', 'emu:/x', '--range', '1', '--pin-file', '/nonexistent'], /erase destroys the media key of range 1/],
  ])('%j without --yes: usage error, exit 2, nothing read or opened', async (args, message) => {
    const r = await runCliCaptured(['--json', 'drive', ...args]);
    expect(r.code).toBe(2);
    const body = r.json<{ error: { code: string; message: string } }>();
    expect(body.error.code).toBe('USAGE_CONFIRM');
    expect(body.error.message).toMatch(message);
    expect(body.error.message).toContain('--yes');
  });

  it('--backend with an unknown name is a usage error', async () => {
    const r = await runCliCaptured(['--json', 'drive', 'discover', '/dev/sdq', '--backend', 'magic']);
    expect(r.code).toBe(2);
    expect(r.json()).toMatchObject({
      error: { code: 'USAGE', message: expect.stringContaining('kernel|passthrough|emulated') },
    });
  });
});
