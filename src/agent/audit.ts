/**
 * The audit trail: one event for every key operation (a key fetched, registered, looked up, used to unlock,
 * refused by a drive, withheld by the lockout guard, served on the key socket; a drive enrolled), with the
 * KMIP UID, the drive or volume, the result and code, the key server, the duration and who asked (the
 * daemon, a CLI run, or an API caller by uid/pid). Events are JSON lines appended to <state>/audit.log
 * (0600, O_APPEND, one write per event, flushed before the next batch is acknowledged), rotated by size.
 * An event never carries key material: the recorders below take ids and codes, never the key itself.
 *
 * The recorders decorate the agent's own interfaces (KeySource, Unlocker), so the modules they wrap stay
 * unaware of auditing; who the actor is travels with the async call (AsyncLocalStorage), so an API call
 * that triggers an unlock is recorded as that caller's, without threading it through the agent.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { constants, promises as fs } from 'node:fs';
import { join } from 'node:path';
import { KmipAgentError } from '../errors.js';
import type { Clock } from './clock.js';
import type { MasterKeyServer } from './envelope.js';
import type { KeySource } from './key-source.js';
import type { TargetKind, UnlockTarget, Unlocker } from './unlock.js';

export const AUDIT_FILE = 'audit.log';

/**
 * create, activate, destroy: envelope mode's master keys (a shallow rekey's new one is activated once its
 * rewrap is durable; destroy: a never-used one a crashed rekey left); revoke: retired master keys and keys
 * of drives taken out of service.
 */
export type AuditOperation =
  'get' | 'register' | 'create' | 'activate' | 'revoke' | 'destroy' | 'locate' | 'unlock' | 'serve' | 'enroll';

/**
 * ok; error (it failed for another reason); refused (the drive or volume refused the key: remembered, never
 * sent again); withheld (the agent did not send the key: refused before, or the lockout reserve reached).
 */
export type AuditResult = 'ok' | 'error' | 'refused' | 'withheld';

export interface AuditActor {
  kind: 'daemon' | 'cli' | 'api' | 'key-socket';
  pid: number;
  uid: number;
}

export interface AuditEvent {
  time: string;
  operation: AuditOperation;
  result: AuditResult;
  code?: string;
  keyUid?: string;
  keyName?: string;
  /** The drive or volume id (identity, not the device path). */
  target?: string;
  /** opal (a drive) or luks (a volume), for unlocks. */
  kind?: TargetKind;
  device?: string;
  /** The key server that answered (host:port). */
  server?: string;
  durationMs?: number;
  /** UIDs found by a Locate. */
  count?: number;
  actor: AuditActor;
}

export type AuditInput = Omit<AuditEvent, 'time' | 'actor'> & { actor?: AuditActor };

/** What the recorders need: somewhere to put an event. */
export interface AuditSink {
  record(event: AuditInput): void;
}

export interface AuditQuery {
  since?: Date;
  /** The most recent `limit` events (default 1000). */
  limit?: number;
}

export interface AuditLogOptions {
  dir: string;
  clock: Clock;
  /** Who acts when no API caller is in scope (the process itself). */
  actor: AuditActor;
  /** Rotate before the file grows past this (default 10 MiB). */
  maxBytes?: number;
  /** Rotated files kept: audit.log.1 (newest) .. audit.log.<keep> (default 5). */
  keep?: number;
  /** Told when an event could not be written (the operation itself goes on). */
  onError?: (error: Error) => void;
}

/** Codes meaning the drive itself refused the key. */
const REFUSED = new Set(['DRIVE_PIN_REFUSED', 'LUKS_WRONG_KEY']);
/** Codes meaning the agent kept the key back to protect the drive's try counter. */
const WITHHELD = new Set(['DRIVE_PIN_ALREADY_REFUSED', 'DRIVE_LOCKOUT_RISK']);

export function resultOf(code: string | undefined): AuditResult {
  if (code === undefined) return 'ok';
  if (REFUSED.has(code)) return 'refused';
  if (WITHHELD.has(code)) return 'withheld';
  return 'error';
}

const codeOf = (error: unknown) => {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : 'INTERNAL';
};

const actorScope = new AsyncLocalStorage<AuditActor>();

/** The process as an actor: `daemon` or `cli`. */
export function processActor(kind: AuditActor['kind']): AuditActor {
  return { kind, pid: process.pid, uid: process.getuid?.() ?? -1 };
}

/** Runs `fn` with `actor` as the one recorded for the key operations it causes. */
export function runAsActor<T>(actor: AuditActor, fn: () => T): T {
  return actorScope.run(actor, fn);
}

