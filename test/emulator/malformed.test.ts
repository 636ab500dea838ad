/**
 * Robustness of the emulated TPer: malformed ComPackets, lying lengths, bad tokens, wrong
 * session numbers, unknown objects and methods get the spec's error responses or a typed error,
 * never a crash; random input never breaks the drive; a writer killed at each named point of a state
 * write (the test addon's crash points) never leaves a torn state file.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CRASH_AT_ENV } from '../../src/agent/crash-hook.js';
import { emulatedDriveInfo, EmulatorError } from '../../src/drives/emulator.js';
import { addonPath } from '../../src/native/addon.js';
import { BASE_COM_ID, getArgs, makeDrive, METHOD, RawTcg, STATUS, tcg, UID, type TcgJs } from './support.js';

let drive: Awaited<ReturnType<typeof makeDrive>>;
let raw: RawTcg;
beforeEach(async () => {
  drive = await makeDrive(4);
  raw = await RawTcg.open(drive.path);
});
afterEach(async () => {
  await raw.close();
  drive.cleanup();
});

const comPacket = (payload: Buffer, tsn = 0, hsn = 0) =>
  tcg().buildComPacket({ comId: BASE_COM_ID, tperSession: tsn, hostSession: hsn, payload });

async function sendExpectingResponse(packet: Buffer): Promise<{ status: number }> {
  await raw.handle.ifSend(1, BASE_COM_ID, packet);
  const reply = tcg().parseComPacket(await raw.handle.ifRecv(1, BASE_COM_ID, 4096));
  return tcg().parseMethodResponse(reply.packets[0]!.subpackets[0]!.payload);
}

/** The drive still works: discovery parses and an Anybody session opens and closes. */
async function stillHealthy(): Promise<void> {
  expect(tcg().parseDiscovery(await raw.handle.ifRecv(1, 1, 512)).opal2?.baseComId).toBe(BASE_COM_ID);
  const s = await raw.startSession(UID.adminSp);
  expect(s.status).toBe(STATUS.success);
  await raw.endSession(s.tsn, s.hsn);
}

describe('framing errors are typed errors', () => {
  it('truncated and lying ComPackets are EMU_MALFORMED_COMPACKET', async () => {
    const good = comPacket(tcg().encodeTokens([1, 2, 3]));
    for (const bad of [
      good.subarray(0, 10),
      good.subarray(0, 30),
      Buffer.concat([good.subarray(0, 16), Buffer.from([0xff, 0xff, 0xff, 0xff]), good.subarray(20)]),
      Buffer.alloc(0),
    ]) {
      const err = await raw.handle.ifSend(1, BASE_COM_ID, bad).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(EmulatorError);
      expect((err as EmulatorError).code).toBe('EMU_MALFORMED_COMPACKET');
    }
    await stillHealthy();
  });

  it('other protocols and ComIDs are TRANSPORT_NOT_SUPPORTED', async () => {
    await expect(raw.handle.ifSend(2, BASE_COM_ID, Buffer.alloc(512))).rejects.toMatchObject({
      code: 'TRANSPORT_NOT_SUPPORTED',
    });
    await expect(raw.handle.ifSend(1, 0x1234, Buffer.alloc(512))).rejects.toMatchObject({
      code: 'TRANSPORT_NOT_SUPPORTED',
    });
    await expect(raw.handle.ifRecv(1, 0x1234, 512)).rejects.toMatchObject({ code: 'TRANSPORT_NOT_SUPPORTED' });
    // Protocol 0 lists the supported security protocols: 0 and 1.
    const list = await raw.handle.ifRecv(0, 0, 512);
    expect(list.readUInt16BE(6)).toBe(2);
    expect([...list.subarray(8, 10)]).toEqual([0, 1]);
  });

  it('packets for a session that is not open are EMU_NO_SUCH_SESSION', async () => {
    const call = tcg().encodeTokens([
      { token: 'CALL' },
      { uid: UID.thisSp },
      { uid: METHOD.get },
      [],
      { token: 'EOD' },
      [0, 0, 0],
    ]);
    await expect(raw.handle.ifSend(1, BASE_COM_ID, comPacket(call, 4097, 1))).rejects.toMatchObject({
      code: 'EMU_NO_SUCH_SESSION',
    });
    const s = await raw.startSession(UID.adminSp);
    await expect(raw.handle.ifSend(1, BASE_COM_ID, comPacket(call, s.tsn, s.hsn + 1))).rejects.toMatchObject({
      code: 'EMU_NO_SUCH_SESSION',
    });
    await raw.endSession(s.tsn, s.hsn);
    await expect(raw.handle.ifSend(1, BASE_COM_ID, comPacket(call, s.tsn, s.hsn))).rejects.toMatchObject({
      code: 'EMU_NO_SUCH_SESSION',
    });
  });

  it('a too-small IF-RECV reports the outstanding data and keeps the response', async () => {
    await raw.handle.ifSend(
      1,
      BASE_COM_ID,
      comPacket(
        tcg().encodeTokens([
          { token: 'CALL' },
          { uid: UID.smUid },
          { uid: METHOD.properties },
          [],
          { token: 'EOD' },
          [0, 0, 0],
        ]),
      ),
    );
    const small = tcg().parseComPacket(await raw.handle.ifRecv(1, BASE_COM_ID, 64));
    expect(small.packets).toHaveLength(0);
    expect(small.outstandingData).toBeGreaterThan(64);
    const full = tcg().parseComPacket(await raw.handle.ifRecv(1, BASE_COM_ID, small.minTransfer));
    expect(tcg().parseMethodResponse(full.packets[0]!.subpackets[0]!.payload).status).toBe(0);
    // Nothing left: an empty ComPacket.
    expect(tcg().parseComPacket(await raw.handle.ifRecv(1, BASE_COM_ID, 512)).packets).toHaveLength(0);
  });
});

