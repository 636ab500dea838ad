/**
 * Per-drive and per-volume key rotation, and the deep rekey that rotates them all one by one.
 *
 * Opal: a new key is registered on the key server and left Pre-Active, its UID journaled at once; the
 * Admin1 PIN and then the SID PIN are changed from the old key to the new one; a fresh authentication with
 * the new key proves it; the new key is recorded, activated, and only then the old key revoked and
 * destroyed. LUKS: the same with a keyslot added for the new key, checked, recorded, and the old keyslot
 * removed before the old key is retired. Until the drive is proven on the new key nothing happens to the
 * old one, so both stay retrievable (the new one through its journaled UID: Get works on Pre-Active keys).
 *
 * The record is written right after the proof, before the activation, so once the drive holds the new
 * key the state names it even when the key server fails at the next step (the boot unlock Gets it).
 *
 * Every step is journaled before it is taken ("…-changing", "…-adding") and again once done, so a rerun
 * (the CLI, or the daemon at start for a job left running) continues the newest unfinished rotation of
 * that drive from its journal: a PIN change of unknown outcome is settled by one authentication with the
 * new key (through the refused-key memory and tries reserve: a key the drive refused is never sent again),
 * a keyslot add by checking whether the new key opens the volume. A rotation that fails before the drive
 * was touched is rolled back: its Pre-Active key destroyed, the journal says `rolled-back`.
 *
 * Naming: the new key gets the drive's own name (kmip-agent/<appliance>/<id>) from the start, so the
 * drive's key is always found by that name, whatever rotation it came from; for the short time both keys
 * exist, `recover` (only needed when the state itself is lost) sees two keys of one name and reports the
 * drive `ambiguous` rather than trying either, and the old key's Destroy at the end leaves one again.
 */
import { KmipAgentError } from '../errors.js';
import { hasResultReason, ResultReason } from '../kmip/index.js';
import type { Clock } from './clock.js';
import { keyGroupFor, keyNameFor } from './enroll.js';
import type { CreatedKey, FetchedKey } from './key-source.js';
import { JobJournal, journalError } from './journal.js';
import type { JobContext } from './jobs.js';
import type { Job, StateBody, StateStore } from './state.js';

export const ROTATE_DRIVE_JOB = 'rotate-drive';
export const ROTATE_VOLUME_JOB = 'rotate-volume';
/** The JobRunner kinds (API jobs) and their common lane: one rotation or rekey at a time. */
export const ROTATE_KEY_JOB = 'RotateDriveKey';
export const DEEP_REKEY_JOB = 'RekeyDeep';
export const REKEY_LANE = 'rekey';

/** The journal's step names, in the order they are written (the crash hook names them). */
export const ROTATION_STEPS = {
  keyCreated: 'key-created',
  admin1Changing: 'admin1-changing',
  admin1Changed: 'admin1-changed',
  sidChanging: 'sid-changing',
  sidChanged: 'sid-changed',
  sidKept: 'sid-kept',
  keyslotAdding: 'keyslot-adding',
  keyslotAdded: 'keyslot-added',
  proven: 'proven',
  recorded: 'recorded',
  activated: 'activated',
  oldKeyslotRemoving: 'old-keyslot-removing',
  oldKeyslotRemoved: 'old-keyslot-removed',
  oldRevoked: 'old-revoked',
  oldDestroyed: 'old-destroyed',
  oldKept: 'old-kept',
  rolledBack: 'rolled-back',
} as const;
const S = ROTATION_STEPS;

/** What rotation needs of the key server (audited in the daemon). */
export interface RotationKeyServer {
  /** Registers a new random key named `name` in `group`, left Pre-Active (envelope mode: with its wrapped record). */
  createPreActive(name: string, group: string): Promise<CreatedKey>;
  fetch(uids: string[]): Promise<Map<string, FetchedKey>>;
  activate(uid: string): Promise<void>;
  /** Revokes a replaced key (reason Superseded). */
  revoke(uid: string): Promise<void>;
  destroy(uid: string): Promise<void>;
}

