/**
 * Which command set reaches an ATA disk, and why. Linux libata refuses ATA PASS-THROUGH carrying
 * TRUSTED SEND/RECEIVE unless the kernel was booted with libata.allow_tpm=1, and translates SCSI
 * SECURITY PROTOCOL IN/OUT itself: behind libata the SCSI commands are used unless
 * /sys/module/libata/parameters/allow_tpm reads 1. Detection runs through the recording ioctl seam
 * with a fake /sys tree in a temporary directory; libata names itself in the ATA Information VPD page.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { addonModule } from '../../src/native/addon.js';
import type { KmipAgentError } from '../../src/errors.js';

interface Call {
  name: string;
  command: Buffer;
}
interface PassthroughNative {
  scripted(
    kind: string,
    answers: { ret: number; dataOut?: Buffer }[],
    op: string,
    params: Record<string, unknown>,
  ): { result?: string; reason?: string; error?: KmipAgentError; calls: Call[] };
}

const native = addonModule<PassthroughNative>('passthrough');
const ENOTTY = -25;

/** An ATA Information VPD page (SAT 12.4.2) naming the translation layer in bytes 8..31. */
function ataInformationPage(vendor: string, product: string): Buffer {
  const page = Buffer.alloc(255);
  page[1] = 0x89;
  page.writeUInt16BE(0x238, 2);
  page.write(vendor.padEnd(8), 8, 'latin1');
  page.write(product.padEnd(16), 16, 'latin1');
  page.write('1.00', 32, 'latin1');
  return page;
}

/** detect on a device whose SG_IO works and whose INQUIRY VPD 89h answers `page`. */
function detect(page: Buffer, sysfsRoot: string) {
  return native.scripted('detect', [{ ret: ENOTTY }, { ret: 0 }, { ret: 0, dataOut: page }], 'detect', { sysfsRoot });
}

describe('an ATA disk behind Linux libata', () => {
  let sys: string;
  const allowTpm = (value: string) => {
    const dir = join(sys, 'module', 'libata', 'parameters');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'allow_tpm'), value);
  };
  beforeEach(() => {
    sys = mkdtempSync(join(tmpdir(), 'kmip-agent-sysfs-'));
  });
  afterEach(() => rmSync(sys, { recursive: true, force: true }));

  const libata = ataInformationPage('linux', 'libata');

  it('allow_tpm 0 (the default): SCSI SECURITY PROTOCOL IN/OUT, saying why', () => {
    allowTpm('0\n');
    const { result, reason, calls, error } = detect(libata, sys);
    expect(error).toBeUndefined();
    expect(result).toBe('scsi');
    expect(reason).toMatch(/^ATA disk behind Linux libata: SCSI SECURITY PROTOCOL IN\/OUT/);
    expect(reason).toContain('libata.allow_tpm=1');
    expect(reason).toContain(`${sys}/module/libata/parameters/allow_tpm reads 0`);
    // One INQUIRY of the ATA Information page decided it.
    expect(calls.map((c) => c.name)).toEqual(['NVME_IOCTL_ID', 'SG_GET_VERSION_NUM', 'SG_IO']);
    expect(calls[2].command).toEqual(Buffer.from('120189 00ff00'.replace(/ /g, ''), 'hex'));
  });

  it('allow_tpm 1: ATA PASS-THROUGH with TRUSTED SEND/RECEIVE', () => {
    allowTpm('1\n');
    const { result, reason } = detect(libata, sys);
    expect(result).toBe('ata');
    expect(reason).toMatch(/libata\.allow_tpm=1\): ATA PASS-THROUGH\(16\)$/);
  });

  it('allow_tpm unreadable (no such parameter): SCSI, and the reason says it could not be read', () => {
    const { result, reason } = detect(libata, sys);
    expect(result).toBe('scsi');
    expect(reason).toContain(`${sys}/module/libata/parameters/allow_tpm could not be read`);
  });

  it('another translation layer (a SAS HBA, a USB bridge) keeps ATA PASS-THROUGH; allow_tpm is not consulted', () => {
    allowTpm('0\n');
    const { result, reason } = detect(ataInformationPage('LSI', 'LSI SATL'), sys);
    expect(result).toBe('ata');
    expect(reason).toBe(
      'ATA disk behind a SCSI/ATA translation layer (LSI LSI SATL): ATA PASS-THROUGH(16) with TRUSTED SEND/RECEIVE',
    );
  });

  it('a SCSI disk and an NVMe controller say which commands they get', () => {
    const scsi = native.scripted('detect', [{ ret: ENOTTY }, { ret: 0 }, { ret: 0 }], 'detect', { sysfsRoot: sys });
    expect(scsi.result).toBe('scsi');
    expect(scsi.reason).toBe('SCSI device (no ATA Information VPD page): SECURITY PROTOCOL IN/OUT');
    const nvme = native.scripted('detect', [{ ret: 1 }], 'detect', { sysfsRoot: sys });
    expect(nvme.result).toBe('nvme');
    expect(nvme.reason).toBe('NVMe controller: Security Send/Receive admin commands');
  });
});
