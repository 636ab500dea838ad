/**
 * Files that survive a crash or power loss at any instant: written beside the target, flushed, renamed
 * over it and the directory flushed, so a reader sees the old content or the new, never a torn mix.
 * The previous content can be kept as `<name>.prev` (one generation back) for recovery by hand.
 */
import { randomBytes } from 'node:crypto';
import { constants, promises as fs } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { KmipAgentError } from '../errors.js';

export interface DurableWriteOptions {
  /** File mode of the new file (default 0600: agent files are nobody else's business). */
  mode?: number;
  /** Keep the replaced content as `<path>.prev` (a hard link made before the rename). */
  keepPrevious?: boolean;
}

/** The path of the previous generation kept by `writeDurably(..., { keepPrevious: true })`. */
export function previousGeneration(path: string): string {
  return `${path}.prev`;
}

async function fsyncDir(dir: string): Promise<void> {
  const handle = await fs.open(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Writes `data` to `path` atomically and durably (temp file, fsync, rename, fsync of the directory). */
export async function writeDurably(
  path: string,
  data: string | Uint8Array,
  options: DurableWriteOptions = {},
): Promise<void> {
  const mode = options.mode ?? 0o600;
  const dir = dirname(path);
  const temp = join(dir, `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  let handle: fs.FileHandle | undefined;
  try {
    handle = await fs.open(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, mode);
    await handle.writeFile(data);
    // The umask may have narrowed the mode; never widen beyond what was asked, never keep less.
    await handle.chmod(mode);
    await handle.sync();
    await handle.close();
    handle = undefined;
    if (options.keepPrevious) {
      // The older generation is replaced only by a newer one: with no current file (deleted by hand,
      // put aside as corrupt) `.prev` may be the last good copy, and it stays.
      const prevTemp = join(dir, `.${basename(path)}.${randomBytes(6).toString('hex')}.prev.tmp`);
      try {
        await fs.link(path, prevTemp);
        await fs.rename(prevTemp, previousGeneration(path));
      } catch (error) {
        await fs.rm(prevTemp, { force: true }).catch(() => undefined);
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      }
    }
    await fs.rename(temp, path);
    await fsyncDir(dir);
  } catch (error) {
    await handle?.close().catch(() => undefined);
    await fs.rm(temp, { force: true }).catch(() => undefined);
    throw new KmipAgentError(`cannot write ${path}: ${(error as Error).message}`, 'FILE_WRITE_FAILED', {
      cause: error,
    });
  }
}

/** Removes temp files a crash left beside `path` (`.<name>.<random>.tmp`). */
export async function removeStaleTemps(path: string): Promise<void> {
  const dir = dirname(path);
  const prefix = `.${basename(path)}.`;
  let names: string[];
  try {
    names = await fs.readdir(dir);
  } catch {
    return;
  }
  await Promise.all(
    names.filter((n) => n.startsWith(prefix) && n.endsWith('.tmp')).map((n) => fs.rm(join(dir, n), { force: true })),
  );
}
