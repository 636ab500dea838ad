/**
 * One process owns the state directory at a time: the daemon, or a CLI command that changes state while
 * no daemon runs. The owner holds an flock on state.lock (released by the kernel when the process ends,
 * so a crash leaves nothing stale); the file also names the owner for the refusal message.
 */
import { constants, promises as fs } from 'node:fs';
import { join } from 'node:path';
import { KmipAgentError } from '../errors.js';
import { addonModule } from '../native/addon.js';

export const LOCK_FILE = 'state.lock';

interface FileLockNative {
  tryLock(fd: number): boolean;
  unlock(fd: number): void;
}

export class StateLockedError extends KmipAgentError {
  constructor(
    readonly dir: string,
    readonly owner: { pid?: number; role?: string },
  ) {
    const who =
      owner.pid === undefined
        ? 'another kmip-agent process'
        : `kmip-agent ${owner.role ?? 'process'} (pid ${owner.pid})`;
    super(
      `${who} owns the state in ${dir}; a second one would interleave its changes: ` +
        'stop it, or let the running daemon do this (commands reach it through its API socket)',
      'STATE_LOCKED',
      { details: { dir, ...owner } },
    );
  }
}

export interface StateLock {
  readonly dir: string;
  release(): Promise<void>;
}

/** Takes the state directory's lock for `role` ("daemon", "cli"), or throws StateLockedError at once. */
export async function acquireStateLock(
  dir: string,
  role: string,
  native: FileLockNative = addonModule<FileLockNative>('fileLock'),
): Promise<StateLock> {
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  const path = join(dir, LOCK_FILE);
  const handle = await fs.open(path, constants.O_RDWR | constants.O_CREAT, 0o600);
  try {
    // O_CREAT's mode applies only to a new file: one left by anyone else is made 0600 too.
    await handle.chmod(0o600);
    if (!native.tryLock(handle.fd)) throw new StateLockedError(dir, await readOwner(handle));
    await handle.truncate(0);
    await handle.write(JSON.stringify({ pid: process.pid, role }) + '\n', 0);
    await handle.sync();
  } catch (error) {
    await handle.close();
    throw error;
  }
  let released = false;
  return {
    dir,
    async release() {
      if (released) return;
      released = true;
      // Truncate first so a reader never sees a stale owner; closing drops the lock.
      await handle.truncate(0).catch(() => undefined);
      native.unlock(handle.fd);
      await handle.close();
    },
  };
}

async function readOwner(handle: fs.FileHandle): Promise<{ pid?: number; role?: string }> {
  try {
    const { buffer, bytesRead } = await handle.read(Buffer.alloc(256), 0, 256, 0);
    const owner = JSON.parse(buffer.subarray(0, bytesRead).toString('utf8')) as { pid?: unknown; role?: unknown };
    return {
      ...(typeof owner.pid === 'number' ? { pid: owner.pid } : {}),
      ...(typeof owner.role === 'string' ? { role: owner.role } : {}),
    };
  } catch {
    return {};
  }
}
