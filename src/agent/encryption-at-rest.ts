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
 * Each step is journaled. A drive whose backend cannot revert keeps its key and record (locking is off,
 * so its data is readable anyway) and is reported as failed with the reason. Steps 1-4 are skipped on a
 * drive whose Locking SP is already inactive (a rerun after an interruption).
 */
import { KmipAgentError } from '../errors.js';
import type { EnrollResult } from './enroll.js';
import type { InventoryItem } from './inventory.js';
import type { JobContext } from './jobs.js';
import type { KeySource } from './key-source.js';
import type { ManagedDrive, StateStore } from './state.js';

export const ENABLE_JOB = 'enable-encryption-at-rest';
export const DISABLE_JOB = 'disable-encryption-at-rest';
/** Enable and disable never overlap: they share one lane of the job runner. */
export const ENCRYPTION_LANE = 'encryption-at-rest';

const errorOf = (error: unknown) => ({
  code: (error as { code?: unknown })?.code?.toString() ?? 'INTERNAL',
  message: (error as Error)?.message ?? String(error),
});

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
        const e = errorOf(error);
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
  /** After a record is removed (the agent refreshes its targets). */
  onRemoved?(id: string): void;
}

export interface DisableResult {
  disabled: DriveOutcome[];
  failed: DriveOutcome[];
}

async function disableOne(job: JobContext, record: ManagedDrive, key: Buffer, ports: DisablePorts): Promise<void> {
  const detail = { id: record.id, device: record.device };
  const drive = await ports.open(record.device);
  try {
    if (await drive.lockingSpActive()) {
      await drive.unlock(key);
      await job.step('unlocked', detail);
      await drive.disableGlobalRangeLocking(key);
      await job.step('locking-disabled', detail);
      await drive.revertLockingSpKeepingData(key);
      await job.step('locking-sp-reverted', detail);
    }
    await drive.resetSidToMsid(key);
    await job.step('sid-reset', detail);
  } finally {
    await drive.close();
  }
  // The drive needs the key no more: now the server may retire it, and then the record goes.
  await ports.revokeKey(record.key.uid);
  await job.step('key-revoked', { ...detail, keyUid: record.key.uid });
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
  // One batched Get for every drive's key.
  const fetched = records.length > 0 ? await ports.keys.fetch(records.map((r) => r.key.uid)) : new Map();
  try {
    for (const [n, record] of records.entries()) {
      const base = { id: record.id, device: record.device, keyUid: record.key.uid };
      const one = fetched.get(record.key.uid);
      if (!one?.ok) {
        const e = one?.error ?? { code: 'KEY_NOT_FOUND', message: 'not fetched' };
        result.failed.push({ ...base, code: e.code, message: e.message });
      } else {
        try {
          await disableOne(job, record, one.key, ports);
          result.disabled.push(base);
        } catch (error) {
          result.failed.push({ ...base, ...errorOf(error) });
          await job.step('failed', { ...base, ...errorOf(error) });
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
