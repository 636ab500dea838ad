/** `kmip-agent drive emulate ...` and `drive read|write` on emulated drives, through the CLI contract. */
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/main.js';
import { runCliCaptured } from '../support/cli.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'kmip-agent-emu-cli-'));
  process.env.KMIP_AGENT_EMU_RAM_DIR = dir; // keep the drives' volatile key cache out of /dev/shm
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** Runs `kmip-agent drive <sub> ...args` in-process: errors become the CLI's error output and exit code. */
async function run(sub: string, args: string[], json: boolean, stdin = Buffer.alloc(0)) {
  const r = await runCliCaptured([...(json ? ['--json'] : []), 'drive', sub, ...args], stdin);
  return { code: r.code, stdout: r.stdout, stderr: r.stderr };
}

describe('drive emulate CLI', () => {
  it('creates a drive, prints the PSID once with a warning, and reports info', async () => {
    const img = join(dir, 'a.img');
    const created = await run('emulate', ['create', img, '--size', '8', '--serial', 'CLI001'], false);
    expect(created.code).toBe(0);
    expect(created.stdout).toMatch(/PSID: [A-Z2-9]{32}/);
    expect(created.stderr).toContain('printed only this once');
    const json = await run('emulate', ['info', `emu:${img}`], true);
    expect(json.code).toBe(0);
    const info = JSON.parse(json.stdout) as { serial: string; sizeMiB: number; ranges: unknown[] };
    expect(info).toMatchObject({ serial: 'CLI001', sizeMiB: 8 });
    expect(json.stdout).not.toMatch(/[A-Z2-9]{32}/);
    const human = await run('emulate', ['info', `emu:${img}`], false);
    expect(human.stdout).toContain('range 0 (global): locking off');
  });

  it('--json create is one document with the PSID; errors are {"error":{code,message}}', async () => {
    const img = join(dir, 'b.img');
    const created = await run('emulate', ['create', img, '--size', '4', '--serial', 'CLI002'], true);
    const doc = JSON.parse(created.stdout) as { psid: string; device: string };
    expect(doc.device).toBe(`emu:${img}`);
    expect(doc.psid).toMatch(/^[A-Z2-9]{32}$/);
    expect(created.stderr).toBe('');
    const again = await run('emulate', ['create', img, '--size', '4', '--serial', 'CLI002'], true);
    expect(again.code).toBe(1);
    expect(JSON.parse(again.stdout)).toMatchObject({ error: { code: 'EMU_EXISTS' } });
  });

  it('writes from a file or stdin, reads back as hex or into a file, and power cycles', async () => {
    const img = join(dir, 'c.img');
    await run('emulate', ['create', img, '--size', '4', '--serial', 'CLI003'], true);
    const input = join(dir, 'in.bin');
    writeFileSync(input, Buffer.from('hello emulated drive'));
    const written = await run('write', [`emu:${img}`, '--lba', '5', '--in', input], true);
    expect(JSON.parse(written.stdout)).toMatchObject({ lba: 5, blocks: 1, bytes: 20, padded: true });
    const read = await run('read', [`emu:${img}`, '--lba', '5'], true);
    const doc = JSON.parse(read.stdout) as { data: string };
    expect(Buffer.from(doc.data, 'hex').subarray(0, 20).toString()).toBe('hello emulated drive');
    expect(doc.data).toHaveLength(1024);
    const stdinWrite = await run('write', [`emu:${img}`, '--lba', '6', '--in', '-'], false, Buffer.alloc(1024, 0x61));
    expect(stdinWrite.stdout).toContain('wrote 1024 byte(s) as 2 block(s) at LBA 6');
    const out = join(dir, 'out.bin');
    await run('read', [`emu:${img}`, '--lba', '6', '--count', '2', '--out', out], false);
    expect(readFileSync(out)).toEqual(Buffer.alloc(1024, 0x61));
    const dump = await run('read', [`emu:${img}`, '--lba', '5'], false);
    expect(dump.stdout).toContain('68 65 6c 6c 6f');
    expect((await run('emulate', ['power-cycle', `emu:${img}`], true)).stdout).toContain('"powerCycled": true');
    // Destroying needs --yes: without it nothing is deleted.
    const unconfirmed = await run('emulate', ['destroy', `emu:${img}`], true);
    expect(unconfirmed.code).toBe(2);
    expect(JSON.parse(unconfirmed.stdout)).toMatchObject({ error: { code: 'USAGE_CONFIRM' } });
    expect(readdirSync(dir).filter((f) => f.startsWith('c.img')).length).toBeGreaterThan(0);
    expect((await run('emulate', ['destroy', `emu:${img}`, '--yes'], false)).stdout).toContain('destroyed');
    expect(readdirSync(dir).filter((f) => f.startsWith('c.img') || f.endsWith('.ram'))).toEqual([]);
  });

  it('usage errors exit 2 with stable codes', async () => {
    const img = join(dir, 'd.img');
    expect((await run('emulate', ['create', img, '--serial', 'X'], true)).code).toBe(2);
    expect((await run('emulate', ['create', img, '--size', 'ten', '--serial', 'X'], true)).code).toBe(2);
    expect((await run('emulate', ['frobnicate'], true)).code).toBe(2);
    const notEmu = await run('read', ['/dev/sda', '--lba', '0'], true);
    expect(notEmu.code).toBe(2);
    expect(JSON.parse(notEmu.stdout)).toMatchObject({ error: { code: 'USAGE_DEVICE' } });
    expect((await run('read', [`emu:${img}`, '--lba', '0', '--bogus'], true)).code).toBe(2);
    expect((await run('write', [`emu:${img}`, '--lba', '0'], true)).code).toBe(2);
    const missing = await run('read', [`emu:${img}`, '--lba', '0'], true);
    expect(missing.code).toBe(1);
    expect(JSON.parse(missing.stdout)).toMatchObject({ error: { code: 'EMU_NOT_FOUND' } });
  });

  it('is reachable through the kmip-agent entry point (drive group dispatch)', async () => {
    const img = join(dir, 'e.img');
    let out = '';
    const io = {
      stdout: (t: string) => void (out += t),
      stdoutBytes: () => undefined,
      stderr: () => undefined,
      readStdin: () => Buffer.alloc(0),
    };
    expect(await runCli(['--json', 'drive', 'emulate', 'create', img, '--size', '2', '--serial', 'MAIN01'], io)).toBe(
      0,
    );
    expect(JSON.parse(out)).toMatchObject({ device: `emu:${img}`, sizeMiB: 2 });
    out = '';
    expect(await runCli(['--json', 'drive', 'read', `emu:${img}`, '--lba', '0'], io)).toBe(0);
    expect((JSON.parse(out) as { data: string }).data).toBe('00'.repeat(512));
  });

  it('create accepts emu:<path> like every other command naming a drive', async () => {
    const img = join(dir, 'f.img');
    const created = await run('emulate', ['create', `emu:${img}`, '--size', '2', '--serial', 'EMU01'], true);
    expect(created.code).toBe(0);
    expect(JSON.parse(created.stdout)).toMatchObject({ device: `emu:${img}`, path: img });
    expect((await run('emulate', ['info', `emu:${img}`], true)).code).toBe(0);
  });

  it('the drive group lists the emulator commands in its --help', async () => {
    const help = await run('--help', [], false);
    expect(help.code).toBe(0);
    for (const name of ['emulate', 'read', 'write']) expect(help.stdout).toContain(`  ${name} `);
    const emulate = await run('emulate', ['--help'], false);
    expect(emulate.code).toBe(0);
    expect(emulate.stdout).toMatch(/^Usage: kmip-agent drive emulate <command>/);
    for (const name of ['create', 'power-cycle', 'info', 'destroy']) expect(emulate.stdout).toContain(`  ${name} `);
  });
});
