/**
 * TCG pass-through transports: command blocks byte for byte (SPC-4 SECURITY PROTOCOL IN/OUT,
 * SAT ATA PASS-THROUGH(16) carrying ACS TRUSTED RECEIVE/SEND, NVMe Security Send/Receive), sense
 * parsing, and the transports driven through the recording ioctl seam. On this machine's loop
 * devices the real path must report "not supported".
 */
import { describe, expect, it } from 'vitest';
import { useScratchLoopDevice } from '../support/loop.js';
import { addonModule } from '../../src/native/addon.js';
import { KmipAgentError } from '../../src/errors.js';

interface Call {
  name: string;
  struct: Buffer;
  command: Buffer;
  data: Buffer;
}
interface Answer {
  ret: number;
  structOut?: Buffer;
  structOutOffset?: number;
  dataOut?: Buffer;
  senseOut?: Buffer;
}
interface PassthroughNative {
  scsiSecurityCdb(toDevice: boolean, protocol: number, comId: number, length: number): Buffer;
  ataTrustedCdb(toDevice: boolean, protocol: number, comId: number, length: number): Buffer;
  nvmeSecurityCommand(toDevice: boolean, protocol: number, comId: number, length: number): Buffer;
  parseSense(sense: Buffer): {
    valid: boolean;
    key: number;
    asc: number;
    ascq: number;
    description: string;
    unsupported: boolean;
  };
  scripted(
    kind: string,
    answers: Answer[],
    op: string,
    params: Record<string, unknown>,
  ): { result?: Buffer | string | null; error?: KmipAgentError; calls: Call[] };
  probe(device: string): Promise<{ kind: string; serial: string }>;
  ifRecv(device: string, protocol: number, comId: number, length: number): Promise<Buffer>;
}

const native = addonModule<PassthroughNative>('passthrough');
const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');

// sg_io_hdr_t on x86_64: status, masked_status, msg_status, sb_len_wr at 64..67, host/driver status at 68..71.
const SG_STATUS_OFFSET = 64;
const checkCondition = (senseLength: number) => Buffer.from([0x02, 0x01, 0x00, senseLength, 0, 0, 0x08, 0]);
const illegalRequestInvalidOpcode = hex('70 00 05 00 00 00 00 0a 00 00 00 00 20 00');

describe('command blocks', () => {
  it('SCSI SECURITY PROTOCOL IN (A2h): protocol, ComID big-endian, INC_512=0, allocation length (SPC-4)', () => {
    expect(native.scsiSecurityCdb(false, 0x01, 0x0001, 2048)).toEqual(hex('a2 01 0001 00 00 00000800 00 00'));
  });

  it('SCSI SECURITY PROTOCOL OUT (B5h): transfer length in bytes', () => {
    expect(native.scsiSecurityCdb(true, 0x01, 0x07fe, 512)).toEqual(hex('b5 01 07fe 00 00 00000200 00 00'));
  });

  it('ATA TRUSTED RECEIVE (5Ch) in ATA PASS-THROUGH(16): PIO data-in, length in blocks, ComID in LBA 23:8 (SAT, ACS)', () => {
    expect(native.ataTrustedCdb(false, 0x01, 0x07fe, 1024)).toEqual(
      hex('85 08 0e 00 01 00 02 00 00 00 fe 00 07 00 5c 00'),
    );
  });

  it('ATA TRUSTED SEND (5Eh): PIO data-out, T_DIR to device', () => {
    expect(native.ataTrustedCdb(true, 0x01, 0x1000, 512 * 0x1ff)).toEqual(
      hex('85 0a 06 00 01 00 ff 00 01 00 00 00 10 00 5e 00'),
    );
  });

  it('ATA lengths must be whole 512-byte blocks', () => {
    expect(() => native.ataTrustedCdb(false, 1, 1, 100)).toThrow(
      expect.objectContaining({ code: 'TRANSPORT_INVALID_ARGUMENT' }),
    );
    expect(() => native.ataTrustedCdb(false, 1, 1, 512 * 0x10000)).toThrow(
      expect.objectContaining({ code: 'TRANSPORT_INVALID_ARGUMENT' }),
    );
  });

  it('NVMe Security Receive (82h): CDW10 = SECP<<24 | SPSP<<8, CDW11 = allocation length (NVMe base spec)', () => {
    const cmd = native.nvmeSecurityCommand(false, 0x01, 0x0001, 2048);
    expect(cmd.length).toBe(72); // struct nvme_passthru_cmd
    expect(cmd[0]).toBe(0x82);
    expect(cmd.readUInt32LE(4)).toBe(0); // nsid
    expect(cmd.readUInt32LE(36)).toBe(2048); // data_len
    expect(cmd.readUInt32LE(40)).toBe(0x01000100); // cdw10
    expect(cmd.readUInt32LE(44)).toBe(2048); // cdw11
    expect(native.nvmeSecurityCommand(true, 0x02, 0x0004, 512)[0]).toBe(0x81);
    expect(native.nvmeSecurityCommand(true, 0x02, 0x0004, 512).readUInt32LE(40)).toBe(0x02000400);
  });
});