describe('method-level errors get the spec status codes', () => {
  it('bad tokens are INVALID_PARAMETER', async () => {
    // 0xE4 is a reserved token; a bare EndList is unbalanced.
    expect((await sendExpectingResponse(comPacket(Buffer.from([0xf8, 0xe4, 0xf1])))).status).toBe(
      STATUS.invalidParameter,
    );
    const s = await raw.startSession(UID.adminSp);
    const inSession = await sendExpectingResponse(comPacket(Buffer.from([0xf1, 0xf1, 0xf9]), s.tsn, s.hsn));
    expect(inSession.status).toBe(STATUS.invalidParameter);
    // An atom claiming more bytes than present.
    const lying = await sendExpectingResponse(comPacket(Buffer.from([0xd0, 0x40, 0x01]), s.tsn, s.hsn));
    expect(lying.status).toBe(STATUS.invalidParameter);
    await raw.endSession(s.tsn, s.hsn);
    await stillHealthy();
  });

  it('unknown objects, unknown methods and wrong argument types are INVALID_PARAMETER', async () => {
    await raw.withSession(UID.adminSp, undefined, undefined, async (call) => {
      expect((await call('0000deadbeef0001', METHOD.get, getArgs(0, 3))).status).toBe(STATUS.invalidParameter);
      expect((await call(UID.cpinMsid, '00000006deadbeef', [])).status).toBe(STATUS.invalidParameter);
      expect((await call(UID.cpinMsid, METHOD.get, ['not a cell block'])).status).toBe(STATUS.invalidParameter);
      expect((await call(UID.cpinMsid, METHOD.get, [[{ name: 3, value: Buffer.from('x') }]])).status).toBe(
        STATUS.invalidParameter,
      );
      // Locking SP objects do not exist in the Admin SP.
      expect((await call(UID.globalRange, METHOD.get, getArgs(0, 9))).status).toBe(STATUS.invalidParameter);
      expect((await call(UID.thisSp, METHOD.authenticate, [])).status).toBe(STATUS.invalidParameter);
    });
    const sm = await raw.call(0, 0, UID.smUid, '000000000000ff99', []);
    expect(sm.status).toBe(STATUS.invalidParameter);
    const badStart = await raw.call(0, 0, UID.smUid, METHOD.startSession, [1, { uid: '0000020500000009' }, 1]);
    expect(badStart.status).toBe(STATUS.invalidParameter);
    await stillHealthy();
  });

  it('random payloads never crash the TPer or corrupt the drive', async () => {
    const s = await raw.startSession(UID.adminSp);
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 96 }), fc.boolean(), async (bytes, inSession) => {
        const payload = Buffer.from(bytes);
        const packet = inSession ? comPacket(payload, s.tsn, s.hsn) : comPacket(payload);
        try {
          await raw.handle.ifSend(1, BASE_COM_ID, packet);
        } catch (e) {
          expect(e).toBeInstanceOf(EmulatorError);
          return;
        }
        const reply = tcg().parseComPacket(await raw.handle.ifRecv(1, BASE_COM_ID, 65536));
        expect(reply.packets.length).toBe(1);
      }),
      { numRuns: 300 },
    );
    // The fuzzed session may have been closed by an EndOfSession token; either way the drive is fine.
    try {
      await raw.endSession(s.tsn, s.hsn);
    } catch {
      // already closed
    }
    await stillHealthy();
    await expect(emulatedDriveInfo(drive.path)).rejects.toMatchObject({ code: 'EMU_BUSY' }); // still held by raw
  });
});

