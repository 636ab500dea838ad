/**
 * Field-engineer workflows: a drive taken out for good (`drive remove`), a LUKS volume taken out
 * (`volume remove`), a drive back after a spurious failure (`drive readd`) and a failed drive replaced by
 * a new one (`drive replace`). Each touches the only copy of a key that keeps data readable, so the order
 * is the safety and every step is journaled (JobJournal through the JobRunner) before the next is taken:
 *
 * remove drive:   crypto erase of the global range (new media key) -> TPer revert to factory state ->
 *                 key revoked -> key destroyed -> record (and config entry) dropped. A drive that cannot
 *                 be opened (gone, dead) is refused (DRIVE_UNREACHABLE) unless forced: then its key is
 *                 revoked and destroyed without an erase, and the journal and result say it was not erased
 *                 (its data stays encrypted under a key that no longer exists).
 * remove volume:  the KMIP keyslot removed from the LUKS2 header -> key revoked -> destroyed -> dropped.
 * replace drive:  the new drive enrolled (its own key) -> proven by a fresh authentication with that key
 *                 -> it takes the old one's role (unlockAtBoot, config entry) -> the old key revoked and
 *                 destroyed (unless keepKey) -> the old record dropped. The old key is never retired
 *                 before the new drive is proven.
 *
 * A rerun after a crash reads the steps earlier jobs journaled for the same drive and key and goes on
 * from there; a step whose effect happened but whose journal entry did not is found done by looking
 * (a drive already factory-fresh, a keyslot already gone, a key already revoked or gone on the server).
 * A key the server refuses to revoke or destroy (a least-privilege client identity) does not stop the
 * removal: it is reported as left on the server (job result, journal, audit trail), and `audit keys`
 * lists it, since no record uses it any more.
 */
import { KmipAgentError } from '../errors.js';
import { hasResultReason, KmipOperationError, ResultReason, State } from '../kmip/index.js';
import type { EnrollResult } from './enroll.js';
import { journalError } from './journal.js';
import type { JobContext } from './jobs.js';
import type { KeySource } from './key-source.js';
import type { Job, ManagedDrive, ManagedVolume, StateBody, StateStore } from './state.js';
import type { UnlockOutcome } from './unlock.js';

export const REMOVE_DRIVE_JOB = 'remove-drive';
export const REMOVE_VOLUME_JOB = 'remove-volume';
export const REPLACE_DRIVE_JOB = 'replace-drive';
/** Field work on drives never overlaps (one lane of the job runner). */
export const FIELD_LANE = 'field';

/** The drive operations removal needs (daemon.ts builds them over OpalDrive with the lockout guard). */
export interface RemovableDrive {
  /** SID is the MSID and the Locking SP inactive: nothing on it needs the key. */
  isFactoryFresh(): Promise<boolean>;
  /** Crypto erase of the global range (a new media key: its data is gone), as Admin1. */
  eraseGlobalRange(key: Buffer): Promise<void>;
  /** Revert of the whole TPer to factory state, as SID. */
  revertToFactory(key: Buffer): Promise<void>;
  close(): Promise<void>;
}

/** Retiring keys on the server. */
export interface KeyRetirement {
  /** Revoke (Deactivated, Cessation of Operation). */
  revoke(uid: string): Promise<void>;
  destroy(uid: string): Promise<void>;
  /** The key's KMIP State, or null when the server has no such object (kmipKeyState). */
  keyState(uid: string): Promise<number | null>;
  /** Told of a key the server refused to retire (the audit trail records it). */
  leftOnServer?(uid: string, target: string, error: { code: string; message: string }): void;
}

export interface FieldPorts {
  state: StateStore;
  keys: KeySource;
  retire: KeyRetirement;
  openDrive(device: string): Promise<RemovableDrive>;
  /** Keeps the agent from unlocking `id` while it is taken apart; release undoes it. */
  hold?(id: string): Promise<void>;
  release?(id: string): void;
  /** After records changed (the agent refreshes its targets). */
  changed?(): void;
  /** The config entries of devices (emulated drives, volumes): dropped with their records. */
  dropDriveConfig?(device: string): Promise<void>;
  dropVolumeConfig?(device: string): Promise<void>;
  /** The test-only crash hook (crash-hook.ts), called after each named step is journaled. */
  crashPoint?(step: string): void;
}

