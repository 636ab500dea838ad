/**
 * The one secret reader (framework.ts) as every command meets it: input in the wrong form or size is a
 * typed error before any drive, volume or server is touched. The target of each refused command does
 * not exist, so reaching it would show as EMU_NOT_FOUND / LUKS_DEVICE_NOT_FOUND / KMIP_CONNECTION_*:
 * the control cases prove that difference is visible.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packageRoot } from '../../src/native/addon.js';
import { freePort } from '../support/pykmip.js';
import { runCliCaptured } from '../support/cli.js';
import { makeTestPki, type TestPki } from '../support/certs.js';
import { createImage, emulatorNative, type EmulatedImage } from '../drives/emulated-support.js';

const NO_DRIVE = 'emu:/nonexistent/kmip-agent-secret-test.img';
const NO_VOLUME = '/nonexistent/kmip-agent-secret-test.luks';

let dir: string;
let pki: TestPki;
const file = (name: string, content: Buffer | string) => {
  const path = join(dir, name);
  writeFileSync(path, content, { mode: 0o600 });
  return path;
};

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'kmip-agent-secrets-'));
  pki = makeTestPki(join(dir, 'pki'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

type ErrorDoc = { error: { code: string; message: string } };
/** Runs with --json: the exit status and the error document. */
async function refusal(args: string[], stdin?: Buffer) {
  const run = await runCliCaptured(['--json', ...args], stdin);
  return { exit: run.code, ...run.json<ErrorDoc>().error };
}

/** A 32-byte PIN without any byte that could make it look like text. */
const binaryPin = () => Buffer.concat([Buffer.from([0x00, 0xff]), randomBytes(30)]);
const hexLine = (b: Buffer) => b.toString('hex') + '\n';

