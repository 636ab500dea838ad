/**
 * Lockout safety across processes, as a field engineer meets it: ten separate `kmip-agent drive unlock`
 * runs with the same wrong PIN file spend one try in total, because every process of the agent (each CLI
 * run, the daemon's unlocker) shares the refused-key memory in the state directory. The emulated drive's
 * Admin1 TryLimit is 5: the budget below is counted so that one spent try too many locks it out and the
 * right PIN then fails, so each assertion can fail. Also: the sedutil-derived form of the same bytes is
 * another PIN, `drive forget-refusals` clears the memory, and the tries reserve refuses to spend the last
 * tries where the drive shows them without a PIN (the PSID's).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { opalOpener } from '../../src/agent/daemon.js';
import { RefusedKeyFile, REFUSED_KEYS_FILE, type RefusedKeysFile } from '../../src/agent/refused-keys.js';
import { OpalUnlocker } from '../../src/agent/unlockers.js';
import { emulatedDriveInfo, powerCycleEmulatedDrive } from '../../src/drives/emulator.js';
import { OpalDrive } from '../../src/drives/opal.js';
import { ADMIN1 } from '../../src/drives/types.js';
import { packageRoot } from '../../src/native/addon.js';
import { emulatorNative } from './emulated-support.js';

const main = join(packageRoot(), 'dist/kmip-agent.mjs');
const SERIAL = 'LOCKOUT-0001';
const TRY_LIMIT = 5; // native/emulator/drive_state.h kDefaultTryLimit

let dir: string;
let stateDir: string;
let image: string;
let spec: string;
let psid: string;
const pin = Buffer.from('the right admin1 pin');
const wrongPin = Buffer.from('not the pin');
let pinFile: string;
let wrongFile: string;

/** One separate `kmip-agent` process (the CLI as built in dist/), with --json; its exit code and document. */
async function agentProcess(args: string[]): Promise<{ code: number; json: { error?: { code: string } } }> {
  const env = { ...process.env, KMIP_AGENT_CONFIG_DIR: join(dir, 'no-config') };
  try {
    const { stdout } = await promisify(execFile)(process.execPath, [main, '--json', ...args], { env });
    return { code: 0, json: JSON.parse(stdout) as { error?: { code: string } } };
  } catch (error) {
    const e = error as { code?: number; stdout?: string };
    return { code: e.code ?? -1, json: JSON.parse(e.stdout ?? '{}') as { error?: { code: string } } };
  }
}

const unlockWith = (file: string, ...more: string[]) =>
  agentProcess(['drive', 'unlock', spec, '--pin-file', file, '--state-dir', stateDir, ...more]);

function memoryFile(): RefusedKeysFile {
  return JSON.parse(readFileSync(join(stateDir, REFUSED_KEYS_FILE), 'utf8')) as RefusedKeysFile;
}

let freshWrong = 0;
/** Sends `count` PINs the drive has never seen (each costs one Admin1 try), with this process's memory only. */
async function spendTries(count: number): Promise<void> {
  const drive = await OpalDrive.open(spec);
  try {
    for (let i = 0; i < count; i++) {
      await expect(drive.unlock(Buffer.from(`fresh wrong ${freshWrong++}`))).rejects.toMatchObject({
        code: 'TCG_NOT_AUTHORIZED',
      });
    }
  } finally {
    await drive.close();
  }
}

async function globalRangeLocked(): Promise<boolean> {
  return (await emulatedDriveInfo(image)).ranges[0]!.readLocked;
}