export interface VolumePorts extends FieldPorts {
  /** The keyslots the LUKS2 header has now. */
  keyslots(device: string): Promise<number[]>;
  /** Removes keyslot `slot`, authorized by `key` (its own key: forced, the check is ours). */
  removeKeyslot(device: string, key: Buffer, slot: number): Promise<void>;
}

export interface ReplacePorts extends FieldPorts {
  /** The new device, as enrollment would judge it: its identity and whether it is factory-fresh. */
  inspect(device: string): Promise<{ id: string; aliases: string[]; factoryFresh: boolean }>;
  /** Enrolls the new drive (enroll.ts: its own key, recorded, config entry). */
  enroll(device: string): Promise<EnrollResult>;
  /** One Admin1 authentication with `key` (lock state untouched): the new drive is proven on its key. */
  prove(device: string, key: Buffer): Promise<void>;
  /** The new device takes the old one's config entry (unlockAtBoot), the old entry goes. */
  takeRole(oldDevice: string, newDevice: string, unlockAtBoot: boolean): Promise<void>;
}

/** What happened to a key on the server. */
export interface KeyFate {
  keyUid: string;
  revoked: boolean;
  destroyed: boolean;
  /** The server refused: the key is still there (audit keys lists it). */
  leftOnServer?: { code: string; message: string };
  kept?: boolean;
}

export interface RemoveResult {
  id: string;
  device: string;
  key: KeyFate;
  /** Drives: false when forced on a drive that could not be reached (neither erased nor reverted). */
  erased?: boolean;
  notErasedReason?: { code: string; message: string };
  /** Steps done by an earlier, interrupted run (this run resumed after them). */
  resumedAfter: string[];
}

export interface ReplaceResult {
  oldId: string;
  oldDevice: string;
  newId: string;
  newDevice: string;
  newKeyUid: string;
  oldKey: KeyFate;
  resumedAfter: string[];
}

const unknownDrive = (id: string) =>
  new KmipAgentError(`no managed drive ${id} (see kmip-agent status)`, 'DRIVE_UNKNOWN', { details: { id } });
const unknownVolume = (id: string) =>
  new KmipAgentError(`no managed volume ${id} (see kmip-agent status)`, 'VOLUME_UNKNOWN', { details: { id } });

/** The managed drive by id (or device); DRIVE_UNKNOWN otherwise. Bad input, checked before anything is contacted. */
export function findDrive(state: StateStore, id: string): ManagedDrive {
  const drives = state.snapshot().drives;
  const found = drives.find((d) => d.id === id) ?? drives.find((d) => d.device === id);
  if (!found) throw unknownDrive(id);
  return found;
}

export function findVolume(state: StateStore, id: string): ManagedVolume {
  const volumes = state.snapshot().volumes;
  const found = volumes.find((v) => v.id === id) ?? volumes.find((v) => v.device === id);
  if (!found) throw unknownVolume(id);
  return found;
}

/** The steps jobs of `kind` (not `jobId`) journaled for this target and key. */
function journaledBefore(jobs: Job[], kind: string, jobId: string, id: string, keyUid: string): Set<string> {
  const done = new Set<string>();
  for (const j of jobs) {
    if (j.kind !== kind || j.id === jobId) continue;
    for (const s of j.steps) if (s.detail?.id === id && s.detail?.keyUid === keyUid) done.add(s.name);
  }
  return done;
}

/**
 * Managed drives an interrupted `drive remove` already reverted to factory state: their key opens nothing
 * any more, so the agent holds them (never sends the key: it would only be refused) until a rerun drops
 * their records.
 */
export function revertedDrives(body: StateBody): string[] {
  return body.drives
    .filter((d) => journaledBefore(body.jobs, REMOVE_DRIVE_JOB, '', d.id, d.key.uid).has('drive-reverted'))
    .map((d) => d.id);
}

/** The work steps an earlier run did (its `started` entries are no work). */
const resumed = (done: Set<string>) => [...done].filter((s) => s !== 'started');

