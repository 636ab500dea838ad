/**
 * ComPacket / Packet / SubPacket framing, TCG Storage Architecture Core Spec 2.01, 3.2.3:
 * ComPacket header 20 bytes (3.2.3.2, Table 17), Packet header 24 bytes (3.2.3.3, Table 18),
 * SubPacket header 12 bytes (3.2.3.4, Table 20) with the payload padded to a 4-byte multiple and the
 * padding not counted in the SubPacket Length (3.2.3.4.1).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { tcgNative } from '../../src/drives/backend.js';
import { codeOf } from './support.js';

const tcg = tcgNative();

describe('building', () => {
  it('lays out the three headers with lengths and 4-byte SubPacket padding', () => {
    const payload = Buffer.from('f8a800000000000000ff', 'hex'); // 10 bytes -> padded to 12
    const bytes = tcg.buildComPacket({ comId: 0x07fe, tperSession: 0x1001, hostSession: 0x69, seqNumber: 3, payload });
    const expected =
      // ComPacket: reserved, ComID 07FE, extension 0, OutstandingData 0, MinTransfer 0, Length 48
      '00000000' +
      '07fe' +
      '0000' +
      '00000000' +
      '00000000' +
      '00000030' +
      // Packet: TSN, HSN, SeqNumber, reserved, AckType, Acknowledgement, Length 24
      '00001001' +
      '00000069' +
      '00000003' +
      '0000' +
      '0000' +
      '00000000' +
      '00000018' +
      // SubPacket: reserved[6], Kind 0 (data), Length 10, payload, 2 padding bytes
      '000000000000' +
      '0000' +
      '0000000a' +
      payload.toString('hex') +
      '0000';
    expect(bytes.toString('hex')).toBe(expected);
    expect(bytes.length).toBe(20 + 24 + 12 + 12);
  });

  it('pads the transfer (outside ComPacket.Length) when asked, e.g. to 512-byte blocks', () => {
    const bytes = tcg.buildComPacket({ comId: 0x1004, payload: Buffer.from([0xfa]), padTo: 512 });
    expect(bytes.length).toBe(512);
    expect(bytes.readUInt32BE(16)).toBe(24 + 12 + 4);
    expect(tcg.parseComPacket(bytes).packets[0].subpackets[0].payload).toEqual(Buffer.from([0xfa]));
  });

  it('an empty ComPacket (no Packet) carries OutstandingData / MinTransfer only', () => {
    const bytes = tcg.buildComPacket({ comId: 0x1004, outstandingData: 4000, minTransfer: 4096 });
    expect(bytes.toString('hex')).toBe('00000000' + '1004' + '0000' + '00000fa0' + '00001000' + '00000000');
  });
});

describe('parsing', () => {
  it('round-trips headers and payloads and ignores transfer padding', () => {
    fc.assert(
      fc.property(
        fc.record({
          comId: fc.integer({ min: 1, max: 0xffff }),
          tperSession: fc.nat(),
          hostSession: fc.nat(),
          seqNumber: fc.nat(),
          payload: fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)),
          padTo: fc.constantFrom(0, 4, 512),
        }),
        (options) => {
          const parsed = tcg.parseComPacket(tcg.buildComPacket(options));
          expect(parsed.comId).toBe(options.comId);
          expect(parsed.packets).toHaveLength(1);
          expect(parsed.packets[0]).toMatchObject({
            tperSession: options.tperSession,
            hostSession: options.hostSession,
            seqNumber: options.seqNumber,
          });
          expect(parsed.packets[0].subpackets[0].payload).toEqual(options.payload);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('reads OutstandingData and MinTransfer of a "not yet / transfer more" answer (3.3.10.3)', () => {
    const parsed = tcg.parseComPacket(tcg.buildComPacket({ comId: 0x1004, outstandingData: 1, minTransfer: 0 }));
    expect(parsed).toMatchObject({ outstandingData: 1, minTransfer: 0, packets: [] });
  });
});

describe('malformed ComPackets give TCG_MALFORMED_COMPACKET', () => {
  const good = (): Buffer =>
    tcg.buildComPacket({ comId: 0x1004, tperSession: 1, hostSession: 2, payload: Buffer.alloc(8, 1) });

  it('truncated header', () => {
    expect(codeOf(() => tcg.parseComPacket(Buffer.alloc(19)))).toBe('TCG_MALFORMED_COMPACKET');
  });
  it('truncated body', () => {
    const b = good();
    expect(codeOf(() => tcg.parseComPacket(b.subarray(0, b.length - 4)))).toBe('TCG_MALFORMED_COMPACKET');
  });
  it('ComPacket Length that lies', () => {
    const b = good();
    b.writeUInt32BE(0x7fffffff, 16);
    expect(codeOf(() => tcg.parseComPacket(b))).toBe('TCG_MALFORMED_COMPACKET');
  });
  it('Packet Length beyond the ComPacket', () => {
    const b = good();
    b.writeUInt32BE(1000, 20 + 20);
    expect(codeOf(() => tcg.parseComPacket(b))).toBe('TCG_MALFORMED_COMPACKET');
  });
  it('SubPacket Length beyond the Packet', () => {
    const b = good();
    b.writeUInt32BE(1000, 20 + 24 + 8);
    expect(codeOf(() => tcg.parseComPacket(b))).toBe('TCG_MALFORMED_COMPACKET');
  });
  it('non-zero bytes too short for a Packet header', () => {
    const b = Buffer.alloc(20 + 8, 0);
    b.writeUInt32BE(8, 16);
    b[25] = 1;
    expect(codeOf(() => tcg.parseComPacket(b))).toBe('TCG_MALFORMED_COMPACKET');
  });
  it('random bytes never crash the parser', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 120 }), (bytes) => {
        const code = codeOf(() => tcg.parseComPacket(Buffer.from(bytes)));
        return code === undefined || code === 'TCG_MALFORMED_COMPACKET';
      }),
      { numRuns: 400 },
    );
  });
});
