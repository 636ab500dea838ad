/**
 * The emulated drive as files and a data plane: create/open/persistence, the exclusive lock
 * across processes, encryption at rest (no plaintext, PIN or key on disk), GenKey / Erase /
 * Revert making old data unreadable, and typed errors for bad input.
 */
import { spawn } from 'node:child_process';
import { createDecipheriv, createHash, pbkdf2Sync } from 'node:crypto';
import { readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  createEmulatedDrive,
  destroyEmulatedDrive,
  emulatedDriveInfo,
  EmulatorError,
  openEmulatedDrive,
  powerCycleEmulatedDrive,
  readEmulatedDrive,
  writeEmulatedDrive,
} from '../../src/drives/emulator.js';
import { addonPath } from '../../src/native/addon.js';
import {
  getArgs,
  column,
  makeDrive,
  METHOD,
  named,
  RawTcg,
  setArgs,
  setLocked,
  setLockEnabled,
  STATUS,
  UID,
} from './support.js';

const SID_PIN = Buffer.from('0f1e2d3c4b5a69788796a5b4c3d2e1f0', 'hex');
const USER1_PIN = Buffer.from('user-one-secret-pin-value-1234');
const MARKER = Buffer.from('PLAINTEXT-MARKER-the-quick-brown-fox-');

let drive: Awaited<ReturnType<typeof makeDrive>>;
beforeEach(async () => {
  drive = await makeDrive(8, 'EMUDRIVE42');
});
afterEach(() => drive.cleanup());

function pattern(blocks: number): Buffer {
  const out = Buffer.alloc(blocks * 512);
  for (let i = 0; i < out.length; i += MARKER.length) MARKER.copy(out, i);
  return out;
}

async function setUp(raw: RawTcg, lockGlobal: boolean): Promise<void> {
  const msid = await raw.withSession(UID.adminSp, undefined, undefined, async (call) => {
    return column((await call(UID.cpinMsid, METHOD.get, getArgs(3, 3))).results, 3) as Buffer;
  });
  await raw.withSession(UID.adminSp, UID.sid, msid, async (call) => {
    expect((await call(UID.cpinSid, METHOD.set, setArgs([[3, SID_PIN]]))).status).toBe(0);
    expect((await call(UID.lockingSp, METHOD.activate, [])).status).toBe(0);
  });
  await raw.withSession(UID.lockingSp, UID.admin1, SID_PIN, async (call) => {
    expect((await call(UID.user1Authority, METHOD.set, setArgs([[5, 1]]))).status).toBe(0);
    expect((await call(UID.cpinUser1, METHOD.set, setArgs([[3, USER1_PIN]]))).status).toBe(0);
    const expr = [named(Buffer.from('00000c05', 'hex'), { uid: UID.user1 })];
    expect((await call(UID.aceRdLockedGlobal, METHOD.set, setArgs([[3, expr]]))).status).toBe(0);
    expect((await call(UID.aceWrLockedGlobal, METHOD.set, setArgs([[3, expr]]))).status).toBe(0);
    // The ACE now names only User1 (as the kernel's ADD_USR_TO_LR does): Admin1 enables locking,
    // User1 locks or unlocks.
    expect(await setLockEnabled(call, UID.globalRange, 1)).toBe(0);
    expect((await call(UID.globalRange, METHOD.set, setArgs([[7, 1]]))).status).toBe(STATUS.notAuthorized);
  });
  const lock = lockGlobal ? 1 : 0;
  await raw.withSession(UID.lockingSp, UID.user1, USER1_PIN, async (call) => {
    expect(await setLocked(call, UID.globalRange, lock)).toBe(0);
  });
}

