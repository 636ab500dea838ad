/**
 * `OpalDrive`: the one promise-based interface to a TCG Opal self-encrypting drive, whatever the
 * backend (emulated, kernel sed-opal or SCSI/ATA/NVMe pass-through; chosen in backend.ts).
 *
 * Calls on one drive never overlap: each waits for the previous one (and the addon runs every call
 * off the JS thread, one AsyncWorker per call). PINs are caller-owned Buffers: the addon copies each
 * once into self-wiping memory and keeps nothing; callers wipe their own Buffers (the CLI does).
 *
 * Lockout safety: a drive locks an authority out after TryLimit failed authentications until a
 * power cycle. A refused-key memory (options.refusedKeys: by default this process's, see
 * refused-pins.ts; the agent's lasts across processes) records, as keyed fingerprints, which PINs the
 * drive refused for which authority, and the drive object refuses to send them again
 * (TCG_PIN_KNOWN_WRONG), so retries never burn tries on a known-wrong key. With `triesReserve` it also
 * reads C_PIN Tries before authenticating where the drive lets that be read without a PIN, and refuses
 * (DRIVE_LOCKOUT_RISK) to spend the last ones. Opal drives (and the emulator) show Tries only to an
 * authenticated Admin or the authority itself, except for the PSID row: for Admin1, User<n> and SID
 * nothing can be read beforehand and the refused-key memory is the guard.
 */
import { selectBackend, type BackendChoice, type BackendOptions } from './backend.js';
import { KmipAgentError } from '../errors.js';
import { isAuthRefusal, OpalError, toOpalError } from './errors.js';
import { processRefusedKeyMemory } from './refused-pins.js';
import { sedutilPin } from './sedutil.js';
import {
  ADMIN1,
  describeAuthority,
  SID,
  type Authority,
  type Discovery,
  type DriveIdentity,
  type LockStateName,
  type OpalBackend,
  type OpalStatus,
  type PinDerivation,
  type RangeStatus,
  type RefusedKeyMemory,
  type TriesInfo,
} from './types.js';

export interface OpalDriveOptions extends BackendOptions {
  /**
   * 'sedutil': every PIN (not the PSID) is sent as sedutil-cli derives it from a password
   * (PBKDF2-HMAC-SHA1, 75000 iterations, 32 bytes, salted with the drive serial), so drives set up
   * with sedutil can be adopted. Default: PINs are sent as given.
   */
  pinDerivation?: PinDerivation;
  /**
   * Who the drive is, from its spec and the serial it reports (default: its serial, no aliases). The
   * agent passes inventory's identity (WWN first) so every process keys refusals the same way.
   */
  identify?: (spec: string, serial: string) => Promise<DriveIdentity>;
  /**
   * Where refused PINs are remembered (default: this process only). Keyed by the drive's identity; a
   * drive that reports none is remembered in this process only, by its spec (a path may name another
   * drive after a reboot, so it is never persisted).
   */
  refusedKeys?: RefusedKeyMemory;
  /**
   * Failed tries the drive object never lets be spent: before authenticating it reads the authority's
   * Tries/TryLimit when the drive shows them without a PIN, and refuses (DRIVE_LOCKOUT_RISK) when no
   * more than this many are left. Unset: no check (and no extra session).
   */
  triesReserve?: number;
}

export interface SetupRangeOptions {
  /** 0 = the global range (no start/length), 1..n = numbered ranges. */
  range: number;
  start?: number;
  length?: number;
  readLockEnabled: boolean;
  writeLockEnabled: boolean;
}

export interface LockOptions {
  range?: number;
  /** Default Admin1; a User<n> works once enabled for the range. */
  authority?: Authority;
}

export interface UnlockOptions extends LockOptions {
  readOnly?: boolean;
}

export interface SetPinOptions {
  /** Who authenticates (default Admin1). */
  authority?: Authority;
  pin: Buffer;
  /** Whose PIN changes (default: the authenticating authority itself). */
  target?: Authority;
  newPin: Buffer;
}