/** States a revoked key is in (or moved on to): revoking it again is not needed. */
const RETIRED: ReadonlySet<number> = new Set([
  State.Deactivated,
  State.Compromised,
  State.Destroyed,
  State.DestroyedCompromised,
]);

/** The server answered and refused (not a transport failure, which a rerun retries). */
const refusedByServer = (error: unknown) =>
  error instanceof KmipOperationError && !hasResultReason(error, ResultReason.ItemNotFound);

/**
 * Revokes then destroys the key, each journaled. Already revoked or gone counts as done (a crashed run's
 * operation went through). Refused by the server: the key is left there and reported; a transport
 * failure throws (the job fails and a rerun resumes).
 */
async function retireKey(
  job: FieldJob,
  ports: FieldPorts,
  detail: { id: string; keyUid: string } & Record<string, unknown>,
  done: Set<string>,
  prefix = '',
): Promise<KeyFate> {
  const uid = detail.keyUid;
  const fate: KeyFate = { keyUid: uid, revoked: done.has(`${prefix}key-revoked`), destroyed: false };
  if (done.has(`${prefix}key-destroyed`)) return { ...fate, revoked: true, destroyed: true };
  const left = async (error: unknown) => {
    const e = journalError(error);
    fate.leftOnServer = e;
    ports.retire.leftOnServer?.(uid, detail.id, e);
    await job.step(`${prefix}key-left-on-server`, { ...detail, error: e });
    return fate;
  };
  if (!fate.revoked) {
    try {
      await ports.retire.revoke(uid);
    } catch (error) {
      const state = await ports.retire.keyState(uid).catch(() => undefined);
      if (state === null) {
        await job.step(`${prefix}key-destroyed`, { ...detail, alreadyGone: true });
        return { ...fate, revoked: true, destroyed: true };
      }
      if (state === undefined || !RETIRED.has(state)) {
        if (refusedByServer(error)) return left(error);
        throw error;
      }
    }
    fate.revoked = true;
    await job.step(`${prefix}key-revoked`, detail);
    ports.crashPoint?.(`${job.kindName}:${prefix}key-revoked`);
  }
  try {
    await ports.retire.destroy(uid);
  } catch (error) {
    if (!hasResultReason(error, ResultReason.ItemNotFound)) {
      if (refusedByServer(error)) return left(error);
      throw error;
    }
  }
  fate.destroyed = true;
  await job.step(`${prefix}key-destroyed`, detail);
  ports.crashPoint?.(`${job.kindName}:${prefix}key-destroyed`);
  return fate;
}

/** A JobContext that knows its kind (the crash hook's step names are `<kind>:<step>`). */
type FieldJob = JobContext & { kindName: string };

const asFieldJob = (job: JobContext, kind: string): FieldJob => ({ ...job, kindName: kind });

/** Journals a step, moves progress on and gives the crash hook its chance. */
async function stepDone(
  job: FieldJob,
  ports: FieldPorts,
  name: string,
  detail: Record<string, unknown>,
  progress: { n: number; total: number },
): Promise<void> {
  await job.step(name, detail);
  progress.n += 1;
  await job.progress(progress.n, progress.total);
  ports.crashPoint?.(`${job.kindName}:${name}`);
}

/** A drive `drive remove` cannot open: not erased, so refused unless forced. */
export class DriveUnreachableError extends KmipAgentError {
  constructor(id: string, device: string, cause: unknown) {
    const e = journalError(cause);
    super(
      `${id} (${device}) cannot be reached (${e.code}: ${e.message}): it cannot be crypto-erased; --force (API force: true) ` +
        'revokes and destroys its key anyway and records that the drive was NOT erased',
      'DRIVE_UNREACHABLE',
      { details: { id, device, cause: e } },
    );
  }
}

/** Opens the drive, or says it is unreachable (DriveUnreachableError). */
async function openOrUnreachable(ports: FieldPorts, record: ManagedDrive): Promise<RemovableDrive> {
  try {
    return await ports.openDrive(record.device);
  } catch (error) {
    throw new DriveUnreachableError(record.id, record.device, error);
  }
}