describe('create, open, persistence', () => {
  it('creates a sparse image and a 0600 state file, and reports geometry without secrets', async () => {
    const info = await emulatedDriveInfo(drive.path);
    expect(info).toMatchObject({
      serial: 'EMUDRIVE42',
      sizeMiB: 8,
      blocks: 16384,
      lockingSpActive: false,
      owned: false,
    });
    expect(info.ranges).toEqual([
      expect.objectContaining({ number: 0, start: 0, length: 16384, readLocked: false, writeLocked: false }),
    ]);
    expect(JSON.stringify(info)).not.toContain(drive.psid);
    expect(statSync(drive.path).size).toBe(8 << 20);
    expect(statSync(drive.path).blocks * 512).toBeLessThan(1 << 20); // sparse
    expect(statSync(`${drive.path}.state`).mode & 0o777).toBe(0o600);
    expect(statSync(drive.path).mode & 0o777).toBe(0o600);
    expect(drive.psid).toMatch(/^[A-Z2-9]{32}$/);
    expect(readdirSync(drive.dir).sort()).toEqual(['drive.img', 'drive.img.state']);
  });

  it('keeps data and table state across opens', async () => {
    const data = pattern(4);
    await writeEmulatedDrive(drive.path, 100, data);
    expect(await readEmulatedDrive(drive.path, 100, 4)).toEqual(data);
    expect(await readEmulatedDrive(drive.path, 0, 1)).toEqual(Buffer.alloc(512)); // never written
    await RawTcg.using(drive.path, (raw) => setUp(raw, false));
    const info = await emulatedDriveInfo(drive.path);
    expect(info.lockingSpActive).toBe(true);
    expect(info.owned).toBe(true);
    expect(info.ranges[0]).toMatchObject({ readLockEnabled: true, writeLockEnabled: true, readLocked: false });
    // Data written before activation is still readable (activation keeps the media keys).
    expect(await readEmulatedDrive(drive.path, 100, 4)).toEqual(data);
  });

  it('refuses to overwrite an existing image and rejects bad arguments with typed errors', async () => {
    await expect(createEmulatedDrive(drive.path, 8, 'X')).rejects.toMatchObject({ code: 'EMU_EXISTS' });
    await expect(createEmulatedDrive(join(drive.dir, 'b.img'), 8, 'has space')).rejects.toMatchObject({
      code: 'EMU_INVALID_ARGUMENT',
    });
    await expect(createEmulatedDrive(join(drive.dir, 'c.img'), 0, 'S')).rejects.toBeInstanceOf(EmulatorError);
    await expect(readEmulatedDrive(join(drive.dir, 'missing.img'), 0, 1)).rejects.toMatchObject({
      code: 'EMU_NOT_FOUND',
    });
    await expect(readEmulatedDrive(drive.path, 16384, 1)).rejects.toMatchObject({ code: 'EMU_LBA_OUT_OF_RANGE' });
    await expect(readEmulatedDrive(drive.path, 16383, 2)).rejects.toMatchObject({ code: 'EMU_LBA_OUT_OF_RANGE' });
    await expect(writeEmulatedDrive(drive.path, 0, Buffer.alloc(100))).rejects.toMatchObject({
      code: 'EMU_INVALID_ARGUMENT',
    });
    await expect(readEmulatedDrive(drive.path, -1, 1)).rejects.toMatchObject({ code: 'EMU_INVALID_ARGUMENT' });
    const err = await readEmulatedDrive(drive.path, 99999, 1).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EmulatorError);
  });

  it('reports a corrupt state file as EMU_STATE_CORRUPT and never a crash', async () => {
    const statePath = `${drive.path}.state`;
    const text = readFileSync(statePath, 'utf8');
    writeFileSync(statePath, text.replace('blocks 16384', 'blocks 16385'));
    await expect(emulatedDriveInfo(drive.path)).rejects.toMatchObject({ code: 'EMU_STATE_CORRUPT' });
    writeFileSync(statePath, text.slice(0, text.length / 2));
    await expect(emulatedDriveInfo(drive.path)).rejects.toMatchObject({ code: 'EMU_STATE_CORRUPT' });
    writeFileSync(statePath, text);
    await expect(emulatedDriveInfo(drive.path)).resolves.toMatchObject({ serial: 'EMUDRIVE42' });
  });
});

