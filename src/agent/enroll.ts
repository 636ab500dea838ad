/**
 * Enrolling a factory-fresh Opal drive: a new key on the key server, then ownership, the Locking SP and
 * locking of the global range with that key (it stays unlocked until the next power loss), then the local record. The order is the safety: the key exists
 * on the server, named after the drive and in the appliance's group, before the drive is locked with it,
 * and each step is journaled, so a crash at any point leaves a drive that is either untouched or locked
 * with a key that the journal records and `recover` can find on the server by name.
 */
import { KmipAgentError } from '../errors.js';
import type { Clock } from './clock.js';
import { isSameDrive } from './inventory.js';
import type { CreatedKey, KeySource } from './key-source.js';
import { JobJournal } from './journal.js';
import type { ManagedVolume, StateStore } from './state.js';

/** The drive operations enrollment needs. */
export interface EnrollDrive {
  /** inventory's driveIdentity: what the drive is recorded and its key named by. */
  identity(): string;
  /** Older forms of it (plain serial): a record under one of them is this drive too. */
  aliases(): string[];
  /** True when the drive still has its factory SID (SID == MSID) and an inactive Locking SP. */
  isFactoryFresh(): Promise<boolean>;
  takeOwnership(sidPin: Buffer): Promise<void>;
  activateLockingSp(sidPin: Buffer): Promise<void>;
  /** Read and write locking on for the global range: it stays unlocked now and locks at the next power loss. */
  enableGlobalRangeLocking(adminPin: Buffer): Promise<void>;
  close(): Promise<void>;
}

export interface EnrollPort {
  open(device: string): Promise<EnrollDrive>;
}

export interface EnrollOptions {
  applianceId: string;
  provider: string;
  keys: KeySource;
  state: StateStore;
  clock: Clock;
  newJobId: () => string;
}

export interface EnrollResult {
  id: string;
  device: string;
  keyUid: string;
  keyName: string;
}

export const keyNameFor = (applianceId: string, id: string) => `kmip-agent/${applianceId}/${id}`;
export const keyGroupFor = (applianceId: string) => `kmip-agent/${applianceId}`;

/** The drive's identity, once it is known to have one and no record (under it or an older form) exists. */
export function checkNotEnrolled(
  device: string,
  drive: Pick<EnrollDrive, 'identity' | 'aliases'>,
  state: StateStore,
): string {
  const who = { id: drive.identity(), aliases: drive.aliases() };
  if (!who.id)
    throw new KmipAgentError(`${device} reports no WWN or serial number: it cannot be identified`, 'DRIVE_NO_IDENTITY');
  const recorded = state.snapshot().drives.find((d) => isSameDrive(who, d.id));
  if (recorded) throw new KmipAgentError(`${device} (${recorded.id}) is already enrolled`, 'DRIVE_ALREADY_ENROLLED');
  return who.id;
}

export async function enrollOpalDrive(device: string, port: EnrollPort, options: EnrollOptions): Promise<EnrollResult> {
  const { state, clock } = options;
  const drive = await port.open(device);
  try {
    const id = checkNotEnrolled(device, drive, state);
    if (!(await drive.isFactoryFresh())) {
      throw new KmipAgentError(
        `${device} (${id}) already has an owner: adopt it with its current PINs (--sid-pin-file, --admin1-pin-file), ` +
          'or a PSID revert (`kmip-agent drive psid-revert`, ALL DATA LOST) to make it factory-fresh',
        'DRIVE_ALREADY_OWNED',
      );
    }
    const name = keyNameFor(options.applianceId, id);
    const journal = new JobJournal(state, clock, options.newJobId());
    await journal.begin('enroll', { target: id });
    const { uid, key, record } = await options.keys
      .createKey(name, keyGroupFor(options.applianceId))
      .catch(async (error: unknown) => {
        await journal.fail(error);
        throw error;
      });
    try {
      await journal.step('key-created', { uid, name });
      await drive.takeOwnership(key);
      await journal.step('owned');
      await drive.activateLockingSp(key);
      await journal.step('locking-sp-active');
      await drive.enableGlobalRangeLocking(key);
      await journal.done([{ name: 'recorded' }], (s) => {
        s.drives.push({
          id,
          device,
          key: { uid, name, provider: options.provider, ...record },
          enrolledAt: clock.now().toISOString(),
          unlockAtBoot: true,
        });
      });
      return { id, device, keyUid: uid, keyName: name };
    } catch (error) {
      // The key stays on the server (the drive may already be locked with it); the journal says so.
      await journal.fail(error);
      throw error;
    } finally {
      key.fill(0);
    }
  } finally {
    await drive.close();
  }
}

/** The LUKS operations volume enrollment needs. */
export interface VolumeEnrollPort {
  /** The LUKS2 header's UUID. */
  uuid(device: string): Promise<string>;
  /** Adds a keyslot for `newKey`, authorized by `existingKey`; returns the slot. */
  addKey(device: string, existingKey: Buffer, newKey: Buffer): Promise<number>;
}

export interface VolumeEnrollResult extends EnrollResult {
  keyslot: number;
}

/** The state's record of a volume given a KMIP key (enrolled or formatted); envelope mode adds the wrapped key. */
export function volumeRecord(
  id: string,
  device: string,
  keyslot: number,
  created: CreatedKey,
  name: string,
  options: Pick<EnrollOptions, 'provider' | 'clock'>,
): ManagedVolume {
  return {
    id,
    device,
    key: { uid: created.uid, name, provider: options.provider, ...created.record },
    keyslot,
    enrolledAt: options.clock.now().toISOString(),
    unlockAtBoot: true,
  };
}

/**
 * Enrolls an existing LUKS2 volume: the key is made on the key server first (named after the volume's
 * UUID), then a new keyslot for it is added, authorized by the volume's current passphrase, then the
 * volume is recorded. The existing keyslot is left in place: removing it is the operator's decision.
 */
export async function enrollLuksVolume(
  device: string,
  existingKey: Buffer,
  port: VolumeEnrollPort,
  options: EnrollOptions,
): Promise<VolumeEnrollResult> {
  const { state, clock } = options;
  const id = await port.uuid(device);
  if (state.snapshot().volumes.some((v) => v.id === id)) {
    throw new KmipAgentError(`${device} (LUKS UUID ${id}) is already enrolled`, 'VOLUME_ALREADY_ENROLLED');
  }
  const name = keyNameFor(options.applianceId, id);
  const journal = new JobJournal(state, clock, options.newJobId());
  await journal.begin('enroll-volume', { target: id });
  let created: CreatedKey | undefined;
  try {
    created = await options.keys.createKey(name, keyGroupFor(options.applianceId));
    const { uid, key } = created;
    await journal.step('key-created', { uid, name });
    const keyslot = await port.addKey(device, existingKey, key);
    await journal.done([], (s) => s.volumes.push(volumeRecord(id, device, keyslot, created!, name, options)));
    return { id, device, keyUid: uid, keyName: name, keyslot };
  } catch (error) {
    await journal.fail(error);
    throw error;
  } finally {
    created?.key.fill(0);
  }
}
