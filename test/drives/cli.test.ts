/** `kmip-agent drive ...` through runCli: usage errors, exit codes, --json, and a full flow on an emulated drive. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCliCaptured } from '../support/cli.js';
import { createImage, emulatorNative, type EmulatedImage } from './emulated-support.js';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
  json: () => Record<string, unknown>;
}

/** The Buffers handed out as stdin, to check that secrets read from it are wiped. */
const stdinCopies: Buffer[] = [];

function cli(args: string[], stdin = Buffer.alloc(0)): Promise<Run> {
  return runCliCaptured(args, () => {
    const copy = Buffer.from(stdin);
    stdinCopies.push(copy);
    return copy;
  });
}

let dir: string;
let pinFile: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'kmip-agent-drive-cli-'));
  pinFile = join(dir, 'pin');
  writeFileSync(pinFile, 'admin pin', { mode: 0o600 });
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('drive CLI: usage and errors', () => {
  it('lists its commands and the emulator ones in --help', async () => {
    const r = await cli(['drive', '--help']);
    expect(r.code).toBe(0);
    for (const sub of ['discover', 'status', 'take-ownership', 'setup-range', 'unlock', 'psid-revert', 'erase']) {
      expect(r.stdout).toContain(sub);
    }
  });

  it('a device that does not exist: exit 1, DRIVE_NOT_FOUND with what was tried', async () => {
    const r = await cli(['--json', 'drive', 'unlock', '/dev/sdz', '--pin-file', pinFile]);
    expect(r.code).toBe(1);
    expect(r.json()).toMatchObject({ error: { code: 'DRIVE_NOT_FOUND', attempts: expect.any(Array) } });
  });

  it('something that is not a drive spec is a usage error (exit 2)', async () => {
    const r = await cli(['--json', 'drive', 'unlock', '/tmp/not-a-drive', '--pin-file', pinFile]);
    expect(r.code).toBe(2);
    expect(r.json()).toMatchObject({ error: { code: 'DRIVE_SPEC_INVALID' } });
  });

  it('usage errors exit 2: missing options, PINs on argv, unknown commands', async () => {
    expect((await cli(['drive', 'setup-range', 'emu:/x', '--range', '1', '--pin-file', pinFile])).code).toBe(2);
    expect((await cli(['drive', 'unlock', 'emu:/x', '--pin', 'secret'])).code).toBe(2);
    expect((await cli(['drive', 'unlock', 'emu:/x'])).code).toBe(2);
    expect((await cli(['drive', 'frobnicate', 'emu:/x'])).code).toBe(2);
    expect((await cli(['drive', 'erase', 'emu:/x', '--range', 'one', '--pin-file', pinFile])).code).toBe(2);
  });
});

const emu = emulatorNative();

describe('drive CLI on an emulated drive', () => {
  let image: EmulatedImage;
  beforeAll(async () => {
    image = await createImage(emu);
  });
  afterAll(() => image.cleanup());

  it('discover, own, activate, set up and lock a range, status, unlock, erase, revert', async () => {
    const d = image.spec;
    const disc = await cli(['--json', 'drive', 'discover', d]);
    expect(disc.code).toBe(0);
    expect(disc.json()).toMatchObject({ opal2: { feature: 'Opal2' }, locking: { lockingSupported: true } });
    expect(disc.json()).toMatchObject({
      backend: { name: 'emulated', attempts: [{ backend: 'emulated', outcome: 'chosen' }] },
    });
    const human = await cli(['drive', 'discover', d]);
    expect(human.stdout).toMatch(/^emu:.*: backend emulated \(/);
    expect(human.stdout).toContain('why: emu: names an emulated drive image');
    expect(human.stdout).toContain('SSC Opal2');

    // The new SID PIN from stdin.
    expect((await cli(['drive', 'take-ownership', d, '--new-pin-file', '-'], Buffer.from('admin pin'))).code).toBe(0);
    // The PIN Buffer the CLI read is zeroed once the command is done.
    expect(stdinCopies.at(-1)?.equals(Buffer.alloc('admin pin'.length))).toBe(true);
    expect((await cli(['drive', 'activate', d, '--pin-file', pinFile])).code).toBe(0);
    const setup = await cli([
      '--json',
      'drive',
      'setup-range',
      d,
      '--pin-file',
      pinFile,
      '--range',
      '1',
      '--start',
      '0',
      '--length',
      '2048',
      '--read-lock-enabled',
      '--write-lock-enabled',
    ]);
    expect(setup.code).toBe(0);
    expect((await cli(['drive', 'lock', d, '--pin-file', pinFile, '--range', '1'])).code).toBe(0);

    const status = await cli(['--json', 'drive', 'status', d, '--pin-file', pinFile]);
    expect(status.code).toBe(0);
    const s = status.json() as { lockingEnabled: boolean; ranges: { range: number; readLocked: boolean }[] };
    expect(s.lockingEnabled).toBe(true);
    expect(s.ranges.find((r) => r.range === 1)?.readLocked).toBe(true);

    const wrong = join(dir, 'wrong');
    writeFileSync(wrong, 'wrong pin');
    const refused = await cli(['--json', 'drive', 'unlock', d, '--pin-file', wrong, '--range', '1']);
    expect(refused.code).toBe(1);
    expect(refused.json()).toMatchObject({ error: { code: 'TCG_NOT_AUTHORIZED', status: 1 } });

    expect((await cli(['drive', 'unlock', d, '--pin-file', pinFile, '--range', '1', '--read-only'])).code).toBe(0);
    const tries = await cli(['--json', 'drive', 'tries', d, '--pin-file', pinFile]);
    // Reading Admin1's tries as Admin1 reset them: the output says so.
    expect(tries.json()).toMatchObject({ authority: 'Admin1', tries: { tries: 0 }, resetByAuthentication: true });
    const triesText = await cli(['drive', 'tries', d, '--pin-file', pinFile]);
    expect(triesText.stdout).toMatch(/^Admin1: 0 failed tries of 5\nnote: authenticating as Admin1 .*reset the count/);
    // Without a PIN nothing can be read: not a silent success.
    const unread = await cli(['--json', 'drive', 'tries', d]);
    expect(unread.code).toBe(1);
    expect(unread.json()).toMatchObject({
      error: { code: 'DRIVE_TRIES_NOT_READ', message: expect.stringContaining('nothing was read') },
    });
    expect((await cli(['drive', 'erase', d, '--pin-file', pinFile, '--range', '1', '--yes'])).code).toBe(0);
    const revert = await cli(['--json', 'drive', 'revert', d, '--pin-file', pinFile, '--yes']);
    expect(revert.code).toBe(0);
    expect(revert.json()).toMatchObject({ reverted: true });
    const after = await cli(
      ['--json', 'drive', 'psid-revert', d, '--psid-file', '-', '--yes'],
      Buffer.from(image.psid + '\n'),
    );
    expect(after.code).toBe(0);
  });

  it('--sedutil-pins derives PINs from the password like sedutil-cli, on every command', async () => {
    const other = await createImage(emu);
    try {
      const d = other.spec;
      expect((await cli(['drive', 'take-ownership', d, '--new-pin-file', pinFile, '--sedutil-pins'])).code).toBe(0);
      const raw = await cli(['--json', 'drive', 'activate', d, '--pin-file', pinFile]);
      expect(raw.json()).toMatchObject({ error: { code: 'TCG_NOT_AUTHORIZED' } });
      expect((await cli(['drive', 'activate', d, '--sedutil-pins', '--pin-file', pinFile])).code).toBe(0);
    } finally {
      other.cleanup();
    }
  });
});
