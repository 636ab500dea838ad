/**
 * The drives layer's shared types: plain data returned by the Opal drive API (mirrors native/tcg;
 * numbers, booleans, Buffers), who authenticates, and what a backend implements.
 */

export interface SscFeature {
  feature: string;
  baseComId: number;
  numComIds: number;
  rangeCrossing: boolean;
  numLockingAdmins?: number;
  numLockingUsers?: number;
  initialCPinSidIndicator?: number;
  cPinSidRevertBehavior?: number;
}

export interface FeatureDescriptor {
  code: number;
  /** "TPer", "Locking", "Opal2", ... "Vendor" (0xC000-0xFFFF) or "Unknown". */
  name: string;
  version: number;
  length: number;
  /** The descriptor's bytes as sent (kept raw for features the parser does not know). */
  data: Buffer;
  truncated?: boolean;
}

/** Level 0 discovery (Core Spec 3.3.6). */
export interface Discovery {
  length: number;
  revision: number;
  tper?: {
    sync: boolean;
    async: boolean;
    ackNak: boolean;
    bufferMgmt: boolean;
    streaming: boolean;
    comIdMgmt: boolean;
  };
  locking?: {
    lockingSupported: boolean;
    lockingEnabled: boolean;
    locked: boolean;
    mediaEncryption: boolean;
    mbrEnabled: boolean;
    mbrDone: boolean;
    mbrShadowingNotSupported: boolean;
  };
  geometry?: { align: boolean; logicalBlockSize: number; alignmentGranularity: number; lowestAlignedLba: number };
  opal1?: SscFeature;
  opal2?: SscFeature;
  enterprise?: SscFeature;
  otherSsc?: SscFeature;
  singleUserMode?: { numLockingObjects: number; any: boolean; all: boolean; policy: boolean };
  dataStore?: { maxTables: number; maxTotalSize: number; tableSizeAlignment: number };
  features: FeatureDescriptor[];
  /** Deviations from the spec the parser tolerated (a Length that lies, a cut-short descriptor). */
  warnings: string[];
}

export interface OpalStatus {
  discovery: Discovery;
  lockingSupported: boolean;
  /** The Locking SP is activated. */
  lockingEnabled: boolean;
  locked: boolean;
  mbrEnabled: boolean;
  mbrDone: boolean;
  /** Locking SP life cycle: 8 Manufactured-Inactive, 9 Manufactured (active); null if unreadable. */
  lockingSpLifecycle: number | null;
  /** C_PIN_SID still equals C_PIN_MSID (not owned); null when unknown. */
  sidIsMsid: boolean | null;
  sidStateSource: '' | 'block-sid-feature' | 'probe';
  /**
   * Numbered locking ranges besides the global range 0 (LockingInfo MaxRanges, readable without a
   * PIN once the Locking SP is active); null or absent when unknown.
   */
  maxRanges?: number | null;
}

export interface RangeStatus {
  /** 0 = the global range. */
  range: number;
  start: number;
  length: number;
  readLockEnabled: boolean;
  writeLockEnabled: boolean;
  readLocked: boolean;
  writeLocked: boolean;
}

/** C_PIN Tries / TryLimit: failed attempts so far and the limit (0 = unlimited). */
export interface TriesInfo {
  tries: number;
  tryLimit: number;
}

/** Who authenticates. SID and PSID live in the Admin SP, Admin<n>/User<n> in the Locking SP. */
export type Authority =
  | { kind: 'sid' }
  | { kind: 'psid' }
  | { kind: 'anybody' }
  | { kind: 'admin'; index?: number }
  | { kind: 'user'; index: number };

export const SID: Authority = { kind: 'sid' };
export const ADMIN1: Authority = { kind: 'admin', index: 1 };

export function userAuthority(index: number): Authority {
  return { kind: 'user', index };
}

