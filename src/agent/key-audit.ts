/**
 * `kmip-agent audit keys`: the appliance's keys on the key servers against its records, on every configured
 * provider (drive and volume keys live on their record's provider, the master key may live on another, and a
 * moved master key leaves the old one behind). Locate by the appliance's Object Group
 * (kmip-agent/<applianceId>) lists every object enrollment made; each one no
 * drive or volume record (nor the envelope master key) uses is an orphan, shown with its State and Name
 * (a key a removal could not destroy, a replacement's kept old key, a crashed enrollment's key); each
 * record whose key the server no longer has is missing (that drive or volume cannot be unlocked).
 * A key an unfinished job journaled as made (a rotation's Pre-Active new key, a master rekey's new master
 * key), or as the previous key it replaces, is no orphan: it is in flight, shown with the job and the last step it journaled, and finished or
 * rolled back by that job's rerun (or the daemon's start).
 * A master key a shallow rekey superseded is revoked (Deactivated), not destroyed: it is retired, listed
 * apart, and no orphan; an operator destroys it once no backup of the state needs it. An unused master
 * key in any other state is an orphan like any other key.
 * UIDs are a server's own (two PyKMIP servers both number from 1): a record uses a UID on its provider only.
 * A provider that cannot be asked is named with its error, and the report is not clean: it is incomplete.
 */
import { State } from '../kmip/index.js';
import { keyGroupFor } from './enroll.js';
import { masterKeyNameFor } from './envelope.js';
import { journalError } from './journal.js';
import { currentMasterKey } from './master-key.js';
import type { StateBody } from './state.js';

/** One provider's side of the audit: Locate by group, Names and State, asked of that provider's servers. */
export interface KeyAuditPorts {
  findByGroup(group: string): Promise<string[]>;
  namesOf(uids: string[]): Promise<Map<string, string[]>>;
  /** The key's KMIP State, or null when the server has no such object. */
  keyState(uid: string): Promise<number | null>;
}

/** A configured provider to audit, with its ports. */
export interface AuditedProvider {
  name: string;
  ports: KeyAuditPorts;
}

export interface OrphanKey {
  uid: string;
  /** The provider whose server holds it. */
  provider: string;
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
  kind: 'drive' | 'volume' | 'master-key';
  /** The drive's or volume's id; the master key's UID. */
  id: string;
  /** Where the drive or volume was last seen (none for the master key). */
  device?: string;
  provider: string;
  keyUid: string;
  keyName: string;
}

export interface ProviderAudit {
  name: string;
  /** Objects of the group on its servers; null when it could not be asked. */
  serverObjects: number | null;
  /** Why it could not be asked (the report is then incomplete, so not clean). */
  error?: { code: string; message: string };
}

export interface KeyAuditReport {
  applianceId: string;
  group: string;
  /** Objects of the group on every provider that answered. */
  serverObjects: number;
  recorded: number;
  providers: ProviderAudit[];
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

export async function auditKeys(
  applianceId: string,
  body: StateBody,
  providers: AuditedProvider[],
): Promise<KeyAuditReport> {
  const group = keyGroupFor(applianceId);
  const masterName = masterKeyNameFor(applianceId);
  const records: MissingKey[] = [
    ...body.drives.map((d) => ({ kind: 'drive' as const, id: d.id, device: d.device, key: d.key })),
    ...body.volumes.map((v) => ({ kind: 'volume' as const, id: v.id, device: v.device, key: v.key })),
  ].map(({ key, ...r }) => ({ ...r, provider: key.provider, keyUid: key.uid, keyName: key.name }));
  // The master key (envelope mode) on a KMIP server, on its provider (currentMasterKey: the default one for
  // states made before its location was recorded). An internal one is sealed on this machine, on no server.
  const master = currentMasterKey(body);
  const masterUid = master?.keyID;
  const masterProvider =
    master === undefined || master.keyManagementType === 'internal' ? undefined : (master.keyProviderID ?? 'default');
  const expected: MissingKey[] = [...records];
  if (masterUid !== undefined && masterProvider !== undefined)
    expected.push({
      kind: 'master-key',
      id: masterUid,
      provider: masterProvider,
      keyUid: masterUid,
      keyName: masterName,
    });
  // Wrapped keys name the master key that wraps them: in use on the master key's provider.
  const wrappingUids = [...body.drives, ...body.volumes].flatMap((r) =>
    r.key.masterKeyUid ? [r.key.masterKeyUid] : [],
  );
  const flying = inFlightKeys(body);
  const report: KeyAuditReport = {
    applianceId,
    group,
    serverObjects: 0,
    recorded: records.length,
    providers: [],
    orphans: [],
    inFlight: [],
    retired: [],
    missing: [],
    clean: false,
  };
  const audited = new Set(providers.map((p) => p.name));
  for (const name of new Set(expected.map((k) => k.provider)))
    if (!audited.has(name))
      report.providers.push({
        name,
        serverObjects: null,
        error: {
          code: 'CONFIG_PROVIDER_UNKNOWN',
          message: `a record names key provider "${name}", which is not configured`,
        },
      });
  for (const { name, ports } of providers) {
    // One provider's findings, added whole: a provider that fails halfway is reported as not audited only.
    const found: Pick<KeyAuditReport, 'orphans' | 'inFlight' | 'retired' | 'missing'> = {
      orphans: [],
      inFlight: [],
      retired: [],
      missing: [],
    };
    try {
      const uids = await ports.findByGroup(group);
      const onServer = new Set(uids);
      const here = expected.filter((k) => k.provider === name);
      const used = new Set(here.map((k) => k.keyUid));
      if (name === masterProvider) for (const uid of wrappingUids) used.add(uid);
      const unused = uids.filter((u) => !used.has(u));
      const names = await ports.namesOf(unused);
      for (const uid of unused) {
        const state = await ports.keyState(uid);
        const key = { uid, provider: name, name: names.get(uid)?.[0] ?? null, state: stateName(state) };
        const job = flying.get(uid);
        if (job) found.inFlight.push({ ...key, ...job });
        else if (key.name === masterName && state === State.Deactivated) found.retired.push(key);
        else found.orphans.push(key);
      }
      for (const k of here) {
        // Not in the group is not yet missing (a key adopted from elsewhere): the server is asked by UID.
        if (onServer.has(k.keyUid)) continue;
        const state = await ports.keyState(k.keyUid);
        if (state === null || state === State.Destroyed || state === State.DestroyedCompromised) found.missing.push(k);
      }
      report.orphans.push(...found.orphans);
      report.inFlight.push(...found.inFlight);
      report.retired.push(...found.retired);
      report.missing.push(...found.missing);
      report.serverObjects += uids.length;
      report.providers.push({ name, serverObjects: uids.length });
    } catch (error) {
      report.providers.push({ name, serverObjects: null, error: journalError(error) });
    }
  }
  report.clean = report.orphans.length === 0 && report.missing.length === 0 && report.providers.every((p) => !p.error);
  return report;
}
