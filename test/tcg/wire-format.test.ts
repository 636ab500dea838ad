/**
 * What the host session layer puts on the wire, as the kernel, other hosts and real drives do:
 * every Packet's SeqNumber is 0, and every IF-SEND is the ComPacket zero-padded to whole 512-byte
 * blocks (the padding lies outside ComPacket.Length). Checked on the bytes a scripted TPer recorded.
 */
import { describe, expect, it } from 'vitest';
import { tcgNative } from '../../src/drives/backend.js';
import { OpalDrive } from '../../src/drives/opal.js';
import { testSeams } from '../support/addon.js';
import { discoveryFixture } from '../support/shared.js';

const tcg = tcgNative();
const seams = testSeams();
const discovery = discoveryFixture('Samsung EVO 860');
const COM_ID = 0x1004;
const FIRST_HSN = 0x4b42;
const TSN = 0x1001;
const SMUID = { uid: '00000000000000ff' };
const EOD = { token: 'EOD' };

function packet(tsn: number, hsn: number, values: unknown[]): Buffer {
  return tcg.buildComPacket({ comId: COM_ID, tperSession: tsn, hostSession: hsn, payload: tcg.encodeTokens(values) });
}
const propertiesOk = packet(0, 0, [
  { token: 'CALL' },
  SMUID,
  { uid: '000000000000ff01' },
  [[{ name: 'MaxComPacketSize', value: 2048 }], { name: 0, value: [] }],
  EOD,
  [0, 0, 0],
]);
const syncSession = (hsn: number): Buffer =>
  packet(0, 0, [{ token: 'CALL' }, SMUID, { uid: '000000000000ff03' }, [hsn, TSN], EOD, [0, 0, 0]]);

describe('IF-SEND ComPackets', () => {
  it('SeqNumber 0 in every Packet and transfers of whole 512-byte blocks, zero past the ComPacket', async () => {
    const backend = seams.openScriptedDrive(discovery, [
      propertiesOk,
      syncSession(FIRST_HSN),
      packet(TSN, FIRST_HSN, [[[{ name: 3, value: Buffer.from('M') }]], EOD, [0, 0, 0]]),
      packet(TSN, FIRST_HSN, [{ token: 'EOS' }]),
      syncSession(FIRST_HSN + 1),
      packet(TSN, FIRST_HSN + 1, [[[{ name: 3, value: Buffer.from('M') }]], EOD, [0, 0, 0]]),
      packet(TSN, FIRST_HSN + 1, [{ token: 'EOS' }]),
    ]);
    const drive = OpalDrive.fromBackend('scripted:wire', backend);
    await drive.readMsid();
    await drive.readMsid();
    const sent = backend.sent();
    expect(sent).toHaveLength(7);
    for (const transfer of sent) {
      expect(transfer.length % 512).toBe(0);
      const length = 20 + transfer.readUInt32BE(16);
      expect(length).toBeLessThan(transfer.length);
      expect(transfer.subarray(length).every((b) => b === 0)).toBe(true);
      const parsed = tcg.parseComPacket(transfer);
      expect(parsed.packets).toHaveLength(1);
      expect(parsed.packets[0].seqNumber).toBe(0);
      // The SeqNumber field itself (Packet header bytes 8..11) is zero.
      expect(transfer.readUInt32BE(20 + 8)).toBe(0);
    }
  });
});
