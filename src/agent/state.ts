/**
 * The agent's local state (state.json in the state directory): which drive or volume uses which key, the
 * job journal and the last connection results.
 *
 * Never a key in plaintext: keys are referred to by their KMIP Unique Identifier and Name; envelope-mode
 * keys only wrapped. (The refused-key memory is refused-keys.json: see refused-keys.ts.) Written durably (see durable-file.ts) with the
 * previous generation kept, a schema version migrated on load, and a checksum so a torn or hand-edited
 * file is detected instead of trusted. One process owns it at a time (the state lock).
 */
import { randomBytes, createHash } from 'node:crypto';
import { readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import * as z from 'zod';
import { KmipAgentError } from '../errors.js';
import { removeStaleTemps, writeDurably } from './durable-file.js';

export const STATE_FILE = 'state.json';
export const STATE_SCHEMA_VERSION = 1;

const isoDate = z.iso.datetime();

const KeyRefSchema = z.strictObject({
  /** KMIP Unique Identifier of the key (or, in envelope mode, of the key's recovery copy). */
  uid: z.string().min(1),
  /** KMIP Name: kmip-agent/<applianceId>/<id>. */
  name: z.string().min(1),
  /** Provider the key lives on. */
  provider: z.string().min(1),
  /** Envelope mode: the key wrapped by the master key (hex), so boot needs only the master key. */
  wrapped: z
    .string()
    .regex(/^[0-9a-f]+$/)
    .optional(),
  masterKeyUid: z.string().min(1).optional(),
  /** When this key was made by a rotation (absent: the key is the one enrolledAt made); the rotation policy counts from it. */
  createdAt: isoDate.optional(),
});

const ManagedDriveSchema = z.strictObject({
  /** Stable identity: WWN, else model+serial. */
  id: z.string().min(1),
  /** Where it was last seen (a device path or emu:/path). Informational: identity is `id`. */
  device: z.string().min(1),
  key: KeyRefSchema,
  enrolledAt: isoDate,
  unlockAtBoot: z.boolean(),
});

const ManagedVolumeSchema = z.strictObject({
  /** The LUKS2 header's UUID. */
  id: z.string().min(1),
  device: z.string().min(1),
  key: KeyRefSchema,
  /** LUKS2 keyslot holding the KMIP key. */
  keyslot: z.number().int().min(0).max(31),
  enrolledAt: isoDate,
  unlockAtBoot: z.boolean(),
});

const RefusedKeySchema = z.strictObject({
  /** Drive identity (never a device path: paths move between boots). */
  driveId: z.string().min(1),
  /** The authority the key was refused for, e.g. "Admin1", "User1", "SID". */
  authority: z.string().min(1),
  /** HMAC-SHA256 of the key under this state's fingerprint salt (hex): recognises the key, cannot reveal it. */
  fingerprint: z.string().regex(/^[0-9a-f]{64}$/),
  keyUid: z.string().optional(),
  at: isoDate,
});

const JobSchema = z.strictObject({
  id: z.string().min(1),
  kind: z.string().min(1),
  /** Steps done so far, in order, so a restarted agent resumes or rolls back instead of guessing. */
  steps: z.array(
    z.strictObject({ name: z.string(), at: isoDate, detail: z.record(z.string(), z.unknown()).optional() }),
  ),
  /** interrupted: the process stopped while it ran (found `running` by the next start). */
  status: z.enum(['running', 'done', 'failed', 'cancelled', 'interrupted']),
  startedAt: isoDate,
  endedAt: isoDate.optional(),
  target: z.string().optional(),
  error: z.strictObject({ code: z.string(), message: z.string() }).optional(),
  /** Jobs with handles (jobs.ts): n of m items done, and the answer once finished. Optional: v1 files load. */
  progress: z.strictObject({ done: z.number().int().min(0), total: z.number().int().min(0) }).optional(),
  result: z.unknown().optional(),
});

const ConnectionResultSchema = z.strictObject({
  endpoint: z.string(),
  /** The key server's name in the configuration, when the result came from a test of it. */
  server: z.string().optional(),
  at: isoDate,
  ok: z.boolean(),
  latencyMs: z.number().optional(),
  protocolVersion: z.string().optional(),
  /** What a connection test learnt: every KMIP version the server offers, and its vendor. */
  kmipVersions: z.array(z.string()).optional(),
  vendor: z.string().optional(),
  error: z.strictObject({ code: z.string(), message: z.string() }).optional(),
});

export const StateBodySchema = z.strictObject({
  /**
   * Salt and list of the first refused-key memory, superseded by refused-keys.json (refused-keys.ts), which
   * every process of the agent can write while the daemon owns this file. Kept so version-1 files load.
   */
  fingerprintSalt: z.string().regex(/^[0-9a-f]{64}$/),
  /** Envelope mode: UID of the current master key, which wraps the keys below (see envelope.ts). */
  masterKeyUid: z.string().min(1).optional(),
  /**
   * Where the current master key is held (master-key.ts) and since when; absent in states made before
   * keyManagementType existed (their master key is on the default provider).
   */
  masterKey: z
    .strictObject({
      uid: z.string().min(1),
      keyManagementType: z.enum(['internal', 'external']),
      keyProviderID: z.string().min(1).optional(),
      createdAt: isoDate.optional(),
    })
    .optional(),
  drives: z.array(ManagedDriveSchema).default([]),
  volumes: z.array(ManagedVolumeSchema).default([]),
  refusedKeys: z.array(RefusedKeySchema).default([]),
  jobs: z.array(JobSchema).default([]),
  connections: z.array(ConnectionResultSchema).default([]),
});

export type StateBody = z.infer<typeof StateBodySchema>;
export type ManagedDrive = z.infer<typeof ManagedDriveSchema>;
export type ManagedVolume = z.infer<typeof ManagedVolumeSchema>;
export type RefusedKey = z.infer<typeof RefusedKeySchema>;
export type Job = z.infer<typeof JobSchema>;
export type ConnectionResult = z.infer<typeof ConnectionResultSchema>;

/** The file as stored: the body plus what lets a reader trust it. */
interface StateEnvelope {
  schemaVersion: number;
  generation: number;
  writtenAt: string;
  body: unknown;
  /** "sha256:<hex>" over the canonical JSON of schemaVersion, generation, writtenAt and body. */
  checksum: string;
}

/** Migrations from each older schema version to the next (none yet: version 1 is the first). */
const MIGRATIONS: Record<number, (body: unknown) => unknown> = {};

export class StateCorruptError extends KmipAgentError {
  constructor(
    readonly path: string,
    reason: string,
  ) {
    super(
      `${path} is corrupt (${reason}): it is left as it is; run \`kmip-agent recover\` to rebuild the state from the key server`,
      'STATE_CORRUPT',
      { details: { path, reason } },
    );
  }
}

function checksumOf(envelope: Omit<StateEnvelope, 'checksum'>): string {
  const canonical = JSON.stringify([envelope.schemaVersion, envelope.generation, envelope.writtenAt, envelope.body]);
  return `sha256:${createHash('sha256').update(canonical).digest('hex')}`;
}

/** A fresh, empty state (a new fingerprint salt from `random`). */
export function emptyState(random: (n: number) => Buffer = randomBytes): StateBody {
  return StateBodySchema.parse({ fingerprintSalt: random(32).toString('hex') });
}

/** The loaded state and where it came from. */
export interface LoadedState {
  body: StateBody;
  generation: number;
  /** True when there was no state file (a first start, or after it was deleted). */
  fresh: boolean;
  /** The schema version the file had before migration. */
  migratedFrom?: number;
}

/** Parses a state file's text; throws StateCorruptError when it cannot be trusted. */
export function decodeState(text: string, path: string): LoadedState {
  let envelope: StateEnvelope;
  try {
    envelope = JSON.parse(text) as StateEnvelope;
  } catch {
    throw new StateCorruptError(path, text.length === 0 ? 'empty file' : 'not valid JSON (torn or truncated write?)');
  }
  if (envelope === null || typeof envelope !== 'object' || typeof envelope.schemaVersion !== 'number') {
    throw new StateCorruptError(path, 'no schemaVersion');
  }
  const { checksum, ...rest } = envelope;
  if (typeof checksum !== 'string' || checksum !== checksumOf(rest)) {
    throw new StateCorruptError(path, 'checksum mismatch (edited by hand or damaged)');
  }
  if (envelope.schemaVersion > STATE_SCHEMA_VERSION) {
    throw new KmipAgentError(
      `${path} has schema version ${envelope.schemaVersion}, newer than this kmip-agent (${STATE_SCHEMA_VERSION}): upgrade kmip-agent`,
      'STATE_VERSION_UNSUPPORTED',
    );
  }
  let body = envelope.body;
  for (let v = envelope.schemaVersion; v < STATE_SCHEMA_VERSION; v++) {
    const migrate = MIGRATIONS[v];
    if (!migrate) throw new StateCorruptError(path, `no migration from schema version ${v}`);
    body = migrate(body);
  }
  const parsed = StateBodySchema.safeParse(body);
  if (!parsed.success) {
    const first = parsed.error.issues[0]!;
    throw new StateCorruptError(path, `invalid content at ${first.path.join('.') || 'top level'}: ${first.message}`);
  }
  return {
    body: parsed.data,
    generation: envelope.generation,
    fresh: false,
    ...(envelope.schemaVersion === STATE_SCHEMA_VERSION ? {} : { migratedFrom: envelope.schemaVersion }),
  };
}

/** The text of a state file for `body` at `generation`. */
export function encodeState(body: StateBody, generation: number, now: Date): string {
  const rest = { schemaVersion: STATE_SCHEMA_VERSION, generation, writtenAt: now.toISOString(), body };
  return JSON.stringify({ ...rest, checksum: checksumOf(rest) }, null, 2) + '\n';
}

export interface StateStoreOptions {
  dir: string;
  now?: () => Date;
  random?: (n: number) => Buffer;
}

/**
 * Reads and writes state.json. Changes go through `update`, which applies a function to a copy and writes
 * the result durably before it becomes the current state, so a failed write changes nothing.
 * The caller holds the state lock (state-lock.ts) for as long as it uses the store.
 */
export class StateStore {
  readonly path: string;
  private readonly now: () => Date;
  private readonly random: (n: number) => Buffer;
  private current?: StateBody;
  private generation = 0;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(options: StateStoreOptions) {
    this.path = join(options.dir, STATE_FILE);
    this.now = options.now ?? (() => new Date());
    this.random = options.random ?? randomBytes;
  }

  /** Loads the file (an empty state when there is none). Throws StateCorruptError, never overwrites. */
  async load(): Promise<LoadedState> {
    await removeStaleTemps(this.path);
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
        throw new KmipAgentError(`cannot read ${this.path}: ${(error as Error).message}`, 'STATE_UNREADABLE', {
          cause: error,
        });
      }
      this.current = emptyState(this.random);
      this.generation = 0;
      return { body: this.snapshot(), generation: 0, fresh: true };
    }
    const loaded = decodeState(text, this.path);
    this.current = loaded.body;
    this.generation = loaded.generation;
    if (loaded.migratedFrom !== undefined) await this.write(loaded.body);
    return { ...loaded, body: this.snapshot() };
  }

  /** Moves a corrupt state file aside (state.json.corrupt-<time>) so a new state can start; returns its path. */
  async quarantine(): Promise<string> {
    const aside = `${this.path}.corrupt-${this.now().toISOString().replace(/[:.]/g, '-')}`;
    await rename(this.path, aside);
    return aside;
  }

  /** A deep copy of the current state. */
  snapshot(): StateBody {
    return structuredClone(this.loaded());
  }

  /**
   * The current state itself, not a copy: for pure readers that neither change it nor keep parts of it
   * (the rotation plan, read for every drive of every status: a deep copy each time was quadratic).
   */
  view(): Readonly<StateBody> {
    return this.loaded();
  }

  /** Applies `change` to a copy of the state and makes the result current once it is on disk. Serialized. */
  update(change: (state: StateBody) => void): Promise<StateBody> {
    const run = this.queue.then(async () => {
      const next = structuredClone(this.loaded());
      change(next);
      const valid = StateBodySchema.parse(next);
      await this.write(valid);
      return structuredClone(valid);
    });
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Starts over with an empty state (after `quarantine`, or by `recover`). */
  async reset(): Promise<StateBody> {
    const body = emptyState(this.random);
    await this.write(body);
    return structuredClone(body);
  }

  private loaded(): StateBody {
    if (!this.current) throw new KmipAgentError('the state was not loaded', 'STATE_NOT_LOADED');
    return this.current;
  }

  private async write(body: StateBody): Promise<void> {
    const generation = this.generation + 1;
    await writeDurably(this.path, encodeState(body, generation, this.now()), { keepPrevious: true });
    this.generation = generation;
    this.current = body;
  }
}