export type RotationAuthority = 'admin1' | 'sid';

/** The Opal operations rotation needs (through the lockout guard in the daemon). */
export interface RotateOpalDrive {
  /** One fresh authentication: true when the drive accepted `pin`, false when it refused it (or the guard withheld it). */
  verify(authority: RotationAuthority, pin: Buffer): Promise<boolean>;
  setPin(authority: RotationAuthority, currentPin: Buffer, newPin: Buffer): Promise<void>;
  close(): Promise<void>;
}

export interface RotationPorts {
  openOpal(device: string): Promise<RotateOpalDrive>;
  /** The keyslot `key` opens, or null when it opens none. */
  luksSlotOf(device: string, key: Buffer): Promise<number | null>;
  luksAddKey(device: string, existingKey: Buffer, newKey: Buffer): Promise<number>;
  /** Removes keyslot `slot`, authorized by `key` (which opens another keyslot). */
  luksRemoveSlot(device: string, key: Buffer, slot: number): Promise<void>;
}

export interface RotationOptions {
  applianceId: string;
  provider: string;
  keys: RotationKeyServer;
  ports: RotationPorts;
  state: StateStore;
  clock: Clock;
  newJobId: () => string;
  /** Called with each step's name once it is journaled, before it is taken (the test-only crash hook). */
  afterJournal?: (step: string) => void;
}

export interface RotationResult {
  id: string;
  kind: 'opal' | 'luks';
  previousKeyUid: string;
  keyUid: string;
  keyName: string;
  resumed: boolean;
  /** False when the old key's Revoke or Destroy failed (it is left on the server: see oldKeyError). */
  oldKeyDestroyed: boolean;
  oldKeyError?: { code: string; message: string };
  keyslot?: number;
}

export class NotManagedError extends KmipAgentError {
  constructor(kind: 'drive' | 'volume', id: string) {
    super(
      `${kind} ${id} is not managed by this agent (see \`kmip-agent status\`)`,
      kind === 'drive' ? 'DRIVE_NOT_MANAGED' : 'VOLUME_NOT_MANAGED',
      { details: { id } },
    );
  }
}

/** The newest rotation job of this target, when it did not finish and made its new key (where a rerun continues). */
export function unfinishedRotation(state: StateBody, kind: string, target: string): Job | undefined {
  const job = state.jobs.filter((j) => j.kind === kind && j.target === target).at(-1);
  if (!job || job.status === 'done') return undefined;
  const steps = new Set(job.steps.map((s) => s.name));
  return steps.has(S.keyCreated) && !steps.has(S.rolledBack) ? job : undefined;
}

/** Every target with a rotation left unfinished (the daemon resumes them at start). */
export function unfinishedRotations(state: StateBody): { kind: 'drive' | 'volume'; id: string }[] {
  const out: { kind: 'drive' | 'volume'; id: string }[] = [];
  for (const d of state.drives)
    if (unfinishedRotation(state, ROTATE_DRIVE_JOB, d.id)) out.push({ kind: 'drive', id: d.id });
  for (const v of state.volumes)
    if (unfinishedRotation(state, ROTATE_VOLUME_JOB, v.id)) out.push({ kind: 'volume', id: v.id });
  return out;
}

const fetchOne = async (keys: RotationKeyServer, uid: string, what: string): Promise<Buffer> => {
  const one = (await keys.fetch([uid])).get(uid);
  if (!one?.ok)
    throw new KmipAgentError(
      `cannot get ${what} ${uid}: ${one ? `${one.error.code}: ${one.error.message}` : 'no answer'}`,
      one?.error.notFound ? 'KEY_NOT_FOUND' : (one?.error.code ?? 'KEY_NOT_FETCHED'),
    );
  return one.key;
};

