/**
 * Opal through the Linux kernel's sed-opal driver (ioctls on the block device, run off the JS
 * thread by the addon). The kernel runs the TCG sessions itself and, after `saveForResume`, unlocks
 * the drive again on resume from suspend. Where the kernel or drive lacks sed-opal every call fails
 * with KOPAL_NOT_SUPPORTED, and the agent falls back to TCG pass-through.
 */
import { addonModule } from '../native/addon.js';
import type { LockStateName } from './types.js';

/** A sed-opal session's credential: the kernel's `who` (Admin1 is 0, UserN is N) and its PIN. */
export interface KernelCredential {
  who: number;
  key: Buffer;
  /** Single User Mode session. */
  sum?: boolean;
}

/** Which lock a user added to a range may set: ReadLocked or WriteLocked. */
export type RangeLock = 'read' | 'write';

export interface KernelOpalStatus {
  flags: number;
  supported: boolean;
  lockingSupported: boolean;
  lockingEnabled: boolean;
  locked: boolean;
  mbrEnabled: boolean;
  mbrDone: boolean;
  sumSupported: boolean;
}

export interface KernelRangeStatus {
  start: bigint;
  length: bigint;
  readLockEnabled: boolean;
  writeLockEnabled: boolean;
  state: LockStateName;
}

export interface KernelGeometry {
  /** The drive's ALIGN bit: locking ranges must be aligned to alignmentGranularity. */
  alignRequired: boolean;
  logicalBlockSize: number;
  alignmentGranularity: bigint;
  lowestAlignedLba: bigint;
}

/**
 * The addon's handle for one block device (native/kernel_opal/binding.cc): one method per
 * sed-opal ioctl flow, each a Promise. Bad arguments throw KOPAL_INVALID_ARGUMENT before any ioctl.
 */
export interface KernelOpalHandle {
  status(): Promise<KernelOpalStatus>;
  discovery(maxBytes?: number): Promise<Buffer>;
  geometry(): Promise<KernelGeometry>;
  takeOwnership(sidKey: Buffer): Promise<void>;
  activateLockingSp(sidKey: Buffer, sumRanges: number[]): Promise<void>;
  setupRange(
    admin: KernelCredential,
    range: number,
    start: bigint,
    length: bigint,
    readLockEnabled: boolean,
    writeLockEnabled: boolean,
  ): Promise<void>;
  activateUser(admin: KernelCredential, user: number): Promise<void>;
  addUserToRange(admin: KernelCredential, user: number, range: number, lock: RangeLock): Promise<void>;
  setPassword(auth: KernelCredential, target: KernelCredential): Promise<void>;
  setSidPassword(currentSid: Buffer, newSid: Buffer): Promise<void>;
  lockUnlock(auth: KernelCredential, range: number, state: LockStateName): Promise<void>;
  saveForResume(auth: KernelCredential, range: number, state: LockStateName): Promise<void>;
  rangeStatus(auth: KernelCredential, range: number): Promise<KernelRangeStatus>;
  revertTper(sidKey: Buffer): Promise<void>;
  psidRevert(psid: Buffer): Promise<void>;
  revertLockingSp(adminKey: Buffer, keepGlobalRangeKey: boolean): Promise<void>;
  eraseRange(auth: KernelCredential, range: number): Promise<void>;
  secureEraseRange(auth: KernelCredential, range: number): Promise<void>;
  enableMbr(adminKey: Buffer, enable: boolean): Promise<void>;
  setMbrDone(adminKey: Buffer, done: boolean): Promise<void>;
}

/** The addon's `kernelOpal` module. */
export interface KernelOpalNative {
  /** A handle for `device`; nothing is opened until a method runs (each call opens the device). */
  open(device: string): KernelOpalHandle;
  /** This build's ioctl request numbers by name. */
  ioctls(): Record<string, number>;
}

export function kernelOpalNative(): KernelOpalNative {
  return addonModule<KernelOpalNative>('kernelOpal');
}

/**
 * A drive reached through sed-opal ioctls; `device` is a block device path such as /dev/sda.
 * Every method is async, so argument errors arrive as rejections like ioctl failures do.
 */
export class KernelOpalDrive {
  constructor(
    readonly device: string,
    private readonly handle: KernelOpalHandle,
  ) {}

  static open(device: string): KernelOpalDrive {
    return new KernelOpalDrive(device, kernelOpalNative().open(device));
  }

  async status(): Promise<KernelOpalStatus> {
    return this.handle.status();
  }

  async discovery(maxBytes = 4096): Promise<Buffer> {
    return this.handle.discovery(maxBytes);
  }

  async geometry(): Promise<KernelGeometry> {
    return this.handle.geometry();
  }

  async takeOwnership(sidKey: Buffer): Promise<void> {
    return this.handle.takeOwnership(sidKey);
  }

  async activateLockingSp(sidKey: Buffer, sumRanges: number[] = []): Promise<void> {
    return this.handle.activateLockingSp(sidKey, sumRanges);
  }

  async setupRange(
    admin: KernelCredential,
    range: number,
    start: bigint | number,
    length: bigint | number,
    lockEnabled: { read: boolean; write: boolean },
  ): Promise<void> {
    return this.handle.setupRange(admin, range, BigInt(start), BigInt(length), lockEnabled.read, lockEnabled.write);
  }

  async activateUser(admin: KernelCredential, user: number): Promise<void> {
    return this.handle.activateUser(admin, user);
  }

  async addUserToRange(admin: KernelCredential, user: number, range: number, lock: RangeLock): Promise<void> {
    return this.handle.addUserToRange(admin, user, range, lock);
  }

  /** Sets `target.who`'s PIN to `target.key`, authenticated as `auth`. */
  async setPassword(auth: KernelCredential, target: KernelCredential): Promise<void> {
    return this.handle.setPassword(auth, target);
  }

  async setSidPassword(currentSid: Buffer, newSid: Buffer): Promise<void> {
    return this.handle.setSidPassword(currentSid, newSid);
  }

  async lockUnlock(auth: KernelCredential, range: number, state: LockStateName): Promise<void> {
    return this.handle.lockUnlock(auth, range, state);
  }

  /** Sets `state` and leaves the key with the kernel, which unlocks again on resume from suspend. */
  async saveForResume(auth: KernelCredential, range: number, state: LockStateName): Promise<void> {
    return this.handle.saveForResume(auth, range, state);
  }

  async rangeStatus(auth: KernelCredential, range: number): Promise<KernelRangeStatus> {
    return this.handle.rangeStatus(auth, range);
  }

  async revertTper(sidKey: Buffer): Promise<void> {
    return this.handle.revertTper(sidKey);
  }

  async psidRevert(psid: Buffer): Promise<void> {
    return this.handle.psidRevert(psid);
  }

  async revertLockingSp(adminKey: Buffer, keepGlobalRangeKey: boolean): Promise<void> {
    return this.handle.revertLockingSp(adminKey, keepGlobalRangeKey);
  }

  /** Crypto erase: a new media key for the range, so its old data is unreadable. */
  async secureEraseRange(auth: KernelCredential, range: number): Promise<void> {
    return this.handle.secureEraseRange(auth, range);
  }

  /** The Single User Mode Erase method on a range. */
  async eraseRange(auth: KernelCredential, range: number): Promise<void> {
    return this.handle.eraseRange(auth, range);
  }

  async enableMbr(adminKey: Buffer, enable: boolean): Promise<void> {
    return this.handle.enableMbr(adminKey, enable);
  }

  async setMbrDone(adminKey: Buffer, done: boolean): Promise<void> {
    return this.handle.setMbrDone(adminKey, done);
  }
}
