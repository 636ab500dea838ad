/**
 * `kmip-agent audit keys`: the appliance's keys on the server against its records. Locate by the
 * appliance's Object Group (kmip-agent/<applianceId>) lists every object enrollment made; each one no
 * drive or volume record (nor the envelope master key) uses is an orphan, shown with its State and Name
 * (a key a removal could not destroy, a replacement's kept old key, a crashed enrollment's key); each
 * record whose key the server no longer has is missing (that drive or volume cannot be unlocked).
 */
import { State } from '../kmip/index.js';
import { keyGroupFor } from './enroll.js';
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
  for (const uid of unused)
    orphans.push({ uid, name: names.get(uid)?.[0] ?? null, state: stateName(await ports.keyState(uid)) });
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
    missing,
    clean: orphans.length === 0 && missing.length === 0,
  };
}
