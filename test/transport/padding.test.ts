/**
 * Every IF-SEND / IF-RECV moves whole 512-byte blocks, on SCSI, ATA and NVMe alike (as the kernel
 * and other hosts send them; libata rounds SECURITY PROTOCOL lengths up to blocks). Checked through
 * the recording ioctl seam: the command blocks' lengths, the data buffers and their zero padding.
 */
import { describe, expect, it } from 'vitest';
import { addonModule } from '../../src/native/addon.js';
import type { KmipAgentError } from '../../src/errors.js';

interface Call {
  name: string;
  struct: Buffer;
  command: Buffer;
  data: Buffer;
}
interface PassthroughNative {
  scsiSecurityCdb(toDevice: boolean, protocol: number, comId: number, length: number): Buffer;
  ataTrustedCdb(toDevice: boolean, protocol: number, comId: number, length: number): Buffer;
  scripted(
    kind: string,
    answers: { ret: number; dataOut?: Buffer }[],
    op: string,
    params: Record<string, unknown>,
  ): { result?: Buffer | string | null; error?: KmipAgentError; calls: Call[] };
}

const native = addonModule<PassthroughNative>('passthrough');
type Kind = 'scsi' | 'ata' | 'nvme';
const KINDS: Kind[] = ['scsi', 'ata', 'nvme'];

// struct nvme_passthru_cmd: data_len at 36, cdw10 at 40, cdw11 (transfer length) at 44.
const NVME_DATA_LEN = 36;
const NVME_CDW11 = 44;

/** The transfer length a recorded command asked for, read from its own command block. */
function transferLength(kind: Kind, call: Call): number {
  if (kind === 'scsi') return call.command.readUInt32BE(6);
  if (kind === 'ata') return (call.command[6] | (call.command[8] << 8)) * 512;
  expect(call.struct.readUInt32LE(NVME_DATA_LEN)).toBe(call.struct.readUInt32LE(NVME_CDW11));
  return call.struct.readUInt32LE(NVME_CDW11);
}

describe('IF-SEND pads the ComPacket to whole 512-byte blocks on every transport', () => {
  it.each(KINDS)('%s: a 100-byte ComPacket goes out as 512 bytes, zero after the packet', (kind) => {
    const packet = Buffer.alloc(100, 0x11);
    const { error, calls } = native.scripted(kind, [{ ret: 0 }], 'send', { protocol: 1, comId: 0x7fe, data: packet });
    expect(error).toBeUndefined();
    expect(calls).toHaveLength(1);
    expect(transferLength(kind, calls[0])).toBe(512);
    expect(calls[0].data.length).toBe(512);
    expect(calls[0].data.subarray(0, 100)).toEqual(packet);
    expect(calls[0].data.subarray(100).every((b) => b === 0)).toBe(true);
  });

  it.each(KINDS)('%s: 513 bytes become two blocks; a whole block is sent as it is', (kind) => {
    const odd = native.scripted(kind, [{ ret: 0 }], 'send', { protocol: 1, comId: 1, data: Buffer.alloc(513, 7) });
    expect(transferLength(kind, odd.calls[0])).toBe(1024);
    expect(odd.calls[0].data.subarray(513).every((b) => b === 0)).toBe(true);
    const whole = Buffer.alloc(1024, 0x5a);
    const exact = native.scripted(kind, [{ ret: 0 }], 'send', { protocol: 1, comId: 1, data: whole });
    expect(transferLength(kind, exact.calls[0])).toBe(1024);
    expect(exact.calls[0].data).toEqual(whole);
  });

  it('the SCSI and ATA command blocks are the ones the builders make for the padded length', () => {
    const data = Buffer.alloc(60, 1);
    const scsi = native.scripted('scsi', [{ ret: 0 }], 'send', { protocol: 1, comId: 0x1004, data });
    expect(scsi.calls[0].command).toEqual(native.scsiSecurityCdb(true, 1, 0x1004, 512));
    const ata = native.scripted('ata', [{ ret: 0 }], 'send', { protocol: 1, comId: 0x1004, data });
    expect(ata.calls[0].command).toEqual(native.ataTrustedCdb(true, 1, 0x1004, 512));
  });
});

describe('IF-RECV asks for whole 512-byte blocks on every transport', () => {
  it.each(KINDS)('%s: asked for 100 bytes, transfers 512 and returns the 100 asked for', (kind) => {
    const answer = Buffer.alloc(512, 0);
    answer.fill(0x42, 0, 100);
    answer.fill(0x99, 100); // what the drive put in the padding is not handed back
    const { result, calls } = native.scripted(kind, [{ ret: 0, dataOut: answer }], 'recv', {
      protocol: 1,
      comId: 1,
      length: 100,
    });
    expect(transferLength(kind, calls[0])).toBe(512);
    expect(result).toEqual(Buffer.alloc(100, 0x42));
  });

  it.each(KINDS)('%s: a MinTransfer-sized read of 3000 bytes transfers 3072', (kind) => {
    const { result, calls } = native.scripted(kind, [{ ret: 0 }], 'recv', { protocol: 1, comId: 1, length: 3000 });
    expect(transferLength(kind, calls[0])).toBe(3072);
    expect((result as Buffer).length).toBe(3000);
  });
});
