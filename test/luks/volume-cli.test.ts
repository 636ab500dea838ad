/** `kmip-agent volume luks ...` end to end (in-process CLI), checked against the cryptsetup CLI. */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runCliCaptured } from '../support/cli.js';
import { toJsonValue } from '../../src/cli/framework.js';
import { deviceMapperStatus, luksInfo } from '../../src/drives/luks.js';
import { cryptsetupAccepts, luksDumpJson, luksFormat } from './images.js';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
  json: () => Record<string, unknown> & { error?: { code: string; message: string } };
}

/** Each read gets a copy of `stdin`: the CLI wipes what it read, the test keeps its key. */
function cli(args: string[], stdin: Buffer = Buffer.alloc(0)): Promise<Run> {
  return runCliCaptured(args, () => Buffer.from(stdin));
}

describe('kmip-agent volume luks', () => {
  let dir: string;
  let image: string;
  let keyFile: string;
  let newKeyFile: string;
  const key = randomBytes(32);
  const newKey = randomBytes(32);

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'kmip-agent-volume-cli-'));
    image = join(dir, 'volume.img');
    luksFormat(image, key);
    keyFile = join(dir, 'key');
    newKeyFile = join(dir, 'new-key');
    writeFileSync(keyFile, key, { mode: 0o600 });
    writeFileSync(newKeyFile, newKey, { mode: 0o600 });
  });

  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('info --json is the header as luksInfo reads it; the human form names the UUID', async () => {
    const run = await cli(['--json', 'volume', 'luks', 'info', image]);
    expect(run.code).toBe(0);
    expect(run.json()).toEqual(toJsonValue(await luksInfo(image)));
    const human = await cli(['volume', 'luks', 'info', image]);
    expect(human.stdout).toContain((await luksInfo(image)).uuid);
    expect(human.stdout).toContain('pbkdf2-sha256');
  });

  it('check reads the key from a file or stdin; a wrong key fails with its code', async () => {
    expect((await cli(['--json', 'volume', 'luks', 'check', image, '--key-file', keyFile])).json()).toEqual({
      device: image,
      valid: true,
      slot: 0,
    });
    const viaStdin = await cli(['volume', 'luks', 'check', image, '--key-file', '-'], key);
    expect(viaStdin.code).toBe(0);
    expect(viaStdin.stdout).toContain('keyslot 0');
    const wrong = await cli(['--json', 'volume', 'luks', 'check', image, '--key-file', newKeyFile]);
    expect(wrong.code).toBe(1);
    expect(wrong.json().error?.code).toBe('LUKS_WRONG_KEY');
  });

  it('open exits 3 where device-mapper is missing', async () => {
    if (deviceMapperStatus().available) return; // activation itself is covered by luks-pykmip.test.ts
    const run = await cli([
      '--json',
      'volume',
      'luks',
      'open',
      image,
      'kmip-agent-cli',
      '--key-file',
      keyFile,
      '--read-only',
    ]);
    expect(run.code).toBe(3);
    expect(run.json().error).toMatchObject({ code: 'LUKS_DM_NOT_AVAILABLE' });
    expect(run.json().error?.message).toMatch(/^device-mapper not available: cannot activate/);
    const closing = await cli(['volume', 'luks', 'close', 'kmip-agent-cli']);
    expect(closing.code).toBe(3);
    expect(closing.stderr).toContain('[LUKS_DM_NOT_AVAILABLE]');
  });

  it('add-key then remove-key, confirmed by cryptsetup', async () => {
    const added = await cli([
      '--json',
      'volume',
      'luks',
      'add-key',
      image,
      '--key-file',
      keyFile,
      '--new-key-file',
      newKeyFile,
      '--slot',
      '4',
    ]);
    expect(added.code).toBe(0);
    expect(added.json()).toEqual({ device: image, slot: 4 });
    expect(cryptsetupAccepts(image, newKey, 4)).toBe(true);

    const removeSlot0 = ['--json', 'volume', 'luks', 'remove-key', image, '--key-file', newKeyFile, '--slot', '0'];
    // Removing a keyslot cannot be undone: without --yes nothing happens.
    const unconfirmed = await cli(removeSlot0);
    expect(unconfirmed.code).toBe(2);
    expect(unconfirmed.json().error?.code).toBe('USAGE_CONFIRM');
    expect(Object.keys(luksDumpJson(image).keyslots).sort()).toEqual(['0', '4']);
    const removed = await cli([...removeSlot0, '--yes']);
    expect(removed.code).toBe(0);
    expect(removed.json()).toEqual({ device: image, slot: 0, removed: true });
    expect(Object.keys(luksDumpJson(image).keyslots)).toEqual(['4']);
    expect(cryptsetupAccepts(image, key)).toBe(false);

    const byKey = await cli(
      ['volume', 'luks', 'remove-key', image, '--key-file', '-', '--remove-key-file', newKeyFile, '--yes'],
      newKey,
    );
    expect(byKey.code).toBe(1);
    expect(byKey.stderr).toContain('[LUKS_KEYSLOT_LAST]');
    expect(cryptsetupAccepts(image, newKey, 4)).toBe(true);
  });

  it('LUKS1 is "not supported on this device": exit 3', async () => {
    const luks1 = join(dir, 'luks1.img');
    luksFormat(luks1, key, 'luks1');
    const run = await cli(['--json', 'volume', 'luks', 'info', luks1]);
    expect(run.code).toBe(3);
    expect(run.json().error?.code).toBe('LUKS_UNSUPPORTED_VERSION');
  });

  it('--help lists every luks command', async () => {
    const run = await cli(['volume', 'luks', '--help']);
    expect(run.code).toBe(0);
    for (const sub of ['info', 'check', 'open', 'close', 'add-key', 'remove-key'])
      expect(run.stdout).toContain(`  ${sub} `);
  });
});

describe('kmip-agent volume luks usage errors', () => {
  it.each([
    ['no luks command', ['volume', 'luks']],
    ['an unknown luks command', ['volume', 'luks', 'format', 'x']],
    ['an unknown volume type', ['volume', 'plain', 'info', 'x']],
    ['a missing key file option', ['volume', 'luks', 'check', '/dev/null']],
    ['a missing positional', ['volume', 'luks', 'open', '/dev/null', '--key-file', '/dev/null']],
    ['an unknown option', ['volume', 'luks', 'info', '/dev/null', '--keyfile', 'x']],
    [
      'both --slot and --remove-key-file',
      ['volume', 'luks', 'remove-key', '/dev/null', '--key-file', 'a', '--slot', '1', '--remove-key-file', 'b'],
    ],
    ['neither --slot nor --remove-key-file', ['volume', 'luks', 'remove-key', '/dev/null', '--key-file', 'a']],
    [
      'a bad slot number',
      ['volume', 'luks', 'add-key', '/dev/null', '--key-file', 'a', '--new-key-file', 'b', '--slot', 'x'],
    ],
    ['two keys from stdin', ['volume', 'luks', 'add-key', '/dev/null', '--key-file', '-', '--new-key-file', '-']],
    ['an unreadable key file', ['volume', 'luks', 'check', '/dev/null', '--key-file', '/nonexistent/key']],
  ])('%s is a usage error (exit 2)', async (_what, args) => {
    const run = await cli(['--json', ...args]);
    expect(run.code).toBe(2);
    expect(run.json().error?.code).toMatch(/^USAGE/);
  });
});
