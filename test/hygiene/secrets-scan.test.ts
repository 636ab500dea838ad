/**
 * The secrets hygiene scan itself (secrets-scan.ts), on a planted tree: it must find a secret raw, as hex
 * and as base64 at any alignment inside a longer blob, name the file and encoding, leave alone the
 * places that must hold secrets, pick up the emulator's media keys from its RAM cache, and flag a state
 * file others can read. Without this, "0 hits" at the end of a run could mean a scan that sees nothing.
 */
import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  closeSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { patternsOf, scan, searchable, splitByBytes, type Secret } from './secrets-scan.js';

const dirs: string[] = [];
// Removed for real (rm in a child process, which the recorded run does not keep): the planted secrets
// must not reach the run's own scan at the end.
afterEach(() => dirs.splice(0).forEach((d) => execFileSync('rm', ['-rf', '--', d])));

function tree() {
  const root = mkdtempSync(join(tmpdir(), 'kmip-agent-scan-'));
  const work = mkdtempSync(join(tmpdir(), 'kmip-agent-scan-work-'));
  dirs.push(root, work);
  return { root, work };
}

/** A secret without a newline or NUL byte, so its raw form is one grep pattern. */
function secret(): Buffer {
  for (;;) {
    const s = randomBytes(32);
    if (!s.includes(0x0a) && !s.includes(0x00)) return s;
  }
}

