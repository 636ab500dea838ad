/**
 * Adopting an Opal drive that already has an owner, with its current PINs: a new key on the key server
 * replaces the Admin1 PIN (what unlocking uses) and, given the SID PIN, the SID PIN; then global range
 * locking is enabled and the drive recorded. The current PINs are checked before any key is made (through
 * the caller's lockout guard: a refused PIN is never sent again). Each change is journaled, so after a
 * crash the journal says which PINs are the server's key and which still the old ones, and running the
 * same adoption again resumes with the same key instead of making a second one.
 */
import { KmipAgentError } from '../errors.js';
import { checkNotEnrolled, keyGroupFor, keyNameFor, type EnrollOptions, type EnrollResult } from './enroll.js';
import { isSameDrive } from './inventory.js';
import { JobJournal, stepsOf } from './journal.js';

export type AdoptAuthority = 'sid' | 'admin1';

/** The drive operations adoption needs. */
export interface AdoptDrive {
  /** As EnrollDrive's: inventory's driveIdentity and its older forms. */
  identity(): string;
  aliases(): string[];
  isFactoryFresh(): Promise<boolean>;
  lockingSpActive(): Promise<boolean>;
  /** Authenticates once (spends a try when wrong: the guard remembers the refusal). */
  verify(authority: AdoptAuthority, pin: Buffer): Promise<void>;
  activateLockingSp(sidPin: Buffer): Promise<void>;
  setPin(authority: AdoptAuthority, currentPin: Buffer, newPin: Buffer): Promise<void>;
  enableGlobalRangeLocking(adminPin: Buffer): Promise<void>;
  close(): Promise<void>;
}

export interface AdoptPort {
  open(device: string): Promise<AdoptDrive>;
}

export interface AdoptPins {
  sid?: Buffer | undefined;
  /** Default: the SID PIN (Admin1 starts as the SID PIN when the Locking SP is activated). */
  admin1?: Buffer | undefined;
}

export interface AdoptResult extends EnrollResult {
  /** False when only the Admin1 PIN was given: the SID PIN stays the operator's. */
  sidChanged: boolean;
  resumed: boolean;
}

const STEP = {
  key: 'key-created',
  admin1: 'admin1-pin-changed',
  sid: 'sid-pin-changed',
  locking: 'range-locking-enabled',
} as const;

export async function adoptOpalDrive(
  device: string,
  pins: AdoptPins,
  port: AdoptPort,
  options: EnrollOptions,
): Promise<AdoptResult> {
  const { state, clock } = options;
  if (!pins.sid && !pins.admin1)
    throw new KmipAgentError('adopting an owned drive needs its current SID or Admin1 PIN', 'DRIVE_ADOPT_NEEDS_PIN');
  const drive = await port.open(device);
  let key: Buffer | undefined;
  try {
    const identity = checkNotEnrolled(device, drive, state);
    if (await drive.isFactoryFresh())
      throw new KmipAgentError(
        `${device} (${identity}) has no owner yet: enroll it without PIN files (\`kmip-agent drive enroll ${device}\`)`,
        'DRIVE_NOT_OWNED',
      );
    const at = () => clock.now().toISOString();
    // An adoption of this drive that stopped after its key was made: continue with that key.
    const previous = state
      .snapshot()
      .jobs.filter(
        (j) =>
          j.kind === 'adopt' &&
          j.target !== undefined &&
          isSameDrive({ id: identity, aliases: drive.aliases() }, j.target) &&
          j.status !== 'done',
      )
      .at(-1);
    const made = previous?.steps.find((s) => s.name === STEP.key);
    // A resumed adoption keeps the id its key was named with (an older form, if it started under one).
    const id = made ? previous!.target! : identity;
    const done = stepsOf(made ? previous : undefined);
    const journal = new JobJournal(state, clock, made ? previous!.id : options.newJobId());

    let admin1 = pins.admin1 ?? pins.sid!;
    if (!made) {
      if (!(await drive.lockingSpActive())) {
        if (!pins.sid)
          throw new KmipAgentError(
            `${device} (${id}): its Locking SP is not active, which needs the SID PIN (--sid-pin-file)`,
            'DRIVE_ADOPT_NEEDS_SID',
          );
        await drive.activateLockingSp(pins.sid);
        admin1 = pins.sid;
      }
      // Both PINs checked before a key exists: a wrong one leaves no key behind on the server.
      if (pins.sid) await drive.verify('sid', pins.sid);
      await drive.verify('admin1', admin1);
    }
    const name = keyNameFor(options.applianceId, id);
    let uid = made ? String(made.detail?.uid) : '';
    let record: { wrapped: string; masterKeyUid: string } | undefined;
    if (made) {
      const fetched = (await options.keys.fetch([uid])).get(uid);
      if (!fetched?.ok)
        throw new KmipAgentError(
          `${device} (${id}): the key ${uid} of the interrupted adoption cannot be fetched`,
          fetched?.error.code ?? 'KEY_NOT_FOUND',
        );
      key = fetched.key;
      await journal.resume();
    } else {
      await journal.begin('adopt', { target: id });
    }
    try {
      if (!made) {
        const created = await options.keys.createKey(name, keyGroupFor(options.applianceId));
        key = created.key;
        uid = created.uid;
        record = created.record;
        await journal.step(STEP.key, { uid, name });
      }
      // Admin1 first: it is what unlocking uses, so from here the recorded key unlocks the drive.
      if (!done.has(STEP.admin1)) {
        await drive.setPin('admin1', admin1, key!);
        await journal.step(STEP.admin1);
      }
      const sidChanged = done.has(STEP.sid) || pins.sid !== undefined;
      if (pins.sid && !done.has(STEP.sid)) {
        await drive.setPin('sid', pins.sid, key!);
        await journal.step(STEP.sid);
      }
      await drive.enableGlobalRangeLocking(key!);
      await journal.done([{ name: STEP.locking }, { name: 'recorded' }], (s) => {
        s.drives.push({
          id,
          device,
          key: { uid, name, provider: options.provider, ...record },
          enrolledAt: at(),
          unlockAtBoot: true,
        });
      });
      return { id, device, keyUid: uid, keyName: name, sidChanged, resumed: made !== undefined };
    } catch (error) {
      await journal.fail(error);
      throw error;
    }
  } finally {
    key?.fill(0);
    await drive.close();
  }
}
