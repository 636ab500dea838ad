/**
 * `kmip-agent recover`: rebuilding the state from the key server when state.json is missing or corrupt.
 * The appliance's keys are in its Object Group (kmip-agent/<applianceId>) and named
 * kmip-agent/<applianceId>/<id>, so every key is matched to the drive or volume of that identity in the
 * inventory, and checked against it before it is recorded:
 * - LUKS2: the key is tested against the header (no try spent: LUKS has no try counter).
 * - Opal: the only proof is one authentication as Admin1 (lock state untouched). That holds for an
 *   unlocked drive too: being unlocked says nothing about which key locks it. So it is done at most once
 *   per candidate, never with a key the drive refused before (the agent's refused-key memory,
 *   refused-keys.json, which a lost or corrupt state.json does not take with it), and never when the
 *   tries left are within the reserve.
 * Two keys with one name are ambiguous: neither is tried or recorded. Nothing is ever deleted: existing
 * records are kept, the corrupt file stays where the daemon put it aside.
 */
import { readdir, rename } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { RefusedKeyMemory } from '../drives/index.js';
import type { Clock } from './clock.js';
import { keyGroupFor, keyNameFor } from './enroll.js';
import type { FaultRegistry } from './faults.js';
import type { InventoryItem } from './inventory.js';
import type { FetchedKey } from './key-source.js';
import type { StateBody, StateStore } from './state.js';
import { isKeyRefusal, UNLOCK_AUTHORITY } from './unlockers.js';

/** The key server, as much as recovery needs (KmipKeySource implements it). */
export interface RecoveryKeys {
  findByGroup(group: string): Promise<string[]>;
  /** The Name attributes of each object (one batched Get Attributes). */
  namesOf(uids: string[]): Promise<Map<string, string[]>>;
  fetch(uids: string[]): Promise<Map<string, FetchedKey>>;
}

/** Checking a key against a drive or volume (daemon.ts builds it from the drives layer). */
export interface RecoveryVerifier {
  /** Tests `key` against the LUKS2 header; returns the keyslot it opens. Throws LUKS_WRONG_KEY. */
  luksCheck(device: string, key: Buffer): Promise<number>;
  /** Admin1 tries left, read without a PIN; null when the drive does not tell. */
  opalTriesLeft(device: string): Promise<number | null>;
  /** One Admin1 authentication (a wrong key costs a try). Throws an auth refusal for a wrong key. */
  opalVerify(device: string, key: Buffer): Promise<void>;
}

export type RecoveryOutcome =
  | 'found'
  | 'recorded'
  | 'missing'
  | 'ambiguous'
  | 'rejected'
  | 'refused-before'
  | 'lockout-risk'
  | 'failed'
  | 'no-identity'
  | 'unmanaged';

export interface RecoveryEntry {
  /** The identity the key is named after (null: the device has none). */
  id: string | null;
  kind: 'opal' | 'luks';
  device: string;
  outcome: RecoveryOutcome;
  /** The key recorded (found, recorded) or the candidates (ambiguous, rejected, ...). */
  keyUids: string[];
  keyName?: string;
  keyslot?: number;
  error?: { code: string; message: string };
}

export interface RecoveryReport {
  applianceId: string;
  group: string;
  /** Objects in the group. */
  serverKeys: number;
  entries: RecoveryEntry[];
  /** Keys named for this appliance that match nothing in the inventory (a drive not attached here?). */
  unmatched: { uid: string; name: string }[];
  /** Quarantined corrupt state files, left in place. */
  corruptFiles: string[];
  /** Where state.json.prev was kept aside before the rebuilt state was written (it is never deleted). */
  previousKeptAt?: string;
  /** The rebuilt state was written (false: nothing new to record). */
  written: boolean;
}

/** Ids recovery could not settle: operators must look at them (StateRecovered lists them). */
const UNRESOLVED: ReadonlySet<RecoveryOutcome> = new Set([
  'missing',
  'ambiguous',
  'rejected',
  'refused-before',
  'lockout-risk',
  'failed',
]);

/** The quarantined corrupt state files beside `statePath` (state.json.corrupt-<time>). */
export async function corruptStateFiles(statePath: string): Promise<string[]> {
  const prefix = `${basename(statePath)}.corrupt-`;
  const names = await readdir(dirname(statePath)).catch(() => [] as string[]);
  return names
    .filter((n) => n.startsWith(prefix))
    .sort()
    .map((n) => join(dirname(statePath), n));
}

