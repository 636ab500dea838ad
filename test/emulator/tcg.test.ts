/**
 * The emulated TPer at the TCG level: raw ComPackets built with the shared codec. Session
 * manager, host challenge authentication, ACE checks, TryLimit lockout and its reset by power
 * cycle, and the status codes the spec prescribes.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { discoveryFixtures } from '../support/shared.js';
import { powerCycleEmulatedDrive, readEmulatedDrive, writeEmulatedDrive } from '../../src/drives/emulator.js';
import {
  column,
  getArgs,
  makeDrive,
  METHOD,
  named,
  RawTcg,
  setArgs,
  setLocked,
  setLockEnabled,
  STATUS,
  tcg,
  uid,
  UID,
} from './support.js';

const SID_PIN = Buffer.from('sid-pin-for-tests-0123456789abcd');
const USER1_PIN = Buffer.from('user1-pin-for-tests');

let drive: Awaited<ReturnType<typeof makeDrive>>;
beforeEach(async () => {
  drive = await makeDrive();
});
afterEach(() => drive.cleanup());

async function readMsid(raw: RawTcg): Promise<Buffer> {
  return raw.withSession(UID.adminSp, undefined, undefined, async (call) => {
    const r = await call(UID.cpinMsid, METHOD.get, getArgs(3, 3));
    expect(r.status).toBe(STATUS.success);
    return column(r.results, 3) as Buffer;
  });
}

/** Take ownership (SID PIN) and activate the Locking SP, as sedutil and the kernel do. */
async function ownAndActivate(raw: RawTcg): Promise<void> {
  const msid = await readMsid(raw);
  await raw.withSession(UID.adminSp, UID.sid, msid, async (call) => {
    expect((await call(UID.cpinSid, METHOD.set, setArgs([[3, SID_PIN]]))).status).toBe(STATUS.success);
  });
  await raw.withSession(UID.adminSp, UID.sid, SID_PIN, async (call) => {
    expect((await call(UID.lockingSp, METHOD.activate, [])).status).toBe(STATUS.success);
  });
}

describe('session manager', () => {
  it('answers Properties with the TPer limits and echoes host properties', async () => {
    await RawTcg.using(drive.path, async (raw) => {
      const r = await raw.call(0, 0, UID.smUid, METHOD.properties, [named(0, [named('MaxComPacketSize', 4096)])]);
      expect(r.status).toBe(STATUS.success);
      const tper = r.results[0] as { name: Buffer; value: number }[];
      const props = Object.fromEntries(tper.map((p) => [p.name.toString(), p.value]));
      expect(props.MaxComPacketSize).toBeGreaterThanOrEqual(2048);
      expect(props.MaxSessions).toBe(1);
      const host = r.results[1] as { name: number; value: { name: Buffer; value: number }[] };
      expect(host.name).toBe(0);
      expect(host.value[0]!.value).toBe(4096);
    });
  });

  it('starts sessions with a host challenge and refuses a wrong one with NOT_AUTHORIZED', async () => {
    await RawTcg.using(drive.path, async (raw) => {
      const msid = await readMsid(raw);
      expect(msid.length).toBeGreaterThan(0);
      const wrong = await raw.startSession(UID.adminSp, UID.sid, Buffer.from('not the msid'));
      expect(wrong.status).toBe(STATUS.notAuthorized);
      const ok = await raw.startSession(UID.adminSp, UID.sid, msid);
      expect(ok.status).toBe(STATUS.success);
      expect(ok.tsn).toBeGreaterThan(0);
      // One session at a time: a second StartSession is SP_BUSY.
      expect((await raw.startSession(UID.adminSp)).status).toBe(STATUS.spBusy);
      await raw.endSession(ok.tsn, ok.hsn);
      expect((await raw.startSession(UID.adminSp)).status).toBe(STATUS.success);
    });
  });

  it('refuses a Locking SP session while the SP is Manufactured-Inactive', async () => {
    await RawTcg.using(drive.path, async (raw) => {
      expect((await raw.startSession(UID.lockingSp)).status).toBe(STATUS.invalidParameter);
      const lifeCycle = await raw.withSession(UID.adminSp, undefined, undefined, async (call) => {
        const r = await call(UID.lockingSp, METHOD.get, getArgs(6, 6));
        return column(r.results, 6);
      });
      expect(lifeCycle).toBe(0x08);
      await ownAndActivate(raw);
      const after = await raw.withSession(UID.adminSp, undefined, undefined, async (call) => {
        return column((await call(UID.lockingSp, METHOD.get, getArgs(6, 6))).results, 6);
      });
      expect(after).toBe(0x09);
    });
  });
});

