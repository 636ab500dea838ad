/**
 * TEST FIXTURE (a vitest setup file, active only in a recorded run: see test-run.ts). Tests remove their
 * temp directories when they finish, but the secrets hygiene scan at the end of the run must see what
 * they held: logs, state and config directories, audit files, drive images and state files. So, in a
 * recorded run, a removal that a test makes (the caller is under test/) of a path inside the run's temp
 * directory moves it to `<run>/kept/` instead. Removals the product code makes (src/, the CLI, the
 * native code) are left alone: they are behaviour under test.
 */
import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { keptPlace, testRunDir } from './test-run.js';

const testsRoot = resolve(fileURLToPath(new URL('..', import.meta.url))) + sep;

/** In a recorded run, where a test's removal of `path` moves it instead (see keptPlace); else undefined. */
function keepInstead(path: fs.PathLike): string | undefined {
  // Frames below this function: [1] the wrapper, [2] the code that asked for the removal.
  const holder: { stack?: string } = {};
  Error.captureStackTrace(holder, keepInstead);
  const caller = (holder.stack ?? '').split('\n')[2] ?? '';
  const file = /\(?(?:file:\/\/)?(\/[^():]+):\d+:\d+\)?$/.exec(caller.trim())?.[1] ?? '';
  return file.startsWith(testsRoot) ? keptPlace(String(path)) : undefined;
}

/** Moves `path` to `place`; if it cannot be moved (a mount point, say), removes it as asked. */
function keepOr(path: fs.PathLike, place: string, remove: () => void): void {
  try {
    fs.renameSync(path, place);
  } catch {
    remove();
  }
}

const installed = Symbol.for('kmip-agent.keep-for-scan');
const state = globalThis as { [installed]?: boolean };
// Setup files run before every test file of a worker: wrap once.
if (testRunDir() && !state[installed]) {
  state[installed] = true;
  const { rmSync, unlinkSync } = fs;
  const { rm, unlink } = fs.promises;
  fs.rmSync = function rmSyncOrKeep(path: fs.PathLike, options?: fs.RmOptions): void {
    const place = keepInstead(path);
    if (place) keepOr(path, place, () => rmSync(path, options));
    else rmSync(path, options);
  };
  fs.unlinkSync = function unlinkSyncOrKeep(path: fs.PathLike): void {
    const place = keepInstead(path);
    if (place) keepOr(path, place, () => unlinkSync(path));
    else unlinkSync(path);
  };
  fs.promises.rm = async function rmOrKeep(path: fs.PathLike, options?: fs.RmOptions): Promise<void> {
    const place = keepInstead(path);
    if (place) keepOr(path, place, () => rmSync(path, options));
    else await rm(path, options);
  };
  fs.promises.unlink = async function unlinkOrKeep(path: fs.PathLike): Promise<void> {
    const place = keepInstead(path);
    if (place) keepOr(path, place, () => unlinkSync(path));
    else await unlink(path);
  };
  // ESM imports of node:fs and node:fs/promises see the wrappers too.
  syncBuiltinESMExports();
}