describe('sense data', () => {
  it('fixed format ILLEGAL REQUEST / invalid opcode means the device has no security protocol', () => {
    expect(native.parseSense(illegalRequestInvalidOpcode)).toMatchObject({
      valid: true,
      key: 5,
      asc: 0x20,
      ascq: 0,
      unsupported: true,
      description: expect.stringContaining('ILLEGAL REQUEST'),
    });
  });

  it('descriptor format, invalid field in CDB', () => {
    expect(native.parseSense(hex('72 05 24 00 00 00 00 00'))).toMatchObject({
      valid: true,
      asc: 0x24,
      unsupported: true,
    });
  });

  it('other keys are failures, not "unsupported"; garbage is not valid sense', () => {
    expect(native.parseSense(hex('72 0b 00 00 00 00 00 00'))).toMatchObject({
      valid: true,
      key: 0x0b,
      unsupported: false,
    });
    expect(native.parseSense(hex('00'))).toMatchObject({ valid: false });
  });
});

describe('device detection through the seam', () => {
  it('NVMe when NVME_IOCTL_ID answers', () => {
    const { result, calls } = native.scripted('detect', [{ ret: 1 }], 'detect', {});
    expect(result).toBe('nvme');
    expect(calls.map((c) => c.name)).toEqual(['NVME_IOCTL_ID']);
  });

  it('ATA behind SAT when the ATA Information VPD page (89h) exists', () => {
    const page = Buffer.alloc(255);
    page[1] = 0x89;
    const { result, calls } = native.scripted(
      'detect',
      [{ ret: -25 }, { ret: 0 }, { ret: 0, dataOut: page }],
      'detect',
      {},
    );
    expect(result).toBe('ata');
    expect(calls[2].name).toBe('SG_IO');
    expect(calls[2].command).toEqual(hex('12 01 89 00 ff 00')); // INQUIRY EVPD page 89h
  });

  it('SCSI when SG_IO works but there is no ATA Information page', () => {
    const { result } = native.scripted(
      'detect',
      [
        { ret: -25 },
        { ret: 0 },
        {
          ret: 0,
          structOut: checkCondition(14),
          structOutOffset: SG_STATUS_OFFSET,
          senseOut: hex('70 00 05 00 00 00 00 0a 00 00 00 00 24 00'),
        },
      ],
      'detect',
      {},
    );
    expect(result).toBe('scsi');
  });

  it('neither (a loop device): TRANSPORT_NOT_SUPPORTED', () => {
    const { error } = native.scripted('detect', [{ ret: -25 }, { ret: -22 }], 'detect', {});
    expect(error?.code).toBe('TRANSPORT_NOT_SUPPORTED');
    expect(error?.message).toMatch(/not a SCSI, ATA or NVMe disk/);
  });
});

