/**
 * EnableEncryptionAtRest and DisableEncryptionAtRest, the work of their jobs (jobs.ts).
 *
 * Enable: every Opal drive the inventory sees that the agent does not manage is enrolled (enroll.ts),
 * one at a time; a drive with an owner already is skipped and reported, never touched.
 *
 * Disable, per managed Opal drive, in the order that never loses data and never orphans a key:
 *   1. unlock the global range with the drive's key;
 *   2. turn read/write locking of the global range off (the data stays, readable without a key);
 *   3. RevertSP of the Locking SP keeping the global range key (data intact, Admin1 gone);
 *   4. set the SID PIN back to the MSID (the drive is factory-fresh again: nothing needs the key);
 *   5. only then revoke the key on the key server (Deactivated, Cessation of Operation);
 *   6. last, remove the drive's record from the state.
 * Each step is journaled (with the drive's id and key UID). A drive whose backend cannot revert keeps its
 * key and record (locking is off, so its data is readable anyway) and is reported as failed with the
 * reason. Opal drives only: LUKS volumes keep their keys and records (take a volume out by hand).
 *
 * A rerun resumes from the journal of earlier disable jobs: a drive whose SID reset is journaled is not
 * opened (nor its key fetched) again, a key whose revocation is journaled is not revoked again. A crash
 * between the revocation and its journal entry is caught by the server: a revoke refused because the
 * key is already Deactivated, Compromised or Destroyed (or gone) counts as done; any other error stands.
 * Steps 1-4 are also skipped on a drive whose Locking SP is already inactive. While a drive is worked on,
 * the agent's unlocking leaves it alone (DisablePorts.hold); it is released only if the drive was not
 * handed back, since a handed-back drive has no Admin1 left to unlock.
 */
import { KmipAgentError } from '../errors.js';
import { hasResultReason, ResultReason, State, type KmipOperationsApi } from '../kmip/index.js';
import type { EnrollResult } from './enroll.js';
import type { InventoryItem } from './inventory.js';
import { journalError } from './journal.js';
import type { JobContext } from './jobs.js';
import type { KeySource } from './key-source.js';
import type { Job, ManagedDrive, StateBody, StateStore } from './state.js';

export const ENABLE_JOB = 'enable-encryption-at-rest';
export const DISABLE_JOB = 'disable-encryption-at-rest';
/** Enable and disable never overlap: they share one lane of the job runner. */
export const ENCRYPTION_LANE = 'encryption-at-rest';

export interface DriveOutcome {
  id: string | null;
  device: string;
  keyUid?: string;
  /** Why skipped or failed. */
  code?: string;
  message?: string;
}

export interface EnableResult {
  enrolled: DriveOutcome[];
  skipped: DriveOutcome[];
  failed: DriveOutcome[];
}

export interface EnablePorts {
  inventory(): Promise<InventoryItem[]>;
  state: StateStore;
  /** Enrolls one factory-fresh drive (and records it). */
  enroll(device: string): Promise<EnrollResult>;
}

/** A job failure that still carries what was done (the job's result). */
class PartialFailure extends KmipAgentError {
  constructor(
    message: string,
    code: string,
    readonly partialResult: unknown,
  ) {
    super(message, code);
  }
}

export async function enableEncryptionAtRest(job: JobContext, ports: EnablePorts): Promise<EnableResult> {
  const items = await ports.inventory();
  const managed = new Set(ports.state.snapshot().drives.flatMap((d) => [d.id, d.device]));
  const isManaged = (i: InventoryItem) =>
    managed.has(i.device) || [i.identity, ...i.aliases].some((id) => id !== null && managed.has(id));
  const candidates = items.filter((i) => i.kind === 'opal' && i.opal?.supported === true && !isManaged(i));
  const result: EnableResult = { enrolled: [], skipped: [], failed: [] };
  await job.step('inventory', { candidates: candidates.map((c) => c.device) });
  await job.progress(0, candidates.length);
  for (const [n, item] of candidates.entries()) {
    const base = { id: item.identity, device: item.device };
    if (item.identity === null) {
      result.skipped.push({ ...base, code: 'DRIVE_NO_IDENTITY', message: 'the drive reports no identity' });
    } else if (item.opal?.lockingEnabled) {
      result.skipped.push({
        ...base,
        code: 'DRIVE_ALREADY_OWNED',
        message: 'its Locking SP is active: it has an owner',
      });
    } else {
      try {
        const enrolled = await ports.enroll(item.device);
        result.enrolled.push({ id: enrolled.id, device: item.device, keyUid: enrolled.keyUid });
      } catch (error) {
        const e = journalError(error);
        (e.code === 'DRIVE_ALREADY_OWNED' ? result.skipped : result.failed).push({ ...base, ...e });
      }
    }
    const last = [...result.enrolled, ...result.skipped, ...result.failed].find((o) => o.device === item.device)!;
    await job.step(result.enrolled.includes(last) ? 'enrolled' : result.skipped.includes(last) ? 'skipped' : 'failed', {
      ...last,
    });
    await job.progress(n + 1, candidates.length);
  }
  if (result.failed.length > 0)
    throw new PartialFailure(
      `${result.failed.length} of ${candidates.length} drives could not be enrolled (first: ${result.failed[0]!.device}: ${result.failed[0]!.message})`,
      result.failed[0]!.code ?? 'ENROLL_FAILED',
      result,
    );
  return result;
}