describe('state file validation', () => {
  it('a state file edited behind the checksum is accepted or EMU_STATE_CORRUPT, never a crash', async () => {
    await RawTcg.using(drive.path, (raw) => setUp(raw, false));
    const statePath = `${drive.path}.state`;
    const original = readFileSync(statePath, 'utf8');
    const lines = original.slice(0, original.lastIndexOf('sha256 ')).split('\n').filter(Boolean);
    const value = fc.oneof(
      fc.constantFrom('-', '0', '1', '2', '99999999999999999999', '18446744073709551615', 'ffff', ''),
      fc.string({ maxLength: 24 }),
      fc.uint8Array({ maxLength: 80 }).map((b) => Buffer.from(b).toString('hex')),
      fc.nat().map(String),
    );
    await fc.assert(
      fc.asyncProperty(fc.nat(lines.length - 1), value, async (index, replacement) => {
        const body = lines.map((l, i) => (i === index ? `${l.split(' ')[0]} ${replacement}` : l)).join('\n') + '\n';
        writeFileSync(statePath, `${body}sha256 ${createHash('sha256').update(body).digest('hex')}\n`);
        for (const attempt of [() => emulatedDriveInfo(drive.path), () => readEmulatedDrive(drive.path, 0, 1)]) {
          try {
            await attempt();
          } catch (e) {
            expect(e).toBeInstanceOf(EmulatorError);
            expect((e as EmulatorError).code).toMatch(/^EMU_/);
          }
        }
      }),
      { numRuns: 200 },
    );
    writeFileSync(statePath, original);
  });
});