describe('transports through the seam', () => {
  it('SCSI IF-RECV sends SECURITY PROTOCOL IN and returns the data', () => {
    const level0 = Buffer.alloc(2048, 0x5a);
    const { result, calls } = native.scripted('scsi', [{ ret: 0, dataOut: level0 }], 'recv', {
      protocol: 1,
      comId: 1,
      length: 2048,
    });
    expect(result).toEqual(level0);
    expect(calls[0].name).toBe('SG_IO');
    expect(calls[0].command).toEqual(native.scsiSecurityCdb(false, 1, 1, 2048));
    expect(calls[0].struct.readInt32LE(4)).toBe(-3); // SG_DXFER_FROM_DEV
  });

  it('ATA IF-SEND pads the ComPacket to whole blocks', () => {
    const packet = Buffer.alloc(100, 0x11);
    const { error, calls } = native.scripted('ata', [{ ret: 0 }], 'send', { protocol: 1, comId: 0x7fe, data: packet });
    expect(error).toBeUndefined();
    expect(calls[0].command).toEqual(native.ataTrustedCdb(true, 1, 0x7fe, 512));
    expect(calls[0].data.length).toBe(512);
    expect(calls[0].data.subarray(0, 100)).toEqual(packet);
    expect(calls[0].data.subarray(100).every((b) => b === 0)).toBe(true);
    expect(calls[0].struct.readInt32LE(4)).toBe(-2); // SG_DXFER_TO_DEV
  });

  it('NVMe IF-RECV uses the admin command with the buffer', () => {
    const data = Buffer.alloc(512, 0x33);
    const { result, calls } = native.scripted('nvme', [{ ret: 0, dataOut: data }], 'recv', {
      protocol: 1,
      comId: 1,
      length: 512,
    });
    expect(result).toEqual(data);
    expect(calls[0].name).toBe('NVME_IOCTL_ADMIN_CMD');
    expect(calls[0].struct[0]).toBe(0x82);
  });

  it('a drive that refuses the security protocol: TRANSPORT_NOT_SUPPORTED with the sense decoded', () => {
    const { error } = native.scripted(
      'scsi',
      [
        {
          ret: 0,
          structOut: checkCondition(14),
          structOutOffset: SG_STATUS_OFFSET,
          senseOut: illegalRequestInvalidOpcode,
        },
      ],
      'recv',
      { protocol: 1, comId: 1, length: 512 },
    );
    expect(error?.code).toBe('TRANSPORT_NOT_SUPPORTED');
    expect(error?.message).toMatch(/invalid command operation code/);
  });

  it('an NVMe controller without security commands (Invalid Opcode) and other failures are typed', () => {
    expect(native.scripted('nvme', [{ ret: 0x01 }], 'recv', { protocol: 1, comId: 1, length: 512 }).error?.code).toBe(
      'TRANSPORT_NOT_SUPPORTED',
    );
    expect(native.scripted('nvme', [{ ret: 0x4004 }], 'recv', { protocol: 1, comId: 1, length: 512 }).error?.code).toBe(
      'TRANSPORT_COMMAND_FAILED',
    );
    expect(native.scripted('scsi', [{ ret: -5 }], 'recv', { protocol: 1, comId: 1, length: 512 }).error?.code).toBe(
      'TRANSPORT_IO',
    );
    expect(native.scripted('scsi', [{ ret: -13 }], 'recv', { protocol: 1, comId: 1, length: 512 }).error?.code).toBe(
      'TRANSPORT_PERMISSION_DENIED',
    );
  });
});

describe('on this machine: devices without pass-through say so', () => {
  const scratch = useScratchLoopDevice('transport');

  it('a regular file is not a device node', async () => {
    await expect(native.probe(scratch.image)).rejects.toMatchObject({ code: 'TRANSPORT_NOT_SUPPORTED' });
  });

  it('a missing path is named', async () => {
    await expect(native.probe('/dev/kmip-agent-no-such-disk')).rejects.toMatchObject({
      code: 'TRANSPORT_DEVICE_NOT_FOUND',
    });
  });

  it('a loop device: TRANSPORT_NOT_SUPPORTED from the real ioctls', async (ctx) => {
    if (!scratch.loop) {
      ctx.skip(scratch.unavailable);
      return;
    }
    await expect(native.probe(scratch.loop)).rejects.toMatchObject({
      code: 'TRANSPORT_NOT_SUPPORTED',
      message: expect.stringContaining(scratch.loop),
    });
    await expect(native.ifRecv(scratch.loop, 1, 1, 512)).rejects.toMatchObject({ code: 'TRANSPORT_NOT_SUPPORTED' });
  });
});
