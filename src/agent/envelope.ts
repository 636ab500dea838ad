/**
 * Envelope mode (config keyMode "envelope"): one master key (KEK) per appliance on the key server wraps
 * the per-drive and per-volume keys, which the state keeps wrapped (KeyRef.wrapped, AES key wrap with
 * padding, RFC 5649), so a boot needs one Get, of the master key, however many drives there are.
 *
 * It is a KeySource decorator: targets keep the UID of their key's server copy, and `fetch` answers
 * those UIDs from the wrapped blobs in the state after one Get of the master key(s), so unlock.ts and
 * agent.ts do not know which mode they run in. A key the state holds no wrapped blob for (enrolled in
 * direct mode, or rebuilt by `recover`) is fetched from the server as in direct mode, in the same batch.
 *
 * The server copy of each key (for `recover`) is the plain key, registered as Secret Data in the
 * appliance's group exactly as in direct mode. Wrapping it too would protect nothing: the master key
 * lives on the same server, so whoever can read the copy there can read the master key as well; and
 * it would make recovery depend on the master key, and on a master key that a shallow rekey replaces
 * (every copy would have to be re-registered). Plain copies keep `recover` unchanged and valid across
 * shallow rekeys; what envelope mode adds is one Get per boot and no key in the state but wrapped ones.
 */
import { createCipheriv, createDecipheriv } from 'node:crypto';
import {
  CryptographicAlgorithm,
  RevocationReasonCode,
  State,
  UsageMask,
  type KmipOperationsApi,
} from '../kmip/index.js';
import { KmipAgentError } from '../errors.js';
import type { Clock } from './clock.js';
import { keyGroupFor, keyNameFor } from './enroll.js';
import type { CreatedKey, FetchedKey, KeySource } from './key-source.js';
import { JobJournal, journalError } from './journal.js';
import type { Job, StateBody, StateStore } from './state.js';
import {
  DEFAULT_MASTER_LOCATION,
  describeLocation,
  locationOf,
  sameLocation,
  type MasterKeyHolder,
  type MasterKeyHolders,
  type MasterKeyLocation,
} from './master-key.js';

/** RFC 5649's alternative initial value (the one for key wrap with padding). */
const RFC5649_IV = Buffer.from('a65959a6', 'hex');

const wrapCipher = (kek: Buffer) => {
  if (![16, 24, 32].includes(kek.length))
    throw new KmipAgentError(`a key-encryption key is 16, 24 or 32 bytes, not ${kek.length}`, 'KEY_WRAP_BAD_KEK');
  return `id-aes${kek.length * 8}-wrap-pad`;
};

/** AES key wrap with padding (RFC 5649) of `key` under `kek`. */
export function wrapKey(kek: Buffer, key: Buffer): Buffer {
  const cipher = createCipheriv(wrapCipher(kek), kek, RFC5649_IV);
  return Buffer.concat([cipher.update(key), cipher.final()]);
}

/** A wrapped key that does not unwrap: the wrong master key, or a damaged or tampered blob. */
export class KeyUnwrapError extends KmipAgentError {
  constructor(
    message = 'the wrapped key does not unwrap with the master key (wrong master key, or the blob was altered)',
  ) {
    super(message, 'KEY_UNWRAP_FAILED');
  }
}

/** Unwraps an RFC 5649 blob; throws KeyUnwrapError when the integrity check fails. The caller zeroes the result. */
export function unwrapKey(kek: Buffer, wrapped: Buffer): Buffer {
  const name = wrapCipher(kek);
  try {
    const decipher = createDecipheriv(name, kek, RFC5649_IV);
    return Buffer.concat([decipher.update(wrapped), decipher.final()]);
  } catch {
    throw new KeyUnwrapError();
  }
}

export const MASTER_KEY_ID = 'master-key';
export const REKEY_JOB = 'rekey-shallow';

/** The master keys a rekey job journaled (created or adopted). */
const journaledMasterKeys = (job: Job): string[] =>
  job.kind === REKEY_JOB
    ? job.steps
        .filter((s) => s.name === 'master-key-created' || s.name === 'master-key-adopted')
        .map((s) => String(s.detail?.uid))
    : [];

/**
 * The newest rekey job that did not finish but made its new master key (a crash or a failure after the
 * Create): where a rerun continues. Older unfinished ones were superseded by a later job.
 */