/** Rotates the key of one managed Opal drive (`kind` drive) or LUKS volume (`kind` volume). */
export async function rotateKey(
  kind: 'drive' | 'volume',
  id: string,
  options: RotationOptions,
): Promise<RotationResult> {
  const { state, clock, keys } = options;
  const snapshot = state.snapshot();
  const record =
    kind === 'drive' ? snapshot.drives.find((d) => d.id === id) : snapshot.volumes.find((v) => v.id === id);
  if (!record) throw new NotManagedError(kind, id);
  const jobKind = kind === 'drive' ? ROTATE_DRIVE_JOB : ROTATE_VOLUME_JOB;
  const resumed = unfinishedRotation(snapshot, jobKind, id);
  const journal = new JobJournal(state, clock, resumed?.id ?? options.newJobId());
  const done = new Set(resumed?.steps.map((s) => s.name) ?? []);
  const step = async (name: string, detail?: Record<string, unknown>) => {
    await journal.step(name, detail);
    done.add(name);
    options.afterJournal?.(name);
  };
  const created = resumed?.steps.find((s) => s.name === S.keyCreated)?.detail;
  const name = keyNameFor(options.applianceId, id);
  // The old key: the one recorded when the rotation began (the record may already name the new one).
  const previousUid = created ? String(created.previous) : record.key.uid;
  let oldKey: Buffer | undefined;
  let newKey: Buffer | undefined;
  let newUid: string | undefined = created ? String(created.uid) : undefined;
  let newRecord = created?.record as CreatedKey['record'];
  try {
    if (resumed) {
      await journal.resume();
    } else {
      await journal.begin(jobKind, { target: id });
    }
    // The old key is needed until the drive is proven on the new one (and, for LUKS, to remove its keyslot).
    if (!done.has(S.proven) || (kind === 'volume' && !done.has(S.oldKeyslotRemoved)))
      oldKey = await fetchOne(keys, previousUid, 'the current key');
    if (newUid === undefined) {
      const made = await keys.createPreActive(name, keyGroupFor(options.applianceId));
      newUid = made.uid;
      newKey = made.key;
      newRecord = made.record;
      // First thing after the Register: from here a crash leaves the new key journaled, never unknown.
      await step(S.keyCreated, {
        uid: newUid,
        name,
        previous: previousUid,
        ...(newRecord ? { record: newRecord } : {}),
      });
    } else {
      newKey = await fetchOne(keys, newUid, 'the new key');
    }
    const touched = () => done.has(S.admin1Changing) || done.has(S.keyslotAdding);
    let slot: number | undefined;
    try {
      if (kind === 'drive') await rotateOpal(record.device, oldKey, newKey, done, step, options.ports);
      else slot = await addLuksSlot(record.device, oldKey!, newKey, done, step, options.ports, resumed);
    } catch (error) {
      if (!touched()) {
        // Nothing on the drive changed: the new key never protected anything and goes.
        await keys.destroy(newUid).catch(() => undefined);
        await journal.step(S.rolledBack, { uid: newUid, reason: journalError(error) });
      }
      throw error;
    }
    if (!done.has(S.recorded)) {
      const uid = newUid;
      const entry = journal.stepEntry(S.recorded, { uid, ...(slot !== undefined ? { keyslot: slot } : {}) });
      // One write: the record names the new key and the journal says so.
      await journal.change(
        (j) => j.steps.push(entry),
        (s) => {
          const target = kind === 'drive' ? s.drives.find((d) => d.id === id) : s.volumes.find((v) => v.id === id);
          if (!target) return;
          target.key = {
            uid,
            name,
            provider: options.provider,
            ...(newRecord ?? {}),
            createdAt: clock.now().toISOString(),
          };
          if (slot !== undefined && 'keyslot' in target) target.keyslot = slot;
        },
      );
      done.add(S.recorded);
      options.afterJournal?.(S.recorded);
    }
    if (!done.has(S.activated)) {
      await keys.activate(newUid);
      await step(S.activated, { uid: newUid });
    }
    if (kind === 'volume' && !done.has(S.oldKeyslotRemoved)) {
      const oldSlot = await options.ports.luksSlotOf(record.device, oldKey!);
      if (!done.has(S.oldKeyslotRemoving)) await step(S.oldKeyslotRemoving, { slot: oldSlot });
      if (oldSlot !== null) await options.ports.luksRemoveSlot(record.device, newKey, oldSlot);
      await step(S.oldKeyslotRemoved, { slot: oldSlot });
    }
    const result: RotationResult = {
      id,
      kind: kind === 'drive' ? 'opal' : 'luks',
      previousKeyUid: previousUid,
      keyUid: newUid,
      keyName: name,
      resumed: resumed !== undefined,
      oldKeyDestroyed: false,
      ...(kind === 'volume'
        ? { keyslot: state.snapshot().volumes.find((v) => v.id === id)?.keyslot ?? slot ?? -1 }
        : {}),
    };
    // Only now is the old key no longer needed: retired (Deactivated) and destroyed. A rerun after a crash
    // between these finds it already revoked (the Destroy still goes ahead) or already gone (done).
    let revokeError: unknown;
    if (!done.has(S.oldRevoked)) {
      try {
        await keys.revoke(previousUid);
      } catch (error) {
        revokeError = error;
      }
      if (revokeError === undefined) await step(S.oldRevoked, { uid: previousUid });
    }
    try {
      await keys.destroy(previousUid);
      result.oldKeyDestroyed = true;
    } catch (error) {
      if (hasResultReason(error, ResultReason.ItemNotFound)) result.oldKeyDestroyed = true;
      else result.oldKeyError = journalError(revokeError ?? error);
    }
    await journal.done([
      result.oldKeyDestroyed
        ? { name: S.oldDestroyed, detail: { uid: previousUid } }
        : { name: S.oldKept, detail: { uid: previousUid, error: result.oldKeyError } },
    ]);
    return result;
  } catch (error) {
    await journal.fail(error);
    throw error;
  } finally {
    oldKey?.fill(0);
    newKey?.fill(0);
  }
}

