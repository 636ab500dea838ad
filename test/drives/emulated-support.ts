/** Test helpers for suites that run the Opal stack against the emulated drive (native/emulator). */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach } from 'vitest';
import { OpalDrive, type OpalDriveOptions } from '../../src/drives/opal.js';
import { loadAddon } from '../../src/native/addon.js';
import { recordSecrets } from '../support/test-run.js';

/** The addon's `emulator` module, as far as these tests use it. */
export interface EmulatorNative {
  create(path: string, sizeMiB: number, serial: string): Promise<{ psid: string }>;
  powerCycle(path: string): Promise<void>;
  read(path: string, lba: number, count: number): Promise<Buffer>;
  write(path: string, lba: number, data: Buffer): Promise<void>;
}

/** The addon's emulator module; a build without it fails the suites loudly (never a silent skip). */
export function emulatorNative(): EmulatorNative {
  const emulator = loadAddon().emulator as EmulatorNative | undefined;
  if (!emulator) throw new Error('the addon has no emulator module: rebuild it with `npm run build:addon`');
  return emulator;
}

export interface EmulatedImage {
  path: string;
  spec: string;
  psid: string;
  cleanup(): void;
}

export async function createImage(emu: EmulatorNative, sizeMiB = 8): Promise<EmulatedImage> {
  const dir = mkdtempSync(join(tmpdir(), 'kmip-agent-opal-'));
  const path = join(dir, 'drive.img');
  const { psid } = await emu.create(path, sizeMiB, 'EMU-TEST-0001');
  return { path, spec: `emu:${path}`, psid, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** An emulated drive and the OpalDrive open on it, as a suite's hooks set them for each test. */
export interface FreshDrive {
  readonly image: EmulatedImage;
  readonly drive: OpalDrive;
  /** Reads blocks through the emulator's data path (the drive is closed meanwhile, then reopened). */
  read(lba: number, count: number): Promise<Buffer>;
  /** Writes blocks through the emulator's data path (the drive is closed meanwhile, then reopened). */
  write(lba: number, data: Buffer): Promise<void>;
}

/**
 * Registers beforeEach/afterEach hooks in the calling describe block: a fresh emulated drive and an
 * open OpalDrive on it for every test, closed and deleted afterwards.
 */
export function useFreshDrive(options: OpalDriveOptions = {}): FreshDrive {
  return useDrive(options, async () => {});
}

/**
 * As useFreshDrive, with the drive owned (SID PIN `sid`), its Locking SP activated and Admin1's
 * PIN set to `admin` before every test.
 */
export function useOwnedDrive(pins: { sid: Buffer; admin: Buffer }, options: OpalDriveOptions = {}): FreshDrive {
  // The run's secrets hygiene scan looks for these PINs (test-run.ts).
  recordSecrets('emulator-pin', [pins.sid, pins.admin]);
  return useDrive(options, async (drive) => {
    await drive.takeOwnership(pins.sid);
    await drive.activate(pins.sid);
    await drive.setPin({ pin: pins.sid, newPin: pins.admin });
  });
}

function useDrive(options: OpalDriveOptions, prepare: (drive: OpalDrive) => Promise<void>): FreshDrive {
  let image: EmulatedImage | undefined;
  let drive: OpalDrive | undefined;
  beforeEach(async () => {
    image = await createImage(emulatorNative());
    drive = await OpalDrive.open(image.spec, options);
    await prepare(drive);
  });
  afterEach(async () => {
    await drive?.close();
    image?.cleanup();
  });
  const closedFor = async <T>(io: (native: EmulatorNative) => Promise<T>): Promise<T> => {
    await drive!.close();
    try {
      return await io(emulatorNative());
    } finally {
      drive = await OpalDrive.open(image!.spec, options);
    }
  };
  return {
    get image() {
      return image!;
    },
    get drive() {
      return drive!;
    },
    read: (lba, count) => closedFor((native) => native.read(image!.path, lba, count)),
    write: (lba, data) => closedFor((native) => native.write(image!.path, lba, data)),
  };
}
