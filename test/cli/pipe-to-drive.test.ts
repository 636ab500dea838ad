/**
 * `kmip get UID | kmip-agent drive unlock DEV --pin-file -` as a new user types it, in real processes
 * joined by a shell pipe, against the real PyKMIP server and an emulated drive: the hex text is
 * refused before the drive is contacted (so no try is spent, however often it is repeated), and
 * `kmip get --out -` hands over the raw PIN that unlocks.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, statSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { packageRoot } from '../../src/native/addon.js';
import { runCliCaptured as cli } from '../support/cli.js';
import { pykmipCliArgs } from '../support/pykmip.js';
import { createImage, emulatorNative, type EmulatedImage } from '../drives/emulated-support.js';
import { uniqueName } from '../kmip/helpers.js';

const server = inject('pykmip');
const conn = pykmipCliArgs(server);
const main = join(packageRoot(), 'dist/kmip-agent.mjs');
/** The emulator's TryLimit for Admin1 (native/emulator/drive_state.h, kDefaultTryLimit). */
const TRY_LIMIT = 5;

const quote = (a: string) => `'${a.replace(/'/g, `'\\''`)}'`;
const agent = (args: string[]) => [process.execPath, main, ...args].map(quote).join(' ');

let dir: string;
let image: EmulatedImage;
let uid: string;
const pin = Buffer.concat([Buffer.from([0x00, 0x0a]), randomBytes(30)]); // raw bytes, a newline inside

/** Runs `kmip-agent kmip get UID <getArgs> | kmip-agent <drive...>` in a shell; the status is the drive command's. */
function pipe(getArgs: string[], driveArgs: string[]) {
  const run = spawnSync('sh', ['-c', `${agent(['kmip', 'get', ...conn, uid, ...getArgs])} | ${agent(driveArgs)}`], {
    encoding: 'utf8',
    env: { ...process.env, KMIP_AGENT_EMU_RAM_DIR: dir },
    timeout: 60_000,
  });
  return { code: run.status, stdout: run.stdout, stderr: run.stderr };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'kmip-agent-pipe-'));
  process.env.KMIP_AGENT_EMU_RAM_DIR = dir;
  image = await createImage(emulatorNative());
  const registered = await cli(
    ['--json', 'kmip', 'register', ...conn, '--key-file', '-', '--name', uniqueName('pipe-pin')],
    Buffer.from(pin),
  );
  expect(registered.code).toBe(0);
  uid = registered.json<{ uniqueIdentifier: string }>().uniqueIdentifier;
});
afterAll(() => {
  image.cleanup();
  rmSync(dir, { recursive: true, force: true });
});

describe('kmip get piped into drive commands', () => {
  it('--out - takes ownership and sets up a locked range; hex text is refused past the TryLimit; the raw PIN still unlocks', async () => {
    const d = image.spec;
    const owned = pipe(['--out', '-'], ['drive', 'take-ownership', d, '--new-pin-file', '-']);
    expect(owned.stderr).toBe('');
    expect(owned.code).toBe(0);
    expect(pipe(['--out', '-'], ['drive', 'activate', d, '--pin-file', '-']).code).toBe(0);
    const setup = pipe(
      ['--out', '-'],
      [
        'drive',
        'setup-range',
        d,
        '--pin-file',
        '-',
        '--range',
        '1',
        '--start',
        '0',
        '--length',
        '2048',
        '--read-lock-enabled',
        '--write-lock-enabled',
      ],
    );
    expect(setup.code).toBe(0);
    expect(pipe(['--out', '-'], ['drive', 'lock', d, '--pin-file', '-', '--range', '1']).code).toBe(0);

    // The default output is hex text: refused every time, the drive never asked.
    for (let i = 0; i <= TRY_LIMIT; i++) {
      const refused = pipe([], ['--json', 'drive', 'unlock', d, '--pin-file', '-', '--range', '1']);
      expect(refused.code).toBe(2);
      expect(JSON.parse(refused.stdout)).toMatchObject({ error: { code: 'SECRET_LOOKS_LIKE_HEX' } });
      expect((JSON.parse(refused.stdout) as { error: { message: string } }).error.message).toContain('--hex');
    }
    // Had any of them been sent, Admin1 would be locked out by now.
    const unlocked = pipe(['--out', '-'], ['--json', 'drive', 'unlock', d, '--pin-file', '-', '--range', '1']);
    expect(unlocked.stderr).toBe('');
    expect(JSON.parse(unlocked.stdout)).toMatchObject({ range: 1, state: 'unlocked' });

    // The hex text read as hex (--hex) is the same PIN.
    expect(pipe([], ['drive', 'lock', d, '--pin-file', '-', '--range', '1', '--hex']).code).toBe(0);
    const info = await cli(['--json', 'drive', 'emulate', 'info', d]);
    expect(info.json<{ ranges: { number: number; readLocked: boolean }[] }>().ranges[1]).toMatchObject({
      number: 1,
      readLocked: true,
    });
  });

  it('control: PINs the drive refuses do spend tries, up to lockout (so the test above could fail)', async () => {
    const other = await createImage(emulatorNative());
    try {
      const pinFile = join(dir, 'other-pin');
      writeFileSync(pinFile, pin, { mode: 0o600 });
      const d = other.spec;
      expect((await cli(['drive', 'take-ownership', d, '--new-pin-file', pinFile])).code).toBe(0);
      expect((await cli(['drive', 'activate', d, '--pin-file', pinFile])).code).toBe(0);
      for (let i = 0; i < TRY_LIMIT; i++) {
        const wrong = join(dir, `wrong-${i}`);
        writeFileSync(wrong, randomBytes(16), { mode: 0o600 });
        expect((await cli(['--json', 'drive', 'lock', d, '--pin-file', wrong])).json()).toMatchObject({
          error: { code: 'TCG_NOT_AUTHORIZED' },
        });
      }
      const locked = await cli(['--json', 'drive', 'lock', d, '--pin-file', pinFile]);
      expect(locked.code).toBe(1);
    } finally {
      other.cleanup();
    }
  });
});

describe('kmip get --out', () => {
  it('FILE: the raw value, mode 0600; an existing file is kept unless --force; nothing is left on failure', async () => {
    const out = join(dir, 'value.bin');
    const got = await cli(['--json', 'kmip', 'get', ...conn, uid, '--out', out]);
    expect(got.code).toBe(0);
    expect(got.json()).toMatchObject({ uniqueIdentifier: uid, out, bytes: pin.length });
    expect(got.stdout).not.toContain(pin.toString('hex'));
    expect(readFileSync(out).equals(pin)).toBe(true);
    expect(statSync(out).mode & 0o777).toBe(0o600);

    writeFileSync(out, 'keep me', { mode: 0o644 });
    const again = await cli(['--json', 'kmip', 'get', ...conn, uid, '--out', out]);
    expect(again.code).toBe(2);
    expect(again.json()).toMatchObject({ error: { code: 'USAGE_FILE_EXISTS' } });
    expect(readFileSync(out, 'utf8')).toBe('keep me');
    const forced = await cli(['kmip', 'get', ...conn, uid, '--out', out, '--force']);
    expect(forced.code).toBe(0);
    expect(forced.stdout).toMatch(/^wrote 32 bytes of .* \(mode 0600\)\n$/);
    expect(readFileSync(out).equals(pin)).toBe(true);
    expect(statSync(out).mode & 0o777).toBe(0o600);

    const missing = join(dir, 'missing.bin');
    expect((await cli(['kmip', 'get', ...conn, '424242', '--out', missing])).code).toBe(1);
    expect(existsSync(missing)).toBe(false);
  });

  it('-: raw bytes on stdout; the default stays hex; --out - with --json is a usage error', async () => {
    const raw = await cli(['kmip', 'get', ...conn, uid, '--out', '-']);
    expect(raw.code).toBe(0);
    expect(raw.stdoutBytes.equals(pin)).toBe(true);
    expect((await cli(['kmip', 'get', ...conn, uid])).stdout).toBe(pin.toString('hex') + '\n');
    expect((await cli(['--json', 'kmip', 'get', ...conn, uid, '--out', '-'])).code).toBe(2);
    expect((await cli(['--json', 'kmip', 'get', ...conn, uid, '--force'])).code).toBe(2);
  });
});
