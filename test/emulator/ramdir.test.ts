/**
 * Where the drive's RAM (unwrapped media keys of unlocked ranges) may live: only tmpfs. An explicit
 * KMIP_AGENT_EMU_RAM_DIR is used as given; otherwise /dev/shm, then $XDG_RUNTIME_DIR, and with neither
 * the drive refuses with EMU_NO_VOLATILE_DIR instead of falling back to a disk directory. A missing
 * /dev/shm is made real with a private user + mount namespace (unshare) in which /dev is replaced;
 * those cases are skipped where unprivileged namespaces are unavailable.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createEmulatedDrive } from '../../src/drives/emulator.js';
import { addonPath } from '../../src/native/addon.js';

const unshare = spawnSync('unshare', ['-Urm', 'true'], { encoding: 'utf8' });
const namespacesWork = unshare.status === 0;
/** Why the namespace tests cannot run here (in their titles, the suite's skip-reason convention). */
const noNamespaces = namespacesWork
  ? ''
  : ` (skipped: unshare -Urm fails here, no user+mount namespaces: ${(unshare.stderr || String(unshare.error)).trim()})`;

// Hides the real /dev behind an empty tmpfs (so /dev/shm does not exist), keeping the few device
// nodes node needs, then creates a drive with the addon and prints `ok` or `error <code>`.
const HIDE_DEV_AND_CREATE = `
set -e
mkdir -p "$SCRATCH/olddev"
mount --rbind /dev "$SCRATCH/olddev"
mount -t tmpfs none /dev
for f in null zero urandom random; do touch /dev/$f; mount --bind "$SCRATCH/olddev/$f" /dev/$f; done
exec "$NODE" -e "$SCRIPT" "$IMAGE"
`;
const CREATE_SCRIPT = `
  const addon = require(${JSON.stringify(addonPath())});
  class E extends Error { constructor(m, c) { super(m); this.code = c; } }
  addon.setErrorClass(E);
  addon.emulator.create(process.argv[1], 1, 'RAMDIR').then(
    () => process.stdout.write('ok'),
    (e) => process.stdout.write('error ' + e.code),
  );
`;

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'kmip-agent-emu-ramdir-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** Creates a drive in a namespace without /dev/shm; returns the child's verdict. */
function createWithoutDevShm(xdgRuntimeDir: string | undefined): string {
  const env: NodeJS.ProcessEnv = { ...process.env, SCRATCH: dir, NODE: process.execPath, SCRIPT: CREATE_SCRIPT };
  env.IMAGE = join(dir, 'images', 'drive.img');
  delete env.KMIP_AGENT_EMU_RAM_DIR;
  delete env.XDG_RUNTIME_DIR;
  if (xdgRuntimeDir !== undefined) env.XDG_RUNTIME_DIR = xdgRuntimeDir;
  mkdirSync(join(dir, 'images'));
  const child = spawnSync('unshare', ['-Urm', 'sh', '-c', HIDE_DEV_AND_CREATE], { env, encoding: 'utf8' });
  expect(child.stderr).toBe('');
  return child.stdout;
}

describe('volatile key cache directory', () => {
  it.skipIf(!namespacesWork)(
    `without /dev/shm or $XDG_RUNTIME_DIR refuses with EMU_NO_VOLATILE_DIR, leaving nothing${noNamespaces}`,
    () => {
      expect(createWithoutDevShm(undefined)).toBe('error EMU_NO_VOLATILE_DIR');
      expect(readdirSync(join(dir, 'images'))).toEqual([]);
    },
  );

  it.skipIf(!namespacesWork)(`without /dev/shm keeps the cache in $XDG_RUNTIME_DIR${noNamespaces}`, () => {
    const runtimeDir = join(dir, 'run');
    mkdirSync(runtimeDir);
    expect(createWithoutDevShm(runtimeDir)).toBe('ok');
    expect(readdirSync(runtimeDir)).toEqual([expect.stringMatching(/^kmip-agent-emu-[0-9a-f]+\.ram$/)]);
  });

  it('uses an explicit KMIP_AGENT_EMU_RAM_DIR as given: a missing one fails and leaves no image', async () => {
    const saved = process.env.KMIP_AGENT_EMU_RAM_DIR;
    process.env.KMIP_AGENT_EMU_RAM_DIR = join(dir, 'no-such-dir');
    try {
      await expect(createEmulatedDrive(join(dir, 'drive.img'), 1, 'RAMDIR')).rejects.toMatchObject({ code: 'EMU_IO' });
      expect(readdirSync(dir)).toEqual([]);
    } finally {
      if (saved === undefined) delete process.env.KMIP_AGENT_EMU_RAM_DIR;
      else process.env.KMIP_AGENT_EMU_RAM_DIR = saved;
    }
  });
});