describe('ACE checks', () => {
  it('lets Anybody read the MSID but nobody read another PIN', async () => {
    await RawTcg.using(drive.path, async (raw) => {
      await ownAndActivate(raw);
      await raw.withSession(UID.adminSp, UID.sid, SID_PIN, async (call) => {
        const r = await call(UID.cpinSid, METHOD.get, getArgs(3, 3));
        expect(r.status).toBe(STATUS.notAuthorized);
        const meta = await call(UID.cpinSid, METHOD.get, getArgs(0, 7));
        expect(meta.status).toBe(STATUS.success);
        expect(column(meta.results, 3)).toBeUndefined();
        expect(column(meta.results, 5)).toBe(5);
      });
      await raw.withSession(UID.adminSp, undefined, undefined, async (call) => {
        expect((await call(UID.cpinSid, METHOD.set, setArgs([[3, Buffer.from('x')]]))).status).toBe(
          STATUS.notAuthorized,
        );
        expect((await call(UID.lockingSp, METHOD.activate, [])).status).toBe(STATUS.notAuthorized);
      });
    });
  });

  it('only Admin1 sets ranges; User1 locks and unlocks only once added to the range ACE', async () => {
    await RawTcg.using(drive.path, async (raw) => {
      await ownAndActivate(raw);
      await raw.withSession(UID.lockingSp, UID.admin1, SID_PIN, async (call) => {
        expect((await call(UID.user1Authority, METHOD.set, setArgs([[5, 1]]))).status).toBe(STATUS.success);
        expect((await call(UID.cpinUser1, METHOD.set, setArgs([[3, USER1_PIN]]))).status).toBe(STATUS.success);
        const setup = await call(
          UID.range1,
          METHOD.set,
          setArgs([
            [3, 2048],
            [4, 4096],
            [5, 1],
            [6, 1],
          ]),
        );
        expect(setup.status).toBe(STATUS.success);
      });
      await raw.withSession(UID.lockingSp, UID.user1, USER1_PIN, async (call) => {
        expect((await call(UID.range1, METHOD.set, setArgs([[3, 0]]))).status).toBe(STATUS.notAuthorized);
        expect(await setLocked(call, UID.range1, 0)).toBe(STATUS.notAuthorized);
        expect((await call(UID.cpinAdmin1, METHOD.set, setArgs([[3, Buffer.from('x')]]))).status).toBe(
          STATUS.notAuthorized,
        );
      });
      await raw.withSession(UID.lockingSp, UID.admin1, SID_PIN, async (call) => {
        const expr = [
          named(Buffer.from('00000c05', 'hex'), uid(UID.user1)),
          named(Buffer.from('00000c05', 'hex'), uid(UID.user1)),
          named(Buffer.from('0000040e', 'hex'), 1),
        ];
        expect((await call('000000080003e001', METHOD.set, setArgs([[3, expr]]))).status).toBe(STATUS.success);
        expect((await call('000000080003e801', METHOD.set, setArgs([[3, expr]]))).status).toBe(STATUS.success);
        const ace = await call('000000080003e001', METHOD.get, getArgs(3, 3));
        const refs = column(ace.results, 3) as { name: Buffer; value: Buffer }[];
        expect(refs.map((r) => [r.name.toString('hex'), r.value.toString('hex')])).toEqual([['00000c05', UID.user1]]);
      });
      await raw.withSession(UID.lockingSp, UID.user1, USER1_PIN, async (call) => {
        expect(await setLocked(call, UID.range1, 1)).toBe(STATUS.success);
        // User2 is not in the ACE and not even enabled.
      });
      expect((await raw.startSession(UID.lockingSp, UID.user2, Buffer.from('x'))).status).toBe(STATUS.notAuthorized);
    });
    await expect(readEmulatedDrive(drive.path, 2048, 1)).rejects.toMatchObject({ code: 'EMU_DATA_PROTECT' });
    await expect(readEmulatedDrive(drive.path, 2047, 1)).resolves.toHaveLength(512);
  });

  it('refuses overlapping ranges with INVALID_PARAMETER', async () => {
    await RawTcg.using(drive.path, async (raw) => {
      await ownAndActivate(raw);
      await raw.withSession(UID.lockingSp, UID.admin1, SID_PIN, async (call) => {
        expect(
          (
            await call(
              UID.range1,
              METHOD.set,
              setArgs([
                [3, 0],
                [4, 100],
              ]),
            )
          ).status,
        ).toBe(STATUS.success);
        const overlap = await call(
          '0000080200030002',
          METHOD.set,
          setArgs([
            [3, 50],
            [4, 100],
          ]),
        );
        expect(overlap.status).toBe(STATUS.invalidParameter);
        const past = await call(
          '0000080200030002',
          METHOD.set,
          setArgs([
            [3, 100],
            [4, 1 << 30],
          ]),
        );
        expect(past.status).toBe(STATUS.invalidParameter);
        const global = await call(UID.globalRange, METHOD.set, setArgs([[3, 8]]));
        expect(global.status).toBe(STATUS.invalidParameter);
      });
    });
  });
});