describe('a PIN in the wrong form or size is refused before the drive is opened', () => {
  it('control: an acceptable PIN file reaches the (missing) drive', async () => {
    for (const pin of [binaryPin(), Buffer.from('admin pin')])
      expect(
        await refusal(['drive', 'unlock', NO_DRIVE, '--pin-file', file(`ok-${Math.random()}`, pin)]),
      ).toMatchObject({
        exit: 1,
        code: 'EMU_NOT_FOUND',
      });
  });

  it.each([
    ['binary ending in a newline byte', Buffer.concat([binaryPin().subarray(0, 31), Buffer.from('\n')])],
    ['a typed word', 'password'],
    ['a generated password (pwgen -s 32)', 'Xq7ZpL2mNc9vRt4kWb8yHs3jFd6gAe5u'],
    ['text with spaces', 'correct horse battery staple'],
    ['hex digits of odd length', 'abc'],
  ])('accepted: %s (it reaches the drive)', async (_what, content) => {
    const path = file(`accepted-${Math.random()}`, content);
    expect(await refusal(['drive', 'unlock', NO_DRIVE, '--pin-file', path])).toMatchObject({
      exit: 1,
      code: 'EMU_NOT_FOUND',
    });
  });

  it.each([['unpadded base64 of 24 bytes', 'q+7ZpL2mNc9vRt4kWb8yHs3jFd6gAe5u']])(
    'refused as base64: %s',
    async (_what, content) => {
      const path = file(`b64-${Math.random()}`, content);
      expect(await refusal(['drive', 'unlock', NO_DRIVE, '--pin-file', path])).toMatchObject({
        exit: 2,
        code: 'SECRET_LOOKS_LIKE_BASE64',
      });
    },
  );

  it.each([
    ['hex text and a newline (what `kmip get` prints)', hexLine(binaryPin()), 'SECRET_LOOKS_LIKE_HEX'],
    ['hex text without a newline', binaryPin().toString('hex'), 'SECRET_LOOKS_LIKE_HEX'],
    ['short hex text', 'c0ffee\r\n', 'SECRET_LOOKS_LIKE_HEX'],
    ['base64 text', binaryPin().toString('base64') + '\n', 'SECRET_LOOKS_LIKE_BASE64'],
    ['text ending in a newline', 'admin pin\n', 'SECRET_TRAILING_NEWLINE'],
    ['an empty file', '', 'SECRET_EMPTY'],
    ['only a newline', '\n', 'SECRET_EMPTY'],
    ['33 bytes', Buffer.concat([binaryPin(), Buffer.from([0x01])]), 'SECRET_TOO_LONG'],
    ['1 MiB', Buffer.alloc(1024 * 1024, 0x01), 'SECRET_TOO_LONG'],
  ])('%s', async (_what, content, code) => {
    const path = file(`pin-${code}-${Math.random()}`, content);
    for (const command of ['unlock', 'lock', 'activate', 'mbr']) {
      const extra = command === 'mbr' ? ['--enable'] : [];
      const r = await refusal(['drive', command, NO_DRIVE, '--pin-file', path, ...extra]);
      expect(r).toMatchObject({ exit: 2, code });
      expect(r.message).toMatch(new RegExp(`^drive ${command}: the Admin1 PIN|^drive activate: the SID PIN`));
    }
  });

  it('the hex refusal says how to fix it', async () => {
    const r = await refusal(['drive', 'unlock', NO_DRIVE, '--pin-file', '-'], Buffer.from(hexLine(binaryPin())));
    expect(r).toMatchObject({ exit: 2, code: 'SECRET_LOOKS_LIKE_HEX' });
    expect(r.message).toContain('--hex');
    expect(r.message).toContain('xxd -r -p');
    expect(r.message).toContain('--pin-file - (stdin)');
  });

  it('a new PIN is checked like the others (take-ownership, set-pin)', async () => {
    const long = file('long', Buffer.alloc(40, 0x02));
    const ok = file('ok3', binaryPin());
    expect(await refusal(['drive', 'take-ownership', NO_DRIVE, '--new-pin-file', long])).toMatchObject({
      exit: 2,
      code: 'SECRET_TOO_LONG',
    });
    const setPin = await runCliCaptured([
      '--json',
      'drive',
      'set-pin',
      NO_DRIVE,
      '--pin-file',
      ok,
      '--new-pin-file',
      long,
    ]);
    expect(setPin.json()).toMatchObject({ error: { code: 'SECRET_TOO_LONG' } });
  });

  it('a missing file, a directory, two secrets from stdin: usage errors', async () => {
    const missing = await runCliCaptured(['--json', 'drive', 'unlock', NO_DRIVE, '--pin-file', join(dir, 'absent')]);
    expect(missing.code).toBe(2);
    expect(missing.json()).toMatchObject({ error: { code: 'USAGE_FILE' } });
    const directory = await runCliCaptured(['--json', 'drive', 'unlock', NO_DRIVE, '--pin-file', dir]);
    expect(directory.json()).toMatchObject({
      error: { code: 'USAGE_FILE', message: expect.stringContaining('directory') },
    });
    const twice = await runCliCaptured(
      ['--json', 'drive', 'set-pin', NO_DRIVE, '--pin-file', '-', '--new-pin-file', '-'],
      binaryPin(),
    );
    expect(twice.code).toBe(2);
    expect(twice.json()).toMatchObject({
      error: { code: 'USAGE', message: expect.stringContaining('--new-pin-file') },
    });
  });

  it('reads no more than the cap: stdin is asked for a few dozen bytes, /dev/zero fails at once', async () => {
    const reads: number[] = [];
    const huge = Buffer.alloc(8 * 1024 * 1024, 0x30);
    const run = await runCliCaptured(['--json', 'drive', 'unlock', NO_DRIVE, '--pin-file', '-'], huge, reads);
    expect(run.json()).toMatchObject({ error: { code: 'SECRET_TOO_LONG' } });
    expect(reads).toHaveLength(1);
    expect(reads[0]).toBeLessThanOrEqual(2 * 32 + 4);
    expect(huge.subarray(0, reads[0]).equals(Buffer.alloc(reads[0]!))).toBe(true); // what was read is wiped

    expect(await refusal(['drive', 'unlock', NO_DRIVE, '--pin-file', '/dev/zero'])).toMatchObject({
      exit: 2,
      code: 'SECRET_TOO_LONG',
    });
    // The real process with /dev/zero as stdin: it must end (a reader without a cap never would).
    const cli = join(packageRoot(), 'dist/kmip-agent.mjs');
    const zero = spawnSync(
      'sh',
      ['-c', `exec "${process.execPath}" "${cli}" --json drive unlock ${NO_DRIVE} --pin-file - < /dev/zero`],
      {
        encoding: 'utf8',
        timeout: 20_000,
      },
    );
    expect(zero.status).toBe(2);
    expect(JSON.parse(zero.stdout)).toMatchObject({ error: { code: 'SECRET_TOO_LONG' } });
  });

  it('--hex decodes hex text, --raw takes it as it is, both reach the drive; --hex refuses what is not hex', async () => {
    const hex = file('hex', 'c0ffee');
    for (const flag of ['--hex', '--raw']) {
      const run = await runCliCaptured(['--json', 'drive', 'unlock', NO_DRIVE, '--pin-file', hex, flag]);
      expect(run.json()).toMatchObject({ error: { code: 'EMU_NOT_FOUND' } });
    }
    const longHex = file('long-hex', Buffer.alloc(33, 7).toString('hex'));
    expect(await refusal(['drive', 'unlock', NO_DRIVE, '--pin-file', longHex, '--hex'])).toMatchObject({
      exit: 2,
      code: 'SECRET_TOO_LONG',
    });
    const notHex = await runCliCaptured([
      '--json',
      'drive',
      'unlock',
      NO_DRIVE,
      '--pin-file',
      file('nh', 'admin pin'),
      '--hex',
    ]);
    expect(notHex.json()).toMatchObject({ error: { code: 'SECRET_NOT_HEX' } });
    const both = await runCliCaptured(['--json', 'drive', 'unlock', NO_DRIVE, '--pin-file', hex, '--hex', '--raw']);
    expect(both.json()).toMatchObject({ error: { code: 'USAGE' } });
  });

  it('--sedutil-pins: passwords are text, hex-looking ones included; --hex/--raw do not apply', async () => {
    const hexPassword = file('sedutil-hex', 'c0ffee\n');
    const run = await runCliCaptured([
      '--json',
      'drive',
      'unlock',
      NO_DRIVE,
      '--sedutil-pins',
      '--pin-file',
      hexPassword,
    ]);
    expect(run.json()).toMatchObject({ error: { code: 'EMU_NOT_FOUND' } });
    const withHex = await runCliCaptured([
      '--json',
      'drive',
      'unlock',
      NO_DRIVE,
      '--sedutil-pins',
      '--hex',
      '--pin-file',
      hexPassword,
    ]);
    expect(withHex.json()).toMatchObject({
      error: { code: 'USAGE', message: expect.stringContaining('--sedutil-pins') },
    });
    const long = file('sedutil-long', 'x'.repeat(256));
    const tooLong = await runCliCaptured(['--json', 'drive', 'unlock', NO_DRIVE, '--sedutil-pins', '--pin-file', long]);
    expect(tooLong.json()).toMatchObject({ error: { code: 'SECRET_TOO_LONG' } });
  });
});

