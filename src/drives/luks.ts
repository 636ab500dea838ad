/**
 * LUKS2 volumes through libcryptsetup (addon module `luks`): header info, key checks without
 * activating, open/close of dm-crypt mappings, keyslot add/remove, format. Every call runs off the JS thread.
 *
 * Keys are passed as Buffers and copied by the addon into self-wiping memory; the caller still owns
 * (and must zero) its own Buffers. Failures are `LuksError`s with stable codes (see LuksErrorCode).
 */
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync, realpathSync } from 'node:fs';
import { basename, join } from 'node:path';
import { KmipAgentError, isKmipAgentError } from '../errors.js';
import { addonModule } from '../native/addon.js';

export type LuksErrorCode =
  | 'LUKS_NOT_LUKS'
  | 'LUKS_UNSUPPORTED_VERSION'
  | 'LUKS_CORRUPT_HEADER'
  | 'LUKS_WRONG_KEY'
  | 'LUKS_DM_NOT_AVAILABLE'
  | 'LUKS_BUSY'
  | 'LUKS_ALREADY_ACTIVE'
  | 'LUKS_NOT_ACTIVE'
  | 'LUKS_DEVICE_NOT_FOUND'
  | 'LUKS_PERMISSION_DENIED'
  | 'LUKS_IO_ERROR'
  | 'LUKS_OUT_OF_MEMORY'
  | 'LUKS_INVALID_ARGUMENT'
  | 'LUKS_KEYSLOT_INVALID'
  | 'LUKS_KEYSLOT_IN_USE'
  | 'LUKS_KEYSLOT_INACTIVE'
  | 'LUKS_KEYSLOT_FULL'
  | 'LUKS_KEYSLOT_LAST'
  | 'LUKS_KEYSLOT_NOT_FOUND'
  | 'LUKS_KEYSLOT_COST_EXCESSIVE'
  | 'LUKS_DEVICE_IN_USE'
  | 'LUKS_FAILED';

export class LuksError extends KmipAgentError {
  declare readonly code: LuksErrorCode;
}

export interface LuksPbkdf {
  type: string;
  /** pbkdf2 only. */
  hash?: string;
  /** pbkdf2: iterations; argon2: time cost. */
  iterations: number;
  /** argon2 only. */
  memoryKiB?: number;
  parallel?: number;
}

export interface LuksKeyslot {
  slot: number;
  /** `unbound`: holds a key not bound to the data segment (cannot open the volume). */
  state: 'active' | 'unbound';
  priority: 'ignore' | 'normal' | 'prefer';
  /** Keyslot area encryption, e.g. aes-xts-plain64. */
  encryption: string;
  /** Bytes of the key the slot protects. */
  keySize: number;
  pbkdf: LuksPbkdf;
}

export interface LuksToken {
  token: number;
  type: string;
  kind: 'internal' | 'internal-unknown' | 'external' | 'external-unknown';
  keyslots: number[];
}

export interface LuksSegment {
  segment: number;
  type: string;
  /** Bytes from the device start. */
  offset: number;
  /** Bytes, or `dynamic` (to the end of the device). */
  size: number | 'dynamic';
  encryption?: string;
  sectorSize?: number;
}

export interface LuksInfo {
  device: string;
  format: 'LUKS2';
  version: 2;
  uuid: string;
  label: string;
  subsystem: string;
  cipher: string;
  cipherMode: string;
  /** Volume key size in bytes (64 for aes-xts with 512-bit keys). */
  keySize: number;
  sectorSize: number;
  /** Bytes from the device start to the first data sector. */
  dataOffset: number;
  keyslots: LuksKeyslot[];
  tokens: LuksToken[];
  segments: LuksSegment[];
}

export interface DeviceMapperStatus {
  available: boolean;
  reason?: string;
}

interface NativeKeyslot extends Omit<LuksKeyslot, 'pbkdf'> {
  pbkdf: { type: string; hash: string; iterations: number; memoryKiB: number; parallel: number };
}

interface NativeInfo {
  type: string;
  uuid: string;
  label: string;
  subsystem: string;
  cipher: string;
  cipherMode: string;
  volumeKeySize: number;
  sectorSize: number;
  dataOffsetSectors: number;
  deviceName: string;
  keyslots: NativeKeyslot[];
  tokens: Omit<LuksToken, 'keyslots'>[];
  metadataJson: string;
}

