/**
 * The kernel sed-opal backend: `OpalBackend` over `KernelOpalDrive` (one ioctl per step; the kernel
 * runs the TCG sessions). Unlock and lock also hand the state to the kernel with IOC_OPAL_SAVE, so
 * the kernel puts the range back in that state after resume from suspend.
 *
 * What the kernel cannot do (read MSID, read tries, list ranges, discovery on kernels without
 * IOC_OPAL_DISCOVERY, ioctls newer than the running kernel, authorities other than Admin1/User1..9)
 * goes to the TCG pass-through backend on the same device when one was opened, else fails with
 * DRIVE_OPERATION_NOT_SUPPORTED naming the backend.
 */
import { OpalError, toOpalError } from './errors.js';
import type { KernelOpalDrive, KernelOpalStatus } from './kernel-opal.js';
import {
  describeAuthority,
  type Authority,
  type Discovery,
  type LockStateName,
  type OpalBackend,
  type OpalStatus,
  type RangeStatus,
} from './types.js';

/**
 * A kernel answer of NOT_AUTHORIZED: the kernel authenticates inside the ioctl, so a refused PIN and
 * a refused method look alike. OpalDrive treats it as a refused PIN (the safe side for lockout).
 */
export class KernelPinRefusedError extends OpalError {
  readonly pinRefused = true;
}

/** The kernel's `who`: Admin1 is 0, UserN is N (the kernel knows no other authority). */
function kernelWho(a: Authority): number | null {
  if (a.kind === 'admin' && (a.index ?? 1) === 1) return 0;
  if (a.kind === 'user' && Number.isInteger(a.index) && a.index >= 1 && a.index <= 9) return a.index;
  return null;
}

function codeOf(error: unknown): string | undefined {
  return (error as { code?: unknown } | null)?.code as string | undefined;
}

export class KernelOpalBackend implements OpalBackend {
  /**
   * @param fallback the pass-through backend on the same device, used for what the kernel cannot do
   *   (closed with this backend); null when none could be opened.
   * @param fallbackNote why there is no fallback (shown in DRIVE_OPERATION_NOT_SUPPORTED messages).
   */
  constructor(
    private readonly kernel: KernelOpalDrive,
    private readonly parseDiscovery: (data: Buffer) => Discovery,
    private readonly fallback: OpalBackend | null = null,
    private readonly fallbackNote = 'no TCG pass-through backend was opened for this device',
  ) {}

  describe(): string {
    const tail = this.fallback ? ` (TCG pass-through fallback: ${this.fallback.describe()})` : '';
    return `kernel sed-opal ${this.kernel.device}${tail}`;
  }

  serial(): string {
    return this.fallback?.serial() ?? '';
  }

  async discover(): Promise<Discovery> {
    return this.kernelOr(
      'Level 0 discovery',
      async () => this.parseDiscovery(await this.kernel.discovery()),
      (f) => f.discover(),
    );
  }

  async status(probeSid: boolean): Promise<OpalStatus> {
    const flags = await this.kernelCall(() => this.kernel.status());
    let discovery: Discovery;
    try {
      discovery = await this.discover();
    } catch (error) {
      if (codeOf(error) !== 'DRIVE_OPERATION_NOT_SUPPORTED') throw error;
      discovery = discoveryFromFlags(flags);
    }
    // Only the pass-through can read the Locking SP life cycle and compare SID with MSID.
    const deeper = this.fallback ? await this.fallback.status(probeSid) : null;
    return {
      discovery,
      lockingSupported: flags.lockingSupported,
      lockingEnabled: flags.lockingEnabled,
      locked: flags.locked,
      mbrEnabled: flags.mbrEnabled,
      mbrDone: flags.mbrDone,
      // Locking feature "LockingEnabled" is the Locking SP being active (Manufactured, 9) or not (8).
      lockingSpLifecycle:
        deeper?.lockingSpLifecycle ?? (flags.lockingSupported ? (flags.lockingEnabled ? 9 : 8) : null),
      sidIsMsid: deeper?.sidIsMsid ?? null,
      sidStateSource: deeper?.sidStateSource ?? '',
    };
  }

  readMsid(): Promise<Buffer> {
    return this.fallbackOnly('reading the MSID', (f) => f.readMsid());
  }

  async takeOwnership(newSidPin: Buffer): Promise<void> {
    // The kernel reads MSID itself and sets SID's PIN.
    await this.kernelOr(
      'take ownership',
      () => this.kernel.takeOwnership(newSidPin),
      (f) => f.takeOwnership(newSidPin),
    );
  }