/** Named points of a state file write, where the test addon kills the writer (native/test/crash_points.cc). */
const STATE_WRITE_POINTS = ['state-file-tmp-partial', 'state-file-tmp-synced', 'state-file-renamed'] as const;
const WHOLE_STATE = /\nsha256 [0-9a-f]{64}\n$/;

describe('crash safety', () => {
  it.each(STATE_WRITE_POINTS)(
    'a process killed at %s of a state write leaves a whole state file (the old or the new) and a drive that opens',
    async (point) => {
      await raw.close();
      const statePath = `${drive.path}.state`;
      const tmpPath = `${statePath}.tmp`;
      const before = readFileSync(statePath);
      // One power cycle (which commits the state), in a child the addon kills at `point`.
      const script = `
        const addon = require(${JSON.stringify(addonPath())});
        class E extends Error { constructor(m, c) { super(m); this.code = c; } }
        addon.setErrorClass(E);
        addon.emulator.powerCycle(process.argv[1]).then(() => console.log('not killed'));
      `;
      const child = spawnSync(process.execPath, ['-e', script, drive.path], {
        encoding: 'utf8',
        env: { ...process.env, [CRASH_AT_ENV]: point },
      });
      expect(child.signal, child.stdout + child.stderr).toBe('SIGKILL');
      const after = readFileSync(statePath);
      expect(after.toString('utf8')).toMatch(WHOLE_STATE);
      if (point === 'state-file-tmp-partial') {
        // A real torn write: half a state aside, the state file itself still the old one.
        const torn = readFileSync(tmpPath);
        expect(torn.length).toBeGreaterThan(0);
        expect(torn.toString('utf8')).not.toMatch(WHOLE_STATE);
        expect(after.equals(before)).toBe(true);
      } else if (point === 'state-file-tmp-synced') {
        expect(readFileSync(tmpPath, 'utf8')).toMatch(WHOLE_STATE);
        expect(after.equals(before)).toBe(true);
      } else {
        expect(existsSync(tmpPath)).toBe(false);
        expect(after.equals(before)).toBe(false);
      }
      await expect(emulatedDriveInfo(drive.path)).resolves.toMatchObject({ blocks: 8192 });
      raw = await RawTcg.open(drive.path);
      await stillHealthy();
    },
  );
});

describe('structured fuzzing', () => {
  it('random method calls on real objects always get a method status', async () => {
    const sid = Buffer.from('fuzz-sid-pin');
    // Own and activate so the Locking SP and its objects exist.
    const msid = await raw.withSession(UID.adminSp, undefined, undefined, async (call) => {
      const r = await call(UID.cpinMsid, METHOD.get, getArgs(3, 3));
      return (r.results[0] as { name: number; value: Buffer }[])[0]!.value;
    });
    await raw.withSession(UID.adminSp, UID.sid, msid, async (call) => {
      expect((await call(UID.cpinSid, METHOD.set, [{ name: 1, value: [{ name: 3, value: sid }] }])).status).toBe(0);
      expect((await call(UID.lockingSp, METHOD.activate, [])).status).toBe(0);
    });
    const objects = [
      UID.thisSp,
      UID.lockingSp,
      UID.globalRange,
      UID.range1,
      UID.kAesRange1,
      UID.cpinUser1,
      UID.cpinAdmin1,
      UID.user1Authority,
      UID.mbrControl,
      UID.lockingInfo,
      '000000080003e002',
      '0000080400000000',
      '0000000900000000',
    ];
    const methods = Object.values(METHOD).filter((m) => m !== METHOD.revert && m !== METHOD.revertSp);
    const leaf = fc.oneof(
      fc.nat({ max: 70000 }),
      fc.constantFrom(0, 1, 3, 4, 5, 7, 8, 9),
      fc.uint8Array({ maxLength: 40 }).map((b) => Buffer.from(b)),
      fc.constantFrom(...objects).map((u) => ({ uid: u })),
    );
    const tree = fc.letrec<{ value: TcgJs }>((tie) => ({
      value: fc.oneof(
        { depthSize: 'small', withCrossShrink: true },
        leaf,
        fc.array(tie('value'), { maxLength: 4 }),
        fc.record({ name: fc.constantFrom(0, 1, 3, 4, 5, 7, 8, 9), value: tie('value') }),
      ),
    })).value;
    await raw.withSession(UID.lockingSp, UID.admin1, sid, async (call) => {
      await fc.assert(
        fc.asyncProperty(
          fc.constantFrom(...objects),
          fc.constantFrom(...methods),
          fc.array(tree, { maxLength: 3 }),
          async (object, method, args) => {
            const r = await call(object, method, args);
            expect([0x00, 0x01, 0x0c, 0x3f]).toContain(r.status);
          },
        ),
        { numRuns: 250 },
      );
    });
    await stillHealthy();
  });
});