interface LuksNative {
  info(path: string): Promise<NativeInfo>;
  checkKey(path: string, key: Buffer): Promise<{ slot: number }>;
  open(path: string, name: string, key: Buffer, readOnly: boolean): Promise<{ slot: number }>;
  close(name: string): Promise<void>;
  addKey(path: string, key: Buffer, newKey: Buffer, slot: number): Promise<{ slot: number }>;
  removeKey(
    path: string,
    key: Buffer,
    slot: number,
    removeKey: Buffer | null,
    force: boolean,
  ): Promise<{ slot: number }>;
  format(path: string, key: Buffer, uuid: string, force: boolean): Promise<{ slot: number }>;
  deviceMapper(): DeviceMapperStatus;
  pbkdf(): { type: string; hash: string; iterations: number };
}

const native = (): LuksNative => addonModule<LuksNative>('luks');

/** Native LUKS_* failures become LuksError (same code and status); anything else passes through. */
async function call<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (e) {
    if (isKmipAgentError(e) && e.code.startsWith('LUKS_') && !(e instanceof LuksError)) {
      throw new LuksError(e.message, e.code, { cause: e, status: e.status });
    }
    throw e;
  }
}

interface MetadataJson {
  segments?: Record<
    string,
    { type?: string; offset?: string; size?: string; encryption?: string; sector_size?: number }
  >;
  tokens?: Record<string, { keyslots?: string[] }>;
}

function parseSegments(metadata: MetadataJson): LuksSegment[] {
  return Object.entries(metadata.segments ?? {})
    .map(([id, s]) => {
      const segment: LuksSegment = {
        segment: Number(id),
        type: s.type ?? 'unknown',
        offset: Number(s.offset ?? 0),
        size: s.size === undefined || s.size === 'dynamic' ? 'dynamic' : Number(s.size),
      };
      if (s.encryption !== undefined) segment.encryption = s.encryption;
      if (s.sector_size !== undefined) segment.sectorSize = s.sector_size;
      return segment;
    })
    .sort((a, b) => a.segment - b.segment);
}

function toPbkdf(p: NativeKeyslot['pbkdf']): LuksPbkdf {
  return p.type === 'pbkdf2'
    ? { type: p.type, hash: p.hash, iterations: p.iterations }
    : { type: p.type, iterations: p.iterations, memoryKiB: p.memoryKiB, parallel: p.parallel };
}

/** Reads a LUKS2 device's or image's header. Never writes (a damaged header is reported, not repaired). */
export async function luksInfo(device: string): Promise<LuksInfo> {
  const raw = await call(() => native().info(device));
  const metadata = JSON.parse(raw.metadataJson) as MetadataJson;
  return {
    device,
    format: 'LUKS2',
    version: 2,
    uuid: raw.uuid,
    label: raw.label,
    subsystem: raw.subsystem,
    cipher: raw.cipher,
    cipherMode: raw.cipherMode,
    keySize: raw.volumeKeySize,
    sectorSize: raw.sectorSize,
    dataOffset: raw.dataOffsetSectors * 512,
    keyslots: raw.keyslots.map((k) => ({ ...k, pbkdf: toPbkdf(k.pbkdf) })),
    tokens: raw.tokens.map((t) => ({
      ...t,
      keyslots: (metadata.tokens?.[String(t.token)]?.keyslots ?? []).map(Number),
    })),
    segments: parseSegments(metadata),
  };
}

/** Which keyslot `key` opens, without activating anything; LUKS_WRONG_KEY when none. */
export async function checkKey(device: string, key: Buffer): Promise<{ slot: number }> {
  return call(() => native().checkKey(device, key));
}

export interface OpenOptions {
  readOnly?: boolean;
}

/** Activates `device` as /dev/mapper/<name>; LUKS_DM_NOT_AVAILABLE where the kernel has no device-mapper. */
export async function open(
  device: string,
  name: string,
  key: Buffer,
  options: OpenOptions = {},
): Promise<{ slot: number }> {
  return call(() => native().open(device, name, key, options.readOnly ?? false));
}

/** Removes the mapping /dev/mapper/<name>. */
export async function close(name: string): Promise<void> {
  return call(() => native().close(name));
}

export interface AddKeyOptions {
  /** The keyslot to fill; default: the first free one. */
  slot?: number;
}

/**
 * Adds a keyslot for `newKey`, authorized by `key` (which must open an existing keyslot). The new
 * keyslot uses PBKDF2-SHA256 with a small fixed iteration count (see `agentKeyslotPbkdf`); it is read
 * back before returning. On any failure the header is left as it was.
 */
export async function addKey(
  device: string,
  key: Buffer,
  newKey: Buffer,
  options: AddKeyOptions = {},
): Promise<{ slot: number }> {
  return call(() => native().addKey(device, key, newKey, options.slot ?? -1));
}