/** The check `drive remove` makes before its job starts: an unreachable drive needs `force`. */
export async function checkDriveRemovable(ports: FieldPorts, id: string, options: { force?: boolean } = {}) {
  const record = findDrive(ports.state, id);
  let drive: RemovableDrive;
  try {
    drive = await openOrUnreachable(ports, record);
  } catch (error) {
    if (options.force === true && error instanceof DriveUnreachableError) return;
    throw error;
  }
  await drive.close();
}

/**
 * `drive remove`: crypto erase, factory revert, key revoked and destroyed, record dropped. With `force`,
 * a drive that cannot be opened is not erased: its key is retired all the same, and that is journaled.
 */
export async function removeDrive(
  context: JobContext,
  ports: FieldPorts,
  id: string,
  options: { force?: boolean } = {},
): Promise<RemoveResult> {
  const job = asFieldJob(context, REMOVE_DRIVE_JOB);
  const record = findDrive(ports.state, id);
  const detail = { id: record.id, device: record.device, keyUid: record.key.uid };
  const done = journaledBefore(ports.state.snapshot().jobs, REMOVE_DRIVE_JOB, job.id, record.id, record.key.uid);
  const progress = { n: 0, total: 5 };
  await job.step('started', { ...detail, resumedAfter: resumed(done) });
  await ports.hold?.(record.id);
  let handedBack = done.has('drive-reverted') || done.has('drive-not-erased');
  let notErased = done.has('drive-not-erased')
    ? { code: 'DRIVE_UNREACHABLE', message: 'an earlier run found the drive unreachable' }
    : undefined;
  try {
    let drive: RemovableDrive | undefined;
    if (!handedBack) {
      try {
        drive = await openOrUnreachable(ports, record);
      } catch (error) {
        if (!(options.force === true && error instanceof DriveUnreachableError)) throw error;
        // Forced: nothing can be done on the drive; the key goes anyway, and the journal says so.
        notErased = journalError(error);
        handedBack = true;
        await stepDone(job, ports, 'drive-not-erased', { ...detail, reason: notErased }, progress);
      }
    }
    if (drive) {
      try {
        if (await drive.isFactoryFresh()) {
          // Reverted by a run that crashed before journaling it: nothing on the drive needs the key.
          handedBack = true;
          await stepDone(job, ports, 'drive-reverted', { ...detail, alreadyFactoryFresh: true }, progress);
        } else {
          const fetched = (await ports.keys.fetch([record.key.uid])).get(record.key.uid);
          if (!fetched?.ok)
            throw new KmipAgentError(
              `${record.id}: its key ${record.key.uid} is not available (${fetched?.error.code ?? 'no answer'}): ` +
                'the drive cannot be erased with it; a PSID revert (kmip-agent drive psid-revert, ALL DATA LOST) resets it',
              fetched?.error.notFound ? 'KEY_NOT_FOUND' : (fetched?.error.code ?? 'KEY_UNAVAILABLE'),
            );
          try {
            if (!done.has('drive-erased')) {
              await drive.eraseGlobalRange(fetched.key);
              await stepDone(job, ports, 'drive-erased', detail, progress);
            }
            await drive.revertToFactory(fetched.key);
            handedBack = true;
            await stepDone(job, ports, 'drive-reverted', detail, progress);
          } finally {
            fetched.key.fill(0);
          }
        }
      } finally {
        await drive.close();
      }
    }
  } catch (error) {
    ports.release?.(record.id);
    throw error;
  }
  progress.n = 2;
  const key = await retireKey(job, ports, detail, done);
  progress.n = 4;
  await job.progress(progress.n, progress.total);
  await ports.dropDriveConfig?.(record.device);
  await job.step('record-removed', detail);
  await ports.state.update((s) => {
    s.drives = s.drives.filter((d) => d.id !== record.id);
  });
  await job.progress(5, 5);
  ports.changed?.();
  return {
    id: record.id,
    device: record.device,
    key,
    erased: notErased === undefined,
    ...(notErased ? { notErasedReason: notErased } : {}),
    resumedAfter: resumed(done),
  };
}