type Step = (name: string, detail?: Record<string, unknown>) => Promise<void>;

/** Admin1 then SID from the old key to the new; each change settled by the new key on a rerun; then the proof. */
async function rotateOpal(
  device: string,
  oldKey: Buffer | undefined,
  newKey: Buffer,
  done: Set<string>,
  step: Step,
  ports: RotationPorts,
): Promise<void> {
  if (done.has(S.proven)) return;
  const drive = await ports.openOpal(device);
  try {
    const change = async (authority: RotationAuthority, changing: string, changed: string) => {
      if (done.has(changed)) return;
      // An earlier run may have changed it before crashing: the new key settles which (never a second try of a refused key).
      if (done.has(changing) && (await drive.verify(authority, newKey))) {
        await step(changed);
        return;
      }
      if (!done.has(changing)) await step(changing);
      await drive.setPin(authority, oldKey!, newKey);
      await step(changed);
    };
    await change('admin1', S.admin1Changing, S.admin1Changed);
    if (!done.has(S.sidChanged) && !done.has(S.sidKept)) {
      // Enrollment makes the SID PIN the key too; an adopted drive may have kept its own (then it is left alone).
      if (done.has(S.sidChanging) || (await drive.verify('sid', oldKey!))) {
        await change('sid', S.sidChanging, S.sidChanged);
      } else {
        await step(S.sidKept);
      }
    }
  } finally {
    await drive.close();
  }
  // A fresh session with the new key: the drive is proven on it before the old key is touched.
  const fresh = await ports.openOpal(device);
  try {
    if (!(await fresh.verify('admin1', newKey)))
      throw new KmipAgentError(`${device}: the drive refused the new key after the PIN change`, 'ROTATION_NOT_PROVEN');
  } finally {
    await fresh.close();
  }
  await step(S.proven);
}

