/**
 * The host session layer against a scripted TPer (a TEST FIXTURE: canned IF-RECV answers built
 * with the codec, see native/transport/scripted.h) for what a well-behaved emulated drive never
 * sends: wrong session numbers, truncated ComPackets, bad tokens, "not ready" polls, MinTransfer
 * growth, refused PINs. Core Spec 2.01: 3.2.4 (methods), 3.3.7 (sessions), 3.3.10 (IF-RECV), 5.2.
 */
import { describe, expect, it } from 'vitest';
import { OpalDrive } from '../../src/drives/opal.js';
import { OpalError } from '../../src/drives/errors.js';
import { KmipAgentError } from '../../src/errors.js';
import { testSeams } from '../support/addon.js';
import {
  closed,
  COM_ID,
  discovery,
  EOD,
  FIRST_HSN,
  getResult,
  packet,
  propertiesOk,
  startRefused,
  syncSession,
  tcg,
  TSN,
} from '../support/scripted-tper.js';

const seams = testSeams();
const notReady = tcg.buildComPacket({ comId: COM_ID, outstandingData: 1, minTransfer: 0 });

function drive(responses: Buffer[]): OpalDrive {
  return OpalDrive.fromBackend('scripted:test', seams.openScriptedDrive(discovery, responses));
}