async function relock(): Promise<void> {
  const drive = await OpalDrive.open(spec);
  try {
    await drive.lock(pin);
  } finally {
    await drive.close();
  }
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'kmip-agent-lockout-'));
  stateDir = join(dir, 'state');
  image = join(dir, 'drive.img');
  spec = `emu:${image}`;
  psid = (await emulatorNative().create(image, 8, SERIAL)).psid;
  pinFile = join(dir, 'pin.bin');
  wrongFile = join(dir, 'wrong.bin');
  writeFileSync(pinFile, pin, { mode: 0o600 });
  writeFileSync(wrongFile, wrongPin, { mode: 0o600 });
  const drive = await OpalDrive.open(spec);
  try {
    await drive.takeOwnership(pin);
    await drive.activate(pin);
    await drive.setupRange(pin, { range: 0, readLockEnabled: true, writeLockEnabled: true });
    await drive.lock(pin);
  } finally {
    await drive.close();
  }
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('the refused-key memory across processes', () => {
  it('ten `drive unlock` processes with the same wrong PIN file spend one try; the right PIN still unlocks', async () => {
    const codes: string[] = [];
    for (let i = 0; i < 10; i++) {
      const run = await unlockWith(wrongFile);
      expect(run.code).toBe(1);
      codes.push(run.json.error!.code);
    }
    // The first run asked the drive; the nine after it knew better and sent nothing.
    expect(codes).toEqual(['TCG_NOT_AUTHORIZED', ...Array<string>(9).fill('TCG_PIN_KNOWN_WRONG')]);

    const file = memoryFile();
    expect(file.refused).toEqual([
      {
        drive: SERIAL,
        authority: 'Admin1',
        derivation: 'none',
        fingerprint: expect.stringMatching(/^[0-9a-f]{64}$/),
        at: expect.any(String),
      },
    ]);
    const text = readFileSync(join(stateDir, REFUSED_KEYS_FILE), 'utf8');
    for (const form of [wrongPin.toString('utf8'), wrongPin.toString('hex'), wrongPin.toString('base64')])
      expect(text).not.toContain(form);

    // The same bytes as a sedutil password are another PIN: asked once, then remembered on their own.
    const sedutil = [await unlockWith(wrongFile, '--sedutil-pins'), await unlockWith(wrongFile, '--sedutil-pins')];
    expect(sedutil.map((r) => r.json.error!.code)).toEqual(['TCG_NOT_AUTHORIZED', 'TCG_PIN_KNOWN_WRONG']);
    expect(memoryFile().refused.map((r) => r.derivation)).toEqual(['none', 'sedutil']);

    // Two tries spent so far: two more leave the last one, so any try the runs above spent twice would
    // have locked Admin1 out by now.
    await spendTries(TRY_LIMIT - 3);
    expect(await globalRangeLocked()).toBe(true);
    const right = await unlockWith(pinFile);
    expect(right).toMatchObject({ code: 0 });
    expect(await globalRangeLocked()).toBe(false);
    await relock();
  });

  it("`drive forget-refusals` clears the drive's memory (by authority, or all); the PIN is then tried again", async () => {
    const forget = (...more: string[]) =>
      agentProcess(['drive', 'forget-refusals', spec, '--state-dir', stateDir, ...more]);
    expect(await forget('--authority', 'user1')).toMatchObject({ code: 0, json: { identity: SERIAL, forgotten: 0 } });
    expect((await forget('--authority', 'Operator')).code).toBe(2);
    expect(await forget('--authority', 'admin1')).toMatchObject({
      code: 0,
      json: { authority: 'Admin1', forgotten: 2 },
    });
    expect(memoryFile().refused).toEqual([]);
    const again = await unlockWith(wrongFile);
    expect(again.json.error!.code).toBe('TCG_NOT_AUTHORIZED');
    expect(memoryFile().refused).toHaveLength(1);
  });

  it("the daemon's Opal unlocker shares the memory both ways", async () => {
    const refused = new RefusedKeyFile({ dir: stateDir });
    const unlocker = new OpalUnlocker({ open: opalOpener({ refusedKeys: refused, triesReserve: 2 }) }, refused);
    const target = { id: SERIAL, kind: 'opal' as const, device: spec, keyUid: 'uid-1' };
    // Refused by a CLI run: the daemon does not even open the drive.
    await expect(unlocker.unlock(target, Buffer.from(wrongPin))).rejects.toMatchObject({
      code: 'DRIVE_PIN_ALREADY_REFUSED',
    });
    // Refused at boot (one try): a CLI run afterwards does not send it.
    const badKey = Buffer.from('a key the server got wrong');
    await expect(unlocker.unlock(target, badKey)).rejects.toMatchObject({ code: 'DRIVE_PIN_REFUSED' });
    await expect(unlocker.unlock(target, badKey)).rejects.toMatchObject({ code: 'DRIVE_PIN_ALREADY_REFUSED' });
    const badKeyFile = join(dir, 'bad-key.bin');
    writeFileSync(badKeyFile, badKey, { mode: 0o600 });
    expect((await unlockWith(badKeyFile)).json.error!.code).toBe('TCG_PIN_KNOWN_WRONG');
    expect(memoryFile().refused).toHaveLength(2);
    // Two tries spent since the last success: two more leave one; had any run above spent one, the right key fails.
    await spendTries(TRY_LIMIT - 3);
    expect(await unlocker.unlock(target, Buffer.from(pin))).toBe('unlocked');
    expect(await globalRangeLocked()).toBe(false);
  });
});

describe('the tries reserve', () => {
  it('refuses to spend the last tries where the drive shows them (the PSID row), naming the way out', async () => {
    const refusedKeys = new RefusedKeyFile({ dir: stateDir });
    const drive = await OpalDrive.open(spec, { refusedKeys, triesReserve: 2 });
    try {
      for (let i = 0; i < TRY_LIMIT - 2; i++) {
        await expect(drive.psidRevert(Buffer.from(`WRONGPSID${i}`.padEnd(32, '0')))).rejects.toMatchObject({
          code: 'TCG_NOT_AUTHORIZED',
        });
      }
      // Two left: not even the right PSID is sent.
      const risk = drive.psidRevert(Buffer.from(psid));
      await expect(risk).rejects.toMatchObject({
        code: 'DRIVE_LOCKOUT_RISK',
        message: expect.stringMatching(/power cycle.*PSID revert/s),
      });
      expect(await drive.tries({ kind: 'psid' })).toEqual({ tries: TRY_LIMIT - 2, tryLimit: TRY_LIMIT });
      // Admin1's tries are not shown without a PIN: there the memory is the guard, and the reserve lets it through.
      await drive.unlock(pin);
    } finally {
      await drive.close();
    }
    await powerCycleEmulatedDrive(image);
    const after = await OpalDrive.open(spec, { refusedKeys, triesReserve: 2 });
    try {
      expect(await after.tries(ADMIN1)).toBeNull();
      await after.psidRevert(Buffer.from(psid));
      // A revert resets every PIN: what the memory held for this drive is gone with them.
      expect(memoryFile().refused.filter((r) => r.drive === SERIAL)).toEqual([]);
    } finally {
      await after.close();
    }
  });
});
