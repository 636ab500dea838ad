/** The drives layer: typed wrappers over the addon's drive backends. */
export { OpalDrive, openOpalDrive } from './opal.js';
export type {
  EraseOptions,
  OpalDriveOptions,
  LockOptions,
  SetPinOptions,
  SetupRangeOptions,
  UnlockOptions,
} from './opal.js';
export { isAuthRefusal, OpalError, toOpalError } from './errors.js';
export {
  BACKEND_NAMES,
  BackendChoiceError,
  backendKindOf,
  defaultProbes,
  opalSscOf,
  selectBackend,
  tcgNative,
} from './backend.js';
export type {
  BackendAttempt,
  BackendChoice,
  BackendKind,
  BackendName,
  BackendOptions,
  BackendProbes,
  ComPacketInfo,
  TcgNative,
} from './backend.js';
export { KernelOpalBackend, KernelPinRefusedError } from './kernel-backend.js';
export * from './types.js';
export { sedutilPin, SEDUTIL_ITERATIONS } from './sedutil.js';
export * as luks from './luks.js';
export { listSystemDisks, type SystemDiskInfo } from './system-disks.js';
export { LuksError, type LuksErrorCode, type LuksInfo } from './luks.js';
export {
  EMULATED_DEVICE_PREFIX,
  createEmulatedDrive,
  emulatedImagePath,
  powerCycleEmulatedDrive,
  readEmulatedDrive,
} from './emulator.js';