  async activate(sidPin: Buffer): Promise<void> {
    await this.kernelOr(
      'activate the Locking SP',
      () => this.kernel.activateLockingSp(sidPin),
      (f) => f.activate(sidPin),
    );
  }

  async setPin(authority: Authority, pin: Buffer, target: Authority, newPin: Buffer): Promise<void> {
    const what = `set the ${describeAuthority(target)} PIN as ${describeAuthority(authority)}`;
    if (authority.kind === 'sid' && target.kind === 'sid') {
      await this.kernelOr(
        what,
        () => this.kernel.setSidPassword(pin, newPin),
        (f) => f.setPin(authority, pin, target, newPin),
      );
      return;
    }
    const authWho = kernelWho(authority);
    const targetWho = kernelWho(target);
    if (authWho === null || targetWho === null) {
      await this.fallbackOnly(what, (f) => f.setPin(authority, pin, target, newPin));
      return;
    }
    await this.kernelOr(
      what,
      () => this.kernel.setPassword({ who: authWho, key: pin }, { who: targetWho, key: newPin }),
      (f) => f.setPin(authority, pin, target, newPin),
    );
  }

  async enableUser(adminPin: Buffer, user: number, enabled: boolean, ranges: number[]): Promise<void> {
    const what = `${enabled ? 'enable' : 'disable'} User${user}`;
    if (!enabled) {
      // sed-opal can activate a user but has no ioctl to disable one.
      await this.fallbackOnly(what, (f) => f.enableUser(adminPin, user, enabled, ranges));
      return;
    }
    await this.kernelOr(
      what,
      async () => {
        const admin = { who: 0, key: adminPin };
        await this.kernel.activateUser(admin, user);
        // As cryptsetup does: the user may set the range read-locked state and the write-locked state.
        for (const range of ranges) {
          await this.kernel.addUserToRange(admin, user, range, 'read');
          await this.kernel.addUserToRange(admin, user, range, 'write');
        }
      },
      (f) => f.enableUser(adminPin, user, enabled, ranges),
    );
  }

  async setupRange(
    adminPin: Buffer,
    range: number,
    start: number | null,
    length: number | null,
    readLockEnabled: boolean,
    writeLockEnabled: boolean,
  ): Promise<void> {
    const what = `set up range ${range}`;
    const viaFallback = (f: OpalBackend) =>
      f.setupRange(adminPin, range, start, length, readLockEnabled, writeLockEnabled);
    if (range !== 0 && (start === null || length === null)) {
      // IOC_OPAL_LR_SETUP always writes start and length: it cannot keep the current ones.
      await this.fallbackOnly(`${what} without start and length`, viaFallback);
      return;
    }
    await this.kernelOr(
      what,
      () =>
        this.kernel.setupRange({ who: 0, key: adminPin }, range, start ?? 0, length ?? 0, {
          read: readLockEnabled,
          write: writeLockEnabled,
        }),
      viaFallback,
    );
  }

  ranges(authority: Authority, pin: Buffer): Promise<RangeStatus[]> {
    return this.fallbackOnly('listing the locking ranges', (f) => f.ranges(authority, pin));
  }

  async setLock(authority: Authority, pin: Buffer, range: number, state: LockStateName): Promise<void> {
    const what = `set range ${range} ${state}`;
    const who = kernelWho(authority);
    if (who === null) {
      await this.fallbackOnly(`${what} as ${describeAuthority(authority)}`, (f) =>
        f.setLock(authority, pin, range, state),
      );
      return;
    }
    const auth = { who, key: pin };
    await this.kernelCall(async () => {
      await this.kernel.lockUnlock(auth, range, state);
      // SAVE replaces what the kernel keeps for this range: after resume it restores this state
      // (an unlock is re-applied; a lock is no longer undone by an older saved unlock).
      await this.kernel.saveForResume(auth, range, state);
    });
  }

  async revert(sidPin: Buffer): Promise<void> {
    await this.kernelOr(
      'revert the TPer',
      () => this.kernel.revertTper(sidPin),
      (f) => f.revert(sidPin),
    );
  }

  async psidRevert(psid: Buffer): Promise<void> {
    await this.kernelOr(
      'PSID revert',
      () => this.kernel.psidRevert(psid),
      (f) => f.psidRevert(psid),
    );
  }

