/**
 * The host TCG stack over SCSI SECURITY PROTOCOL, ATA TRUSTED (SAT) and NVMe Security commands:
 * every Opal flow runs through the real pass-through transport and its command blocks, answered by
 * a test fixture device (native/test/device_fixture.h, test addon only) that decodes them from the specs and
 * hands the TCG payload to an emulated drive. Backend choice picks pass-through for such a device
 * when the kernel has no sed-opal, and the kernel backend uses it as fallback when it does.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { defaultProbes, selectBackend, type BackendProbes } from '../../src/drives/backend.js';
import { KernelOpalBackend } from '../../src/drives/kernel-backend.js';
import { KernelOpalDrive } from '../../src/drives/kernel-opal.js';
import { OpalDrive } from '../../src/drives/opal.js';
import { ADMIN1, SID } from '../../src/drives/types.js';
import { recordingKernelOpal, testSeams, type ScriptedAnswer } from '../support/addon.js';
import { createImage, emulatorNative, type EmulatedImage } from './emulated-support.js';

const emu = emulatorNative();
const SID_PIN = Buffer.from('sid pin over pass-through');
const ADMIN_PIN = Buffer.from('admin1 pin over pass-through');
const RANGE1 = { range: 1, start: 2048, length: 4096, readLockEnabled: true, writeLockEnabled: true };

type Kind = 'scsi' | 'ata' | 'nvme';
const openFixture = (kind: Kind, path: string) => testSeams().openPassthroughFixture(kind, path);
type FixtureBackend = ReturnType<typeof openFixture>;

const COMMANDS: Record<Kind, [string, string]> = {
  scsi: ['SECURITY PROTOCOL IN', 'SECURITY PROTOCOL OUT'],
  ata: ['ATA TRUSTED RECEIVE', 'ATA TRUSTED SEND'],
  nvme: ['NVMe Security Receive', 'NVMe Security Send'],
};

/** The kernel seam answering GET_STATUS with `answer`, each time it is asked. */
function kernelAnswering(answer: ScriptedAnswer): BackendProbes['kernel'] {
  return (device) => new KernelOpalDrive(device, recordingKernelOpal(Array.from({ length: 16 }, () => answer)).handle);
}

describe('Opal flows over SCSI / ATA / NVMe pass-through (fixture device)', () => {
  let image: EmulatedImage;
  beforeEach(async () => {
    image = await createImage(emu);
  });
  afterEach(() => image.cleanup());

  it.each<Kind>(['scsi', 'ata', 'nvme'])(
    '%s: chosen when the kernel has no sed-opal; full life cycle',
    async (kind) => {
      let fixture: FixtureBackend | undefined;
      const probes: BackendProbes = {
        ...defaultProbes,
        kernel: kernelAnswering({ ret: -25 }),
        openPassthrough: () => Promise.resolve((fixture = openFixture(kind, image.path))),
      };
      const { choice, backend } = await selectBackend('/dev/fixture', {}, probes);
      expect(choice.backend).toBe('passthrough');
      expect(choice.reason).toContain('SSC Opal2');
      expect(backend.describe()).toBe(`${kind} fixture over emulated ${image.path}`);
      expect(backend.serial()).toBe('EMU-TEST-0001');

      const drive = OpalDrive.fromBackend('/dev/fixture', backend, {}, choice);
      try {
        const msid = await drive.readMsid();
        expect(msid.length).toBeGreaterThan(0);
        await drive.takeOwnership(SID_PIN);
        expect((await drive.status({ probeSid: true })).sidIsMsid).toBe(false);
        await drive.activate(SID_PIN);
        await drive.setPin({ authority: ADMIN1, pin: SID_PIN, newPin: ADMIN_PIN });
        await drive.setupRange(ADMIN_PIN, RANGE1);
        await drive.lock(ADMIN_PIN, { range: 1 });
        expect((await drive.ranges(ADMIN_PIN)).find((r) => r.range === 1)).toMatchObject({
          start: 2048,
          length: 4096,
          readLocked: true,
          writeLocked: true,
        });
        await drive.unlock(ADMIN_PIN, { range: 1 });
        expect((await drive.ranges(ADMIN_PIN)).find((r) => r.range === 1)).toMatchObject({
          readLocked: false,
          writeLocked: false,
        });
        await drive.verify(ADMIN_PIN);
        await expect(drive.verify(Buffer.from('wrong'))).rejects.toMatchObject({ code: 'TCG_NOT_AUTHORIZED' });
        // Reading tries authenticates, and a successful authentication resets the count.
        expect(await drive.tries(ADMIN1, { authority: ADMIN1, pin: ADMIN_PIN })).toMatchObject({
          tries: 0,
          tryLimit: 5,
        });
        await drive.erase(ADMIN_PIN, { range: 1 });
        await drive.revert(SID_PIN);
        expect((await drive.status({ probeSid: true })).sidIsMsid).toBe(true);

        // Every exchange went through this kind's command blocks, none through another kind's.
        const counts = fixture!.commands();
        const [receive, send] = COMMANDS[kind];
        expect(counts[receive]).toBeGreaterThan(10);
        expect(counts[send]).toBeGreaterThan(10);
        const others = Object.keys(counts).filter((name) => name !== receive && name !== send && name !== 'INQUIRY');
        expect(others).toEqual([]);
        if (kind === 'ata') expect(counts.INQUIRY).toBe(1); // ATA Information VPD page: SAT detection
      } finally {
        await drive.close();
      }
    },
  );

  it('kernel sed-opal supported: kernel backend, pass-through fallback answers what the kernel cannot', async () => {
    const status = Buffer.alloc(8);
    status.writeUInt32LE(0x01, 0);
    const probes: BackendProbes = {
      ...defaultProbes,
      kernel: kernelAnswering({ ret: 0, structOut: status }),
      openPassthrough: () => Promise.resolve(openFixture('nvme', image.path)),
    };
    const { choice, backend } = await selectBackend('/dev/fixture', {}, probes);
    expect(choice.backend).toBe('kernel');
    expect(choice.attempts.map((a) => [a.backend, a.outcome])).toEqual([
      ['kernel', 'chosen'],
      ['passthrough', 'fallback'],
    ]);
    expect(backend).toBeInstanceOf(KernelOpalBackend);
    const drive = OpalDrive.fromBackend('/dev/fixture-kernel', backend, {}, choice);
    try {
      // The serial comes from the fallback (sedutil PINs need it), MSID and tries too.
      expect(drive.serial()).toBe('EMU-TEST-0001');
      const msid = await drive.readMsid();
      expect(msid.length).toBeGreaterThan(0);
      expect(await drive.tries(SID, { authority: SID, pin: msid })).toMatchObject({ tries: 0 });
    } finally {
      await drive.close();
    }
  });
});
