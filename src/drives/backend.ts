/**
 * Backends: how an Opal drive is reached. `emu:/path` -> the host TCG stack in the addon over the
 * emulated drive; a device -> the kernel's sed-opal ioctls when the kernel supports the drive (it
 * also re-unlocks after suspend), else the same host TCG stack over SCSI/ATA/NVMe pass-through, else
 * a fault that lists what was tried. Each backend implements `OpalBackend` (types.ts); `OpalDrive`
 * (opal.ts) is the only thing callers see, so adding a backend never touches callers.
 */
import { existsSync } from 'node:fs';
import { addonModule } from '../native/addon.js';
import { OpalError, toOpalError } from './errors.js';
import { KernelOpalBackend } from './kernel-backend.js';
import { KernelOpalDrive, type KernelOpalStatus } from './kernel-opal.js';
import type { Discovery, OpalBackend } from './types.js';

/** The addon's `tcg` module (native/tcg/module.cc). */
export interface TcgNative {
  /** Opens off the JS thread. */
  openAsync(spec: string, options?: BackendOptions): Promise<OpalBackend>;
  /** Synchronous open (kept for existing callers; prefer openAsync). */
  open(spec: string, options?: BackendOptions): OpalBackend;
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

export type BackendName = 'emulated' | 'kernel' | 'passthrough';
export const BACKEND_NAMES: readonly BackendName[] = ['kernel', 'passthrough', 'emulated'];

export interface BackendOptions {
  /**
   * Authenticate with ThisSP.Authenticate inside each session instead of at StartSession (for
   * drives that want it; both are Core Spec 2.01 ways, 5.2.3.1 and 5.3.4.1.1).
   */
  authenticateWithMethod?: boolean;
  /** Use only this backend (default: choose, see `selectBackend`). */
  backend?: BackendName;
}

/** One backend tried for a drive and what came of it. */
export interface BackendAttempt {
  backend: BackendName;
  /** chosen; fallback (kept for what the chosen backend cannot do); unavailable; not-tried (forced). */
  outcome: 'chosen' | 'fallback' | 'unavailable' | 'not-tried';
  /** The error code that made it unavailable (KOPAL_NOT_SUPPORTED, TRANSPORT_NOT_SUPPORTED, DRIVE_NOT_OPAL, ...). */
  code?: string;
  detail: string;
}

/** Why a drive is reached the way it is. */
export interface BackendChoice {
  backend: BackendName;
  reason: string;
  attempts: BackendAttempt[];
}

/** No backend reaches the drive: the attempts say what was tried and why each failed. */
export class BackendChoiceError extends OpalError {
  constructor(
    message: string,
    code: string,
    readonly attempts: BackendAttempt[],
  ) {
    super(message, code);
  }

