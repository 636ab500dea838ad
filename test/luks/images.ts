/**
 * Test helpers around the real cryptsetup CLI: LUKS images made by `cryptsetup luksFormat`, header
 * dumps and passphrase tests to confirm what the addon did, loop devices, file fingerprints.
 * Keys always go through stdin, never argv.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, openSync, readFileSync, writeSync } from 'node:fs';

const CRYPTSETUP = 'cryptsetup';
/** 16 MiB of LUKS2 metadata + keyslots by default, plus room for data. */
export const IMAGE_SIZE = 20 * 1024 * 1024;
/** Fast PBKDF for test images (the tests are about headers and keys, not brute-force cost). */
const FAST_PBKDF = ['--pbkdf', 'pbkdf2', '--pbkdf-force-iterations', '1000'];

export function makeImage(path: string, size = IMAGE_SIZE): void {
  const fd = openSync(path, 'w');
  try {
    writeSync(fd, Buffer.alloc(1), 0, 1, size - 1);
  } finally {
    closeSync(fd);
  }
}

/** `cryptsetup luksFormat` on a fresh image; `extra` adds options (cipher, sizes, label, ...). */
export function luksFormat(path: string, key: Buffer, type: 'luks1' | 'luks2' = 'luks2', extra: string[] = []): void {
  makeImage(path);
  execFileSync(
    CRYPTSETUP,
    ['luksFormat', '--batch-mode', '--type', type, ...FAST_PBKDF, ...extra, '--key-file', '-', path],
    { input: key },
  );
}

export interface DumpJson {
  keyslots: Record<
    string,
    { type: string; key_size: number; kdf: { type: string; hash?: string; iterations?: number } }
  >;
  tokens: Record<string, { type: string; keyslots: string[] }>;
  segments: Record<string, { type: string; offset: string; size: string; encryption: string; sector_size: number }>;
  digests: Record<string, unknown>;
  config: { json_size: string; keyslots_size: string };
}

/** `cryptsetup luksDump --dump-json-metadata`: the header as cryptsetup itself reads it. */
export function luksDumpJson(path: string): DumpJson {
  return JSON.parse(
    execFileSync(CRYPTSETUP, ['luksDump', '--dump-json-metadata', path], { encoding: 'utf8' }),
  ) as DumpJson;
}

export function luksDumpText(path: string): string {
  return execFileSync(CRYPTSETUP, ['luksDump', path], { encoding: 'utf8' });
}

export function luksUuid(path: string): string {
  return execFileSync(CRYPTSETUP, ['luksUUID', path], { encoding: 'utf8' }).trim();
}

/** `cryptsetup open --test-passphrase`: does key open the volume (optionally: that keyslot)? */
export function cryptsetupAccepts(path: string, key: Buffer, slot?: number): boolean {
  const args = [
    'open',
    '--test-passphrase',
    '--key-file',
    '-',
    ...(slot === undefined ? [] : ['--key-slot', String(slot)]),
    path,
  ];
  return spawnSync(CRYPTSETUP, args, { input: key }).status === 0;
}

/** Imports a LUKS2 token (JSON) with the cryptsetup CLI. */
export function importToken(path: string, token: object): void {
  execFileSync(CRYPTSETUP, ['token', 'import', path], { input: JSON.stringify(token) });
}

export function sha256(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

export { attachLoop, detachLoop } from '../support/loop.js';