export function unfinishedRekey(state: StateBody):
  | {
      job: Job;
      masterUid: string;
      previous: string | undefined;
      target: MasterKeyLocation;
      previousLocation: MasterKeyLocation;
      createdAt: string;
      rewrapped?: string[];
      activated: boolean;
    }
  | undefined {
  const job = state.jobs.filter((j) => j.kind === REKEY_JOB).at(-1);
  if (!job || job.status === 'done') return undefined;
  const made = job.steps.find((s) => s.name === 'master-key-created' || s.name === 'master-key-adopted');
  if (!made) return undefined;
  const rewrap = job.steps.find((s) => s.name === 'rewrapped');
  const previous = made.detail?.previous;
  return {
    job,
    masterUid: String(made.detail?.uid),
    previous: typeof previous === 'string' ? previous : undefined,
    // Journals from before keyManagementType: both keys on the default provider.
    target: journaledLocation(made.detail?.newKey) ?? DEFAULT_MASTER_LOCATION,
    previousLocation: journaledLocation(made.detail?.keyToDecommission) ?? DEFAULT_MASTER_LOCATION,
    createdAt: made.at,
    ...(rewrap ? { rewrapped: (rewrap.detail?.ids as string[] | undefined) ?? [] } : {}),
    activated: job.steps.some((s) => s.name === 'master-key-activated'),
  };
}
export const masterKeyNameFor = (applianceId: string) => keyNameFor(applianceId, MASTER_KEY_ID);

/** A key as GetAsyncResult shows it (newKey, keyToDecommission) and the journal keeps it. */
export interface JournaledMasterKey {
  keyID: string;
  keyManagementType: MasterKeyLocation['keyManagementType'];
  keyProviderID: string | null;
}

const journaledKey = (uid: string, at: MasterKeyLocation): JournaledMasterKey => ({
  keyID: uid,
  keyManagementType: at.keyManagementType,
  keyProviderID: at.keyProviderID ?? null,
});

function journaledLocation(value: unknown): MasterKeyLocation | undefined {
  const v = value as Partial<JournaledMasterKey> | undefined;
  if (v?.keyManagementType !== 'internal' && v?.keyManagementType !== 'external') return undefined;
  return v.keyManagementType === 'internal'
    ? { keyManagementType: 'internal' }
    : { keyManagementType: 'external', keyProviderID: v.keyProviderID ?? 'default' };
}

/** What envelope mode needs of the key server beyond a KeySource: make and retire master keys. */
export interface MasterKeyServer {
  /**
   * Creates an AES-256 key (usage wrap/unwrap key) named `name` in `group` and activates it; with
   * `preActive` it is left Pre-Active (as Create makes it) for a shallow rekey to activate later.
   */
  createMasterKey(name: string, group: string, options?: { preActive?: boolean }): Promise<string>;
  /** UIDs of the Active objects named `name`. */
  findActive(name: string): Promise<string[]>;
  /** UIDs of the Pre-Active objects named `name`. */
  findPreActive(name: string): Promise<string[]>;
  activate(uid: string): Promise<void>;
  /** Revokes a master key that was replaced (reason Superseded: it becomes Deactivated, not compromised). */
  retire(uid: string): Promise<void>;
  /** Destroys a master key that never protected anything (Pre-Active, left by a crashed rekey). */
  destroy(uid: string): Promise<void>;
}

export class KmipMasterKeyServer implements MasterKeyServer {
  constructor(private readonly kmip: KmipOperationsApi) {}

  async createMasterKey(name: string, group: string, options: { preActive?: boolean } = {}): Promise<string> {
    const { uniqueIdentifier } = await this.kmip.create({
      algorithm: CryptographicAlgorithm.AES,
      length: 256,
      usageMask: UsageMask.WrapKey | UsageMask.UnwrapKey,
      name,
      objectGroup: group,
    });
    if (!options.preActive) await this.kmip.activate(uniqueIdentifier);
    return uniqueIdentifier;
  }

  async findActive(name: string): Promise<string[]> {
    return (await this.kmip.locate({ name, state: State.Active })).uniqueIdentifiers;
  }

  async findPreActive(name: string): Promise<string[]> {
    return (await this.kmip.locate({ name, state: State.PreActive })).uniqueIdentifiers;
  }

  async activate(uid: string): Promise<void> {
    await this.kmip.activate(uid);
  }

  async destroy(uid: string): Promise<void> {
    await this.kmip.destroy(uid);
  }

  async retire(uid: string): Promise<void> {
    await this.kmip.revoke({
      uniqueIdentifier: uid,
      reason: RevocationReasonCode.Superseded,
      message: 'kmip-agent shallow rekey',
    });
  }
}