/** A keyslot for the new key (unless a crashed run added it), checked: its number. */
async function addLuksSlot(
  device: string,
  oldKey: Buffer,
  newKey: Buffer,
  done: Set<string>,
  step: Step,
  ports: RotationPorts,
  resumed: Job | undefined,
): Promise<number> {
  if (done.has(S.proven)) {
    const slot = resumed?.steps.find((s) => s.name === S.proven)?.detail?.slot;
    return Number(slot);
  }
  let slot = done.has(S.keyslotAdding) ? await ports.luksSlotOf(device, newKey) : null;
  if (slot === null) {
    if (!done.has(S.keyslotAdding)) await step(S.keyslotAdding);
    slot = await ports.luksAddKey(device, oldKey, newKey);
  }
  if (!done.has(S.keyslotAdded)) await step(S.keyslotAdded, { slot });
  const opens = await ports.luksSlotOf(device, newKey);
  if (opens === null)
    throw new KmipAgentError(`${device}: the new keyslot does not open with the new key`, 'ROTATION_NOT_PROVEN');
  await step(S.proven, { slot: opens });
  return opens;
}

export interface DeepRekeyResult {
  rotated: RotationResult[];
  /** Rotated by an earlier deep rekey that did not finish (not rotated again). */
  skipped: string[];
  /** Old keys left on the server (their Revoke or Destroy failed). */
  keptOldKeys: { id: string; uid: string; error?: { code: string; message: string } }[];
}

/**
 * The targets the newest deep rekey rotated when it did not finish (failed, or interrupted by a crash):
 * a rerun does not rotate them again. A finished one leaves nothing to skip.
 */
export function rotatedByUnfinishedDeepRekey(state: StateBody): Set<string> {
  const job = state.jobs.filter((j) => j.kind === DEEP_REKEY_JOB).at(-1);
  if (!job || job.status === 'done') return new Set();
  return new Set(job.steps.filter((s) => s.name === 'rotated').map((s) => String(s.detail?.id)));
}

/**
 * Deep rekey: every managed drive's and volume's key rotated, one at a time (never all drives at once),
 * with n of m as the job's progress. Resumable: each target's unfinished rotation continues from its own
 * journal, and a rerun after a deep rekey that did not finish skips the targets it rotated (journaled as
 * `rotated` steps, counted as done in the progress).
 */
export async function deepRekey(
  job: JobContext,
  rotate: (kind: 'drive' | 'volume', id: string) => Promise<RotationResult>,
  state: StateStore,
  skip: Set<string> = new Set(),
): Promise<DeepRekeyResult> {
  const s = state.snapshot();
  const targets = [
    ...s.drives.map((d) => ({ kind: 'drive' as const, id: d.id })),
    ...s.volumes.map((v) => ({ kind: 'volume' as const, id: v.id })),
  ];
  const result: DeepRekeyResult = { rotated: [], skipped: [], keptOldKeys: [] };
  let done = 0;
  for (const t of targets.filter((t) => skip.has(t.id))) {
    result.skipped.push(t.id);
    // Journaled again so a further rerun after this job still knows.
    await job.step('rotated', { id: t.id, kind: t.kind, earlier: true });
    done++;
  }
  await job.progress(done, targets.length);
  for (const t of targets.filter((t) => !skip.has(t.id))) {
    try {
      const r = await rotate(t.kind, t.id);
      result.rotated.push(r);
      if (!r.oldKeyDestroyed)
        result.keptOldKeys.push({
          id: t.id,
          uid: r.previousKeyUid,
          ...(r.oldKeyError ? { error: r.oldKeyError } : {}),
        });
      await job.step('rotated', { id: t.id, kind: t.kind, keyUid: r.keyUid });
    } catch (error) {
      throw Object.assign(error as object, { partialResult: result });
    }
    await job.progress(++done, targets.length);
  }
  return result;
}