export interface EraseOptions {
  range: number;
  /** 'genkey' (default): new media key for the range; 'erase': the Single User Mode Erase method. */
  method?: 'genkey' | 'erase';
}

/** C_PIN.PIN holds at most 32 bytes (Opal SSC, C_PIN table: max_bytes_32). */
const MAX_PIN_BYTES = 32;

/** The identity a drive has when the caller says nothing else: its serial. */
const serialIdentity = (serial: string): DriveIdentity => ({ id: serial.trim(), aliases: [] });

function checkNewPin(pin: Buffer): Buffer {
  if (pin.length === 0 || pin.length > MAX_PIN_BYTES) {
    throw new OpalError(
      `a drive PIN is 1 to ${MAX_PIN_BYTES} bytes (Opal C_PIN), this one is ${pin.length}`,
      'DRIVE_PIN_LENGTH_INVALID',
    );
  }
  return pin;
}

/** SP life cycle state of an activated Locking SP (Opal SSC 5.1.2: Manufactured). */
const LOCKING_SP_MANUFACTURED = 9;

/** Locking ranges are numbered in the low 16 bits of their UIDs (Opal SSC 4.3.5.2). */
const MAX_RANGE_NUMBER = 0xffff;

function checkRangeNumber(what: string, range: number): void {
  if (!Number.isInteger(range) || range < 0 || range > MAX_RANGE_NUMBER) {
    throw new OpalError(
      `${what}: a locking range is 0 (global) or a number up to ${MAX_RANGE_NUMBER}, not ${range}`,
      'TCG_INVALID_ARGUMENT',
    );
  }
}

export class OpalDrive {
  private tail: Promise<unknown> = Promise.resolve();
  private closed = false;
  /** Numbered ranges the drive has (LockingInfo MaxRanges), once the drive has told. */
  private maxRanges: number | undefined;
  /** Authorities whose tries the drive would not show without a PIN (not asked again). */
  private readonly triesHidden = new Set<string>();

  private constructor(
    readonly spec: string,
    private readonly backend: OpalBackend,
    private readonly options: OpalDriveOptions,
    /** Which backend reaches the drive and why (null when wrapped with `fromBackend`). */
    readonly choice: BackendChoice | null = null,
    private readonly who: DriveIdentity = serialIdentity(backend.serial()),
  ) {}

  /**
   * Opens `emu:/path/to/image` or a device path (kernel sed-opal, else TCG pass-through; see
   * `selectBackend`). No backend: DRIVE_BACKEND_NOT_SUPPORTED / DRIVE_NOT_OPAL listing the attempts.
   */
  static async open(spec: string, options: OpalDriveOptions = {}): Promise<OpalDrive> {
    try {
      const { backend, choice } = await selectBackend(spec, options);
      let who: DriveIdentity;
      try {
        who = options.identify ? await options.identify(spec, backend.serial()) : serialIdentity(backend.serial());
      } catch (error) {
        await backend.close().catch(() => undefined);
        throw error;
      }
      return new OpalDrive(spec, backend, options, choice, who);
    } catch (error) {
      throw toOpalError(error);
    }
  }

  /** For tests and other backends: wraps an already-open backend. */
  static fromBackend(
    spec: string,
    backend: OpalBackend,
    options: OpalDriveOptions = {},
    choice: BackendChoice | null = null,
  ): OpalDrive {
    return new OpalDrive(spec, backend, options, choice);
  }

  describe(): string {
    return this.backend.describe();
  }

  /** The serial number the drive reports (may be empty). */
  serial(): string {
    return this.backend.serial();
  }

  /** The drive's stable identity (see OpalDriveOptions.identify), which refused PINs are remembered by; '' when it has none. */
  identity(): string {
    return this.who.id;
  }

  /** Older forms of the identity the drive may be recorded (and its refusals remembered) under. */
  identityAliases(): string[] {
    return [...this.who.aliases];
  }

  discover(): Promise<Discovery> {
    return this.run('discovery', () => this.backend.discover());
  }

