/**
 * A drive's identity is one function (inventory's driveIdentity: WWN, else model+serial), used by
 * enrollment, adoption, unlocking, the refused-key memory and recovery; drives recorded under the old
 * serial-only form keep working. The emulated drive reports only a serial (no WWN, no model: see
 * native/emulator/drive_state.h), so a drive "with a WWN" is an emulated drive whose identity comes
 * from a fake sysfs tree naming it, exactly as a real disk's does from /sys.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { opalOpener } from '../../src/agent/daemon.js';
import { enrollOpalDrive, type EnrollDrive } from '../../src/agent/enroll.js';
import { driveIdentifier, driveIdentity } from '../../src/agent/inventory.js';
import type { KeySource } from '../../src/agent/key-source.js';
import { RefusedKeyFile } from '../../src/agent/refused-keys.js';
import { StateStore } from '../../src/agent/state.js';
import { OpalUnlocker } from '../../src/agent/unlockers.js';
import { createEmulatedDrive, powerCycleEmulatedDrive } from '../../src/drives/emulator.js';
import { OpalDrive, type OpalDriveOptions } from '../../src/drives/opal.js';
import { FakeClock } from '../support/fake-clock.js';

const dirs: string[] = [];
afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));
const tempDir = () => {
  const d = mkdtempSync(join(tmpdir(), 'kmip-agent-identity-'));
  dirs.push(d);
  return d;
};

const WWN = 'naa.5000c500a1b2c3d4';

describe('driveIdentity', () => {
  it('is the WWN first, else model+serial, else the serial; the plain serial is the older form', () => {
    expect(driveIdentity({ wwn: WWN, model: 'ST4000', serial: 'Z1' })).toEqual({ id: WWN, aliases: ['Z1'] });
    expect(driveIdentity({ model: 'ST4000', serial: 'Z1' })).toEqual({ id: 'ST4000:Z1', aliases: ['Z1'] });
    expect(driveIdentity({ serial: ' EMU-1 ' })).toEqual({ id: 'EMU-1', aliases: [] });
    // sysfs and the drive itself may spell the serial differently: both were ids once.
    expect(driveIdentity({ wwn: WWN, serial: 'Z1', reportedSerial: 'Z1-ATA' })).toEqual({
      id: WWN,
      aliases: ['Z1', 'Z1-ATA'],
    });
    expect(driveIdentity({})).toEqual({ id: '', aliases: [] });
  });

  it('driveIdentifier reads a disk from sysfs (WWN or not) and takes an emulated drive by its serial', async () => {
    const sys = tempDir();
    const put = (path: string, text: string) => {
      mkdirSync(join(sys, path, '..'), { recursive: true });
      writeFileSync(join(sys, path), text);
    };
    put('block/sdq/wwid', `${WWN}\n`);
    put('block/sdq/device/model', 'ST4000NM\n');
    put('block/sdr/device/model', 'ST4000NM\n');
    put('block/sdr/device/serial', 'ZC1\n');
    const identify = driveIdentifier(sys);
    expect(await identify('/dev/sdq', 'ZC0')).toEqual({ id: WWN, aliases: ['ZC0'] });
    expect(await identify('/dev/sdr', 'ZC1')).toEqual({ id: 'ST4000NM:ZC1', aliases: ['ZC1'] });
    expect(await identify('emu:/x/d.img', 'EMU-9')).toEqual({ id: 'EMU-9', aliases: [] });
  });
});

/** An emulated drive, enrolled as the agent does it (Admin1 = `pin`, global range locking), then power-cycled. */
async function lockedDrive(serial: string, pin: Buffer): Promise<string> {
  const path = join(tempDir(), 'drive.img');
  await createEmulatedDrive(path, 8, serial);
  const drive = await OpalDrive.open(`emu:${path}`);
  try {
    await drive.takeOwnership(pin);
    await drive.activate(pin);
    await drive.setupRange(pin, { range: 0, readLockEnabled: true, writeLockEnabled: true });
  } finally {
    await drive.close();
  }
  await powerCycleEmulatedDrive(path);
  return `emu:${path}`;
}

/** What sysfs would say of this drive if it were a real disk with a WWN. */
const withWwn: OpalDriveOptions['identify'] = async (_spec, serial) => driveIdentity({ wwn: WWN, serial });