export interface EnvelopeOptions {
  applianceId: string;
  /** The key source over the server (audited): every Get, Locate and Register goes through it. */
  inner: KeySource;
  server: MasterKeyServer;
  /** Loaded and locked by the caller. */
  state: StateStore;
  clock: Clock;
  newJobId: () => string;
  /**
   * The holders of master keys by location (internal, a provider); without it only the default
   * provider's (`server` and `inner`), as before keyManagementType existed.
   */
  holders?: MasterKeyHolders;
}

/** What a shallow rekey is asked: where the new master key goes; and who watches it. */
export interface ShallowRekeyOptions {
  /** Where the new master key is held (default: where the current one is). */
  target?: MasterKeyLocation;
  /** Told of each step once it is journaled (the daemon's job relays them; the crash tests' hook). */
  afterJournal?: (step: string, detail: Record<string, unknown>) => Promise<void> | void;
}

/** The crash-test names of the shallow rekey's journal steps. */
export const REKEY_STEPS = {
  created: 'master-key-created',
  rewrapped: 'rewrapped',
  activated: 'master-key-activated',
} as const;

export interface ShallowRekeyResult {
  previousMasterKeyUid?: string;
  masterKeyUid: string;
  /** Ids of the drives and volumes whose key is now wrapped by the new master key. */
  rewrapped: string[];
  /** The previous master key was revoked (false: there was none, or the Revoke failed: see revokeError). */
  previousRevoked: boolean;
  revokeError?: { code: string; message: string };
  newKey: JournaledMasterKey;
  keyToDecommission?: JournaledMasterKey;
}

type Ref = StateBody['drives'][number]['key'];
const refsOf = (s: StateBody): { id: string; key: Ref }[] => [...s.drives, ...s.volumes];

export class EnvelopeKeySource implements KeySource {
  private ensuring: Promise<string> | undefined;

  constructor(private readonly options: EnvelopeOptions) {}

  /** The holder of master keys at `location`; the default provider's unless `holders` says otherwise. */
  holder(location: MasterKeyLocation): MasterKeyHolder {
    if (this.options.holders) return this.options.holders(location);
    if (!sameLocation(location, DEFAULT_MASTER_LOCATION))
      throw new KmipAgentError(
        `master keys ${describeLocation(location)} are not available here`,
        'CONFIG_PROVIDER_UNKNOWN',
      );
    return { server: this.options.server, fetch: (uids) => this.options.inner.fetch(uids) };
  }

  /**
   * Keys with a wrapped blob in the state come from it after one Get of their master key; the others
   * from the server. Both in one batched Get. An unwrap failure is that key's error (KEY_UNWRAP_FAILED),
   * not a server fault: the key never reaches the drive.
   */
  async fetch(uids: string[]): Promise<Map<string, FetchedKey>> {
    const wrappedBy = new Map<string, { wrapped: Buffer; master: string }>();
    for (const { key } of refsOf(this.options.state.snapshot())) {
      if (key.wrapped && key.masterKeyUid && uids.includes(key.uid))
        wrappedBy.set(key.uid, { wrapped: Buffer.from(key.wrapped, 'hex'), master: key.masterKeyUid });
    }
    const direct = uids.filter((u) => !wrappedBy.has(u));
    const masters = [...new Set([...wrappedBy.values()].map((w) => w.master))];
    // Master keys on the default provider go in the same batch as the direct keys; others to their holder.
    const snapshot = this.options.state.snapshot();
    const elsewhere = masters.filter((m) => !sameLocation(locationOf(snapshot, m), DEFAULT_MASTER_LOCATION));
    const fetched = await this.options.inner.fetch([
      ...new Set([...masters.filter((m) => !elsewhere.includes(m)), ...direct]),
    ]);
    for (const m of elsewhere) {
      const one = await this.holder(locationOf(snapshot, m))
        .fetch([m])
        .then((r) => r.get(m))
        .catch((error: unknown) => ({ ok: false as const, error: { ...journalError(error), notFound: false } }));
      if (one) fetched.set(m, one);
    }
    const result = new Map<string, FetchedKey>();
    for (const uid of direct) {
      const one = fetched.get(uid);
      if (one) result.set(uid, one);
    }
    try {
      for (const [uid, { wrapped, master }] of wrappedBy) {
        const kek = fetched.get(master);
        if (!kek) continue;
        if (!kek.ok) {
          result.set(uid, {
            ok: false,
            error: { ...kek.error, message: `master key ${master}: ${kek.error.message}` },
          });
          continue;
        }
        try {
          result.set(uid, { ok: true, key: unwrapKey(kek.key, wrapped) });
        } catch (error) {
          result.set(uid, { ok: false, error: { ...journalError(error), notFound: false, unusable: true } });
        }
      }
    } finally {
      for (const m of masters) {
        const kek = fetched.get(m);
        // A master key asked for directly too (it is never a drive's key) stays the caller's to zero.
        if (kek?.ok && !direct.includes(m)) kek.key.fill(0);
      }
    }
    return result;
  }