  /** Discovery plus what needs no PIN. `probeSid` tries SID with MSID (costs a SID try if owned). */
  status(options: { probeSid?: boolean } = {}): Promise<OpalStatus> {
    return this.run('status', () => this.backend.status(options.probeSid ?? false));
  }

  readMsid(): Promise<Buffer> {
    return this.run('read MSID', () => this.backend.readMsid());
  }

  /**
   * Reads MSID and sets the SID PIN, authenticating as SID with the MSID. A drive that already has an owner is
   * refused before any authentication when the drive shows it (Locking SP active, or the Block SID
   * feature saying SID != MSID), so repeated attempts never spend SID tries towards a lockout.
   */
  takeOwnership(newSidPin: Buffer): Promise<void> {
    return this.run('take ownership', async () => {
      const status = await this.backend.status(false);
      const owned =
        status.sidIsMsid === false
          ? 'the drive reports that the SID PIN is no longer the MSID'
          : status.lockingSpLifecycle === LOCKING_SP_MANUFACTURED || status.lockingEnabled
            ? 'its Locking SP is already active'
            : undefined;
      if (owned) {
        throw new OpalError(
          `the drive already has an owner (${owned}); to start over, revert it with the SID PIN ` +
            '(kmip-agent drive revert) or the PSID from its label (kmip-agent drive psid-revert)',
          'DRIVE_ALREADY_OWNED',
        );
      }
      try {
        await this.withDerived(newSidPin, (p) => this.backend.takeOwnership(checkNewPin(p)));
      } catch (error) {
        if (error instanceof KmipAgentError && error.code === 'TCG_NOT_AUTHORIZED') {
          throw new OpalError(
            'the drive refused the MSID as SID PIN: it already has an owner (the SID PIN was changed); revert it ' +
              'with the SID PIN or the PSID to take ownership again',
            'DRIVE_ALREADY_OWNED',
            { cause: error, status: error.status },
          );
        }
        throw error;
      }
    });
  }

  /** Activates the Locking SP as SID (Admin1's PIN starts as the SID PIN). Idempotent. */
  activate(sidPin: Buffer): Promise<void> {
    return this.authenticated('activate the Locking SP', SID, sidPin, (p) => this.backend.activate(p));
  }

  setPin(options: SetPinOptions): Promise<void> {
    const who = options.authority ?? ADMIN1;
    const target = options.target ?? who;
    return this.authenticated(`set the ${describeAuthority(target)} PIN`, who, options.pin, async (p) => {
      await this.withDerived(options.newPin, (n) => this.backend.setPin(who, p, target, checkNewPin(n)));
      const pin = { derivation: this.derivationOf(target), pin: options.newPin };
      await this.forgetAfterChange({ authority: describeAuthority(target), pin });
    });
  }

  /** Enables (or disables) Locking SP User<n>, letting it lock/unlock `ranges` when enabled. */
  enableUser(adminPin: Buffer, user: number, options: { enabled?: boolean; ranges?: number[] } = {}): Promise<void> {
    const what = `enable User${user}`;
    const ranges = options.ranges ?? [];
    return this.authenticated(what, ADMIN1, adminPin, async (p) => {
      await this.checkRangesExist(what, ranges);
      await this.backend.enableUser(p, user, options.enabled ?? true, ranges);
    });
  }

  setupRange(adminPin: Buffer, options: SetupRangeOptions): Promise<void> {
    const what = `set up range ${options.range}`;
    return this.authenticated(what, ADMIN1, adminPin, async (p) => {
      await this.checkRangesExist(what, [options.range]);
      try {
        await this.backend.setupRange(
          p,
          options.range,
          options.start ?? null,
          options.length ?? null,
          options.readLockEnabled,
          options.writeLockEnabled,
        );
      } catch (error) {
        // The drive only says "invalid parameter"; the usual causes are worth naming.
        if (error instanceof KmipAgentError && error.code === 'TCG_INVALID_PARAMETER') {
          throw new OpalError(
            `${error.message}: the drive refused range ${options.range} (start ${options.start ?? '-'}, length ` +
              `${options.length ?? '-'}); ranges may not overlap one another, must end inside the drive and ` +
              'may need to be aligned to its granularity (see `kmip-agent drive discover`: Geometry)',
            error.code,
            { cause: error, status: error.status },
          );
        }
        throw error;
      }
    });
  }