/** The append-only, size-rotated audit file of a state directory. */
export class AuditLog implements AuditSink {
  readonly path: string;
  private readonly maxBytes: number;
  private readonly keep: number;
  private handle: fs.FileHandle | undefined;
  private size = 0;
  private queue: string[] = [];
  private draining: Promise<void> | undefined;
  private readonly listeners: ((event: AuditEvent) => void)[] = [];

  constructor(private readonly options: AuditLogOptions) {
    this.path = join(options.dir, AUDIT_FILE);
    this.maxBytes = options.maxBytes ?? 10 * 1024 * 1024;
    this.keep = options.keep ?? 5;
  }

  /** Also tells `listener` of every event (metrics count key operations from here). */
  subscribe(listener: (event: AuditEvent) => void): void {
    this.listeners.push(listener);
  }

  record(input: AuditInput): void {
    const event: AuditEvent = {
      time: this.options.clock.now().toISOString(),
      ...input,
      actor: input.actor ?? actorScope.getStore() ?? this.options.actor,
    };
    for (const l of this.listeners) l(event);
    this.queue.push(JSON.stringify(event) + '\n');
    this.draining ??= this.drain().finally(() => (this.draining = undefined));
  }

  /** Resolves once every event recorded so far is on disk. */
  async flush(): Promise<void> {
    while (this.draining) await this.draining;
  }

  async close(): Promise<void> {
    await this.flush();
    await this.handle?.close();
    this.handle = undefined;
  }

  /** Writes queued events one write each (O_APPEND: a line is never interleaved), then one fdatasync. */
  private async drain(): Promise<void> {
    while (this.queue.length > 0) {
      const lines = this.queue.splice(0);
      try {
        for (const line of lines) {
          const bytes = Buffer.byteLength(line);
          await this.open();
          if (this.size > 0 && this.size + bytes > this.maxBytes) await this.rotate();
          await (await this.open()).write(line);
          this.size += bytes;
        }
        await this.handle?.datasync();
      } catch (error) {
        this.options.onError?.(error as Error);
      }
    }
  }

  private async open(): Promise<fs.FileHandle> {
    if (this.handle) return this.handle;
    const handle = await fs.open(this.path, constants.O_RDWR | constants.O_APPEND | constants.O_CREAT, 0o600);
    // An existing file keeps its mode; the audit trail is nobody else's business.
    await handle.chmod(0o600);
    this.size = (await handle.stat()).size;
    if (this.size > 0) {
      // A crash mid-write leaves a torn last line: end it, so the next event is a line of its own.
      const last = Buffer.alloc(1);
      await handle.read(last, 0, 1, this.size - 1);
      if (last[0] !== 0x0a) this.size += (await handle.write('\n')).bytesWritten;
    }
    this.handle = handle;
    return handle;
  }

  /** audit.log -> audit.log.1 -> ... -> audit.log.<keep>; the oldest beyond `keep` is removed. */
  private async rotate(): Promise<void> {
    await this.handle?.datasync();
    await this.handle?.close();
    this.handle = undefined;
    await fs.rm(`${this.path}.${this.keep}`, { force: true });
    for (let n = this.keep - 1; n >= 1; n--) {
      await fs.rename(`${this.path}.${n}`, `${this.path}.${n + 1}`).catch((e: NodeJS.ErrnoException) => {
        if (e.code !== 'ENOENT') throw e;
      });
    }
    if (this.keep > 0) await fs.rename(this.path, `${this.path}.1`);
    else await fs.rm(this.path, { force: true });
    const dir = await fs.open(this.options.dir, constants.O_RDONLY | constants.O_DIRECTORY);
    await dir.sync().finally(() => dir.close());
    this.size = 0;
  }

  /** Events from the rotated files and the current one, oldest first (see `readAuditEvents`). */
  async read(query: AuditQuery = {}): Promise<AuditEvent[]> {
    await this.flush();
    return readAuditEvents(this.options.dir, query);
  }
}

/**
 * Reads a state directory's audit trail, oldest first: events at or after `since`, the last `limit`.
 * Needs no lock (the CLI reads it while the daemon writes): a line torn by a crash is skipped.
 */