  findByName(name: string): Promise<string[]> {
    return this.options.inner.findByName(name);
  }

  findByGroup(group: string): Promise<string[]> {
    return this.options.inner.findByGroup(group);
  }

  /**
   * The key is made and registered (plain, for recovery) exactly as in direct mode, then wrapped with
   * the master key, which is created on first use; the KeyRef fields to record come back in `record`.
   */
  async createKey(name: string, group: string, options?: { preActive?: boolean }): Promise<CreatedKey> {
    const masterUid = await this.ensureMasterKey();
    const kek = await this.getMaster(masterUid);
    try {
      const created = await this.options.inner.createKey(name, group, options);
      try {
        return {
          ...created,
          record: { wrapped: wrapKey(kek, created.key).toString('hex'), masterKeyUid: masterUid },
        };
      } catch (error) {
        created.key.fill(0);
        throw error;
      }
    } finally {
      kek.fill(0);
    }
  }

  /**
   * The master key's UID: the one the state records, else the one Active object of its name on the
   * server (a state rebuilt by recover), else a new one. Never two: concurrent callers share one run,
   * and several Active keys of that name are an error for an operator to resolve.
   */
  ensureMasterKey(): Promise<string> {
    this.ensuring ??= this.findOrCreateMaster().finally(() => (this.ensuring = undefined));
    return this.ensuring;
  }

  private async findOrCreateMaster(): Promise<string> {
    const { state, server, applianceId } = this.options;
    const recorded = state.snapshot().masterKeyUid;
    if (recorded) return recorded;
    const name = masterKeyNameFor(applianceId);
    const found = await server.findActive(name);
    if (found.length > 1)
      throw new KmipAgentError(
        `${found.length} active master keys are named ${name} on the key server (${found.join(', ')}): revoke all but the right one`,
        'MASTER_KEY_AMBIGUOUS',
        { details: { uids: found } },
      );
    const uid = found[0] ?? (await server.createMasterKey(name, keyGroupFor(applianceId)));
    await state.update((s) => {
      s.masterKeyUid = uid;
    });
    return uid;
  }

  private async getMaster(uid: string, at?: MasterKeyLocation): Promise<Buffer> {
    const where = at ?? locationOf(this.options.state.snapshot(), uid);
    const one = (await this.holder(where).fetch([uid])).get(uid);
    if (!one?.ok)
      throw new KmipAgentError(
        `cannot get the master key ${uid}: ${one ? one.error.message : 'no answer'}`,
        one?.error.notFound ? 'MASTER_KEY_NOT_FOUND' : (one?.error.code ?? 'KEY_NOT_FETCHED'),
      );
    return one.key;
  }