export function describeAuthority(a: Authority): string {
  switch (a.kind) {
    case 'sid':
      return 'SID';
    case 'psid':
      return 'PSID';
    case 'anybody':
      return 'Anybody';
    case 'admin':
      return `Admin${a.index ?? 1}`;
    case 'user':
      return `User${a.index}`;
  }
}

/** A locking range's state, spelled this way everywhere (backends, the kernel module, the CLI). */
export type LockStateName = 'locked' | 'read-only' | 'unlocked';

/** One open drive as a backend exposes it. PIN Buffers are copied by the backend, never kept. */
export interface OpalBackend {
  describe(): string;
  /** The drive's serial number as it reports it (may be empty). */
  serial(): string;
  discover(): Promise<Discovery>;
  status(probeSid: boolean): Promise<OpalStatus>;
  readMsid(): Promise<Buffer>;
  takeOwnership(newSidPin: Buffer): Promise<void>;
  activate(sidPin: Buffer): Promise<void>;
  setPin(authority: Authority, pin: Buffer, target: Authority, newPin: Buffer): Promise<void>;
  enableUser(adminPin: Buffer, user: number, enabled: boolean, ranges: number[]): Promise<void>;
  setupRange(
    adminPin: Buffer,
    range: number,
    start: number | null,
    length: number | null,
    readLockEnabled: boolean,
    writeLockEnabled: boolean,
  ): Promise<void>;
  ranges(authority: Authority, pin: Buffer): Promise<RangeStatus[]>;
  setLock(authority: Authority, pin: Buffer, range: number, state: LockStateName): Promise<void>;
  revert(sidPin: Buffer): Promise<void>;
  psidRevert(psid: Buffer): Promise<void>;
  revertLockingSp(adminPin: Buffer, keepGlobalRangeKey: boolean): Promise<void>;
  erase(adminPin: Buffer, range: number, useEraseMethod: boolean): Promise<void>;
  setMbr(adminPin: Buffer, enable: boolean | null, done: boolean | null): Promise<void>;
  /** Tries of `target`, read unauthenticated or as `authority` with `pin`. */
  tries(target: Authority, authority?: Authority, pin?: Buffer): Promise<TriesInfo | null>;
  verify(authority: Authority, pin: Buffer): Promise<void>;
  close(): Promise<void>;
}

/**
 * Who a drive is: `id`, the identity records and refusals go by ('' when the drive offers none), and
 * `aliases`, older forms it may already be recorded under (e.g. its plain serial). The agent decides the
 * form (src/agent/inventory.ts driveIdentity: WWN, else model+serial); the drives layer only carries it.
 */
export interface DriveIdentity {
  id: string;
  aliases: string[];
}

/** How the PIN a caller gives becomes the PIN the drive sees (see OpalDriveOptions.pinDerivation). */
export type PinDerivation = 'none' | 'sedutil';

/**
 * Which PINs a drive's authority refused, so they are never sent to it again (each refusal counts toward
 * the drive's TryLimit lockout). Keyed by the drive's identity (DriveIdentity; never a device path: a
 * path can name another drive after a reboot), the authority as `describeAuthority` spells it, and the derivation
 * (the same password under sedutil derivation is another PIN). Implementations keep keyed fingerprints,
 * never PINs. The drives layer keeps one per process by default; the agent keeps one across processes
 * and restarts (src/agent/refused-keys.ts).
 */
export interface RefusedKeyMemory {
  isRefused(
    driveIdentity: string,
    authority: string,
    derivation: PinDerivation,
    pin: Uint8Array,
  ): boolean | Promise<boolean>;
  remember(driveIdentity: string, authority: string, derivation: PinDerivation, pin: Uint8Array): void | Promise<void>;
  /**
   * Forgets refusals of the drive: all of them, those of one authority, or one PIN of it (after that PIN
   * was set). Returns how many were forgotten.
   */
  forget(
    driveIdentity: string,
    which?: { authority: string; pin?: { derivation: PinDerivation; pin: Uint8Array } },
  ): number | Promise<number>;
}