export async function readAuditEvents(dir: string, query: AuditQuery = {}): Promise<AuditEvent[]> {
  const limit = query.limit ?? 1000;
  const since = query.since?.getTime();
  const base = join(dir, AUDIT_FILE);
  const rotated = (await fs.readdir(dir).catch(() => [] as string[]))
    .map((name) => /^audit\.log\.(\d+)$/.exec(name)?.[1])
    .filter((n): n is string => n !== undefined)
    .map(Number)
    .sort((a, b) => b - a);
  const events: AuditEvent[] = [];
  for (const path of [...rotated.map((n) => `${base}.${n}`), base]) {
    let text: string;
    try {
      text = await fs.readFile(path, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw new KmipAgentError(`cannot read ${path}: ${(error as Error).message}`, 'AUDIT_UNREADABLE');
    }
    for (const line of text.split('\n')) {
      if (!line) continue;
      let event: AuditEvent;
      try {
        event = JSON.parse(line) as AuditEvent;
      } catch {
        continue;
      }
      if (since !== undefined && !(Date.parse(event.time) >= since)) continue;
      events.push(event);
    }
  }
  return limit > 0 ? events.slice(-limit) : [];
}

type AuditOptions = { clock: Clock; server?: () => string | undefined };

/** Runs `fn`, then tells `done` how long it took (ms, rounded) and what it gave or threw. */
async function timedCall<T>(
  clock: Clock,
  fn: () => Promise<T>,
  done: (ms: number, value?: T, error?: unknown) => void,
): Promise<T> {
  const started = clock.monotonicMs();
  try {
    const value = await fn();
    done(Math.round(clock.monotonicMs() - started), value);
    return value;
  } catch (error) {
    done(Math.round(clock.monotonicMs() - started), undefined, error);
    throw error;
  }
}

const serverOf = (options: AuditOptions) => {
  const s = options.server?.();
  return s ? { server: s } : {};
};

/**
 * A key fetch whose every key is an audit `get` event (ok, or the code of its error): a KMIP key source's,
 * or the internal master key store's (`server` then names it "internal").
 */
export function auditedFetch(fetch: KeySource['fetch'], audit: AuditSink, options: AuditOptions): KeySource['fetch'] {
  return (uids) =>
    timedCall(
      options.clock,
      () => fetch(uids),
      (durationMs, fetched, error) => {
        for (const uid of new Set(uids)) {
          const one = fetched?.get(uid);
          const code = error !== undefined ? codeOf(error) : one && !one.ok ? one.error.code : undefined;
          audit.record({
            operation: 'get',
            result: code === undefined ? 'ok' : 'error',
            ...(code !== undefined ? { code } : {}),
            keyUid: uid,
            ...(error === undefined ? serverOf(options) : {}),
            durationMs,
          });
        }
      },
    );
}

/**
 * A key source whose every call is an audit event (one per UID for a batched Get). `server` names the
 * endpoint that answered the last call (the provider's active server).
 */
export function auditedKeySource(inner: KeySource, audit: AuditSink, options: AuditOptions): KeySource {
  const { clock } = options;
  const server = () => serverOf(options);
  const timed = <T>(fn: () => Promise<T>, done: (ms: number, value?: T, error?: unknown) => void) =>
    timedCall(clock, fn, done);
  const locate = (what: 'findByName' | 'findByGroup', key: 'keyName' | 'target') => (query: string) =>
    timed(
      () => inner[what](query),
      (durationMs, uids, error) =>
        audit.record({
          operation: 'locate',
          result: error === undefined ? 'ok' : 'error',
          ...(error === undefined ? { count: uids!.length } : { code: codeOf(error) }),
          [key]: query,
          ...server(),
          durationMs,
        }),
    );
  return {
    fetch: auditedFetch((uids) => inner.fetch(uids), audit, options),
    findByName: locate('findByName', 'keyName'),
    // A group lookup names the appliance's group, not a key: recorded as the target it searched.
    findByGroup: locate('findByGroup', 'target'),
    createKey: (name, group, createOptions) =>
      timed(
        () => inner.createKey(name, group, createOptions),
        (durationMs, created, error) =>
          audit.record({
            operation: 'register',
            result: error === undefined ? 'ok' : 'error',
            ...(error !== undefined ? { code: codeOf(error) } : { keyUid: created!.uid }),
            keyName: name,
            ...(error === undefined ? server() : {}),
            durationMs,
          }),
      ),
  };
}

/** Envelope mode's master-key operations as audit events (a Create, the Locate by name, a Revoke). */
export function auditedMasterKeyServer(
  inner: MasterKeyServer,
  audit: AuditSink,
  options: { clock: Clock; server?: () => string | undefined },
): MasterKeyServer {
  const run = async <T>(fn: () => Promise<T>, event: (value: T | undefined, error: unknown) => AuditInput) => {
    const started = options.clock.monotonicMs();
    const done = (value: T | undefined, error: unknown) => {
      const s = error === undefined ? options.server?.() : undefined;
      audit.record({
        ...event(value, error),
        result: error === undefined ? 'ok' : 'error',
        ...(error !== undefined ? { code: codeOf(error) } : {}),
        ...(s ? { server: s } : {}),
        durationMs: Math.round(options.clock.monotonicMs() - started),
      });
    };
    try {
      const value = await fn();
      done(value, undefined);
      return value;
    } catch (error) {
      done(undefined, error ?? new Error('unknown'));
      throw error;
    }
  };
  return {
    createMasterKey: (name, group, createOptions) =>
      run(
        () => inner.createMasterKey(name, group, createOptions),
        (uid) => ({ operation: 'create', result: 'ok', keyName: name, ...(uid ? { keyUid: uid } : {}) }),
      ),
    findActive: (name) =>
      run(
        () => inner.findActive(name),
        (uids) => ({ operation: 'locate', result: 'ok', keyName: name, ...(uids ? { count: uids.length } : {}) }),
      ),
    findPreActive: (name) =>
      run(
        () => inner.findPreActive(name),
        (uids) => ({ operation: 'locate', result: 'ok', keyName: name, ...(uids ? { count: uids.length } : {}) }),
      ),
    activate: (uid) =>
      run(
        () => inner.activate(uid),
        () => ({ operation: 'activate', result: 'ok', keyUid: uid }),
      ),
    destroy: (uid) =>
      run(
        () => inner.destroy(uid),
        () => ({ operation: 'destroy', result: 'ok', keyUid: uid }),
      ),
    retire: (uid) =>
      run(
        () => inner.retire(uid),
        () => ({ operation: 'revoke', result: 'ok', keyUid: uid }),
      ),
  };
}

/** An unlocker whose every attempt is an audit event: unlocked, refused by the drive, withheld, or failed. */
export function auditedUnlocker(inner: Unlocker, audit: AuditSink, clock: Clock): Unlocker {
  return {
    async unlock(target: UnlockTarget, key: Buffer) {
      const started = clock.monotonicMs();
      const base = {
        operation: 'unlock' as const,
        kind: target.kind,
        target: target.id,
        device: target.device,
        keyUid: target.keyUid,
      };
      try {
        const state = await inner.unlock(target, key);
        audit.record({ ...base, result: 'ok', durationMs: Math.round(clock.monotonicMs() - started) });
        return state;
      } catch (error) {
        const code = codeOf(error);
        audit.record({ ...base, result: resultOf(code), code, durationMs: Math.round(clock.monotonicMs() - started) });
        throw error;
      }
    },
  };
}

/** An enrollment function that records each enrollment (its key registration is recorded by the key source). */
export function auditedEnroll<A extends unknown[], T extends { id: string; keyUid: string; keyName: string }>(
  audit: AuditSink,
  clock: Clock,
  enroll: (device: string, ...rest: A) => Promise<T>,
): (device: string, ...rest: A) => Promise<T> {
  return async (device, ...rest) => {
    const started = clock.monotonicMs();
    try {
      const result = await enroll(device, ...rest);
      audit.record({
        operation: 'enroll',
        result: 'ok',
        target: result.id,
        device,
        keyUid: result.keyUid,
        keyName: result.keyName,
        durationMs: Math.round(clock.monotonicMs() - started),
      });
      return result;
    } catch (error) {
      audit.record({
        operation: 'enroll',
        result: 'error',
        code: codeOf(error),
        device,
        durationMs: Math.round(clock.monotonicMs() - started),
      });
      throw error;
    }
  };
}

/** The unlockers of every kind, each recording its attempts (see auditedUnlocker). */
export function auditedUnlockers<K extends string>(
  audit: AuditSink,
  clock: Clock,
  unlockers: Record<K, Unlocker>,
): Record<K, Unlocker> {
  return Object.fromEntries(
    Object.entries<Unlocker>(unlockers).map(([kind, u]) => [kind, auditedUnlocker(u, audit, clock)]),
  ) as Record<K, Unlocker>;
}

/** Parses `--since`: an ISO time, or an age such as 90s, 30m, 1h, 2d (before `now`). */
export function parseSince(text: string, now: Date): Date {
  const age = /^(\d+)([smhd])$/.exec(text);
  if (age) {
    const unit = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }[age[2] as 's' | 'm' | 'h' | 'd'];
    return new Date(now.getTime() - Number(age[1]) * unit);
  }
  const at = /^\d{4}-\d{2}-\d{2}/.test(text) ? Date.parse(text) : NaN;
  if (Number.isNaN(at))
    throw new KmipAgentError(
      `since must be an ISO time (2026-12-01T10:00:00Z) or an age (90s, 30m, 1h, 2d), not '${text}'`,
      'USAGE_SINCE',
    );
  return new Date(at);
}