function errorOf(error: unknown): { code: string; message: string } {
  const e = error as { code?: unknown; message?: unknown };
  return { code: typeof e?.code === 'string' ? e.code : 'INTERNAL', message: String(e?.message ?? error) };
}

export interface RecoverOptions {
  applianceId: string;
  provider: string;
  inventory: InventoryItem[];
  keys: RecoveryKeys;
  verifier: RecoveryVerifier;
  /** Loaded and locked by the caller. */
  state: StateStore;
  clock: Clock;
  /** Authentication tries never spent (config boot.triesReserve). */
  triesReserve: number;
  /** The agent's refused-key memory (refused-keys.json, shared by every process). */
  refusedKeys: RefusedKeyMemory;
  jobId: string;
}

/** Finds, verifies and records the keys of every drive and volume in the inventory not recorded yet. */
export async function recoverState(options: RecoverOptions): Promise<RecoveryReport> {
  const { state, keys, clock } = options;
  const group = keyGroupFor(options.applianceId);
  const prefix = `${keyNameFor(options.applianceId, '')}`;
  // Whatever this run writes (connection results, refusals, the rebuilt records) rotates state.json.prev,
  // perhaps the last good generation: it is put aside first, never lost.
  const previousKeptAt = await keepPreviousAside(state.path, clock.now().toISOString());
  const uids = await keys.findByGroup(group);
  const names = await keys.namesOf(uids);
  const byId = new Map<string, string[]>();
  for (const uid of uids) {
    for (const name of names.get(uid) ?? []) {
      if (!name.startsWith(prefix)) continue;
      const id = name.slice(prefix.length);
      byId.set(id, [...(byId.get(id) ?? []), uid]);
    }
  }

  const corruptFiles = await corruptStateFiles(state.path);

  const current = state.snapshot();
  const recorded = new Map<string, { uid: string; name: string }>(
    [...current.drives, ...current.volumes].map((r) => [r.id, r.key]),
  );
  const entries: RecoveryEntry[] = [];
  const toVerify: { entry: RecoveryEntry; item: InventoryItem }[] = [];
  const matchedIds = new Set<string>();
  for (const item of options.inventory) {
    const base = { kind: item.kind, device: item.device };
    if (item.identity === null) {
      // A system disk with no Opal and no identity is simply not a candidate; say so only for configured ones.
      if (item.source === 'config')
        entries.push({
          ...base,
          id: null,
          outcome: 'no-identity',
          keyUids: [],
          ...(item.error ? { error: item.error } : {}),
        });
      continue;
    }
    const ids = [item.identity, ...item.aliases];
    const known = ids.find((id) => recorded.has(id));
    if (known !== undefined) {
      const key = recorded.get(known)!;
      entries.push({ ...base, id: known, outcome: 'recorded', keyUids: [key.uid], keyName: key.name });
      ids.forEach((id) => matchedIds.add(id));
      continue;
    }
    const id = ids.find((i) => byId.has(i));
    if (id === undefined) {
      // A system disk without Opal was never enrolled: not "missing", just not ours.
      if (item.source === 'system' && item.opal?.supported !== true) continue;
      // Enrollment activates locking: a drive without it was never ours, whatever the state said.
      const unlockable = item.kind === 'luks' || item.opal?.lockingEnabled !== false;
      entries.push({ ...base, id: item.identity, outcome: unlockable ? 'missing' : 'unmanaged', keyUids: [] });
      continue;
    }
    ids.forEach((i) => matchedIds.add(i));
    const candidates = byId.get(id)!;
    const entry: RecoveryEntry = {
      ...base,
      id,
      outcome: candidates.length > 1 ? 'ambiguous' : 'failed',
      keyUids: candidates,
      keyName: keyNameFor(options.applianceId, id),
    };
    entries.push(entry);
    if (candidates.length === 1) toVerify.push({ entry, item });
  }
  const unmatched = [...byId]
    .filter(([id]) => !matchedIds.has(id))
    .flatMap(([id, list]) => list.map((uid) => ({ uid, name: keyNameFor(options.applianceId, id) })));

  const fetched = toVerify.length > 0 ? await keys.fetch(toVerify.map((v) => v.entry.keyUids[0]!)) : new Map();
  try {
    for (const { entry } of toVerify) {
      const uid = entry.keyUids[0]!;
      const result = fetched.get(uid);
      if (!result?.ok) {
        entry.error = result ? { code: result.error.code, message: result.error.message } : errorOf('no answer');
        continue;
      }
      await verifyOne(entry, result.key, options);
    }
  } finally {
    for (const result of fetched.values()) if (result.ok) result.key.fill(0);
  }

  const found = entries.filter((e) => e.outcome === 'found');
  const unresolved = entries.filter((e) => UNRESOLVED.has(e.outcome) && e.id !== null).map((e) => e.id!);
  const now = clock.now().toISOString();
  if (found.length > 0 || unresolved.length > 0) {
    await state.update((s) => {
      for (const e of found) {
        const key = { uid: e.keyUids[0]!, name: e.keyName!, provider: options.provider };
        if (e.kind === 'luks')
          s.volumes.push({
            id: e.id!,
            device: e.device,
            key,
            keyslot: e.keyslot!,
            enrolledAt: now,
            unlockAtBoot: true,
          });
        else s.drives.push({ id: e.id!, device: e.device, key, enrolledAt: now, unlockAtBoot: true });
      }
      s.jobs.push({
        id: options.jobId,
        kind: 'recover',
        status: 'done',
        startedAt: now,
        endedAt: clock.now().toISOString(),
        steps: [
          {
            name: 'recovered',
            at: clock.now().toISOString(),
            detail: { found: found.map((e) => e.id), unresolved, corruptFiles },
          },
        ],
      });
    });
  }
  return {
    applianceId: options.applianceId,
    group,
    serverKeys: uids.length,
    entries,
    unmatched,
    corruptFiles,
    ...(previousKeptAt ? { previousKeptAt } : {}),
    written: found.length > 0 || unresolved.length > 0,
  };
}