  async revertLockingSp(adminPin: Buffer, keepGlobalRangeKey: boolean): Promise<void> {
    await this.kernelOr(
      'revert the Locking SP',
      () => this.kernel.revertLockingSp(adminPin, keepGlobalRangeKey),
      (f) => f.revertLockingSp(adminPin, keepGlobalRangeKey),
    );
  }

  async erase(adminPin: Buffer, range: number, useEraseMethod: boolean): Promise<void> {
    const admin = { who: 0, key: adminPin };
    await this.kernelOr(
      `erase range ${range}`,
      () => (useEraseMethod ? this.kernel.eraseRange(admin, range) : this.kernel.secureEraseRange(admin, range)),
      (f) => f.erase(adminPin, range, useEraseMethod),
    );
  }

  async setMbr(adminPin: Buffer, enable: boolean | null, done: boolean | null): Promise<void> {
    await this.kernelOr(
      'set MBR control',
      async () => {
        if (enable !== null) await this.kernel.enableMbr(adminPin, enable);
        if (done !== null) await this.kernel.setMbrDone(adminPin, done);
      },
      (f) => f.setMbr(adminPin, enable, done),
    );
  }

  tries(target: Authority, authority?: Authority, pin?: Buffer): Promise<null | { tries: number; tryLimit: number }> {
    return this.fallbackOnly(`reading ${describeAuthority(target)} tries`, (f) => f.tries(target, authority, pin));
  }

  async verify(authority: Authority, pin: Buffer): Promise<void> {
    const what = `verify the ${describeAuthority(authority)} PIN`;
    // A pure authenticated session is exact; the kernel has none, but reading the global range's
    // status as Admin1 is a harmless authenticated call (a User may lack read access to it).
    if (this.fallback || kernelWho(authority) !== 0) {
      await this.fallbackOnly(what, (f) => f.verify(authority, pin));
      return;
    }
    await this.kernelCall(() => this.kernel.rangeStatus({ who: 0, key: pin }, 0));
  }

  async close(): Promise<void> {
    await this.fallback?.close();
  }

  /** Runs a kernel call with its errors typed (NOT_AUTHORIZED marked as a refused PIN). */
  private async kernelCall<T>(call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (error) {
      const typed = toOpalError(error);
      if (typed.code === 'TCG_NOT_AUTHORIZED') {
        throw new KernelPinRefusedError(typed.message, typed.code, { cause: error, status: typed.status });
      }
      throw typed;
    }
  }

  /** The kernel does it; if this kernel lacks the ioctl (KOPAL_NOT_SUPPORTED), the fallback does. */
  private async kernelOr<T>(what: string, viaKernel: () => Promise<T>, viaFallback: (f: OpalBackend) => Promise<T>) {
    try {
      return await this.kernelCall(viaKernel);
    } catch (error) {
      if (codeOf(error) !== 'KOPAL_NOT_SUPPORTED') throw error;
      if (!this.fallback) throw this.notSupported(what, (error as Error).message);
      return viaFallback(this.fallback);
    }
  }

  private async fallbackOnly<T>(what: string, viaFallback: (f: OpalBackend) => Promise<T>): Promise<T> {
    if (!this.fallback) throw this.notSupported(what, 'the sed-opal ioctls have no way to do it');
    return viaFallback(this.fallback);
  }

  private notSupported(what: string, why: string): OpalError {
    return new OpalError(
      `${what} is not supported by the kernel sed-opal backend on ${this.kernel.device} (${why}) and ` +
        `there is no TCG pass-through to fall back on: ${this.fallbackNote}`,
      'DRIVE_OPERATION_NOT_SUPPORTED',
    );
  }
}

/** A Discovery built from IOC_OPAL_GET_STATUS flags, for kernels without IOC_OPAL_DISCOVERY. */
function discoveryFromFlags(flags: KernelOpalStatus): Discovery {
  return {
    length: 0,
    revision: 0,
    locking: {
      lockingSupported: flags.lockingSupported,
      lockingEnabled: flags.lockingEnabled,
      locked: flags.locked,
      mediaEncryption: false,
      mbrEnabled: flags.mbrEnabled,
      mbrDone: flags.mbrDone,
      mbrShadowingNotSupported: false,
    },
    features: [],
    warnings: [
      'Level 0 discovery is not available through this kernel (no IOC_OPAL_DISCOVERY); ' +
        'locking flags come from IOC_OPAL_GET_STATUS (media encryption unknown)',
    ],
  };
}