describe('TryLimit and power cycle', () => {
  it('locks an authority out at TryLimit until a power cycle, then accepts the right PIN', async () => {
    await RawTcg.using(drive.path, async (raw) => {
      await ownAndActivate(raw);
      for (let i = 0; i < 5; i++) {
        expect((await raw.startSession(UID.adminSp, UID.sid, Buffer.from(`wrong-${i}`))).status).toBe(
          STATUS.notAuthorized,
        );
      }
      // Locked out: even the right PIN is refused, with AUTHORITY_LOCKED_OUT.
      expect((await raw.startSession(UID.adminSp, UID.sid, SID_PIN)).status).toBe(STATUS.authorityLockedOut);
      // Authenticate inside a session reports the lockout the same way.
      await raw.withSession(UID.adminSp, undefined, undefined, async (call) => {
        const r = await call(UID.thisSp, METHOD.authenticate, [uid(UID.sid), named(0, SID_PIN)]);
        expect(r.status).toBe(STATUS.authorityLockedOut);
        const tries = await call(UID.cpinSid, METHOD.get, getArgs(5, 6));
        expect(tries.status).toBe(STATUS.notAuthorized);
      });
    });
    // Another process opening the drive is not a power cycle: still locked out.
    await RawTcg.using(drive.path, async (raw) => {
      expect((await raw.startSession(UID.adminSp, UID.sid, SID_PIN)).status).toBe(STATUS.authorityLockedOut);
    });
    await powerCycleEmulatedDrive(drive.path);
    await RawTcg.using(drive.path, async (raw) => {
      const s = await raw.startSession(UID.adminSp, UID.sid, SID_PIN);
      expect(s.status).toBe(STATUS.success);
      await raw.endSession(s.tsn, s.hsn);
    });
  });

  it('counts failed Authenticate calls and resets Tries on success', async () => {
    await RawTcg.using(drive.path, async (raw) => {
      await ownAndActivate(raw);
      await raw.withSession(UID.lockingSp, undefined, undefined, async (call) => {
        const bad = await call(UID.thisSp, METHOD.authenticate, [uid(UID.admin1), named(0, Buffer.from('bad'))]);
        expect(bad.status).toBe(STATUS.success);
        expect(bad.results[0]).toBe(0);
        const good = await call(UID.thisSp, METHOD.authenticate, [uid(UID.admin1), named(0, SID_PIN)]);
        expect(good.results[0]).toBe(1);
        // Now authenticated as Admin1 within the same session.
        const tries = await call(UID.cpinAdmin1, METHOD.get, getArgs(5, 6));
        expect(tries.status).toBe(STATUS.success);
        expect(column(tries.results, 6)).toBe(0);
        expect(column(tries.results, 5)).toBe(5);
      });
    });
  });

  it('power cycle relocks LockOnReset ranges; reopening does not', async () => {
    await RawTcg.using(drive.path, async (raw) => {
      await ownAndActivate(raw);
      await raw.withSession(UID.lockingSp, UID.admin1, SID_PIN, async (call) => {
        expect(
          (
            await call(
              UID.globalRange,
              METHOD.set,
              setArgs([
                [5, 1],
                [6, 1],
                [7, 0],
                [8, 0],
              ]),
            )
          ).status,
        ).toBe(0);
      });
    });
    const data = Buffer.alloc(512, 7);
    await writeEmulatedDrive(drive.path, 0, data);
    expect(await readEmulatedDrive(drive.path, 0, 1)).toEqual(data);
    expect(await readEmulatedDrive(drive.path, 0, 1)).toEqual(data); // reopen keeps it unlocked
    await powerCycleEmulatedDrive(drive.path);
    await expect(readEmulatedDrive(drive.path, 0, 1)).rejects.toMatchObject({ code: 'EMU_DATA_PROTECT' });
    await expect(writeEmulatedDrive(drive.path, 0, data)).rejects.toMatchObject({ code: 'EMU_DATA_PROTECT' });
    await RawTcg.using(drive.path, async (raw) => {
      await raw.withSession(UID.lockingSp, UID.admin1, SID_PIN, async (call) => {
        expect(await setLocked(call, UID.globalRange, 0)).toBe(0);
      });
    });
    expect(await readEmulatedDrive(drive.path, 0, 1)).toEqual(data);
  });
});