describe('sessions against a scripted TPer', () => {
  it('reads MSID: Properties, StartSession -> SyncSession, Get, CloseSession', async () => {
    const d = drive([
      propertiesOk,
      syncSession(FIRST_HSN),
      getResult(FIRST_HSN, [{ name: 3, value: Buffer.from('MSID-1234') }]),
      closed(FIRST_HSN),
    ]);
    expect(await d.readMsid()).toEqual(Buffer.from('MSID-1234'));
  });

  it('polls while the TPer says "not ready" (OutstandingData 1, MinTransfer 0)', async () => {
    const d = drive([
      notReady,
      notReady,
      propertiesOk,
      notReady,
      syncSession(FIRST_HSN),
      getResult(FIRST_HSN, [{ name: 3, value: Buffer.from('M') }]),
      closed(FIRST_HSN),
    ]);
    expect(await d.readMsid()).toEqual(Buffer.from('M'));
  });

  it('re-reads with MinTransfer bytes when the response does not fit the first transfer', async () => {
    const big = Buffer.alloc(5000, 0x5a);
    const response = getResult(FIRST_HSN, [{ name: 3, value: big }]);
    const tooSmall = tcg.buildComPacket({
      comId: COM_ID,
      outstandingData: response.length,
      minTransfer: response.length,
    });
    const d = drive([propertiesOk, syncSession(FIRST_HSN), tooSmall, response, closed(FIRST_HSN)]);
    expect(await d.readMsid()).toEqual(big);
  });

  it('gives up with TCG_TIMEOUT when the TPer never answers (bounded polling)', async () => {
    const d = drive([]);
    await expect(d.readMsid()).rejects.toMatchObject({ code: 'TCG_TIMEOUT' });
  });

  it('SyncSession for another host session: TCG_SESSION_MISMATCH', async () => {
    const d = drive([propertiesOk, syncSession(FIRST_HSN + 7)]);
    await expect(d.readMsid()).rejects.toMatchObject({ code: 'TCG_SESSION_MISMATCH' });
  });

  it('a method response addressed to another session: TCG_SESSION_MISMATCH', async () => {
    const d = drive([propertiesOk, syncSession(FIRST_HSN), packet(TSN + 1, FIRST_HSN, [[[]], EOD, [0, 0, 0]])]);
    await expect(d.readMsid()).rejects.toMatchObject({ code: 'TCG_SESSION_MISMATCH' });
  });

  it('a truncated ComPacket: TCG_MALFORMED_COMPACKET', async () => {
    const d = drive([propertiesOk, syncSession(FIRST_HSN).subarray(0, 40)]);
    await expect(d.readMsid()).rejects.toMatchObject({ code: 'TCG_MALFORMED_COMPACKET' });
  });

  it('bad tokens in the payload: TCG_MALFORMED_TOKENS', async () => {
    const bad = tcg.buildComPacket({ comId: COM_ID, payload: Buffer.from('f8f0e4', 'hex') });
    const d = drive([bad]);
    await expect(d.readMsid()).rejects.toMatchObject({ code: 'TCG_MALFORMED_TOKENS' });
  });

  it('an unbalanced list: TCG_MALFORMED_TOKENS', async () => {
    const bad = tcg.buildComPacket({ comId: COM_ID, payload: Buffer.from('f8f0f0f1f9f0000000f1', 'hex') });
    const d = drive([bad]);
    await expect(d.readMsid()).rejects.toMatchObject({ code: 'TCG_MALFORMED_TOKENS' });
  });

  it('a response without a status list: TCG_MALFORMED_RESPONSE', async () => {
    const d = drive([packet(0, 0, [[], EOD])]);
    await expect(d.readMsid()).rejects.toMatchObject({ code: 'TCG_MALFORMED_RESPONSE' });
  });

  it('maps method status codes to typed errors with the numeric status', async () => {
    const d = drive([propertiesOk, startRefused(0x06)]);
    const error = await d.readMsid().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OpalError);
    expect(error).toBeInstanceOf(KmipAgentError);
    expect(error).toMatchObject({ code: 'TCG_SP_FROZEN', status: 6, statusName: 'SP_FROZEN' });
    expect((error as OpalError).toJSON()).toEqual({
      code: 'TCG_SP_FROZEN',
      message: expect.stringMatching(/^read MSID: StartSession: /),
      status: 6,
    });
  });

  it('retries StartSession while the SP is busy, then reports TCG_SP_BUSY (bounded)', async () => {
    const ok = drive([
      propertiesOk,
      startRefused(0x03),
      startRefused(0x07),
      syncSession(FIRST_HSN),
      getResult(FIRST_HSN, [{ name: 3, value: Buffer.from('M') }]),
      closed(FIRST_HSN),
    ]);
    expect(await ok.readMsid()).toEqual(Buffer.from('M'));
    const busy = drive([propertiesOk, startRefused(0x03), startRefused(0x03), startRefused(0x03)]);
    await expect(busy.readMsid()).rejects.toMatchObject({ code: 'TCG_SP_BUSY', status: 3, statusName: 'SP_BUSY' });
  });

  it('a refused PIN is never sent again (each failure counts toward lockout)', async () => {
    const d = drive([propertiesOk, startRefused(0x01)]);
    const wrong = Buffer.from('wrong pin');
    await expect(d.unlock(wrong)).rejects.toMatchObject({ code: 'TCG_NOT_AUTHORIZED', status: 1 });
    expect(await d.isKnownWrong({ kind: 'admin', index: 1 }, wrong)).toBe(true);
    await expect(d.unlock(wrong)).rejects.toMatchObject({ code: 'TCG_PIN_KNOWN_WRONG' });
    // Another PIN is still tried (and here meets a locked-out authority).
    const d2 = drive([propertiesOk, startRefused(0x12)]);
    await expect(d2.unlock(Buffer.from('other'))).rejects.toMatchObject({
      code: 'TCG_AUTHORITY_LOCKED_OUT',
      status: 0x12,
    });
    await d.forgetRefusedPins();
    expect(await d.isKnownWrong({ kind: 'admin', index: 1 }, wrong)).toBe(false);
  });

  it('runs calls on one drive one after another', async () => {
    const d = drive([
      propertiesOk,
      syncSession(FIRST_HSN),
      getResult(FIRST_HSN, [{ name: 3, value: Buffer.from('A') }]),
      closed(FIRST_HSN),
      syncSession(FIRST_HSN + 1),
      getResult(FIRST_HSN + 1, [{ name: 3, value: Buffer.from('B') }]),
      closed(FIRST_HSN + 1),
    ]);
    const [a, b] = await Promise.all([d.readMsid(), d.readMsid()]);
    expect([a.toString(), b.toString()]).toEqual(['A', 'B']);
    await d.close();
    await expect(d.readMsid()).rejects.toMatchObject({ code: 'DRIVE_CLOSED' });
  });

  it('refuses range numbers outside the 16 bits of a range UID before touching the drive', async () => {
    const backend = seams.openScriptedDrive(discovery, []);
    const d = OpalDrive.fromBackend('scripted:range', backend);
    await expect(d.unlock(Buffer.from('pin'), { range: 70000 })).rejects.toMatchObject({
      code: 'TCG_INVALID_ARGUMENT',
    });
    expect(backend.sent()).toHaveLength(0);
  });

  it('a missing device and malformed drive specs are typed errors', async () => {
    await expect(OpalDrive.open('/dev/sdz')).rejects.toMatchObject({ code: 'DRIVE_NOT_FOUND' });
    await expect(OpalDrive.open('sdz')).rejects.toMatchObject({ code: 'DRIVE_SPEC_INVALID' });
    await expect(OpalDrive.open('emu:')).rejects.toMatchObject({ code: 'DRIVE_SPEC_INVALID' });
  });

  it('sends the bytes the Core Spec lays out: Properties, StartSession, Get, EndOfSession', async () => {
    const backend = seams.openScriptedDrive(discovery, [
      propertiesOk,
      syncSession(FIRST_HSN),
      getResult(FIRST_HSN, [{ name: 3, value: Buffer.from('M') }]),
      closed(FIRST_HSN),
    ]);
    await OpalDrive.fromBackend('scripted:bytes', backend).readMsid();
    const sent = backend.sent().map((b) => tcg.parseComPacket(b));
    expect(sent).toHaveLength(4);
    const payload = (i: number): string => sent[i].packets[0].subpackets[0].payload.toString('hex');
    for (const p of sent) expect(p.comId).toBe(COM_ID);
    // Session manager calls travel in TSN 0 / HSN 0 (Core 3.3.7.1).
    expect(sent[0].packets[0]).toMatchObject({ tperSession: 0, hostSession: 0 });
    expect(payload(0)).toMatch(/^f8a800000000000000ffa8000000000000ff01f0f200f0/);
    expect(payload(0)).toContain('d0104d6178436f6d5061636b657453697a65'); // "MaxComPacketSize", a medium atom
    expect(payload(0)).toMatch(/f1f3f1f9f0000000f1$/);
    // StartSession(HostSessionID 0x4B42, Admin SP, Write = false) without credentials (5.2.3.1).
    expect(payload(1)).toBe('f8a800000000000000ffa8000000000000ff02f0824b42a8000002050000000100f1f9f0000000f1');
    // C_PIN_MSID.Get(Cellblock startColumn = endColumn = 3 (PIN)) in the new session (5.3.3.6).
    expect(sent[2].packets[0]).toMatchObject({ tperSession: TSN, hostSession: FIRST_HSN });
    expect(payload(2)).toBe('f8a80000000b00008402a80000000600000016f0f0f20303f3f20403f3f1f1f9f0000000f1');
    // CloseSession is a lone EndOfSession token (3.2.4.2).
    expect(payload(3)).toBe('fa');
  });

  it('authenticates at StartSession with HostChallenge (name 0) and HostSigningAuthority (name 3)', async () => {
    const backend = seams.openScriptedDrive(discovery, [
      propertiesOk,
      // Before a numbered range is touched, the status read without a PIN says how many exist.
      syncSession(FIRST_HSN),
      getResult(FIRST_HSN, [{ name: 6, value: 9 }]), // Locking SP life cycle: Manufactured
      closed(FIRST_HSN),
      syncSession(FIRST_HSN + 1),
      getResult(FIRST_HSN + 1, [{ name: 4, value: 8 }]), // LockingInfo MaxRanges
      closed(FIRST_HSN + 1),
      syncSession(FIRST_HSN + 2),
      packet(TSN, FIRST_HSN + 2, [[], EOD, [0, 0, 0]]),
      closed(FIRST_HSN + 2),
    ]);
    await OpalDrive.fromBackend('scripted:auth', backend).unlock(Buffer.from('pin'), { range: 1 });
    const [start, set] = backend
      .sent()
      .slice(7)
      .map((b) => tcg.parseComPacket(b).packets[0].subpackets[0].payload.toString('hex'));
    // StartSession(0x4B44, Locking SP, Write = true, HostChallenge = "pin", HostSigningAuthority = Admin1).
    expect(start).toBe(
      'f8a800000000000000ffa8000000000000ff02f0824b44a8000002050000000201f200a370696ef3f203a80000000900010001f3f1f9f0000000f1',
    );
    // Locking_Range1.Set(Values = [ReadLocked (7) = 0, WriteLocked (8) = 0]) (5.3.3.7).
    expect(set).toBe('f8a80000080200030001a80000000600000017f0f201f0f20700f3f20800f3f1f3f1f9f0000000f1');
  });
});
