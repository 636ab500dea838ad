/**
 * Opal through the Linux kernel's sed-opal driver (ioctls on the block device, run off the JS
 * thread by the addon). The kernel runs the TCG sessions itself and, after `saveForResume`, unlocks
 * the drive again on resume from suspend. Where the kernel or drive lacks sed-opal every call fails
 * with KOPAL_NOT_SUPPORTED, and the agent falls back to TCG pass-through.
 */
import { addonModule } from '../native/addon.js';

export type LockState = 'ro' | 'rw' | 'locked';

/** An authority and its PIN: Admin1 is 0, UserN is N. */
export interface Authority {
  who: number;
  key: Buffer;
  /** Single User Mode session. */
  sum?: boolean;
}

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
  state: LockState;
}

export interface KernelGeometry {
  /** The drive's ALIGN bit: locking ranges must be aligned to alignmentGranularity. */
  alignRequired: boolean;
  logicalBlockSize: number;
  alignmentGranularity: bigint;
  lowestAlignedLba: bigint;
}

/** One scripted answer of the test seam: the return value, and bytes written back. */
export interface ScriptedAnswer {
  ret: number;
  structOut?: Buffer;
  bufferOut?: Buffer;
}

export interface RecordedIoctl {
  request: number;
  name: string | null;
  struct: Buffer;
}

type Params = Record<string, unknown>;

export interface KernelOpalNative {
  run(device: string, op: string, params: Params): Promise<Record<string, unknown>>;
  runScripted(
    answers: ScriptedAnswer[],
    op: string,
    params: Params,
  ): { result?: Record<string, unknown>; error?: Error; calls: RecordedIoctl[] };
  ioctls(): Record<string, number>;
}

function authParams(prefix: 'auth' | 'target', a: Authority): Params {
  return { [`${prefix}Who`]: a.who, [`${prefix}Key`]: a.key, [`${prefix}Sum`]: a.sum ?? false };
}

const SID = 0;

/** A drive reached through sed-opal ioctls; `device` is a block device path such as /dev/sda. */
export class KernelOpalDrive {
  constructor(
    readonly device: string,
    private readonly native: KernelOpalNative = addonModule<KernelOpalNative>('kernelOpal'),
  ) {}

  private call(op: string, params: Params = {}): Promise<Record<string, unknown>> {
    return this.native.run(this.device, op, params);
  }

  async status(): Promise<KernelOpalStatus> {
    return (await this.call('status')) as unknown as KernelOpalStatus;
  }

  async discovery(maxBytes = 4096): Promise<Buffer> {
    return (await this.call('discovery', { maxBytes })).data as Buffer;
  }

  async geometry(): Promise<KernelGeometry> {
    return (await this.call('geometry')) as unknown as KernelGeometry;
  }

  async takeOwnership(sidKey: Buffer): Promise<void> {
    await this.call('takeOwnership', authParams('auth', { who: SID, key: sidKey }));
  }

  async activateLockingSp(sidKey: Buffer, sumRanges: number[] = []): Promise<void> {
    await this.call('activateLockingSp', { ...authParams('auth', { who: SID, key: sidKey }), sumRanges });
  }

  async setupRange(
    admin: Authority,
    range: number,
    start: bigint | number,
    length: bigint | number,
    lockEnabled: { read: boolean; write: boolean },
  ): Promise<void> {
    await this.call('setupRange', {
      ...authParams('auth', admin),
      range,
      start: BigInt(start),
      length: BigInt(length),
      readLockEnabled: lockEnabled.read,
      writeLockEnabled: lockEnabled.write,
    });
  }

  async activateUser(admin: Authority, user: number): Promise<void> {
    await this.call('activateUser', { ...authParams('auth', admin), user });
  }

  async addUserToRange(admin: Authority, user: number, range: number, access: 'ro' | 'rw'): Promise<void> {
    await this.call('addUserToRange', { ...authParams('auth', admin), user, range, access });
  }

  /** Sets `target.who`'s PIN to `target.key`, authenticated as `auth`. */
  async setPassword(auth: Authority, target: Authority): Promise<void> {
    await this.call('setPassword', { ...authParams('auth', auth), ...authParams('target', target) });
  }

  async setSidPassword(currentSid: Buffer, newSid: Buffer): Promise<void> {
    await this.call('setSidPassword', { ...authParams('auth', { who: SID, key: currentSid }), newKey: newSid });
  }

  async lockUnlock(auth: Authority, range: number, state: LockState): Promise<void> {
    await this.call('lockUnlock', { ...authParams('auth', auth), range, state });
  }

  /** Sets `state` and leaves the key with the kernel, which unlocks again on resume from suspend. */
  async saveForResume(auth: Authority, range: number, state: LockState): Promise<void> {
    await this.call('saveForResume', { ...authParams('auth', auth), range, state });
  }

  async rangeStatus(auth: Authority, range: number): Promise<KernelRangeStatus> {
    return (await this.call('rangeStatus', { ...authParams('auth', auth), range })) as unknown as KernelRangeStatus;
  }

  async revertTper(sidKey: Buffer): Promise<void> {
    await this.call('revertTper', authParams('auth', { who: SID, key: sidKey }));
  }

  async psidRevert(psid: Buffer): Promise<void> {
    await this.call('psidRevert', authParams('auth', { who: SID, key: psid }));
  }

  async revertLockingSp(adminKey: Buffer, keepGlobalRangeKey: boolean): Promise<void> {
    await this.call('revertLockingSp', { ...authParams('auth', { who: 0, key: adminKey }), keepGlobalRangeKey });
  }

  /** Crypto erase: a new media key for the range, so its old data is unreadable. */
  async secureEraseRange(auth: Authority, range: number): Promise<void> {
    await this.call('secureEraseRange', { ...authParams('auth', auth), range });
  }

  /** The Single User Mode Erase method on a range. */
  async eraseRange(auth: Authority, range: number): Promise<void> {
    await this.call('eraseRange', { ...authParams('auth', auth), range });
  }

  async enableMbr(adminKey: Buffer, enable: boolean): Promise<void> {
    await this.call('enableMbr', { ...authParams('auth', { who: 0, key: adminKey }), enable });
  }

  async setMbrDone(adminKey: Buffer, done: boolean): Promise<void> {
    await this.call('setMbrDone', { ...authParams('auth', { who: 0, key: adminKey }), done });
  }
}