describe('exclusive lock', () => {
  it('gives EMU_BUSY to a second process until the first lets go', async () => {
    const script = `
      const addon = require(${JSON.stringify(addonPath())});
      class E extends Error { constructor(m, c) { super(m); this.code = c; } }
      addon.setErrorClass(E);
      addon.emulator.open(process.argv[1]).then((h) => {
        process.stdout.write('held\\n');
        process.stdin.on('end', () => h.close().then(() => process.exit(0)));
        process.stdin.resume();
      }, (e) => { process.stdout.write('error ' + e.code + '\\n'); process.exit(1); });
    `;
    const child = spawn(process.execPath, ['-e', script, drive.path], { stdio: ['pipe', 'pipe', 'inherit'] });
    try {
      await new Promise<void>((resolve, reject) => {
        child.stdout.on('data', (chunk: Buffer) =>
          chunk.toString().includes('held') ? resolve() : reject(new Error(chunk.toString())),
        );
        child.on('exit', (code) => reject(new Error(`child exited ${code}`)));
      });
      await expect(openEmulatedDrive(drive.path)).rejects.toMatchObject({ code: 'EMU_BUSY' });
      await expect(readEmulatedDrive(drive.path, 0, 1)).rejects.toMatchObject({ code: 'EMU_BUSY' });
      await expect(powerCycleEmulatedDrive(drive.path)).rejects.toMatchObject({ code: 'EMU_BUSY' });
      const exited = new Promise((resolve) => child.on('exit', resolve));
      child.stdin.end();
      expect(await exited).toBe(0);
      await expect(readEmulatedDrive(drive.path, 0, 1)).resolves.toHaveLength(512);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });

  it('concurrent calls from one process wait for each other instead of failing', async () => {
    const writes = Array.from({ length: 6 }, (_, i) => writeEmulatedDrive(drive.path, i, Buffer.alloc(512, i + 1)));
    await Promise.all(writes);
    const reads = await Promise.all(Array.from({ length: 6 }, (_, i) => readEmulatedDrive(drive.path, i, 1)));
    reads.forEach((block, i) => expect(block).toEqual(Buffer.alloc(512, i + 1)));
  });

  it('a closed handle refuses further use with EMU_CLOSED', async () => {
    const h = await openEmulatedDrive(drive.path);
    await h.close();
    await expect(h.ifRecv(1, 1, 512)).rejects.toMatchObject({ code: 'EMU_CLOSED' });
  });
});

describe('encryption at rest', () => {
  it('stores no plaintext, PIN or PSID in the image or the state file', async () => {
    const data = pattern(64);
    await writeEmulatedDrive(drive.path, 0, data);
    await RawTcg.using(drive.path, (raw) => setUp(raw, false));
    await writeEmulatedDrive(drive.path, 1000, data);
    expect(await readEmulatedDrive(drive.path, 1000, 64)).toEqual(data);
    const files = [drive.path, `${drive.path}.state`].map((p) => readFileSync(p));
    const needles = [
      MARKER,
      MARKER.subarray(0, 16),
      SID_PIN,
      Buffer.from(SID_PIN.toString('hex')),
      USER1_PIN,
      Buffer.from(USER1_PIN.toString('hex')),
      Buffer.from(drive.psid),
      Buffer.from(Buffer.from(drive.psid).toString('hex')),
    ];
    for (const file of files) for (const needle of needles) expect(file.includes(needle)).toBe(false);
  });

  it('keeps unlocked media keys only in the volatile cache, which a power cycle or reboot empties', async () => {
    const data = pattern(2);
    await RawTcg.using(drive.path, (raw) => setUp(raw, false));
    await writeEmulatedDrive(drive.path, 10, data);
    const [ramFile] = readdirSync(drive.ramDir);
    expect(ramFile).toMatch(/^kmip-agent-emu-[0-9a-f]{32}\.ram$/);
    const ram = readFileSync(join(drive.ramDir, ramFile!), 'utf8');
    const keyHex = /^key\.0 ([0-9a-f]{128})$/m.exec(ram)?.[1];
    expect(keyHex).toBeDefined();
    expect(statSync(join(drive.ramDir, ramFile!)).mode & 0o777).toBe(0o600);
    // The image is standard AES-256-XTS with the LBA as tweak: OpenSSL in Node decrypts it.
    const tweak = Buffer.alloc(16);
    tweak.writeBigUInt64LE(11n);
    const cipherText = readFileSync(drive.path).subarray(11 * 512, 12 * 512);
    const decipher = createDecipheriv('aes-256-xts', Buffer.from(keyHex!, 'hex'), tweak);
    expect(Buffer.concat([decipher.update(cipherText), decipher.final()])).toEqual(data.subarray(512, 1024));
    for (const file of [drive.path, `${drive.path}.state`]) {
      const bytes = readFileSync(file);
      expect(bytes.includes(Buffer.from(keyHex!, 'hex'))).toBe(false);
      expect(bytes.includes(Buffer.from(keyHex!))).toBe(false);
      expect(bytes.includes(Buffer.from(keyHex!, 'hex').subarray(0, 32))).toBe(false);
    }
    await powerCycleEmulatedDrive(drive.path);
    expect(readFileSync(join(drive.ramDir, ramFile!), 'utf8')).not.toMatch(/^key\./m);
    await expect(readEmulatedDrive(drive.path, 10, 1)).rejects.toMatchObject({ code: 'EMU_DATA_PROTECT' });
    await RawTcg.using(drive.path, (raw) =>
      raw.withSession(UID.lockingSp, UID.user1, USER1_PIN, async (call) => {
        expect(await setLocked(call, UID.globalRange, 0)).toBe(0);
      }),
    );
    expect(await readEmulatedDrive(drive.path, 10, 2)).toEqual(data);
    // The host reboots (tmpfs is gone): the next open is a power-on, the range is locked again.
    rmSync(join(drive.ramDir, ramFile!));
    await expect(readEmulatedDrive(drive.path, 10, 1)).rejects.toMatchObject({ code: 'EMU_DATA_PROTECT' });
  });

  it('removes the key caches of drives whose image was deleted by hand when a drive is created', async () => {
    const orphanImage = join(drive.dir, 'orphan.img');
    await createEmulatedDrive(orphanImage, 1, 'ORPHAN');
    expect(readdirSync(drive.ramDir)).toHaveLength(2);
    rmSync(orphanImage);
    await createEmulatedDrive(join(drive.dir, 'next.img'), 1, 'NEXT');
    const caches = readdirSync(drive.ramDir).map((f) => readFileSync(join(drive.ramDir, f), 'utf8'));
    expect(caches).toHaveLength(2);
    expect(caches.some((c) => c.includes('orphan.img'))).toBe(false);
    await destroyEmulatedDrive(join(drive.dir, 'next.img'));
    expect(readdirSync(drive.ramDir)).toHaveLength(1);
    expect(readdirSync(drive.dir).filter((f) => f.startsWith('next.img'))).toEqual([]);
  });

  it('wraps the media key under the MSID only while locking is off (RFC 5649 key wrap)', async () => {
    const data = pattern(1);
    await writeEmulatedDrive(drive.path, 3, data);
    const state = () =>
      new Map(
        readFileSync(`${drive.path}.state`, 'utf8')
          .split('\n')
          .map((l) => l.split(' ') as [string, string]),
      );
    const fields = state();
    // The MSID KEK: PBKDF2-HMAC-SHA256(MSID, drive salt || 16 x 0x4d, 10000) second half.
    const msid = Buffer.from(fields.get('msid')!, 'hex');
    const salt = Buffer.concat([Buffer.from(fields.get('salt')!, 'hex'), Buffer.alloc(16, 0x4d)]);
    const kek = pbkdf2Sync(msid, salt, 10000, 64, 'sha256').subarray(32);
    const unwrap = createDecipheriv('id-aes256-wrap-pad', kek, Buffer.from('a65959a6', 'hex'));
    const key = Buffer.concat([unwrap.update(Buffer.from(fields.get('range.0.msid_wrap')!, 'hex')), unwrap.final()]);
    expect(key).toHaveLength(64);
    const tweak = Buffer.alloc(16);
    tweak.writeBigUInt64LE(3n);
    const xts = createDecipheriv('aes-256-xts', key, tweak);
    const block = readFileSync(drive.path).subarray(3 * 512, 4 * 512);
    expect(Buffer.concat([xts.update(block), xts.final()])).toEqual(data);
    // Once locking is enabled the MSID no longer opens it: only sealed copies remain.
    await RawTcg.using(drive.path, (raw) => setUp(raw, true));
    const locked = state();
    expect(locked.get('range.0.msid_wrap')).toBe('-');
    expect(Number(locked.get('range.0.seals'))).toBeGreaterThanOrEqual(2); // Admin1 and User1
  });

  it('refuses reads and writes of locked ranges with EMU_DATA_PROTECT and unlocks with the user PIN', async () => {
    const data = pattern(2);
    await writeEmulatedDrive(drive.path, 10, data);
    await RawTcg.using(drive.path, (raw) => setUp(raw, true));
    await expect(readEmulatedDrive(drive.path, 10, 2)).rejects.toMatchObject({ code: 'EMU_DATA_PROTECT' });
    await expect(writeEmulatedDrive(drive.path, 10, data)).rejects.toMatchObject({ code: 'EMU_DATA_PROTECT' });
    await RawTcg.using(drive.path, (raw) =>
      raw.withSession(UID.lockingSp, UID.user1, USER1_PIN, async (call) => {
        expect((await call(UID.globalRange, METHOD.set, setArgs([[7, 0]]))).status).toBe(0); // read-only unlock
      }),
    );
    expect(await readEmulatedDrive(drive.path, 10, 2)).toEqual(data);
    await expect(writeEmulatedDrive(drive.path, 10, data)).rejects.toMatchObject({ code: 'EMU_DATA_PROTECT' });
    expect((await emulatedDriveInfo(drive.path)).ranges[0]).toMatchObject({ readLocked: false, writeLocked: true });
  });

  it('GenKey replaces the media key: old data becomes unreadable', async () => {
    const data = pattern(8);
    await RawTcg.using(drive.path, (raw) => setUp(raw, false));
    await writeEmulatedDrive(drive.path, 50, data);
    await RawTcg.using(drive.path, (raw) =>
      raw.withSession(UID.lockingSp, UID.admin1, SID_PIN, async (call) => {
        const active = await call(UID.globalRange, METHOD.get, getArgs(10, 10));
        expect((column(active.results, 10) as Buffer).toString('hex')).toBe(UID.kAesGlobal);
        expect((await call(UID.kAesGlobal, METHOD.genKey, [])).status).toBe(STATUS.success);
        const user = await call(UID.kAesGlobal, METHOD.get, getArgs(3, 3));
        expect(user.status).toBe(STATUS.notAuthorized); // the key column is never readable
      }),
    );
    const after = await readEmulatedDrive(drive.path, 50, 8);
    expect(after).not.toEqual(data);
    expect(after.includes(MARKER)).toBe(false);
    // The range stays usable with its new key.
    await writeEmulatedDrive(drive.path, 50, data);
    expect(await readEmulatedDrive(drive.path, 50, 8)).toEqual(data);
    // And the user can still unlock it after a power cycle: GenKey sealed the new key for them.
    await powerCycleEmulatedDrive(drive.path);
    await expect(readEmulatedDrive(drive.path, 50, 8)).rejects.toMatchObject({ code: 'EMU_DATA_PROTECT' });
    await RawTcg.using(drive.path, (raw) =>
      raw.withSession(UID.lockingSp, UID.user1, USER1_PIN, async (call) => {
        expect(await setLocked(call, UID.globalRange, 0)).toBe(0);
      }),
    );
    expect(await readEmulatedDrive(drive.path, 50, 8)).toEqual(data);
  });

  it('Revert by SID returns to factory state and destroys every key', async () => {
    const data = pattern(4);
    await RawTcg.using(drive.path, (raw) => setUp(raw, false));
    await writeEmulatedDrive(drive.path, 0, data);
    await RawTcg.using(drive.path, (raw) =>
      raw.withSession(UID.adminSp, UID.sid, SID_PIN, async (call) => {
        expect((await call(UID.adminSp, METHOD.revert, [])).status).toBe(STATUS.success);
      }),
    );
    const info = await emulatedDriveInfo(drive.path);
    expect(info.lockingSpActive).toBe(false);
    expect(await readEmulatedDrive(drive.path, 0, 4)).not.toEqual(data);
    // SID is back to the MSID.
    await RawTcg.using(drive.path, async (raw) => {
      const msid = await raw.withSession(UID.adminSp, undefined, undefined, async (call) => {
        return column((await call(UID.cpinMsid, METHOD.get, getArgs(3, 3))).results, 3) as Buffer;
      });
      expect((await raw.startSession(UID.adminSp, UID.sid, SID_PIN)).status).toBe(STATUS.notAuthorized);
      const s = await raw.startSession(UID.adminSp, UID.sid, msid);
      expect(s.status).toBe(0);
      await raw.endSession(s.tsn, s.hsn);
    });
  });

  it('RevertSP with KeepGlobalRangeKey keeps the data; PSID revert does not', async () => {
    const data = pattern(4);
    await RawTcg.using(drive.path, (raw) => setUp(raw, false));
    await writeEmulatedDrive(drive.path, 0, data);
    await RawTcg.using(drive.path, (raw) =>
      raw.withSession(UID.lockingSp, UID.admin1, SID_PIN, async (call) => {
        expect((await call(UID.thisSp, METHOD.revertSp, [named(0x060000, 1)])).status).toBe(0);
      }),
    );
    expect((await emulatedDriveInfo(drive.path)).lockingSpActive).toBe(false);
    expect(await readEmulatedDrive(drive.path, 0, 4)).toEqual(data);
    await RawTcg.using(drive.path, async (raw) => {
      expect((await raw.startSession(UID.adminSp, UID.psid, Buffer.from('WRONGPSID'))).status).toBe(
        STATUS.notAuthorized,
      );
      await raw.withSession(UID.adminSp, UID.psid, Buffer.from(drive.psid), async (call) => {
        expect((await call(UID.adminSp, METHOD.revert, [])).status).toBe(0);
      });
    });
    expect(await readEmulatedDrive(drive.path, 0, 4)).not.toEqual(data);
  });
});
