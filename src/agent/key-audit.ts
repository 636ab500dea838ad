/**
 * `kmip-agent audit keys`: the appliance's keys on the server against its records. Locate by the
 * appliance's Object Group (kmip-agent/<applianceId>) lists every object enrollment made; each one no
 * drive or volume record (nor the envelope master key) uses is an orphan, shown with its State and Name
 * (a key a removal could not destroy, a replacement's kept old key, a crashed enrollment's key); each
 * record whose key the server no longer has is missing (that drive or volume cannot be unlocked).
 * A key an unfinished job journaled as made (a rotation's Pre-Active new key, a master rekey's new master
 * key), or as the previous key it replaces, is no orphan: it is in flight, shown with the job and the last step it journaled, and finished or
 * rolled back by that job's rerun (or the daemon's start).
 * A master key a shallow rekey superseded is revoked (Deactivated), not destroyed: it is retired, listed
 * apart, and no orphan; an operator destroys it once no backup of the state needs it. An unused master
 * key in any other state is an orphan like any other key.
 */
import { State } from '../kmip/index.js';
import { keyGroupFor } from './enroll.js';
import { masterKeyNameFor } from './envelope.js';
import type { StateBody } from './state.js';

export interface KeyAuditPorts {
  findByGroup(group: string): Promise<string[]>;
  namesOf(uids: string[]): Promise<Map<string, string[]>>;
  /** The key's KMIP State, or null when the server has no such object. */
  keyState(uid: string): Promise<number | null>;
}

export interface OrphanKey {
  uid: string;
  name: string | null;
  state: string;
}

export interface InFlightKey extends OrphanKey {
  job: string;
  kind: string;
  /** The last step the job journaled. */
  step: string | null;
}

/** The steps that journal a new key's UID (detail.uid) before anything else is done with it. */
const KEY_MADE_STEPS = new Set(['key-created', 'master-key-created', 'master-key-adopted']);

/** Keys that unfinished jobs made and journaled: their UID -> the job and where it stopped. */
export function inFlightKeys(body: StateBody): Map<string, { job: string; kind: string; step: string | null }> {
  const out = new Map<string, { job: string; kind: string; step: string | null }>();
  for (const job of body.jobs) {
    if (job.status === 'done' || job.steps.some((s) => s.name === 'rolled-back')) continue;
    const where = { job: job.id, kind: job.kind, step: job.steps.at(-1)?.name ?? null };
    // The new key it made, and the previous one it retires at its end (no record names it after the switch).
    for (const s of job.steps)
      if (KEY_MADE_STEPS.has(s.name))
        for (const uid of [s.detail?.uid, s.detail?.previous]) if (typeof uid === 'string') out.set(uid, where);
  }
  return out;
}

export interface MissingKey {
  kind: 'drive' | 'volume';
  id: string;
  device: string;
  keyUid: string;
  keyName: string;
}

export interface KeyAuditReport {
  applianceId: string;
  group: string;
  serverObjects: number;
  recorded: number;
  orphans: OrphanKey[];
  /** Keys of unfinished jobs (not orphans: their job's rerun finishes or rolls them back). */
  inFlight: InFlightKey[];
  /** Master keys a rekey superseded and revoked (Deactivated): kept on purpose, not orphans. */
  retired: OrphanKey[];
  missing: MissingKey[];
  clean: boolean;
}

/** The KMIP State's name (Active, Deactivated, ...), or the number when the registry does not know it. */
export function stateName(value: number | null): string {
  if (value === null) return 'not found';
  return Object.entries(State).find(([, v]) => v === value)?.[0] ?? String(value);
}

export async function auditKeys(applianceId: string, body: StateBody, ports: KeyAuditPorts): Promise<KeyAuditReport> {
  const group = keyGroupFor(applianceId);
  const uids = await ports.findByGroup(group);
  const onServer = new Set(uids);
  const records = [
    ...body.drives.map((d) => ({ kind: 'drive' as const, ...d })),
    ...body.volumes.map((v) => ({ kind: 'volume' as const, ...v })),
  ];
  const used = new Set<string>(records.map((r) => r.key.uid));
  for (const r of records) if (r.key.masterKeyUid) used.add(r.key.masterKeyUid);
  if (body.masterKeyUid) used.add(body.masterKeyUid);
  const unused = uids.filter((u) => !used.has(u));
  const names = await ports.namesOf(unused);
  const orphans: OrphanKey[] = [];
  const inFlight: InFlightKey[] = [];
  const retired: OrphanKey[] = [];
  const flying = inFlightKeys(body);
  const masterName = masterKeyNameFor(applianceId);
  for (const uid of unused) {
    const state = await ports.keyState(uid);
    const key = { uid, name: names.get(uid)?.[0] ?? null, state: stateName(state) };
    const job = flying.get(uid);
    if (job) inFlight.push({ ...key, ...job });
    else if (key.name === masterName && state === State.Deactivated) retired.push(key);
    else orphans.push(key);
  }
  const missing: MissingKey[] = [];
  for (const r of records) {
    // Not in the group is not yet missing (a key adopted from elsewhere): the server is asked by UID.
    if (onServer.has(r.key.uid)) continue;
    const state = await ports.keyState(r.key.uid);
    if (state === null || state === State.Destroyed || state === State.DestroyedCompromised)
      missing.push({ kind: r.kind, id: r.id, device: r.device, keyUid: r.key.uid, keyName: r.key.name });
  }
  return {
    applianceId,
    group,
    serverObjects: uids.length,
    recorded: records.length,
    orphans,
    inFlight,
    retired,
    missing,
    clean: orphans.length === 0 && missing.length === 0,
  };
}