/** Refuses removing the only keyslot of a volume unless the data is meant to go with it. */
export class LastKeyslotError extends KmipAgentError {
  constructor(id: string, device: string, slot: number) {
    super(
      `${id} (${device}): keyslot ${slot} holds the only key of this volume: removing it makes ALL ITS DATA ` +
        'unreadable for good; add another keyslot first (kmip-agent volume luks add-key), or pass --destroy-data',
      'VOLUME_LAST_KEYSLOT',
      { details: { id, device, keyslot: slot } },
    );
  }
}

/** The check `volume remove` makes before its job starts: the KMIP keyslot must not be the last. */
export async function checkVolumeRemovable(
  ports: Pick<VolumePorts, 'state' | 'keyslots'>,
  id: string,
  options: { destroyData: boolean },
): Promise<ManagedVolume> {
  const record = findVolume(ports.state, id);
  if (options.destroyData) return record;
  const slots = await ports.keyslots(record.device);
  if (slots.includes(record.keyslot) && slots.length === 1)
    throw new LastKeyslotError(record.id, record.device, record.keyslot);
  return record;
}

/** `volume remove`: the KMIP keyslot removed, the key revoked and destroyed, the record dropped. */
export async function removeVolume(
  context: JobContext,
  ports: VolumePorts,
  id: string,
  options: { destroyData: boolean },
): Promise<RemoveResult> {
  const job = asFieldJob(context, REMOVE_VOLUME_JOB);
  const record = await checkVolumeRemovable(ports, id, options);
  const detail = { id: record.id, device: record.device, keyUid: record.key.uid, keyslot: record.keyslot };
  const done = journaledBefore(ports.state.snapshot().jobs, REMOVE_VOLUME_JOB, job.id, record.id, record.key.uid);
  const progress = { n: 0, total: 4 };
  await job.step('started', { ...detail, resumedAfter: resumed(done), destroyData: options.destroyData });
  await ports.hold?.(record.id);
  if (!done.has('keyslot-removed')) {
    if (!(await ports.keyslots(record.device)).includes(record.keyslot)) {
      await stepDone(job, ports, 'keyslot-removed', { ...detail, alreadyGone: true }, progress);
    } else {
      const fetched = (await ports.keys.fetch([record.key.uid])).get(record.key.uid);
      if (!fetched?.ok) {
        ports.release?.(record.id);
        throw new KmipAgentError(
          `${record.id}: its key ${record.key.uid} is not available (${fetched?.error.code ?? 'no answer'}): ` +
            `keyslot ${record.keyslot} cannot be removed with it`,
          fetched?.error.notFound ? 'KEY_NOT_FOUND' : (fetched?.error.code ?? 'KEY_UNAVAILABLE'),
        );
      }
      try {
        await ports.removeKeyslot(record.device, fetched.key, record.keyslot);
      } catch (error) {
        ports.release?.(record.id);
        throw error;
      } finally {
        fetched.key.fill(0);
      }
      await stepDone(job, ports, 'keyslot-removed', detail, progress);
    }
  }
  progress.n = 1;
  const key = await retireKey(job, ports, detail, done);
  await job.progress(3, 4);
  await ports.dropVolumeConfig?.(record.device);
  await job.step('record-removed', detail);
  await ports.state.update((s) => {
    s.volumes = s.volumes.filter((v) => v.id !== record.id);
  });
  await job.progress(4, 4);
  ports.changed?.();
  return { id: record.id, device: record.device, key, resumedAfter: resumed(done) };
}

/** The replace job of `oldId` an earlier run left unfinished, and the steps it journaled. */
function earlierReplace(state: StateStore, jobId: string, old: ManagedDrive) {
  const done = journaledBefore(state.snapshot().jobs, REPLACE_DRIVE_JOB, jobId, old.id, old.key.uid);
  let newId: string | undefined;
  let newDevice: string | undefined;
  for (const j of state.snapshot().jobs) {
    if (j.kind !== REPLACE_DRIVE_JOB || j.id === jobId) continue;
    for (const s of j.steps)
      if (s.detail?.id === old.id && s.detail?.keyUid === old.key.uid) {
        if (typeof s.detail.newDevice === 'string') newDevice = s.detail.newDevice;
        if (typeof s.detail.newId === 'string') newId = s.detail.newId;
      }
  }
  return { done, newId, newDevice };
}