/** The drive operations disabling needs (daemon.ts builds them over OpalDrive with the lockout guard). */
export interface DisableDrive {
  /** Locking SP active (Admin1 exists, locking may be on). */
  lockingSpActive(): Promise<boolean>;
  unlock(key: Buffer): Promise<void>;
  /** Global range read/write locking off: the data stays, readable without a key. */
  disableGlobalRangeLocking(key: Buffer): Promise<void>;
  /** RevertSP of the Locking SP with KeepGlobalRangeKey. */
  revertLockingSpKeepingData(key: Buffer): Promise<void>;
  /** SID PIN back to the MSID (authenticated as SID with `key`); done when it already is the MSID. */
  resetSidToMsid(key: Buffer): Promise<void>;
  close(): Promise<void>;
}

export interface DisablePorts {
  state: StateStore;
  keys: KeySource;
  open(device: string): Promise<DisableDrive>;
  /** Revokes the key on the key server (Deactivated, reason Cessation of Operation). */
  revokeKey(uid: string): Promise<void>;
  /** The key's KMIP State on the server, or null when it has no such object (see kmipKeyState). */
  keyState(uid: string): Promise<number | null>;
  /** Keeps the agent from unlocking the drive `id` (resolves once no unlock of it runs); release undoes it. */
  hold?(id: string): Promise<void>;
  release?(id: string): void;
  /** After a record is removed (the agent refreshes its targets). */
  onRemoved?(id: string): void;
}

export interface DisableResult {
  disabled: DriveOutcome[];
  failed: DriveOutcome[];
}

/** States a revoked key is left in (or later moved to): its revocation needs no doing. */
const RETIRED_STATES: ReadonlySet<number> = new Set([
  State.Deactivated,
  State.Compromised,
  State.Destroyed,
  State.DestroyedCompromised,
]);

/** DisablePorts.keyState over KMIP: Get Attributes State; null when the server answers Item Not Found. */
export function kmipKeyState(kmip: Pick<KmipOperationsApi, 'getAttributes'>): (uid: string) => Promise<number | null> {
  return async (uid) => {
    try {
      const { attributes } = await kmip.getAttributes(uid, ['State']);
      const state = attributes.find((a) => a.name === 'State')?.value;
      if (typeof state !== 'number')
        throw new KmipAgentError(`the key server gave no State for key ${uid}`, 'KMIP_RESPONSE_INVALID');
      return state;
    } catch (error) {
      if (hasResultReason(error, ResultReason.ItemNotFound)) return null;
      throw error;
    }
  };
}

/** The steps disable jobs journaled for this drive and this key (a re-enrolled drive has another key). */
function journaledBefore(jobs: Job[], jobId: string | undefined, record: ManagedDrive): Set<string> {
  const done = new Set<string>();
  for (const j of jobs) {
    if (j.kind !== DISABLE_JOB || j.id === jobId) continue;
    for (const s of j.steps) if (s.detail?.id === record.id && s.detail?.keyUid === record.key.uid) done.add(s.name);
  }
  return done;
}

/**
 * Managed drives an interrupted disable already handed back (SID reset journaled): they have no Admin1
 * to unlock with, so the agent holds them until a rerun removes their records.
 */
export function handedBackDrives(state: StateBody): string[] {
  return state.drives.filter((d) => journaledBefore(state.jobs, undefined, d).has('sid-reset')).map((d) => d.id);
}

