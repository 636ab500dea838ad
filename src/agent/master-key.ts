/**
 * Where envelope mode's master key lives (Element's keyManagementType / keyProviderID):
 *   - external: a KMIP object on a configured key provider ("default" unless a rekey moved it);
 *   - internal: on the appliance itself, sealed with `systemd-creds encrypt` (the host key, and the TPM2
 *     when the machine has one) into a 0600 file in <state>/master-keys. The key is never written in
 *     plaintext: it crosses to systemd-creds on a pipe (never argv) and comes back on one, zeroed after use.
 *     The credential is named after the key's id, so a blob renamed to another id does not unseal.
 *
 * Both kinds are a MasterKeyServer (create Pre-Active, activate, retire, destroy) with a fetch, so the
 * shallow rekey (envelope.ts) moves a master key internal -> external, provider A -> provider B or
 * external -> internal with one crash-safe sequence: the new key is made Pre-Active and journaled, every
 * wrapped key rewritten under it in one durable state write, then it is activated and only then the old
 * one retired on its old holder.
 *
 * Why external -> internal is allowed: each drive's and volume's key keeps its plain recovery copy on the
 * default provider (envelope.ts), so an internal master key never becomes the only way back to the data:
 * losing the host key loses the wrapped blobs, and `kmip-agent recover` rebuilds them from the server.
 */
import { spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { KmipAgentError } from '../errors.js';
import { writeDurably } from './durable-file.js';
import type { MasterKeyServer } from './envelope.js';
import type { FetchedKey } from './key-source.js';
import type { StateBody } from './state.js';

export type KeyManagementType = 'internal' | 'external';
export const KEY_MANAGEMENT_TYPES: readonly KeyManagementType[] = ['internal', 'external'];

/** Where a master key is held: internal (no provider) or external on the named provider. */
export interface MasterKeyLocation {
  keyManagementType: KeyManagementType;
  /** The provider (config `providers`) of an external key; absent for internal. */
  keyProviderID?: string;
}

/** Where master keys were before keyManagementType existed: the default provider. */
export const DEFAULT_MASTER_LOCATION: MasterKeyLocation = { keyManagementType: 'external', keyProviderID: 'default' };

export const sameLocation = (a: MasterKeyLocation, b: MasterKeyLocation) =>
  a.keyManagementType === b.keyManagementType &&
  (a.keyManagementType === 'internal' || a.keyProviderID === b.keyProviderID);

export const describeLocation = (l: MasterKeyLocation) =>
  l.keyManagementType === 'internal' ? 'internal' : `external (provider ${l.keyProviderID})`;

/** A master key's holder: its life cycle and a fetch of its bytes (the caller zeroes them). */
export interface MasterKeyHolder {
  server: MasterKeyServer;
  fetch(uids: string[]): Promise<Map<string, FetchedKey>>;
}

/** Finds the holder of a location; throws CONFIG_PROVIDER_UNKNOWN for a provider not configured. */
export type MasterKeyHolders = (location: MasterKeyLocation) => MasterKeyHolder;

/** The state's current master key: its id, where it is, since when. */
export interface MasterKeyInfo {
  keyID: string;
  keyManagementType: KeyManagementType;
  keyProviderID: string | null;
  keyCreatedTime: string | null;
}

/** Where the state says the master key `uid` is (legacy states: the default provider). */
export function locationOf(state: StateBody, uid: string): MasterKeyLocation {
  const m = state.masterKey;
  if (m && m.uid === uid)
    return {
      keyManagementType: m.keyManagementType,
      ...(m.keyProviderID !== undefined ? { keyProviderID: m.keyProviderID } : {}),
    };
  return DEFAULT_MASTER_LOCATION;
}

export function currentMasterKey(state: StateBody): MasterKeyInfo | undefined {
  if (!state.masterKeyUid) return undefined;
  const where = locationOf(state, state.masterKeyUid);
  return {
    keyID: state.masterKeyUid,
    keyManagementType: where.keyManagementType,
    keyProviderID: where.keyProviderID ?? null,
    keyCreatedTime: state.masterKey?.uid === state.masterKeyUid ? (state.masterKey.createdAt ?? null) : null,
  };
}

/** Checks API/CLI input for a master key's new location (before anything is contacted). */
export function parseLocation(
  input: { keyManagementType?: unknown; keyProviderID?: unknown },
  providers: string[],
  current: MasterKeyLocation,
): MasterKeyLocation {
  const { keyManagementType: type, keyProviderID: provider } = input;
  if (type !== undefined && !KEY_MANAGEMENT_TYPES.includes(type as KeyManagementType))
    throw new KmipAgentError('keyManagementType must be "internal" or "external"', 'REKEY_INVALID_KEY_MANAGEMENT');
  if (provider !== undefined && (typeof provider !== 'string' || provider === ''))
    throw new KmipAgentError('keyProviderID must be a provider name', 'REKEY_INVALID_KEY_MANAGEMENT');
  const kind =
    (type as KeyManagementType | undefined) ?? (provider !== undefined ? 'external' : current.keyManagementType);
  if (kind === 'internal') {
    if (provider !== undefined)
      throw new KmipAgentError(
        'an internal master key is held on the appliance: keyProviderID goes with external only',
        'REKEY_INVALID_KEY_MANAGEMENT',
      );
    return { keyManagementType: 'internal' };
  }
  const name =
    (provider as string | undefined) ??
    (current.keyManagementType === 'external' ? current.keyProviderID : undefined) ??
    'default';
  if (!providers.includes(name))
    throw new KmipAgentError(
      `no key provider "${name}" (providers: ${providers.join(', ') || 'none'})`,
      'CONFIG_PROVIDER_UNKNOWN',
    );
  return { keyManagementType: 'external', keyProviderID: name };
}

// ------------------------------------------------------------------------------------ sealing

/** Seals and unseals a key with something of this machine's (systemd-creds: host key, TPM2). */
export interface Sealer {
  /** `name` is bound into the blob: unsealing under another name fails. */
  seal(name: string, key: Buffer): Promise<Buffer>;
  /** The caller zeroes the result. */
  unseal(name: string, blob: Buffer): Promise<Buffer>;
}

function pipeThrough(bin: string, args: string[], input: Buffer, timeoutMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { stdio: ['pipe', 'pipe', 'pipe'], timeout: timeoutMs });
    const out: Buffer[] = [];
    let err = '';
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    child.once('error', (error) =>
      reject(new KmipAgentError(`cannot run ${bin}: ${error.message}`, 'MASTER_KEY_SEAL_FAILED')),
    );
    child.once('close', (code) => {
      const data = Buffer.concat(out);
      for (const c of out) c.fill(0);
      if (code === 0) return resolve(data);
      data.fill(0);
      reject(
        new KmipAgentError(
          `${bin} ${args[0]} failed (exit ${code}): ${err.trim().split('\n').at(-1) ?? ''}`,
          'MASTER_KEY_SEAL_FAILED',
        ),
      );
    });
    child.stdin.end(input);
  });
}

/**
 * systemd-creds (Debian's systemd): `--with-key=auto` seals with the host key
 * (/var/lib/systemd/credential.secret, root only) and, on a machine with a TPM2, the TPM too.
 */
export function systemdCredsSealer(bin = 'systemd-creds', timeoutMs = 30_000): Sealer {
  return {
    seal: (name, key) => pipeThrough(bin, ['encrypt', `--name=${name}`, '--with-key=auto', '-', '-'], key, timeoutMs),
    unseal: (name, blob) => pipeThrough(bin, ['decrypt', `--name=${name}`, '-', '-'], blob, timeoutMs),
  };
}

// ------------------------------------------------------------------------ the internal store