/**
 * The checks `drive replace` makes before its job starts (bad input: nothing is changed): the old drive
 * is managed, the new device is another drive, not managed and factory-fresh (not owned, so not in use by
 * anyone). A rerun of an interrupted replace onto the same device passes: the new drive is ours by then.
 */
export async function checkReplaceable(
  ports: Pick<ReplacePorts, 'state' | 'inspect'>,
  oldId: string,
  newDevice: string,
): Promise<{ old: ManagedDrive; resuming: boolean }> {
  const old = findDrive(ports.state, oldId);
  const earlier = earlierReplace(ports.state, '', old);
  if (earlier.newDevice === newDevice && earlier.done.has('replace-started')) return { old, resuming: true };
  if (newDevice === old.device)
    throw new KmipAgentError(`${newDevice} is ${old.id} itself: replace it with another drive`, 'REPLACE_SAME_DRIVE');
  const seen = await ports.inspect(newDevice);
  if (!seen.id)
    throw new KmipAgentError(
      `${newDevice} reports no WWN or serial number: it cannot be identified`,
      'DRIVE_NO_IDENTITY',
    );
  const managed = ports.state
    .snapshot()
    .drives.find((d) => d.id === seen.id || seen.aliases.includes(d.id) || d.device === newDevice);
  if (managed)
    throw new KmipAgentError(
      `${newDevice} (${managed.id}) is already managed: a replacement must be a new drive`,
      'DRIVE_ALREADY_ENROLLED',
      { details: { device: newDevice, id: managed.id } },
    );
  if (!seen.factoryFresh)
    throw new KmipAgentError(
      `${newDevice} (${seen.id}) has an owner (its SID was changed or its Locking SP is active): it may be in use; ` +
        'a replacement must be factory-fresh (a PSID revert, ALL DATA LOST, makes it so)',
      'DRIVE_ALREADY_OWNED',
      { details: { device: newDevice, id: seen.id } },
    );
  return { old, resuming: false };
}

/** `drive replace`: the new drive enrolled, proven, in the old one's role; then the old key retired. */
export async function replaceDrive(
  context: JobContext,
  ports: ReplacePorts,
  oldId: string,
  newDevice: string,
  options: { keepKey: boolean },
): Promise<ReplaceResult> {
  const job = asFieldJob(context, REPLACE_DRIVE_JOB);
  const { old } = await checkReplaceable(ports, oldId, newDevice);
  const earlier = earlierReplace(ports.state, job.id, old);
  const done = earlier.done;
  const detail = { id: old.id, device: old.device, keyUid: old.key.uid, newDevice };
  const progress = { n: 0, total: 7 };
  await stepDone(
    job,
    ports,
    'replace-started',
    { ...detail, keepKey: options.keepKey, resumedAfter: [...done] },
    progress,
  );
  let newId = earlier.newId;
  let record = newId ? ports.state.snapshot().drives.find((d) => d.id === newId) : undefined;
  if (!done.has('new-enrolled') || !record) {
    // A crash after enrollment recorded the drive, before this step was journaled: it is found by device.
    record = ports.state.snapshot().drives.find((d) => d.device === newDevice && d.id !== old.id);
    if (!record) {
      const enrolled = await ports.enroll(newDevice).catch((error: unknown) => {
        // Killed inside enrollment: the drive is locked with a key that is on the server but not recorded.
        if ((error as { code?: string }).code === 'DRIVE_ALREADY_OWNED' && done.has('replace-started'))
          throw new KmipAgentError(
            `${newDevice}: an interrupted run left it enrolled but not recorded: \`kmip-agent recover\` records it ` +
              'from its key on the server, then run this replace again',
            'REPLACE_RECOVER_FIRST',
            { cause: error },
          );
        throw error;
      });
      record = ports.state.snapshot().drives.find((d) => d.id === enrolled.id);
      if (!record) throw new KmipAgentError(`${newDevice}: enrolled but not recorded`, 'INTERNAL');
    }
    newId = record.id;
    await stepDone(job, ports, 'new-enrolled', { ...detail, newId, newKeyUid: record.key.uid }, progress);
  } else progress.n += 1;
  const fresh = record;
  if (!done.has('new-proven')) {
    const fetched = (await ports.keys.fetch([fresh.key.uid])).get(fresh.key.uid);
    if (!fetched?.ok)
      throw new KmipAgentError(
        `${fresh.id}: its new key ${fresh.key.uid} cannot be fetched (${fetched?.error.code ?? 'no answer'}); the old key is kept`,
        fetched?.error.code ?? 'KEY_UNAVAILABLE',
      );
    try {
      await ports.prove(newDevice, fetched.key);
    } finally {
      fetched.key.fill(0);
    }
    await stepDone(job, ports, 'new-proven', { ...detail, newId, newKeyUid: fresh.key.uid }, progress);
  } else progress.n += 1;
  if (!done.has('role-taken')) {
    await ports.takeRole(old.device, newDevice, old.unlockAtBoot);
    await ports.state.update((s) => {
      const d = s.drives.find((r) => r.id === fresh.id);
      if (d) d.unlockAtBoot = old.unlockAtBoot;
    });
    await stepDone(job, ports, 'role-taken', { ...detail, newId, unlockAtBoot: old.unlockAtBoot }, progress);
  } else progress.n += 1;
  let oldKey: KeyFate;
  if (options.keepKey) {
    oldKey = { keyUid: old.key.uid, revoked: false, destroyed: false, kept: true };
    await job.step('old-key-kept', detail);
  } else {
    await ports.hold?.(old.id);
    oldKey = await retireKey(job, ports, detail, done, 'old-');
  }
  progress.n = 6;
  await job.progress(progress.n, progress.total);
  await job.step('old-record-removed', { ...detail, newId });
  await ports.state.update((s) => {
    s.drives = s.drives.filter((d) => d.id !== old.id);
  });
  await job.progress(7, 7);
  ports.changed?.();
  return {
    oldId: old.id,
    oldDevice: old.device,
    newId: fresh.id,
    newDevice,
    newKeyUid: fresh.key.uid,
    oldKey,
    resumedAfter: [...done],
  };
}

