/** Loop devices for tests that need a real block device (always detached afterwards). */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';

/** Attaches an image to a free loop device; returns its path. Detach with detachLoop. */
export function attachLoop(path: string): string {
  return execFileSync('losetup', ['--find', '--show', path], { encoding: 'utf8' }).trim();
}

export function detachLoop(device: string): void {
  spawnSync('losetup', ['--detach', device]);
}

export interface ScratchDevice {
  /** A temp directory holding `image`; removed after the suite. */
  dir: string;
  /** A 1 MiB zero-filled regular file. */
  image: string;
  /** The image attached to a loop device, or undefined where losetup cannot attach one. */
  loop: string | undefined;
  /** Why there is no loop device (losetup's own message), for the tests' ctx.skip(reason). */
  unavailable: string | undefined;
}

/**
 * Registers beforeAll/afterAll hooks in the calling describe block that make a scratch image and
 * attach it to a loop device; the returned object is filled in before the first test runs.
 */
export function useScratchLoopDevice(prefix: string): ScratchDevice {
  const scratch: ScratchDevice = { dir: '', image: '', loop: undefined, unavailable: undefined };
  beforeAll(() => {
    scratch.dir = mkdtempSync(join(tmpdir(), `kmip-agent-${prefix}-`));
    scratch.image = join(scratch.dir, 'disk.img');
    writeFileSync(scratch.image, Buffer.alloc(1024 * 1024));
    try {
      scratch.loop = attachLoop(scratch.image);
    } catch (error) {
      scratch.loop = undefined;
      const stderr = String((error as { stderr?: unknown }).stderr ?? '').trim();
      scratch.unavailable = `losetup could not attach a loop device on this machine: ${stderr || (error as Error).message}`;
    }
  });
  afterAll(() => {
    if (scratch.loop) detachLoop(scratch.loop);
    rmSync(scratch.dir, { recursive: true, force: true });
  });
  return scratch;
}