describe('--sedutil-pins on an emulated drive: the trailing newline of a password is removed', () => {
  let image: EmulatedImage;
  beforeAll(async () => {
    image = await createImage(emulatorNative());
  });
  afterAll(() => image.cleanup());

  it('a hex-looking password with a newline sets the PIN; the same password without it then authenticates', async () => {
    const withNewline = file('pw-nl', 'deadbeef\n');
    const without = file('pw', 'deadbeef');
    expect(
      (await runCliCaptured(['drive', 'take-ownership', image.spec, '--sedutil-pins', '--new-pin-file', withNewline]))
        .code,
    ).toBe(0);
    const activated = await runCliCaptured(['drive', 'activate', image.spec, '--sedutil-pins', '--pin-file', without]);
    expect(activated.stderr).toBe('');
    expect(activated.code).toBe(0);
  });
});

describe('keys and values to register are checked the same way', () => {
  it('volume luks: hex or oversized keys are refused before the device is opened', async () => {
    const hexKey = file('key-hex', hexLine(randomBytes(32)));
    expect(
      (await runCliCaptured(['--json', 'volume', 'luks', 'check', NO_VOLUME, '--key-file', hexKey])).json(),
    ).toMatchObject({ error: { code: 'SECRET_LOOKS_LIKE_HEX' } });
    expect(
      (await runCliCaptured(['--json', 'volume', 'luks', 'check', NO_VOLUME, '--key-file', hexKey, '--hex'])).json(),
    ).toMatchObject({ error: { code: 'LUKS_DEVICE_NOT_FOUND' } });
    const big = file('key-big', Buffer.alloc(5000, 1));
    expect(
      (await runCliCaptured(['--json', 'volume', 'luks', 'open', NO_VOLUME, 'x', '--key-file', big])).json(),
    ).toMatchObject({ error: { code: 'SECRET_TOO_LONG' } });
    const remove = await runCliCaptured([
      '--json',
      'volume',
      'luks',
      'remove-key',
      NO_VOLUME,
      '--key-file',
      hexKey,
      '--slot',
      '1',
      '--yes',
    ]);
    expect(remove.json()).toMatchObject({ error: { code: 'SECRET_LOOKS_LIKE_HEX' } });
  });

  it('kmip register: a hex value is refused before the server is contacted', async () => {
    const dead = await freePort();
    const conn = [
      '--server',
      `127.0.0.1:${dead}`,
      '--ca',
      pki.ca.cert,
      '--cert',
      pki.client.cert,
      '--key',
      pki.client.key,
    ];
    const hexValue = file('value-hex', hexLine(randomBytes(32)));
    const refused = await runCliCaptured(['--json', 'kmip', 'register', ...conn, '--key-file', hexValue]);
    expect(refused.code).toBe(2);
    expect(refused.json()).toMatchObject({ error: { code: 'SECRET_LOOKS_LIKE_HEX' } });
    const decoded = await runCliCaptured(['--json', 'kmip', 'register', ...conn, '--key-file', hexValue, '--hex']);
    expect(decoded.json()).toMatchObject({ error: { code: 'KMIP_CONNECTION_REFUSED' } });
  });
});