describe('LockOnReset and Next', () => {
  it('a range whose LockOnReset omits PowerCycle stays unlocked through a power cycle', async () => {
    await RawTcg.using(drive.path, async (raw) => {
      await ownAndActivate(raw);
      await raw.withSession(UID.lockingSp, UID.admin1, SID_PIN, async (call) => {
        const r = await call(
          UID.range1,
          METHOD.set,
          setArgs([
            [3, 64],
            [4, 64],
            [5, 1],
            [6, 1],
            [9, []],
          ]),
        );
        expect(r.status).toBe(STATUS.success);
        const lor = await call(UID.range1, METHOD.get, getArgs(9, 9));
        expect(column(lor.results, 9)).toEqual([]);
        expect((await call(UID.range1, METHOD.set, setArgs([[9, [7]]]))).status).toBe(STATUS.invalidParameter);
        expect(await setLockEnabled(call, UID.globalRange, 1)).toBe(STATUS.success);
      });
    });
    await writeEmulatedDrive(drive.path, 64, Buffer.alloc(512, 3));
    await powerCycleEmulatedDrive(drive.path);
    expect(await readEmulatedDrive(drive.path, 64, 1)).toEqual(Buffer.alloc(512, 3));
    await expect(readEmulatedDrive(drive.path, 0, 1)).rejects.toMatchObject({ code: 'EMU_DATA_PROTECT' });
  });

  it('Next lists table rows after Where, up to Count', async () => {
    await RawTcg.using(drive.path, async (raw) => {
      await ownAndActivate(raw);
      await raw.withSession(UID.lockingSp, UID.admin1, SID_PIN, async (call) => {
        const all = await call(UID.authorityTable, METHOD.next, []);
        const rows = (all.results[0] as Buffer[]).map((b) => b.toString('hex'));
        expect(rows).toContain(UID.admin1);
        expect(rows).toContain('0000000900030008');
        expect(rows).toHaveLength(2 + 4 + 1 + 8);
        const page = await call(UID.authorityTable, METHOD.next, [named(0, uid(UID.admin1)), named(1, 2)]);
        expect((page.results[0] as Buffer[]).map((b) => b.toString('hex'))).toEqual([
          '0000000900010002',
          '0000000900010003',
        ]);
        const ranges = await call('0000080200000000', METHOD.next, []);
        expect(ranges.results[0]).toHaveLength(9);
      });
      await raw.withSession(UID.lockingSp, undefined, undefined, async (call) => {
        expect((await call('0000080200000000', METHOD.next, [])).status).toBe(STATUS.notAuthorized);
      });
    });
  });
});

describe('discovery', () => {
  it('is parsed by the host parser and reports locking state', async () => {
    await RawTcg.using(drive.path, async (raw) => {
      const d = tcg().parseDiscovery(await raw.handle.ifRecv(1, 1, 2048));
      expect(d.warnings).toEqual([]);
      expect(d.tper?.sync).toBe(true);
      expect(d.locking).toMatchObject({ lockingSupported: true, lockingEnabled: false, mediaEncryption: true });
      expect(d.geometry?.logicalBlockSize).toBe(512);
      expect(d.opal2).toMatchObject({ baseComId: 0x07fe, numComIds: 1, numLockingAdmins: 4, numLockingUsers: 8 });
      expect(d.features.map((f) => f.code)).toEqual([0x0001, 0x0002, 0x0003, 0x0203]);
      // Each descriptor has the version and length real drives send (tcg-fixtures).
      const fixtures = discoveryFixtures().map((f) => tcg().parseDiscovery(f.data));
      for (const f of d.features) {
        const seen = fixtures.flatMap((x) => x.features).filter((g) => g.code === f.code);
        expect(seen.length).toBeGreaterThan(0);
        expect(seen.some((g) => g.version === f.version && g.length === f.length)).toBe(true);
      }
      await ownAndActivate(raw);
      // LockingEnabled reports an activated Locking SP (Opal SSC 3.1.1.3); nothing is locked yet.
      const active = tcg().parseDiscovery(await raw.handle.ifRecv(1, 1, 512));
      expect(active.locking).toMatchObject({ lockingEnabled: true, locked: false });
      await raw.withSession(UID.lockingSp, UID.admin1, SID_PIN, async (call) => {
        await call(
          UID.globalRange,
          METHOD.set,
          setArgs([
            [5, 1],
            [6, 1],
            [7, 1],
            [8, 1],
          ]),
        );
      });
      const locked = tcg().parseDiscovery(await raw.handle.ifRecv(1, 1, 512));
      expect(locked.locking).toMatchObject({ lockingEnabled: true, locked: true });
    });
  });
});