/** What to remove: a keyslot by number, or the keyslot a given key opens. */
export type RemoveKeyTarget = { slot: number } | { key: Buffer };

export interface RemoveKeyOptions {
  /**
   * Allow removing a keyslot even when the authorizing key would open no keyslot afterwards,
   * including the volume's last one. Without it: LUKS_KEYSLOT_LAST, and the volume stays reachable.
   */
  force?: boolean;
}

/**
 * Removes a keyslot, authorized by `key`, which must open a keyslot and, unless forced, still
 * open one after the removal, so no volume is ever locked out by accident.
 */
export async function removeKey(
  device: string,
  key: Buffer,
  target: RemoveKeyTarget,
  options: RemoveKeyOptions = {},
): Promise<{ slot: number }> {
  const slot = 'slot' in target ? target.slot : -1;
  const removeKeyBuffer = 'key' in target ? target.key : null;
  return call(() => native().removeKey(device, key, slot, removeKeyBuffer, options.force ?? false));
}

export interface FormatOptions {
  /** The new header's UUID: known before the format, so the key can be named after it first. */
  uuid: string;
  /** Format even over a LUKS header or a filesystem signature (what the device held is lost). */
  force?: boolean;
}

const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * What `blkid -p` (low-level probe, no cache) finds on the device: a filesystem, RAID member, partition
 * table or LUKS type, or undefined when it is blank.
 */
export function probeSignature(device: string): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    execFile('blkid', ['-p', '-o', 'export', device], { timeout: 30_000 }, (error, stdout) => {
      // Exit 2: nothing found. Anything else but 0 is a failed probe, not a blank device.
      if (error && (error as { code?: unknown }).code === 2) return resolve(undefined);
      if (error)
        return reject(new LuksError(`cannot probe ${device} for signatures: ${error.message}`, 'LUKS_IO_ERROR'));
      const fields = new Map(
        stdout
          .split('\n')
          .map((l) => l.split('='))
          .filter((kv) => kv.length >= 2)
          .map(([k, ...v]) => [k!, v.join('=')]),
      );
      resolve(fields.get('TYPE') ?? fields.get('PTTYPE') ?? 'unknown signature');
    });
  });
}

/**
 * Writes a new LUKS2 header (aes-xts-plain64, a random 512-bit volume key) whose only keyslot holds `key`,
 * with the agent's PBKDF (see `agentKeyslotPbkdf`). Refuses, unless `force`, a device holding a LUKS header
 * or any signature blkid knows (LUKS_DEVICE_IN_USE): formatting destroys what is there.
 */
export async function format(device: string, key: Buffer, options: FormatOptions): Promise<{ slot: number }> {
  if (!UUID_PATTERN.test(options.uuid))
    throw new LuksError(`'${options.uuid}' is not a lower-case UUID`, 'LUKS_INVALID_ARGUMENT');
  if (!options.force) {
    const found = await probeSignature(device);
    if (found !== undefined)
      throw new LuksError(`${device} already holds ${found}: refusing to format over it`, 'LUKS_DEVICE_IN_USE', {
        details: { device, signature: found },
      });
  }
  return call(() => native().format(device, key, options.uuid, options.force ?? false));
}

/**
 * The block devices under the device-mapper mapping `name` (sysfs: /sys/block/dm-N/dm/name and its
 * slaves/), as kernel names (`vdb`, `loop3`); null when no mapping has that name.
 */
export function mappingDevices(name: string, sysRoot = '/sys'): string[] | null {
  const blockDir = join(sysRoot, 'block');
  let entries: string[];
  try {
    entries = readdirSync(blockDir).filter((e) => e.startsWith('dm-'));
  } catch {
    return null;
  }
  for (const dm of entries) {
    let mapped: string;
    try {
      mapped = readFileSync(join(blockDir, dm, 'dm', 'name'), 'utf8').trim();
    } catch {
      continue;
    }
    if (mapped !== name) continue;
    try {
      return readdirSync(join(blockDir, dm, 'slaves')).sort();
    } catch {
      return [];
    }
  }
  return null;
}

/** The kernel's name of a block device path (`/dev/vdb` -> `vdb`, a symlink followed). */
export function kernelName(device: string): string {
  try {
    return basename(realpathSync(device));
  } catch {
    return basename(device);
  }
}

/** Whether dm-crypt mappings can be created on this machine, and if not, why. */
export function deviceMapperStatus(): DeviceMapperStatus {
  return native().deviceMapper();
}

/** The PBKDF of keyslots the agent adds (for documentation, diagnostics and tests). */
export function agentKeyslotPbkdf(): { type: string; hash: string; iterations: number } {
  return native().pbkdf();
}
