/**
 * What the host session layer puts on the wire, as the kernel, other hosts and real drives do:
 * every Packet's SeqNumber is 0, and every IF-SEND is the ComPacket zero-padded to whole 512-byte
 * blocks (the padding lies outside ComPacket.Length). Checked on the bytes a scripted TPer recorded.
 */
import { describe, expect, it } from 'vitest';
import { OpalDrive } from '../../src/drives/opal.js';
import { testSeams } from '../support/addon.js';
import { discovery, EOD, FIRST_HSN, packet, propertiesOk, syncSession, tcg, TSN } from '../support/scripted-tper.js';

const seams = testSeams();

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
