/**
 * Backends: how an Opal drive is reached. Today: the host TCG stack in the addon talking to an
 * emulated drive (`emu:/path/to/image`). Later (issue 5): the same stack over SCSI/ATA/NVMe
 * pass-through, or the kernel's sed-opal ioctls. Each backend implements `OpalBackend`; `OpalDrive`
 * (opal.ts) is the only thing callers see, so adding a backend never touches callers.
 */
import { addonModule } from '../native/addon.js';
import { OpalError } from './errors.js';
import type { Authority, Discovery, OpalStatus, RangeStatus, TriesInfo } from './types.js';

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
  setPin(who: Authority, pin: Buffer, target: Authority, newPin: Buffer): Promise<void>;
  enableUser(adminPin: Buffer, user: number, enabled: boolean, ranges: number[]): Promise<void>;
  setupRange(
    adminPin: Buffer,
    range: number,
    start: number | null,
    length: number | null,
    readLockEnabled: boolean,
    writeLockEnabled: boolean,
  ): Promise<void>;
  ranges(who: Authority, pin: Buffer): Promise<RangeStatus[]>;
  setLock(who: Authority, pin: Buffer, range: number, state: LockStateName): Promise<void>;
  revert(sidPin: Buffer): Promise<void>;
  psidRevert(psid: Buffer): Promise<void>;
  revertLockingSp(adminPin: Buffer, keepGlobalRangeKey: boolean): Promise<void>;
  erase(adminPin: Buffer, range: number, useEraseMethod: boolean): Promise<void>;
  setMbr(adminPin: Buffer, enable: boolean | null, done: boolean | null): Promise<void>;
  tries(target: Authority, who?: Authority, pin?: Buffer): Promise<TriesInfo | null>;
  verify(who: Authority, pin: Buffer): Promise<void>;
  close(): Promise<void>;
}

/** The addon's `tcg` module (native/tcg/module.cc). */
export interface TcgNative {
  /** Opens off the JS thread. */
  openAsync(spec: string, options?: BackendOptions): Promise<OpalBackend>;
  /** Synchronous open (kept for existing callers; prefer openAsync). */
  open(spec: string, options?: BackendOptions): OpalBackend;
  /** Test entry point: a drive whose TPer answers from canned responses (after `discovery`). */
  openScripted(discovery: Buffer, responses: Buffer[]): OpalBackend & { sent(): Buffer[] };
  decodeTokens(data: Buffer): { kind: string; offset: number; value?: number | bigint | Buffer }[];
  decodeValues(data: Buffer): unknown[];
  encodeTokens(values: unknown[]): Buffer;
  parseComPacket(data: Buffer): ComPacketInfo;
  buildComPacket(options: {
    comId: number;
    tperSession?: number;
    hostSession?: number;
    seqNumber?: number;
    outstandingData?: number;
    minTransfer?: number;
    payload?: Buffer;
    padTo?: number;
  }): Buffer;
  parseDiscovery(data: Buffer): Discovery;
  parseMethodResponse(data: Buffer): { status: number; statusName: string; results: unknown };
  statusName(status: number): { name: string; code: string };
}

export interface ComPacketInfo {
  comId: number;
  comIdExtension: number;
  outstandingData: number;
  minTransfer: number;
  packets: {
    tperSession: number;
    hostSession: number;
    seqNumber: number;
    ackType: number;
    acknowledgement: number;
    subpackets: { kind: number; payload: Buffer }[];
  }[];
}

export function tcgNative(): TcgNative {
  return addonModule<TcgNative>('tcg');
}

export interface BackendOptions {
  /**
   * Authenticate with ThisSP.Authenticate inside each session instead of at StartSession (for
   * drives that want it; both are Core Spec 2.01 ways, 5.2.3.1 and 5.3.4.1.1).
   */
  authenticateWithMethod?: boolean;
}

/** Which backend a drive spec names. */
export type BackendKind = 'emulated' | 'block-device';

export function backendKindOf(spec: string): BackendKind {
  if (spec.startsWith('emu:')) return 'emulated';
  if (spec.startsWith('/dev/')) return 'block-device';
  throw new OpalError(
    `'${spec}' is not a drive: use a device path (/dev/sdX) or emu:/path/to/image`,
    'DRIVE_SPEC_INVALID',
  );
}

/** Opens the backend for a drive spec (off the JS thread). */
export async function openBackend(spec: string, options: BackendOptions = {}): Promise<OpalBackend> {
  switch (backendKindOf(spec)) {
    case 'emulated':
      if (spec.length <= 'emu:'.length) {
        throw new OpalError('emu: needs an image path (emu:/path/to/image)', 'DRIVE_SPEC_INVALID');
      }
      return tcgNative().openAsync(spec, options);
    case 'block-device':
      throw new OpalError(
        `no backend for ${spec} yet: kernel sed-opal and SCSI/ATA/NVMe pass-through backends are not implemented ` +
          '(use emu:/path/to/image for an emulated drive)',
        'DRIVE_BACKEND_NOT_SUPPORTED',
      );
  }
}