/** True when this job journaled `step` for the record. */
function journaledNow(ports: DisablePorts, jobId: string, record: ManagedDrive, step: string): boolean {
  const job = ports.state.snapshot().jobs.find((j) => j.id === jobId);
  return (
    job?.steps.some((s) => s.name === step && s.detail?.id === record.id && s.detail?.keyUid === record.key.uid) ??
    false
  );
}

/** Revokes the key; true when the server shows it revoked already (the revoke of a crashed run went through). */
async function revokeOnce(uid: string, ports: DisablePorts): Promise<boolean> {
  try {
    await ports.revokeKey(uid);
    return false;
  } catch (error) {
    const state = await ports.keyState(uid).catch(() => undefined);
    if (state === null || (state !== undefined && RETIRED_STATES.has(state))) return true;
    throw error;
  }
}

async function disableOne(
  job: JobContext,
  record: ManagedDrive,
  key: Buffer | undefined,
  ports: DisablePorts,
  done: Set<string>,
): Promise<void> {
  const detail = { id: record.id, device: record.device, keyUid: record.key.uid };
  if (!done.has('sid-reset')) {
    const drive = await ports.open(record.device);
    try {
      if (await drive.lockingSpActive()) {
        await drive.unlock(key!);
        await job.step('unlocked', detail);
        await drive.disableGlobalRangeLocking(key!);
        await job.step('locking-disabled', detail);
        await drive.revertLockingSpKeepingData(key!);
        await job.step('locking-sp-reverted', detail);
      }
      await drive.resetSidToMsid(key!);
      await job.step('sid-reset', detail);
    } finally {
      await drive.close();
    }
  }
  // The drive needs the key no more: now the server may retire it, and then the record goes.
  if (!done.has('key-revoked')) {
    const already = await revokeOnce(record.key.uid, ports);
    await job.step('key-revoked', { ...detail, ...(already ? { alreadyRevoked: true } : {}) });
  }
  await ports.state.update((s) => {
    s.drives = s.drives.filter((d) => d.id !== record.id);
  });
  await job.step('record-removed', detail);
  ports.onRemoved?.(record.id);
}

export async function disableEncryptionAtRest(job: JobContext, ports: DisablePorts): Promise<DisableResult> {
  const records = ports.state.snapshot().drives;
  const result: DisableResult = { disabled: [], failed: [] };
  await job.progress(0, records.length);
  const jobs = ports.state.snapshot().jobs;
  const journaled = new Map(records.map((r) => [r.id, journaledBefore(jobs, job.id, r)]));
  // One batched Get for the keys of the drives still to hand back (a resumed drive needs none).
  const needKey = records.filter((r) => !journaled.get(r.id)!.has('sid-reset'));
  const fetched = needKey.length > 0 ? await ports.keys.fetch(needKey.map((r) => r.key.uid)) : new Map();
  try {
    for (const [n, record] of records.entries()) {
      const base = { id: record.id, device: record.device, keyUid: record.key.uid };
      const done = journaled.get(record.id)!;
      const one = fetched.get(record.key.uid);
      if (!done.has('sid-reset') && !one?.ok) {
        const e = one?.error ?? { code: 'KEY_NOT_FOUND', message: 'not fetched' };
        result.failed.push({ ...base, code: e.code, message: e.message });
      } else {
        await ports.hold?.(record.id);
        try {
          await disableOne(job, record, one?.ok ? one.key : undefined, ports, done);
          result.disabled.push(base);
        } catch (error) {
          result.failed.push({ ...base, ...journalError(error) });
          await job.step('failed', { ...base, ...journalError(error) });
          // Handed back (SID reset) or not: only a drive still locked with its key may be unlocked again.
          const handedBack = done.has('sid-reset') || journaledNow(ports, job.id, record, 'sid-reset');
          if (!handedBack) ports.release?.(record.id);
        }
      }
      await job.progress(n + 1, records.length);
    }
  } finally {
    for (const f of fetched.values()) if (f.ok) f.key.fill(0);
  }
  if (result.failed.length > 0)
    throw new PartialFailure(
      `${result.failed.length} of ${records.length} drives still use their keys (first: ${result.failed[0]!.device}: ${result.failed[0]!.message})`,
      result.failed[0]!.code ?? 'DISABLE_FAILED',
      result,
    );
  return result;
}