  override details(): Record<string, unknown> {
    return { attempts: this.attempts };
  }
}

/** How backends are probed and opened (the seams tests replace). */
export interface BackendProbes {
  kernel(device: string): KernelOpalDrive;
  /** The host TCG stack over SCSI/ATA/NVMe pass-through on the device. */
  openPassthrough(device: string, options: BackendOptions): Promise<OpalBackend>;
  openEmulated(spec: string, options: BackendOptions): Promise<OpalBackend>;
  parseDiscovery(data: Buffer): Discovery;
  /** Whether the device node still exists once every probe failed (a disk being removed fails them oddly). */
  exists(device: string): boolean;
}

export const defaultProbes: BackendProbes = {
  kernel: (device) => KernelOpalDrive.open(device),
  openPassthrough: (device, options) => tcgNative().openAsync(device, nativeOptions(options)),
  openEmulated: (spec, options) => tcgNative().openAsync(spec, nativeOptions(options)),
  parseDiscovery: (data) => tcgNative().parseDiscovery(data),
  exists: (device) => existsSync(device),
};

function nativeOptions(options: BackendOptions): { authenticateWithMethod?: boolean } {
  return { authenticateWithMethod: options.authenticateWithMethod ?? false };
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

/** The SSC features our Opal flows run on (Enterprise is another command set). */
export function opalSscOf(d: Discovery): string | null {
  return (d.opal2 ?? d.opal1 ?? d.otherSsc)?.feature ?? null;
}

function describeError(error: unknown): { code: string; detail: string } {
  const e = toOpalError(error);
  return { code: e.code, detail: e.message };
}

function hex(n: number): string {
  return `0x${n.toString(16).padStart(2, '0')}`;
}

interface KernelProbe {
  attempt: BackendAttempt;
  drive?: KernelOpalDrive;
}

async function probeKernel(device: string, probes: BackendProbes): Promise<KernelProbe> {
  const drive = probes.kernel(device);
  let status: KernelOpalStatus;
  try {
    status = await drive.status();
  } catch (error) {
    return { attempt: { backend: 'kernel', outcome: 'unavailable', ...describeError(error) } };
  }
  if (!status.supported) {
    return {
      attempt: {
        backend: 'kernel',
        outcome: 'unavailable',
        code: 'KOPAL_NOT_SUPPORTED',
        detail: `IOC_OPAL_GET_STATUS: the kernel has sed-opal but reports no Opal support for ${device} (flags ${hex(status.flags)})`,
      },
    };
  }
  return {
    drive,
    attempt: {
      backend: 'kernel',
      outcome: 'chosen',
      detail: `IOC_OPAL_GET_STATUS: Opal supported (flags ${hex(status.flags)})`,
    },
  };
}

interface PassthroughProbe {
  attempt: BackendAttempt;
  backend?: OpalBackend;
  /** The discovery, also when it shows no Opal SSC. */
  discovery?: Discovery;
}

async function probePassthrough(
  device: string,
  options: BackendOptions,
  probes: BackendProbes,
): Promise<PassthroughProbe> {
  let backend: OpalBackend;
  try {
    backend = await probes.openPassthrough(device, options);
  } catch (error) {
    return { attempt: { backend: 'passthrough', outcome: 'unavailable', ...describeError(error) } };
  }
  try {
    const discovery = await backend.discover();
    const ssc = opalSscOf(discovery);
    if (ssc === null) {
      await backend.close();
      const features = discovery.features.map((f) => f.name).join(', ') || 'none';
      return {
        discovery,
        attempt: {
          backend: 'passthrough',
          outcome: 'unavailable',
          code: 'DRIVE_NOT_OPAL',
          detail: `Level 0 discovery answered (${backend.describe()}) without an Opal/Opalite/Pyrite/Ruby SSC (features: ${features})`,
        },
      };
    }
    return {
      backend,
      discovery,
      attempt: {
        backend: 'passthrough',
        outcome: 'chosen',
        detail: `Level 0 discovery over ${backend.describe()}: SSC ${ssc}`,
      },
    };
  } catch (error) {
    await backend.close().catch(() => undefined);
    return { attempt: { backend: 'passthrough', outcome: 'unavailable', ...describeError(error) } };
  }
}

/** One attempt as a line of text: "kernel: unavailable [KOPAL_NOT_SUPPORTED]: ...". */
export function describeAttempt(a: BackendAttempt): string {
  return `${a.backend}: ${a.outcome}${a.code ? ` [${a.code}]` : ''}: ${a.detail}`;
}

function attemptsText(attempts: BackendAttempt[]): string {
  return attempts.map(describeAttempt).join('; ');
}

/**
 * The fault when nothing reaches the drive: DRIVE_NOT_OPAL if it answered without an Opal SSC, and
 * DRIVE_NOT_FOUND when the device is gone, also when it went during the probes (a disk being removed
 * answers the kernel's ioctl with EOPNOTSUPP, which alone would read as "no sed-opal support").
 */
function noBackend(device: string, attempts: BackendAttempt[], gone: boolean): BackendChoiceError {
  const tried = attempts.filter((a) => a.outcome === 'unavailable');
  let code = 'DRIVE_BACKEND_NOT_SUPPORTED';
  let head = `no backend reaches ${device}`;
  if (gone || (tried.length > 0 && tried.every((a) => a.code?.endsWith('DEVICE_NOT_FOUND')))) {
    code = 'DRIVE_NOT_FOUND';
    head = `${device}: no such device`;
  } else if (tried.some((a) => a.code === 'DRIVE_NOT_OPAL')) {
    code = 'DRIVE_NOT_OPAL';
    head = `${device} is not an Opal drive`;
  } else if (tried.length > 0 && tried.every((a) => a.code?.endsWith('PERMISSION_DENIED'))) {
    code = 'DRIVE_PERMISSION_DENIED';
    head = `no backend may open ${device} (run as root, or with CAP_SYS_ADMIN and CAP_SYS_RAWIO)`;
  }
  return new BackendChoiceError(`${head}; tried ${attemptsText(attempts)}`, code, attempts);
}

/**
 * Opens the backend for a drive spec and says why it is that one. For a device: kernel sed-opal
 * when IOC_OPAL_GET_STATUS says Opal is supported (with pass-through kept as its fallback when that
 * works too), else TCG pass-through when Level 0 discovery shows an Opal/Opalite/Pyrite/Ruby SSC,
 * else BackendChoiceError (DRIVE_NOT_OPAL / DRIVE_BACKEND_NOT_SUPPORTED / DRIVE_PERMISSION_DENIED).
 * `options.backend` forces one backend (no fallback).
 */
export async function selectBackend(
  spec: string,
  options: BackendOptions = {},
  probes: BackendProbes = defaultProbes,
): Promise<{ choice: BackendChoice; backend: OpalBackend }> {
  const forced = options.backend;
  if (forced !== undefined && !BACKEND_NAMES.includes(forced)) {
    throw new OpalError(`unknown backend '${String(forced)}': use ${BACKEND_NAMES.join(', ')}`, 'DRIVE_SPEC_INVALID');
  }
  const kind = backendKindOf(spec);
  if (kind === 'emulated') {
    if (forced !== undefined && forced !== 'emulated') {
      throw new OpalError(`${spec} is an emulated drive: the ${forced} backend needs a device`, 'DRIVE_SPEC_INVALID');
    }
    if (spec.length <= 'emu:'.length) {
      throw new OpalError('emu: needs an image path (emu:/path/to/image)', 'DRIVE_SPEC_INVALID');
    }
    const backend = await probes.openEmulated(spec, options);
    const detail = 'emu: names an emulated drive image (host TCG stack over the emulator)';
    return {
      backend,
      choice: { backend: 'emulated', reason: detail, attempts: [{ backend: 'emulated', outcome: 'chosen', detail }] },
    };
  }
  if (forced === 'emulated') {
    throw new OpalError(`${spec} is a device: the emulated backend needs emu:/path/to/image`, 'DRIVE_SPEC_INVALID');
  }

  const attempts: BackendAttempt[] = [];
  const kernel = forced === 'passthrough' ? null : await probeKernel(spec, probes);
  if (kernel) attempts.push(kernel.attempt);
  else attempts.push({ backend: 'kernel', outcome: 'not-tried', detail: 'the passthrough backend was forced' });

  const wantPassthrough = forced !== 'kernel';
  const passthrough = wantPassthrough ? await probePassthrough(spec, options, probes) : null;

  if (kernel?.drive) {
    let fallback: OpalBackend | null = null;
    let fallbackNote = 'the kernel backend was forced';
    if (passthrough) {
      fallback = passthrough.backend ?? null;
      fallbackNote = passthrough.attempt.detail;
      attempts.push(fallback ? { ...passthrough.attempt, outcome: 'fallback' } : passthrough.attempt);
    } else {
      attempts.push({ backend: 'passthrough', outcome: 'not-tried', detail: fallbackNote });
    }
    const reason =
      (forced === 'kernel' ? 'forced; ' : '') +
      "the kernel's sed-opal driver supports this drive (it re-unlocks after suspend via IOC_OPAL_SAVE)" +
      (fallback ? '; TCG pass-through is kept for what the kernel cannot do' : '');
    return {
      backend: new KernelOpalBackend(kernel.drive, probes.parseDiscovery, fallback, fallbackNote),
      choice: { backend: 'kernel', reason, attempts },
    };
  }
  if (passthrough) attempts.push(passthrough.attempt);
  else attempts.push({ backend: 'passthrough', outcome: 'not-tried', detail: 'the kernel backend was forced' });

  if (passthrough?.backend) {
    const ssc = passthrough.discovery ? opalSscOf(passthrough.discovery) : null;
    const reason =
      forced === 'passthrough'
        ? `forced; the drive answers Level 0 discovery with SSC ${ssc}`
        : `kernel sed-opal is unavailable (${kernel?.attempt.code ?? 'unknown'}); the drive answers Level 0 ` +
          `discovery with SSC ${ssc} over TCG pass-through`;
    return { backend: passthrough.backend, choice: { backend: 'passthrough', reason, attempts } };
  }
  throw noBackend(spec, attempts, !probes.exists(spec));
}