  /**
   * Shallow rekey: a new master key, every key rewrapped with it (keys without a wrapped blob are
   * fetched and wrapped too), the state updated in one durable write, then the new key activated and
   * only then the previous master key revoked. Nothing changes when any key cannot be read.
   *
   * Crash safety: the new key is created Pre-Active and its UID journaled before anything else; it is
   * activated only once the rewrap naming it is durable, so at no point are two master keys of our name
   * Active (boot and findOrCreateMaster see one). A rerun resumes the newest unfinished rekey job from
   * its journal (same job, same new key: before the rewrap it rewraps, after it activates and revokes).
   * A crash between Create and that first journal entry leaves a Pre-Active key named ours that nothing
   * records: the rerun adopts it rather than making another (it never wrapped anything: a key's blobs are
   * written only after its UID is journaled), and destroys any further ones such crashes left.
   *
   * With `target` the new key goes elsewhere (master-key.ts: internal, or another provider): made and
   * activated on the target's holder, the previous one retired on its own, after the rewrap is durable.
   */
  async rekeyShallow(options: ShallowRekeyOptions = {}): Promise<ShallowRekeyResult> {
    const { state, clock, applianceId } = this.options;
    const name = masterKeyNameFor(applianceId);
    const before = state.snapshot();
    const refs = refsOf(before);
    const plain = new Map<string, Buffer>();
    const resumed = unfinishedRekey(before);
    const journal = new JobJournal(state, clock, resumed?.job.id ?? this.options.newJobId());
    const step = async (stepName: string, detail: Record<string, unknown>) => {
      await journal.step(stepName, detail);
      await options.afterJournal?.(stepName, detail);
    };
    try {
      // The previous master key: the journal's once the rewrap named the new one current.
      const previous = resumed ? resumed.previous : before.masterKeyUid;
      const previousAt = resumed
        ? resumed.previousLocation
        : previous
          ? locationOf(before, previous)
          : DEFAULT_MASTER_LOCATION;
      // A resumed rekey keeps the target its journal names (a new request's target waits for the next one).
      const target = resumed?.target ?? options.target ?? previousAt;
      const holder = this.holder(target);
      const keyToDecommission = previous ? journaledKey(previous, previousAt) : undefined;
      let masterUid = resumed?.masterUid;
      const rewrapped = resumed?.rewrapped ?? [];
      if (!resumed?.rewrapped) {
        // Every key, in one batched Get (the wrapped ones through the previous master key).
        const fetched = await this.fetch(refs.map((r) => r.key.uid));
        for (const r of refs) {
          const one = fetched.get(r.key.uid);
          if (!one?.ok) {
            throw new KmipAgentError(
              `${r.id}: its key cannot be read (${one ? `${one.error.code}: ${one.error.message}` : 'no answer'}): nothing was changed`,
              one?.error.code ?? 'KEY_NOT_FETCHED',
            );
          }
          plain.set(r.id, one.key);
        }
      }
      if (resumed) {
        await journal.resume();
      } else {
        await journal.begin(REKEY_JOB);
      }
      let createdAt = resumed?.createdAt ?? clock.now().toISOString();
      if (masterUid === undefined) {
        const known = new Set([before.masterKeyUid, ...before.jobs.flatMap(journaledMasterKeys)]);
        const orphans = (await holder.server.findPreActive(name)).filter((uid) => !known.has(uid));
        const about = (uid: string) => ({
          uid,
          previous: previous ?? null,
          newKey: journaledKey(uid, target),
          ...(keyToDecommission ? { keyToDecommission } : {}),
        });
        if (orphans.length > 0) {
          masterUid = orphans[0]!;
          await step('master-key-adopted', about(masterUid));
          for (const extra of orphans.slice(1)) {
            await holder.server.destroy(extra);
            await step('orphan-destroyed', { uid: extra });
          }
        } else {
          masterUid = await holder.server.createMasterKey(name, keyGroupFor(applianceId), { preActive: true });
          // First thing after Create: from here a crash leaves the key journaled, never unknown.
          await step(REKEY_STEPS.created, about(masterUid));
        }
        createdAt = clock.now().toISOString();
      }
      const newUid = masterUid;
      if (!resumed?.rewrapped) {
        const kek = await this.getMaster(newUid, target);
        const wrapped = new Map<string, string>();
        try {
          for (const [id, key] of plain) wrapped.set(id, wrapKey(kek, key).toString('hex'));
        } finally {
          kek.fill(0);
        }
        // One write: the new master key (and where it is) and every rewrapped key become current together.
        const detail = { count: wrapped.size, ids: [...wrapped.keys()] };
        const rewrap = journal.stepEntry(REKEY_STEPS.rewrapped, detail);
        await journal.change(
          (j) => j.steps.push(rewrap),
          (s) => {
            s.masterKeyUid = newUid;
            s.masterKey = {
              uid: newUid,
              keyManagementType: target.keyManagementType,
              ...(target.keyProviderID !== undefined ? { keyProviderID: target.keyProviderID } : {}),
              createdAt,
            };
            for (const r of refsOf(s)) {
              const blob = wrapped.get(r.id);
              if (blob) Object.assign(r.key, { wrapped: blob, masterKeyUid: newUid });
            }
          },
        );
        await options.afterJournal?.(REKEY_STEPS.rewrapped, detail);
        rewrapped.push(...wrapped.keys());
      }
      if (!resumed?.activated) {
        await holder.server.activate(newUid);
        await step(REKEY_STEPS.activated, { uid: newUid });
      }
      const result: ShallowRekeyResult = {
        ...(previous ? { previousMasterKeyUid: previous } : {}),
        masterKeyUid: newUid,
        rewrapped,
        previousRevoked: false,
        newKey: journaledKey(newUid, target),
        ...(keyToDecommission ? { keyToDecommission } : {}),
      };
      // Only now, with the new state durable and its key Active, is the previous master key no longer needed.
      if (previous) {
        try {
          await this.holder(previousAt).server.retire(previous);
          result.previousRevoked = true;
        } catch (error) {
          result.revokeError = journalError(error);
        }
      }
      await journal.done([{ name: result.previousRevoked ? 'previous-revoked' : 'previous-kept' }]);
      return result;
    } catch (error) {
      await journal.fail(error);
      throw error;
    } finally {
      for (const key of plain.values()) key.fill(0);
    }
  }
}
