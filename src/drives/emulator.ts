/**
 * The emulated TCG Opal 2 drive (native/emulator): a sparse data image plus an atomically
 * written state file. Lets the whole stack run without hardware. Every call goes through the
 * addon's `emulator` module off the JS thread; failures are `EmulatorError`s with an EMU_... code
 * (EMU_BUSY when another process holds the image, EMU_DATA_PROTECT for locked ranges, ...).
 */
import { KmipAgentError } from '../errors.js';
import { addonModule } from '../native/addon.js';

/** Device names of emulated drives: `emu:/path/to/image`. */
export const EMULATED_DEVICE_PREFIX = 'emu:';
export const LOGICAL_BLOCK_SIZE = 512;

export class EmulatorError extends KmipAgentError {}

export interface EmulatedRange {
  /** 0 is the global range. */
  number: number;
  start: number;
  length: number;
  readLockEnabled: boolean;
  writeLockEnabled: boolean;
  readLocked: boolean;
  writeLocked: boolean;
  /** Reset types that relock the range (0 = power cycle). */
  lockOnReset: number[];
}

/** What `info` reports: geometry and lock state, never a secret. */
export interface EmulatedDriveInfo {
  path: string;
  serial: string;
  blocks: number;
  sizeMiB: number;
  logicalBlockSize: number;
  lockingSpActive: boolean;
  /** The SID PIN has been changed from the MSID (someone took ownership). */
  owned: boolean;
  ranges: EmulatedRange[];
  mbr: { enable: boolean; done: boolean };
  /** Authorities (by common name) at their TryLimit until the next power cycle. */
  lockedOutAuthorities: string[];
}

/** A drive held open (exclusively) for raw IF-SEND / IF-RECV, e.g. by tests. */
export interface EmulatedDriveHandle {
  ifSend(protocol: number, comId: number, data: Buffer): Promise<void>;
  ifRecv(protocol: number, comId: number, length: number): Promise<Buffer>;
  close(): Promise<void>;
}

interface EmulatorNative {
  create(path: string, sizeMiB: number, serial: string): Promise<{ psid: string }>;
  powerCycle(path: string): Promise<void>;
  read(path: string, lba: number, count: number): Promise<Buffer>;
  write(path: string, lba: number, data: Buffer): Promise<void>;
  info(path: string): Promise<EmulatedDriveInfo>;
  open(path: string): Promise<EmulatedDriveHandle>;
  destroy(path: string): Promise<void>;
}

function native(): EmulatorNative {
  return addonModule<EmulatorNative>('emulator');
}

// Every function is async, so argument errors arrive as rejections like native failures do.

/** Re-types native failures so callers can `instanceof EmulatorError` and switch on `code`. */
async function call<T>(run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (e) {
    if (e instanceof KmipAgentError) {
      throw new EmulatorError(e.message, e.code, {
        cause: e,
        ...(e.status === undefined ? {} : { status: e.status }),
      });
    }
    throw e;
  }
}

function checkPath(path: string): string {
  if (typeof path !== 'string' || path.length === 0 || path.includes('\0'))
    throw new EmulatorError('an emulated drive needs an image path', 'EMU_INVALID_ARGUMENT');
  return path;
}

function checkInteger(value: number, what: string, max: number): number {
  if (!Number.isSafeInteger(value) || value < 0 || value > max)
    throw new EmulatorError(`${what} must be an integer from 0 to ${max}`, 'EMU_INVALID_ARGUMENT');
  return value;
}

/** `emu:/path` -> `/path`; anything else is not an emulated drive. */
export function emulatedImagePath(device: string): string | undefined {
  return device.startsWith(EMULATED_DEVICE_PREFIX) ? device.slice(EMULATED_DEVICE_PREFIX.length) : undefined;
}

/**
 * Creates a factory-fresh drive (`path` and `path.state`, mode 0600). Returns the PSID printed
 * on its "label": it is stored only as a hash, so this is the one chance to record it. Atomic: a
 * create that is killed leaves no drive, only files aside that the next create or destroy removes.
 */
export async function createEmulatedDrive(path: string, sizeMiB: number, serial: string): Promise<{ psid: string }> {
  checkPath(path);
  checkInteger(sizeMiB, 'size (MiB)', 4 * 1024 * 1024);
  if (sizeMiB === 0) throw new EmulatorError('size must be at least 1 MiB', 'EMU_INVALID_ARGUMENT');
  return await call(() => native().create(path, sizeMiB, serial));
}

/** Power cycle: ranges with LockOnReset PowerCycle relock, failed-try counters reset. */
export async function powerCycleEmulatedDrive(path: string): Promise<void> {
  return await call(() => native().powerCycle(checkPath(path)));
}

/** Reads `count` 512-byte blocks from `lba`; EMU_DATA_PROTECT if any is in a read-locked range. */
export async function readEmulatedDrive(path: string, lba: number, count: number): Promise<Buffer> {
  checkInteger(lba, 'lba', Number.MAX_SAFE_INTEGER);
  checkInteger(count, 'count', 65536);
  return await call(() => native().read(checkPath(path), lba, count));
}

/** Writes whole 512-byte blocks at `lba`; EMU_DATA_PROTECT if any is in a write-locked range. */
export async function writeEmulatedDrive(path: string, lba: number, data: Buffer): Promise<void> {
  checkInteger(lba, 'lba', Number.MAX_SAFE_INTEGER);
  if (data.length === 0 || data.length % LOGICAL_BLOCK_SIZE !== 0)
    throw new EmulatorError('writes are whole 512-byte blocks', 'EMU_INVALID_ARGUMENT');
  return await call(() => native().write(checkPath(path), lba, data));
}

/**
 * Deletes the drive: image, state, shadow MBR and its key cache (EMU_BUSY while in use); also a
 * partial drive (an image without state, a state without image, what an interrupted create left).
 */
export async function destroyEmulatedDrive(path: string): Promise<void> {
  return await call(() => native().destroy(checkPath(path)));
}

export async function emulatedDriveInfo(path: string): Promise<EmulatedDriveInfo> {
  return await call(() => native().info(checkPath(path)));
}

/** Opens the drive for raw IF-SEND / IF-RECV (holds its lock until `close`). */
export async function openEmulatedDrive(path: string): Promise<EmulatedDriveHandle> {
  const handle = await call(() => native().open(checkPath(path)));
  return {
    ifSend: (protocol, comId, data) => call(() => handle.ifSend(protocol, comId, data)),
    ifRecv: (protocol, comId, length) => call(() => handle.ifRecv(protocol, comId, length)),
    close: () => call(() => handle.close()),
  };
}