export interface ReaddPorts {
  state: StateStore;
  keys: KeySource;
  /** Unlocks this one target now with its recorded key, parked or not (the lockout guard stands). */
  unlockOne(id: string): Promise<UnlockOutcome | undefined>;
}

export interface ReaddResult {
  id: string;
  device: string;
  keyUid: string;
  state: 'unlocked' | 'served';
}

/**
 * `drive readd`: a managed drive marked failed, missing or unavailable comes back, as after a spurious
 * failure: its key must still be on the server (else refused with what to do), then it is unlocked with
 * it, which clears its faults (DriveUnlockFailed, DriveMissing, KeyNotFound, DriveLockoutRisk).
 */
export async function readdDrive(ports: ReaddPorts, id: string): Promise<ReaddResult> {
  const record = findDrive(ports.state, id);
  const fetched = (await ports.keys.fetch([record.key.uid])).get(record.key.uid);
  if (fetched?.ok) fetched.key.fill(0);
  else if (fetched?.error.notFound)
    throw new KmipAgentError(
      `${record.id}: its key ${record.key.uid} (${record.key.name}) is gone from the key server (destroyed?): the drive ` +
        'cannot be unlocked with it. If another copy of the key exists, `kmip-agent recover` finds it by name; ' +
        'otherwise its data is lost: `kmip-agent drive psid-revert` then `kmip-agent drive enroll` makes it a new drive',
      'READD_KEY_DESTROYED',
      { details: { id: record.id, keyUid: record.key.uid } },
    );
  else
    throw new KmipAgentError(
      `${record.id}: its key cannot be fetched now (${fetched?.error.code ?? 'no answer'}): try again when the key server answers`,
      fetched?.error.code ?? 'KEY_UNAVAILABLE',
    );
  const outcome = await ports.unlockOne(record.id);
  if (outcome?.state !== 'unlocked' && outcome?.state !== 'served') {
    const e = outcome?.error ?? { code: 'READD_FAILED', message: 'not unlocked' };
    throw new KmipAgentError(`${record.id} did not come back: ${e.message}`, e.code, {
      details: { id: record.id, state: outcome?.state },
    });
  }
  return { id: record.id, device: record.device, keyUid: record.key.uid, state: outcome.state };
}