describe('unlocking and the refused-key memory by identity', () => {
  it('unlocks a drive recorded under its WWN, and one recorded under its old serial id', async () => {
    const pin = randomBytes(32);
    const refused = new RefusedKeyFile({ dir: tempDir() });
    const unlocker = new OpalUnlocker({ open: opalOpener({ identify: withWwn, refusedKeys: refused }) }, refused);
    const device = await lockedDrive('SER-WWN-1', pin);
    expect(await unlocker.unlock({ id: WWN, kind: 'opal', device, keyUid: 'u' }, Buffer.from(pin))).toBe('unlocked');
    await powerCycleEmulatedDrive(device.slice(4));
    expect(await unlocker.unlock({ id: 'SER-WWN-1', kind: 'opal', device, keyUid: 'u' }, Buffer.from(pin))).toBe(
      'unlocked',
    );
    // A drive without WWN: its serial is its identity, as before.
    const plainUnlocker = new OpalUnlocker({ open: opalOpener({ refusedKeys: refused }) }, refused);
    const plain = await lockedDrive('SER-PLAIN-1', pin);
    const target = { id: 'SER-PLAIN-1', kind: 'opal' as const, device: plain, keyUid: 'u' };
    expect(await plainUnlocker.unlock(target, Buffer.from(pin))).toBe('unlocked');
    // Another drive's record is not this drive: its key is not sent.
    await expect(unlocker.unlock({ ...target, id: 'SER-OTHER' }, Buffer.from(pin))).rejects.toMatchObject({
      code: 'DRIVE_NOT_FOUND',
    });
  });

  it('a refusal remembered under the old serial id still stops the key; a new one is kept under the WWN', async () => {
    const pin = randomBytes(32);
    const dir = tempDir();
    const refused = new RefusedKeyFile({ dir });
    const device = await lockedDrive('SER-WWN-2', pin);
    const wrong = Buffer.from('a wrong key from before');
    // An older agent (serial identity) spent a try on `wrong` and remembered it by serial.
    await refused.remember('SER-WWN-2', 'Admin1', 'none', wrong);
    const drive = await OpalDrive.open(device, { identify: withWwn, refusedKeys: refused });
    try {
      expect(drive.identity()).toBe(WWN);
      await expect(drive.unlock(Buffer.from(wrong))).rejects.toMatchObject({ code: 'TCG_PIN_KNOWN_WRONG' });
      const other = Buffer.from('another wrong key');
      await expect(drive.unlock(other)).rejects.toMatchObject({ code: 'TCG_NOT_AUTHORIZED' });
      expect(await refused.isRefused(WWN, 'Admin1', 'none', other)).toBe(true);
      // forget-refusals clears both forms.
      expect(await drive.forgetRefusedPins()).toBe(2);
      expect(await refused.isRefused('SER-WWN-2', 'Admin1', 'none', wrong)).toBe(false);
      await drive.unlock(pin);
    } finally {
      await drive.close();
    }
  });
});

describe('enrollment by identity', () => {
  const keys = (): KeySource & { names: string[] } => {
    const names: string[] = [];
    return {
      names,
      fetch: async () => new Map(),
      findByName: async () => [],
      findByGroup: async () => [],
      createKey: async (name: string) => {
        names.push(name);
        return { uid: `uid-${names.length}`, key: randomBytes(32) };
      },
    };
  };
  const fakeDrive = (id: string, aliases: string[]): EnrollDrive => ({
    identity: () => id,
    aliases: () => aliases,
    isFactoryFresh: async () => true,
    takeOwnership: async () => undefined,
    activateLockingSp: async () => undefined,
    enableGlobalRangeLocking: async () => undefined,
    close: async () => undefined,
  });

  it('records and names a drive with a WWN by it, one without by its serial; an old record is the same drive', async () => {
    const state = new StateStore({ dir: tempDir() });
    await state.load();
    const source = keys();
    const options = {
      applianceId: 'nas1',
      provider: 'default',
      keys: source,
      state,
      clock: new FakeClock(),
      newJobId: () => `enroll-${randomBytes(4).toString('hex')}`,
    };
    const open = (d: EnrollDrive) => ({ open: async () => d });
    expect(await enrollOpalDrive('/dev/sdq', open(fakeDrive(WWN, ['Z1'])), options)).toMatchObject({
      id: WWN,
      keyName: `kmip-agent/nas1/${WWN}`,
    });
    expect(await enrollOpalDrive('emu:/x', open(fakeDrive('EMU-1', [])), options)).toMatchObject({ id: 'EMU-1' });
    // A drive enrolled by serial before WWN came first is not enrolled twice.
    await state.update((s) => {
      s.drives.push({ ...s.drives[1]!, id: 'Z2', device: '/dev/sdr', key: { ...s.drives[1]!.key, uid: 'old' } });
    });
    await expect(
      enrollOpalDrive('/dev/sdr', open(fakeDrive('naa.5000c500ffff0002', ['Z2'])), options),
    ).rejects.toMatchObject({ code: 'DRIVE_ALREADY_ENROLLED' });
    await expect(enrollOpalDrive('/dev/sdz', open(fakeDrive('', [])), options)).rejects.toMatchObject({
      code: 'DRIVE_NO_IDENTITY',
    });
    expect(source.names).toEqual([`kmip-agent/nas1/${WWN}`, 'kmip-agent/nas1/EMU-1']);
  });
});
