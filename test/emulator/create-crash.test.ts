/**
 * `drive emulate create` killed part-way (SIGKILL) must never leave a drive that neither destroy
 * nor a new create can handle. The test addon kills the creating process at each named step of
 * Drive::Create (KMIP_AGENT_TEST_CRASH_AT, native/test/crash_points.cc); after every crash both
 * `destroy` and a new `create` must work and leave nothing behind.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  createEmulatedDrive,
  destroyEmulatedDrive,
  emulatedDriveInfo,
  openEmulatedDrive,
} from '../../src/drives/emulator.js';
import { packageRoot } from '../../src/native/addon.js';
import { productionAddonPath } from '../support/addon.js';

/** The steps of Drive::Create, in order; the drive exists from `image-renamed` on. */
const STEPS = ['aside-created', 'image-sized', 'state-written', 'state-renamed', 'image-renamed'] as const;

let dir: string;
let image: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'kmip-agent-create-crash-'));
  image = join(dir, 'drive.img');
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** Runs createEmulatedDrive in a child process that the addon kills at `step` (if it is a step). */
function createInChild(step: string, env: NodeJS.ProcessEnv = {}) {
  const emulator = join(packageRoot(), 'dist/src/drives/emulator.js');
  const script = `
    const { createEmulatedDrive } = await import(${JSON.stringify(emulator)});
    await createEmulatedDrive(process.argv[1], 4, 'CRASH0001');
    console.log('created');
  `;
  return spawnSync(process.execPath, ['--input-type=module', '-e', script, image], {
    encoding: 'utf8',
    env: { ...process.env, KMIP_AGENT_TEST_CRASH_AT: step, ...env },
  });
}

/** Files next to the image that belong to it (image, state, files written aside). */
function driveFiles(): string[] {
  return readdirSync(dir).sort();
}

/** Key caches ("drive RAM") that name this image. */
function cachesOfImage(): string[] {
  const ram = process.env.KMIP_AGENT_EMU_RAM_DIR!;
  return readdirSync(ram).filter((name) => {
    try {
      return readFileSync(join(ram, name), 'utf8').includes(`\nimage ${image}\n`);
    } catch {
      return false; // removed meanwhile by another worker's orphan collection
    }
  });
}

async function expectWorkingDrive(): Promise<void> {
  expect((await emulatedDriveInfo(image)).serial).toMatch(/^(CRASH0001|AFTER0001)$/);
  const handle = await openEmulatedDrive(image);
  await handle.close();
}

describe('emulate create killed at each step', () => {
  it.each(STEPS)('killed at %s: destroy removes what is left, then create and destroy work', async (step) => {
    const child = createInChild(step);
    expect(child.signal).toBe('SIGKILL');
    expect(child.stdout).not.toContain('created');
    const left = driveFiles();
    expect(left.length).toBeGreaterThan(0);
    // Never an image without its state: the image appears last.
    if (left.includes('drive.img')) expect(left).toContain('drive.img.state');

    await destroyEmulatedDrive(image);
    expect(driveFiles()).toEqual([]);
    await expect(destroyEmulatedDrive(image)).rejects.toMatchObject({ code: 'EMU_NOT_FOUND' });

    await createEmulatedDrive(image, 4, 'AFTER0001');
    await expectWorkingDrive();
    await destroyEmulatedDrive(image);
    expect(driveFiles()).toEqual([]);
    expect(cachesOfImage()).toEqual([]);
  });

  it.each(STEPS)('killed at %s: a new create works without a destroy first', async (step) => {
    expect(createInChild(step).signal).toBe('SIGKILL');
    if (step === 'image-renamed') {
      // The drive was complete: it is a drive like any other.
      await expectWorkingDrive();
      await expect(createEmulatedDrive(image, 4, 'AFTER0001')).rejects.toMatchObject({ code: 'EMU_EXISTS' });
    } else {
      await createEmulatedDrive(image, 4, 'AFTER0001');
      expect((await emulatedDriveInfo(image)).serial).toBe('AFTER0001');
      // The leftovers of the killed create are gone with the new one in place.
      expect(driveFiles()).toEqual(['drive.img', 'drive.img.state']);
    }
    await expectWorkingDrive();
    await destroyEmulatedDrive(image);
    expect(driveFiles()).toEqual([]);
    expect(cachesOfImage()).toEqual([]);
  });

  it('without a crash point the same child creates the drive', async () => {
    const child = createInChild('none');
    expect(child.status).toBe(0);
    expect(child.stdout).toContain('created');
    await expectWorkingDrive();
  });

  it('the shipped addon has no crash points: the variable is ignored', async () => {
    const child = createInChild('aside-created', { KMIP_AGENT_ADDON: productionAddonPath() });
    expect(child.signal).toBeNull();
    expect(child.status).toBe(0);
    await expectWorkingDrive();
  });
});

describe('partial drives from elsewhere', () => {
  it('an image without a state file (e.g. made before creates were atomic) is named and destroyed', async () => {
    writeFileSync(image, Buffer.alloc(4096), { mode: 0o600 });
    await expect(emulatedDriveInfo(image)).rejects.toMatchObject({
      code: 'EMU_STATE_MISSING',
      message: expect.stringContaining('emulate destroy'),
    });
    await expect(createEmulatedDrive(image, 4, 'AFTER0001')).rejects.toMatchObject({ code: 'EMU_EXISTS' });
    await destroyEmulatedDrive(image);
    expect(driveFiles()).toEqual([]);
    await createEmulatedDrive(image, 4, 'AFTER0001');
    await expectWorkingDrive();
  });

  it('a state file without its image is destroyed', async () => {
    writeFileSync(`${image}.state`, 'stale', { mode: 0o600 });
    await destroyEmulatedDrive(image);
    expect(driveFiles()).toEqual([]);
  });

  it('destroy refuses while another process is creating the same drive, and leaves its files', async () => {
    // A create in progress holds the lock on its image aside: flock(1) holds it here until stdin closes.
    writeFileSync(`${image}.creating`, '', { mode: 0o600 });
    const child = spawn('flock', ['-x', `${image}.creating`, '-c', 'echo locked; read _'], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
    try {
      await expect(destroyEmulatedDrive(image)).rejects.toMatchObject({ code: 'EMU_BUSY' });
      await expect(createEmulatedDrive(image, 4, 'AFTER0001')).rejects.toMatchObject({ code: 'EMU_BUSY' });
      expect(driveFiles()).toEqual(['drive.img.creating']);
    } finally {
      child.stdin.end('\n');
      await new Promise((resolve) => child.once('exit', resolve));
    }
    await destroyEmulatedDrive(image);
    expect(driveFiles()).toEqual([]);
  });
});