  ranges(pin: Buffer, authority: Authority = ADMIN1): Promise<RangeStatus[]> {
    return this.authenticated('read locking ranges', authority, pin, (p) => this.backend.ranges(authority, p));
  }

  lock(pin: Buffer, options: LockOptions = {}): Promise<void> {
    return this.setLock(pin, options, 'locked');
  }

  unlock(pin: Buffer, options: UnlockOptions = {}): Promise<void> {
    return this.setLock(pin, options, options.readOnly ? 'read-only' : 'unlocked');
  }

  /** Reverts the whole TPer to factory state with the SID PIN (all data is lost). */
  revert(sidPin: Buffer): Promise<void> {
    return this.authenticated('revert the TPer', SID, sidPin, async (p) => {
      await this.backend.revert(p);
      await this.forgetAfterChange();
    });
  }

  /** Reverts with the PSID printed on the drive label (all data is lost). */
  psidRevert(psid: Buffer): Promise<void> {
    // The PSID is printed on the drive: never derived.
    return this.authenticated('PSID revert', { kind: 'psid' }, psid, async () => {
      await this.backend.psidRevert(psid);
      await this.forgetAfterChange();
    });
  }

  revertLockingSp(adminPin: Buffer, options: { keepGlobalRangeKey?: boolean } = {}): Promise<void> {
    return this.authenticated('revert the Locking SP', ADMIN1, adminPin, (p) =>
      this.backend.revertLockingSp(p, options.keepGlobalRangeKey ?? false),
    );
  }

  /** Crypto erase: the range's data becomes unreadable (new media key). */
  erase(adminPin: Buffer, options: EraseOptions): Promise<void> {
    const what = `erase range ${options.range}`;
    return this.authenticated(what, ADMIN1, adminPin, async (p) => {
      await this.checkRangesExist(what, [options.range]);
      await this.backend.erase(p, options.range, options.method === 'erase');
    });
  }

  setMbr(adminPin: Buffer, options: { enable?: boolean; done?: boolean }): Promise<void> {
    return this.authenticated('set MBR control', ADMIN1, adminPin, (p) =>
      this.backend.setMbr(p, options.enable ?? null, options.done ?? null),
    );
  }

  /**
   * C_PIN Tries/TryLimit of `target`, or null when the drive does not let this be read. Tries an
   * unauthenticated read first; with `as` it reads as that authority (a wrong PIN there costs a try).
   */
  tries(target: Authority, as?: { authority: Authority; pin: Buffer }): Promise<TriesInfo | null> {
    if (as) {
      return this.authenticated(`read ${describeAuthority(target)} tries`, as.authority, as.pin, (p) =>
        this.backend.tries(target, as.authority, p),
      );
    }
    return this.run(`read ${describeAuthority(target)} tries`, () => this.backend.tries(target));
  }

  /** Checks a PIN by opening and closing an authenticated session (a wrong PIN costs a try). */
  verify(pin: Buffer, authority: Authority = ADMIN1): Promise<void> {
    return this.authenticated(`verify the ${describeAuthority(authority)} PIN`, authority, pin, (p) =>
      this.backend.verify(authority, p),
    );
  }

  /** True when the refused-key memory holds that the drive refused `pin` for `authority`. */
  async isKnownWrong(authority: Authority, pin: Buffer): Promise<boolean> {
    return this.refusedBefore(describeAuthority(authority), this.derivationOf(authority), pin);
  }

  /** Forgets refused PINs for this drive (e.g. after its PINs were changed elsewhere); returns how many. */
  async forgetRefusedPins(authority?: Authority): Promise<number> {
    const { memory, drive, aliases } = this.memory();
    let forgotten = 0;
    for (const id of [drive, ...aliases])
      forgotten += await memory.forget(id, authority ? { authority: describeAuthority(authority) } : undefined);
    return forgotten;
  }