const PRE_ACTIVE = '.pre-active.cred';
const ACTIVE = '.cred';
const INTERNAL_ID = /^internal-[0-9a-f-]{36}$/;

async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Internal master keys as sealed files, <dir>/<id>.pre-active.cred until activated, then <id>.cred.
 * Activation is a rename; retiring an internal key deletes it (nothing else holds a copy).
 */
export class InternalMasterKeyStore implements MasterKeyServer, MasterKeyHolder {
  readonly server: MasterKeyServer = this;

  constructor(
    private readonly dir: string,
    private readonly sealer: Sealer,
    private readonly random: (n: number) => Buffer = randomBytes,
  ) {}

  private path(uid: string, preActive: boolean): string {
    if (!INTERNAL_ID.test(uid))
      throw new KmipAgentError(`${uid} is not an internal master key id`, 'MASTER_KEY_NOT_FOUND');
    return join(this.dir, `${uid}${preActive ? PRE_ACTIVE : ACTIVE}`);
  }

  private async list(preActive: boolean): Promise<string[]> {
    const names = await readdir(this.dir).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return [] as string[];
      throw error;
    });
    const suffix = preActive ? PRE_ACTIVE : ACTIVE;
    return names
      .filter((n) => n.endsWith(suffix) && (preActive || !n.endsWith(PRE_ACTIVE)))
      .map((n) => n.slice(0, -suffix.length))
      .filter((u) => INTERNAL_ID.test(u))
      .sort();
  }

  async createMasterKey(_name: string, _group: string, options: { preActive?: boolean } = {}): Promise<string> {
    const uid = `internal-${randomUUID()}`;
    const key = this.random(32);
    try {
      const blob = await this.sealer.seal(uid, key);
      await mkdir(this.dir, { recursive: true, mode: 0o700 });
      await writeDurably(this.path(uid, true), blob, { mode: 0o600 });
    } finally {
      key.fill(0);
    }
    if (!options.preActive) await this.activate(uid);
    return uid;
  }

  findActive(): Promise<string[]> {
    return this.list(false);
  }

  findPreActive(): Promise<string[]> {
    return this.list(true);
  }

  async activate(uid: string): Promise<void> {
    try {
      await rename(this.path(uid, true), this.path(uid, false));
    } catch (error) {
      // Activated already (a rerun after a crash that followed the rename).
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT' || !(await this.list(false)).includes(uid)) throw error;
    }
    await syncDir(this.dir);
  }

  async retire(uid: string): Promise<void> {
    await this.remove(uid, false);
  }

  async destroy(uid: string): Promise<void> {
    await this.remove(uid, true);
    await this.remove(uid, false);
  }

  private async remove(uid: string, preActive: boolean): Promise<void> {
    await unlink(this.path(uid, preActive)).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'ENOENT') throw error;
    });
    await syncDir(this.dir).catch(() => undefined);
  }

  async fetch(uids: string[]): Promise<Map<string, FetchedKey>> {
    const result = new Map<string, FetchedKey>();
    for (const uid of new Set(uids)) {
      let blob: Buffer | undefined;
      for (const preActive of [false, true]) {
        try {
          blob = await readFile(this.path(uid, preActive));
          break;
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code !== 'ENOENT' && !(error instanceof KmipAgentError)) throw error;
        }
      }
      if (!blob) {
        result.set(uid, {
          ok: false,
          error: { code: 'MASTER_KEY_NOT_FOUND', message: `no internal master key ${uid}`, notFound: true },
        });
        continue;
      }
      try {
        result.set(uid, { ok: true, key: await this.sealer.unseal(uid, blob) });
      } catch (error) {
        const e = error as KmipAgentError;
        result.set(uid, {
          ok: false,
          error: { code: e.code ?? 'MASTER_KEY_SEAL_FAILED', message: e.message, notFound: false, unusable: true },
        });
      }
    }
    return result;
  }
}