async function keepPreviousAside(statePath: string, at: string): Promise<string | undefined> {
  const prev = `${statePath}.prev`;
  const aside = `${prev}.before-recover-${at.replace(/[:.]/g, '-')}`;
  try {
    await rename(prev, aside);
    return aside;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

async function verifyOne(entry: RecoveryEntry, key: Buffer, options: RecoverOptions): Promise<void> {
  const { verifier, refusedKeys } = options;
  const id = entry.id!;
  try {
    if (entry.kind === 'luks') {
      entry.keyslot = await verifier.luksCheck(entry.device, key);
      entry.outcome = 'found';
      return;
    }
    if (await refusedKeys.isRefused(id, UNLOCK_AUTHORITY, 'none', key)) {
      // Known wrong (refused-keys.json outlives a lost or corrupt state): never sent again.
      entry.outcome = 'refused-before';
      return;
    }
    const left = await verifier.opalTriesLeft(entry.device);
    if (left !== null && left <= options.triesReserve) {
      entry.outcome = 'lockout-risk';
      entry.error = {
        code: 'DRIVE_LOCKOUT_RISK',
        message: `${left} Admin1 tries left, within the reserve of ${options.triesReserve}: not tried (power-cycle the drive first)`,
      };
      return;
    }
    await verifier.opalVerify(entry.device, key);
    entry.outcome = 'found';
  } catch (error) {
    entry.error = errorOf(error);
    if (entry.kind === 'luks' && entry.error.code === 'LUKS_WRONG_KEY') entry.outcome = 'rejected';
    else if (isKeyRefusal(error)) {
      await refusedKeys.remember(id, UNLOCK_AUTHORITY, 'none', key);
      entry.outcome = 'rejected';
    } else entry.outcome = 'failed';
  }
}

/**
 * StateRecovered: raised while the newest recovery left drives or volumes unsettled (not recorded since),
 * cleared once each is recorded (a later recovery, or an enrollment). Called when a state is opened and
 * after each recovery.
 */
export function syncRecoveryFault(body: StateBody, faults: FaultRegistry): void {
  const last = body.jobs.filter((j) => j.kind === 'recover').at(-1);
  const unresolved = (last?.steps.at(-1)?.detail?.unresolved as string[] | undefined) ?? [];
  const recorded = new Set([...body.drives, ...body.volumes].map((r) => r.id));
  const open = unresolved.filter((id) => !recorded.has(id));
  const raised = faults.list().find((f) => f.code === 'StateRecovered');
  // The registry merges `affects` on a refresh: a changed list is cleared and raised anew.
  if (open.length === 0 || (raised && raised.affects.join('\0') !== open.join('\0'))) faults.clear('StateRecovered');
  if (open.length === 0) return;
  faults.raise('StateRecovered', 'agent', {
    affects: open,
    details: { jobId: last!.id, unresolved: open, recoveredAt: last!.startedAt },
  });
}