  /** Releases the drive (for an emulated drive: its image lock). Waits for queued calls. */
  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    const done = this.run('close', () => this.backend.close());
    this.closed = true;
    return done;
  }

  private setLock(pin: Buffer, options: LockOptions, state: LockStateName): Promise<void> {
    const who = options.authority ?? ADMIN1;
    const range = options.range ?? 0;
    const what = `set range ${range} ${state}`;
    return this.authenticated(what, who, pin, async (p) => {
      await this.checkRangesExist(what, [range]);
      await this.backend.setLock(who, p, range, state);
    });
  }

  /**
   * Refuses a locking range the drive does not have (DRIVE_RANGE_NOT_FOUND, naming the ones it
   * has) before any PIN is sent: the count comes from LockingInfo MaxRanges, which needs no PIN,
   * kept once read. When the drive does not tell (Locking SP inactive, kernel backend without
   * pass-through), the drive itself decides.
   */
  private async checkRangesExist(what: string, ranges: number[]): Promise<void> {
    for (const range of ranges) checkRangeNumber(what, range);
    const numbered = ranges.filter((r) => r > 0);
    if (numbered.length === 0) return;
    // Asked again while unknown: an inactive Locking SP tells once it is activated.
    this.maxRanges ??= (await this.backend.status(false)).maxRanges ?? undefined;
    const max = this.maxRanges;
    const missing = max === undefined ? undefined : numbered.find((r) => r > max);
    if (max === undefined || missing === undefined) return;
    const valid = max > 0 ? `0 (global) and 1..${max}` : '0 (global) only';
    throw new OpalError(
      `${what}: the drive has no locking range ${missing}; its ranges are ${valid} (LockingInfo MaxRanges ${max})`,
      'DRIVE_RANGE_NOT_FOUND',
      { details: { range: missing, validRanges: [...Array(max + 1).keys()] } },
    );
  }

  /** Runs a call that authenticates `who` with `pin`, guarding against known-wrong PINs. */
  private authenticated<T>(what: string, who: Authority, pin: Buffer, call: (pin: Buffer) => Promise<T>): Promise<T> {
    return this.run(what, async () => {
      if (!Buffer.isBuffer(pin) || pin.length === 0) {
        throw new OpalError(`${what}: the ${describeAuthority(who)} PIN is empty`, 'TCG_INVALID_ARGUMENT');
      }
      const { memory, drive } = this.memory();
      const authority = describeAuthority(who);
      const derivation = this.derivationOf(who);
      if (await this.refusedBefore(authority, derivation, pin)) {
        throw new OpalError(
          `${what}: this ${authority} PIN was already refused by the drive; not trying it again ` +
            '(each failure counts toward the lockout limit; `kmip-agent drive forget-refusals` clears the memory)',
          'TCG_PIN_KNOWN_WRONG',
        );
      }
      await this.checkTriesReserve(what, who);
      try {
        return who.kind === 'psid' ? await call(pin) : await this.withDerived(pin, call);
      } catch (error) {
        // Only a refused authentication proves the PIN wrong, and the addon marks exactly those
        // (`authRefused`); NOT_AUTHORIZED for a method the authority may not run is an access
        // refusal, and a locked-out authority was not asked about the PIN at all.
        if (isAuthRefusal(error) && (error as { code?: string }).code === 'TCG_NOT_AUTHORIZED') {
          try {
            await memory.remember(drive, authority, derivation, pin);
          } catch (recordError) {
            // Still a refusal (callers must see that), but nobody else will know: say so.
            const refusal = toOpalError(error, what);
            throw new OpalError(
              `${refusal.message}; remembering the refusal failed (${(recordError as Error).message}): ` +
                'do not try this PIN again',
              refusal.code,
              { cause: refusal, status: refusal.status, authRefused: true },
            );
          }
        }
        throw error;
      }
    });
  }

  /**
   * DRIVE_LOCKOUT_RISK when the drive shows (without a PIN) that `who` has no more than `triesReserve`
   * tries left. Drives that do not show them are not asked again; the refused-key memory guards those.
   */
  private async checkTriesReserve(what: string, who: Authority): Promise<void> {
    const reserve = this.options.triesReserve;
    const authority = describeAuthority(who);
    if (reserve === undefined || this.triesHidden.has(authority)) return;
    // Any failure of this unauthenticated read means only that nothing was read; the call itself reports real faults.
    const info = await this.backend.tries(who).catch(() => null);
    if (!info) {
      this.triesHidden.add(authority);
      return;
    }
    const left = info.tryLimit - info.tries;
    if (info.tryLimit === 0 || left > reserve) return;
    throw new OpalError(
      `${what}: ${authority} has ${left} of ${info.tryLimit} tries left and the last ${reserve} are kept in ` +
        'reserve: nothing was sent. A power cycle resets the count; if the PIN is lost, a PSID revert ' +
        '(kmip-agent drive psid-revert, the PSID on the label; all data is lost) is the way out',
      'DRIVE_LOCKOUT_RISK',
      { details: { authority, tries: info.tries, tryLimit: info.tryLimit, reserve } },
    );
  }

  /**
   * After the drive's PINs changed (a PIN set, a revert), what the memory held about them is moot. The
   * change is done either way: a memory that cannot be written now keeps refusing at most the PINs it held,
   * which `kmip-agent drive forget-refusals` clears, so its error does not turn the change into a failure.
   */
  private async forgetAfterChange(which?: Parameters<RefusedKeyMemory['forget']>[1]): Promise<void> {
    const { memory, drive, aliases } = this.memory();
    for (const id of [drive, ...aliases])
      await Promise.resolve()
        .then(() => memory.forget(id, which))
        .catch(() => undefined);
  }

  /**
   * The memory and the key this drive is remembered under (see OpalDriveOptions.refusedKeys); refusals
   * recorded under an older form of its identity (aliases) still count, new ones go under `drive`.
   */
  private memory(): { memory: RefusedKeyMemory; drive: string; aliases: string[] } {
    const identity = this.identity();
    if (identity === '') return { memory: processRefusedKeyMemory, drive: `device:${this.spec}`, aliases: [] };
    return { memory: this.options.refusedKeys ?? processRefusedKeyMemory, drive: identity, aliases: this.who.aliases };
  }

  private async refusedBefore(authority: string, derivation: PinDerivation, pin: Buffer): Promise<boolean> {
    const { memory, drive, aliases } = this.memory();
    for (const id of [drive, ...aliases]) if (await memory.isRefused(id, authority, derivation, pin)) return true;
    return false;
  }

  /** The PSID is printed on the drive: never derived. */
  private derivationOf(authority: Authority): PinDerivation {
    return authority.kind === 'psid' ? 'none' : (this.options.pinDerivation ?? 'none');
  }

  /**
   * Runs `call` with the PIN the drive sees: the caller's Buffer as is, or (pinDerivation
   * 'sedutil') its PBKDF2 form, which is wiped afterwards.
   */
  private async withDerived<T>(pin: Buffer, call: (pin: Buffer) => Promise<T>): Promise<T> {
    if (this.options.pinDerivation !== 'sedutil') return call(pin);
    const derived = await sedutilPin(pin, this.backend.serial());
    try {
      return await call(derived);
    } finally {
      derived.fill(0);
    }
  }

  private run<T>(what: string, call: () => Promise<T>): Promise<T> {
    if (this.closed) return Promise.reject(new OpalError(`${what}: the drive is closed`, 'DRIVE_CLOSED'));
    const result = this.tail.then(call).catch((error: unknown) => {
      throw toOpalError(error, what);
    });
    this.tail = result.catch(() => undefined);
    return result;
  }
}

/** Opens a drive by spec: `emu:/path/to/image` or a device path. */
export function openOpalDrive(spec: string, options: OpalDriveOptions = {}): Promise<OpalDrive> {
  return OpalDrive.open(spec, options);
}
