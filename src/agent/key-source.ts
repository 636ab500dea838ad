/**
 * Where the agent's keys come from: the KMIP provider, seen through the narrow interface the agent needs
 * (fetch many keys in one message, find keys by name or group, store a new one). The agent never holds
 * the provider itself, so its logic runs the same against a PyKMIP server or a test's key table.
 */
import { randomBytes } from 'node:crypto';
import { hasResultReason, kmipOperations, ResultReason, type KmipOperationsApi } from '../kmip/index.js';

/** One key's fetch result: the bytes (the caller zeroes them), or why not. */
export type FetchedKey =
  | { ok: true; key: Buffer }
  /** `unusable`: the server answered but the key cannot be used (envelope mode: it did not unwrap). */
  | { ok: false; error: { code: string; message: string; notFound: boolean; unusable?: boolean } };

/** A new key; `record`: further KeyRef fields to record with it (envelope mode: the wrapped blob). */
export interface CreatedKey {
  uid: string;
  key: Buffer;
  record?: { wrapped: string; masterKeyUid: string };
}

export interface KeySource {
  /** Fetches the keys in as few round trips as the source allows (one batched Get for KMIP). */
  fetch(uids: string[]): Promise<Map<string, FetchedKey>>;
  /** UIDs of the objects with this Name (normally one). */
  findByName(name: string): Promise<string[]>;
  /** UIDs of every object in an Object Group. */
  findByGroup(group: string): Promise<string[]>;
  /**
   * Stores a new random 32-byte key under `name` in `group`, activated (with `preActive`, left Pre-Active
   * for a rotation to activate once the drive is proven on it); returns its UID and the key.
   */
  createKey(name: string, group: string, options?: { preActive?: boolean }): Promise<CreatedKey>;
}

/** A Get of an unknown (or destroyed) UID is answered with Result Reason Item Not Found. */
const isNotFound = (error: unknown) => hasResultReason(error, ResultReason.ItemNotFound);

/** The key source over a KMIP endpoint (a KmipProvider in the daemon). */
export class KmipKeySource implements KeySource {
  constructor(
    private readonly kmip: KmipOperationsApi,
    private readonly random: (n: number) => Buffer = randomBytes,
  ) {}

  async fetch(uids: string[]): Promise<Map<string, FetchedKey>> {
    const unique = [...new Set(uids)];
    const fetched = new Map<string, FetchedKey>();
    if (unique.length === 0) return fetched;
    const results = await this.kmip.batch(unique.map((uniqueIdentifier) => kmipOperations.get({ uniqueIdentifier })));
    results.forEach((result, i) => {
      const uid = unique[i]!;
      if (result.ok) {
        fetched.set(uid, { ok: true, key: result.value.value });
      } else {
        const e = result.error;
        fetched.set(uid, { ok: false, error: { code: e.code, message: e.message, notFound: isNotFound(e) } });
      }
    });
    return fetched;
  }

  async findByName(name: string): Promise<string[]> {
    return (await this.kmip.locate({ name })).uniqueIdentifiers;
  }

  async findByGroup(group: string): Promise<string[]> {
    return (await this.kmip.locate({ objectGroup: group })).uniqueIdentifiers;
  }

  /** The Name attributes of each object, in one batched Get Attributes (recovery matches keys by name). */
  async namesOf(uids: string[]): Promise<Map<string, string[]>> {
    const names = new Map<string, string[]>();
    if (uids.length === 0) return names;
    const results = await this.kmip.batch(
      uids.map((uniqueIdentifier) => kmipOperations.getAttributes({ uniqueIdentifier, names: ['Name'] })),
    );
    results.forEach((result, i) => {
      const values = result.ok ? result.value.attributes.filter((a) => a.name === 'Name').map((a) => a.value) : [];
      names.set(
        uids[i]!,
        values.filter((v): v is string => typeof v === 'string'),
      );
    });
    return names;
  }

  async createKey(
    name: string,
    group: string,
    options: { preActive?: boolean } = {},
  ): Promise<{ uid: string; key: Buffer }> {
    const key = this.random(32);
    try {
      const { uniqueIdentifier } = await this.kmip.register({
        kind: 'secret-data',
        secret: key,
        name,
        objectGroup: group,
      });
      if (!options.preActive) await this.kmip.activate(uniqueIdentifier);
      return { uid: uniqueIdentifier, key };
    } catch (error) {
      key.fill(0);
      throw error;
    }
  }
}