describe('secrets hygiene scan', () => {
  it('finds a secret raw, as hex and as base64 at each alignment, naming file and encoding', async () => {
    const { root, work } = tree();
    const [raw, hex, b0, b1, b2, url, clean] = Array.from({ length: 7 }, secret);
    const blob = (prefix: number, s: Buffer) =>
      Buffer.concat([randomBytes(prefix), s, randomBytes(5)]).toString('base64');
    writeFileSync(join(root, 'image'), Buffer.concat([Buffer.alloc(4096), raw!, Buffer.alloc(4096)]));
    writeFileSync(join(root, 'daemon.log'), `{"msg":"fetched","key":"${hex!.toString('hex')}"}\n`);
    writeFileSync(join(root, 'a.json'), blob(0, b0!));
    writeFileSync(join(root, 'b.json'), blob(1, b1!));
    writeFileSync(join(root, 'c.json'), blob(2, b2!));
    writeFileSync(join(root, 'd.txt'), Buffer.concat([randomBytes(2), url!]).toString('base64url'));
    const secrets: Secret[] = [raw!, hex!, b0!, b1!, b2!, url!, clean!].map((value) => ({ value, source: 'test' }));
    // One grep per file at most: each file is searched by one of the concurrent greps, none twice or never.
    const result = await scan([root], secrets, work, { jobs: 6 });
    expect(result.secrets).toBe(7);
    expect(result.filesScanned).toBe(6);
    const found = Object.fromEntries(result.hits.map((h) => [h.file.slice(root.length + 1), h.encoding]));
    expect(found).toEqual({
      image: 'raw',
      'daemon.log': 'hex',
      'a.json': 'base64@0',
      'b.json': 'base64@1',
      'c.json': 'base64@2',
      'd.txt': expect.stringMatching(/^base64(url)?@2$/),
    });
    // The report names a secret by a digest prefix, never by its value.
    expect(JSON.stringify(result.hits)).not.toContain(hex!.toString('hex'));
  });

  it('finds a secret past the holes of a sparse image, and a raw secret holding NULs by its longest run without one', async () => {
    const { root, work } = tree();
    const [far, near] = [secret(), secret()];
    // NUL bytes inside the secret: in a binary file grep ends lines at NULs, so each NUL splits the pattern.
    near[5] = 0;
    near[20] = 0;
    const image = join(root, 'drive.img');
    writeFileSync(image, Buffer.concat([randomBytes(1000), near, randomBytes(1000)]));
    execFileSync('truncate', ['-s', '8G', image]);
    const fd = openSync(image, 'r+');
    writeSync(fd, far, 0, far.length, 6 * 2 ** 30 + 12345);
    closeSync(fd);
    expect(statSync(image).blocks * 512).toBeLessThan(2 ** 20); // sparse: the scan must not need the zeros
    const nearPattern = patternsOf(near).find((p) => p.encoding === 'raw')?.pattern;
    expect(nearPattern).toEqual(near.subarray(6, 20));
    const result = await scan(
      [root],
      [far, near].map((value) => ({ value, source: 'test' })),
      work,
    );
    expect(result.bytes).toMatchObject({ apparent: 8 * 2 ** 30 });
    expect(result.hits.map((h) => h.encoding)).toEqual(['raw', 'raw']);
  });

  it('splits the files among the concurrent greps by their bytes on disk, every file in one group', () => {
    const sizes: Record<string, number> = { a: 64, b: 8, c: 8, d: 16, e: 40, f: 0 };
    const groups = splitByBytes(
      Object.entries(sizes).map(([file, kib]) => ({ file, onDisk: kib * 1024 })),
      2,
    ).map((g) => g.sort());
    expect(groups.flat().sort()).toEqual(['a', 'b', 'c', 'd', 'e', 'f']);
    const kib = (g: string[]) => g.reduce((n, f) => n + sizes[f]!, 0);
    expect(groups.map(kib).sort((x, y) => x - y)).toEqual([64, 72]);
  });

  it('leaves no pattern file in its work directory (the record directory, which a second scan reads)', async () => {
    const { root, work } = tree();
    writeFileSync(join(root, 'log'), 'nothing here\n');
    await scan([root], [{ value: secret(), source: 'test' }], work);
    expect(readdirSync(work)).toEqual([]);
  });

  it('leaves the key server database and the drive RAM cache alone, and scans for the media keys found there', async () => {
    const { root, work } = tree();
    const stored = secret();
    const mediaKey = secret();
    mkdirSync(join(root, 'pykmip'));
    writeFileSync(join(root, 'pykmip', 'pykmip.db'), stored);
    writeFileSync(join(root, 'kmip-agent-emu-0011.ram'), `epoch 1\nimage /x\nkey.1 ${mediaKey.toString('hex')}\n`, {
      mode: 0o600,
    });
    writeFileSync(join(root, 'drive.img'), Buffer.concat([Buffer.alloc(512), mediaKey]));
    const result = await scan([root], [{ value: stored, source: 'pykmip' }], work);
    expect(result.secrets).toBe(2);
    expect(result.hits.map((h) => [h.file.slice(root.length + 1), h.source, h.encoding])).toEqual([
      ['drive.img', 'emulator-media-key', 'raw'],
    ]);
  });

  it('a key file (nothing but the key, as handed to --key-file) is where a key belongs, and must be 0600', async () => {
    const { root, work } = tree();
    const [a, b, c] = [secret(), secret(), secret()];
    writeFileSync(join(root, 'input.key'), a, { mode: 0o600 });
    writeFileSync(join(root, 'input.hex'), `${b.toString('hex')}\n`);
    chmodSync(join(root, 'input.hex'), 0o644);
    writeFileSync(join(root, 'notes.txt'), `the key is ${c.toString('hex')}\n`);
    const result = await scan(
      [root],
      [a, b, c].map((value) => ({ value, source: 'test' })),
      work,
    );
    expect(result.keyFiles).toBe(2);
    expect(result.hits.map((h) => h.file.slice(root.length + 1))).toEqual(['notes.txt']);
    expect(result.looseModes.map((m) => m.file.slice(root.length + 1))).toEqual(['input.hex']);
  });

  it('a value written in the source tree is a constant, not a generated secret', async () => {
    const { root, work } = tree();
    const source = mkdtempSync(join(tmpdir(), 'kmip-agent-scan-src-'));
    dirs.push(source);
    // The scan zeroes what it was given: each call gets its own copy.
    const hex = secret().toString('hex');
    const copy = (): Secret[] => [{ value: Buffer.from(hex, 'hex'), source: 'fixture' }];
    writeFileSync(join(source, 'fixture.test.ts'), `const key = Buffer.from('${hex}', 'hex');\n`);
    writeFileSync(join(root, 'transformed.js'), `const key = Buffer.from('${hex}', 'hex');\n`);
    expect(await scan([root], copy(), work, { sourceRoots: [source] })).toMatchObject({
      secrets: 0,
      skipped: 1,
      hits: [],
    });
    // Without the source tree to tell, the same value is a hit.
    expect((await scan([root], copy(), work)).hits.map((h) => h.encoding)).toEqual(['hex']);
  });

  it('flags secret and state files others may read, and skips test constants', async () => {
    const { root, work } = tree();
    mkdirSync(join(root, 'state'));
    writeFileSync(join(root, 'state', 'state.json'), '{}', { mode: 0o600 });
    writeFileSync(join(root, 'state', 'audit.log.1'), '', { mode: 0o600 });
    writeFileSync(join(root, 'drive.img.state'), '', { mode: 0o600 });
    writeFileSync(join(root, 'drive.img'), '');
    chmodSync(join(root, 'drive.img'), 0o644);
    writeFileSync(join(root, 'state', 'refused-keys.json'), '[]');
    chmodSync(join(root, 'state', 'refused-keys.json'), 0o640);
    const result = await scan([root], [], work);
    expect(result.modesChecked).toBe(5);
    expect(result.looseModes.map((m) => [m.file.slice(root.length + 1), m.mode])).toEqual(
      expect.arrayContaining([
        ['drive.img', '0644'],
        ['state/refused-keys.json', '0640'],
      ]),
    );
    expect(result.looseModes).toHaveLength(2);
    expect(
      searchable([
        { value: Buffer.alloc(32, 7), source: 't' },
        { value: secret(), source: 't' },
      ]),
    ).toMatchObject({
      skipped: 1,
    });
    // A newline splits the raw pattern; the longer side is searched.
    const split = Buffer.concat([randomBytes(8).map((b) => (b === 10 ? 11 : b)), Buffer.from([10]), secret()]);
    expect(patternsOf(split).find((p) => p.encoding === 'raw')?.pattern.length).toBe(32);
  });
});
