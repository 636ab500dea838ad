/**
 * Test helpers around the real cryptsetup CLI: LUKS images made by `cryptsetup luksFormat`, header
 * dumps and passphrase tests to confirm what the addon did, loop devices, file fingerprints.
 * Keys always go through stdin, never argv.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, openSync, readFileSync, readSync, writeSync } from 'node:fs';

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

/** cryptsetup's default LUKS2 layout: two 16 KiB header areas, each a 4 KiB binary header then JSON. */
export const HEADER_AREA = 16384;
export const BINARY_HEADER = 4096;

/** Rewrites the checksum of the header area at `area` (SHA-256 over the area with the field zeroed). */
export function fixHeaderChecksum(header: Buffer, area: number): void {
  header.fill(0, area + 448, area + 448 + 64);
  createHash('sha256')
    .update(header.subarray(area, area + HEADER_AREA))
    .digest()
    .copy(header, area + 448);
}

/** The parts of the LUKS2 JSON metadata that tests edit. */
export interface HeaderJson {
  keyslots: Record<string, { kdf: Record<string, unknown>; priority?: number }>;
  digests: Record<string, Record<string, unknown>>;
}

/**
 * Edits the JSON metadata of both header copies and fixes their checksums, as a damaged or hostile
 * writer could: a header that passes every integrity check and says whatever `edit` made it say.
 */
export function editHeaderJson(path: string, edit: (json: HeaderJson) => void): void {
  const header = Buffer.alloc(2 * HEADER_AREA);
  const fd = openSync(path, 'r+');
  try {
    readSync(fd, header, 0, header.length, 0);
    const text = header.subarray(BINARY_HEADER, HEADER_AREA).toString('latin1').replace(/\0+$/, '');
    const json = JSON.parse(text) as HeaderJson;
    edit(json);
    const edited = Buffer.from(JSON.stringify(json), 'latin1');
    for (const area of [0, HEADER_AREA]) {
      header.fill(0, area + BINARY_HEADER, area + HEADER_AREA);
      edited.copy(header, area + BINARY_HEADER);
      fixHeaderChecksum(header, area);
    }
    writeSync(fd, header, 0, header.length, 0);
  } finally {
    closeSync(fd);
  }
}

export function sha256(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

export { attachLoop, detachLoop } from '../support/loop.js';
