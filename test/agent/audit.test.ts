/**
 * The audit trail: every key operation one JSON line in <state>/audit.log (0600), rotated by size, read
 * back with `since`/`limit`, recorded as the actor who caused it (daemon, cli, API caller), never with key
 * material. Unit tests run on a FakeClock with an in-memory key table; the end-to-end test enrolls an
 * emulated drive against PyKMIP through the real runtime and the real CLI, then greps the file and the logs
 * for the key's bytes.
 */
import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
  appendFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, describe, expect, inject, it } from 'vitest';
import {
  AuditLog,
  auditedKeySource,
  auditedUnlocker,
  parseSince,
  processActor,
  readAuditEvents,
  runAsActor,
  type AuditEvent,
} from '../../src/agent/audit.js';
import { parseConfig } from '../../src/agent/config.js';
import { openAgentRuntime } from '../../src/agent/daemon.js';
import type { FetchedKey, KeySource } from '../../src/agent/key-source.js';
import { agentLogger } from '../../src/agent/log.js';
import type { UnlockTarget } from '../../src/agent/unlock.js';
import { ApiClient } from '../../src/api/client.js';
import { agentMethods } from '../../src/api/methods.js';
import { ApiServer } from '../../src/api/server.js';
import { KmipAgentError } from '../../src/errors.js';
import { runCliCaptured } from '../support/cli.js';
import { FakeClock } from '../support/fake-clock.js';
import { pykmipCliArgs } from '../support/pykmip.js';

const dirs: string[] = [];
const tempDir = () => {
  const d = mkdtempSync(join(tmpdir(), 'kmip-agent-audit-'));
  dirs.push(d);
  return d;
};
/** Write failures the audit log reports instead of throwing: none is expected in any test. */
const writeErrors: Error[] = [];
const onError = (error: Error) => writeErrors.push(error);
afterEach(() => {
  dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true }));
  expect(writeErrors.splice(0)).toEqual([]);
});

const KEY = Buffer.alloc(32, 0xa7);
const KEY_HEX = KEY.toString('hex');

class TableKeys implements KeySource {
  down = false;
  constructor(private readonly clock: FakeClock) {}
  async fetch(uids: string[]): Promise<Map<string, FetchedKey>> {
    await this.clock.advance(0);
    if (this.down) throw new KmipAgentError('no key server answered', 'KMIP_CONNECTION_REFUSED');
    const out = new Map<string, FetchedKey>();
    for (const uid of uids)
      out.set(
        uid,
        uid === 'uid-1'
          ? { ok: true, key: Buffer.from(KEY) }
          : { ok: false, error: { code: 'KMIP_ITEM_NOT_FOUND', message: 'Item Not Found', notFound: true } },
      );
    return out;
  }
  async findByName(): Promise<string[]> {
    return ['uid-1'];
  }
  async findByGroup(): Promise<string[]> {
    return ['uid-1', 'uid-2'];
  }
  async createKey(): Promise<{ uid: string; key: Buffer }> {
    return { uid: 'uid-9', key: Buffer.from(KEY) };
  }
}

const fileEvents = (dir: string) =>
  readFileSync(join(dir, 'audit.log'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as AuditEvent);

describe('the audit file', () => {
  it('appends one JSON line per event, 0600, as the process by default and as the caller in scope', async () => {
    const dir = tempDir();
    const clock = new FakeClock();
    const audit = new AuditLog({ onError, dir, clock, actor: processActor('daemon') });
    audit.record({ operation: 'get', result: 'ok', keyUid: 'uid-1', server: 'kms:5696', durationMs: 4 });
    await clock.advance(60_000);
    runAsActor({ kind: 'api', pid: 4242, uid: 0 }, () =>
      audit.record({ operation: 'unlock', result: 'refused', code: 'DRIVE_PIN_REFUSED', target: 'EMU-1' }),
    );
    await audit.close();
    expect(statSync(join(dir, 'audit.log')).mode & 0o777).toBe(0o600);
    const events = fileEvents(dir);
    expect(events).toHaveLength(2);
    expect(events[0]).toMatchObject({
      time: '2026-12-01T10:00:00.000Z',
      operation: 'get',
      result: 'ok',
      keyUid: 'uid-1',
      server: 'kms:5696',
      actor: { kind: 'daemon', pid: process.pid, uid: process.getuid!() },
    });
    expect(events[1]).toMatchObject({ time: '2026-12-01T10:01:00.000Z', actor: { kind: 'api', pid: 4242, uid: 0 } });
  });

  it('keeps the mode 0600 of a file someone widened, and appends to it', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'audit.log'), '', { mode: 0o644 });
    const audit = new AuditLog({ onError, dir, clock: new FakeClock(), actor: processActor('cli') });
    audit.record({ operation: 'locate', result: 'ok', count: 2 });
    await audit.close();
    expect(statSync(join(dir, 'audit.log')).mode & 0o777).toBe(0o600);
  });

  it('rotates by size, keeps N old files, and reads them back oldest first with since and limit', async () => {
    const dir = tempDir();
    const clock = new FakeClock();
    const audit = new AuditLog({ onError, dir, clock, actor: processActor('daemon'), maxBytes: 1000, keep: 2 });
    for (let i = 0; i < 40; i++) {
      audit.record({ operation: 'get', result: 'ok', keyUid: `uid-${i}` });
      await clock.advance(1000);
    }
    await audit.flush();
    const files = readdirSync(dir).sort();
    expect(files).toEqual(['audit.log', 'audit.log.1', 'audit.log.2']);
    for (const f of files) expect(statSync(join(dir, f)).size).toBeLessThanOrEqual(1000);
    const all = await audit.read({ limit: 100 });
    // What is left is the newest events, contiguous, in order; the oldest went with the dropped file.
    const numbers = all.map((e) => Number(e.keyUid!.slice(4)));
    expect(numbers.at(-1)).toBe(39);
    expect(numbers).toEqual(numbers.map((_, i) => numbers[0]! + i));
    expect(numbers[0]).toBeGreaterThan(0);
    const since = await audit.read({ since: new Date(Date.parse('2026-12-01T10:00:35.000Z')) });
    expect(since.map((e) => e.keyUid)).toEqual(['uid-35', 'uid-36', 'uid-37', 'uid-38', 'uid-39']);
    expect((await audit.read({ limit: 2 })).map((e) => e.keyUid)).toEqual(['uid-38', 'uid-39']);
    await audit.close();
  });

  it('skips a line torn by a crash, and the next process ends it so its own events are whole lines', async () => {
    const dir = tempDir();
    const clock = new FakeClock();
    const first = new AuditLog({ onError, dir, clock, actor: processActor('daemon') });
    first.record({ operation: 'get', result: 'ok', keyUid: 'uid-1' });
    await first.close();
    appendFileSync(join(dir, 'audit.log'), '{"time":"2026-12-01T10:00:00.000Z","oper');
    expect((await readAuditEvents(dir)).map((e) => e.keyUid)).toEqual(['uid-1']);
    const second = new AuditLog({ onError, dir, clock, actor: processActor('daemon') });
    second.record({ operation: 'get', result: 'ok', keyUid: 'uid-2' });
    await second.close();
    expect((await readAuditEvents(dir)).map((e) => e.keyUid)).toEqual(['uid-1', 'uid-2']);
    expect(readFileSync(join(dir, 'audit.log'), 'utf8').split('\n')).toHaveLength(4);
  });

  it('reads nothing (no error) from a state directory without an audit file', async () => {
    expect(await readAuditEvents(tempDir())).toEqual([]);
  });

  it('takes its rotation from the config: defaults, and a bad field named', () => {
    const base = {
      schemaVersion: 1,
      applianceId: 'nas1',
      providers: { default: { servers: [{ host: 'kms' }], ca: 'ca', cert: 'c', key: 'k' } },
    };
    expect(parseConfig(base).audit).toEqual({ maxBytes: 10 * 1024 * 1024, keep: 5 });
    expect(parseConfig(base).metrics).toEqual({ textfileIntervalSeconds: 15 });
    expect(() => parseConfig({ ...base, audit: { keep: -1 } })).toThrow(/audit\.keep/);
    expect(() => parseConfig({ ...base, audit: { maxBytes: 10 } })).toThrow(
      expect.objectContaining({ code: 'CONFIG_INVALID' }),
    );
  });

  it('parses --since as an ISO time or an age, and refuses anything else with a typed error', () => {
    const now = new Date('2026-12-01T12:00:00.000Z');
    expect(parseSince('30m', now).toISOString()).toBe('2026-12-01T11:30:00.000Z');
    expect(parseSince('1h', now).toISOString()).toBe('2026-12-01T11:00:00.000Z');
    expect(parseSince('2d', now).toISOString()).toBe('2026-11-29T12:00:00.000Z');
    expect(parseSince('2026-12-01T10:00:00Z', now).toISOString()).toBe('2026-12-01T10:00:00.000Z');
    for (const bad of ['yesterday', '1w', '-1h', '12'])
      expect(() => parseSince(bad, now)).toThrow(expect.objectContaining({ code: 'USAGE_SINCE' }));
  });
});

describe('the recorders', () => {
  it('records every UID of a batched Get with its result and the server, and a dead server as errors', async () => {
    const dir = tempDir();
    const clock = new FakeClock();
    const audit = new AuditLog({ onError, dir, clock, actor: processActor('daemon') });
    const table = new TableKeys(clock);
    const keys = auditedKeySource(table, audit, { clock, server: () => 'kms1:5696' });
    const fetched = await keys.fetch(['uid-1', 'uid-2', 'uid-1']);
    expect(fetched.get('uid-1')).toMatchObject({ ok: true });
    table.down = true;
    await expect(keys.fetch(['uid-1'])).rejects.toMatchObject({ code: 'KMIP_CONNECTION_REFUSED' });
    await keys.createKey('kmip-agent/nas1/EMU-1', 'kmip-agent/nas1');
    await keys.findByName('kmip-agent/nas1/EMU-1');
    await keys.findByGroup('kmip-agent/nas1');
    await audit.close();
    const events = fileEvents(dir).map(({ time: _t, actor: _a, durationMs: _d, ...rest }) => rest);
    expect(events).toEqual([
      { operation: 'get', result: 'ok', keyUid: 'uid-1', server: 'kms1:5696' },
      { operation: 'get', result: 'error', code: 'KMIP_ITEM_NOT_FOUND', keyUid: 'uid-2', server: 'kms1:5696' },
      { operation: 'get', result: 'error', code: 'KMIP_CONNECTION_REFUSED', keyUid: 'uid-1' },
      {
        operation: 'register',
        result: 'ok',
        keyUid: 'uid-9',
        keyName: 'kmip-agent/nas1/EMU-1',
        server: 'kms1:5696',
      },
      { operation: 'locate', result: 'ok', count: 1, keyName: 'kmip-agent/nas1/EMU-1', server: 'kms1:5696' },
      { operation: 'locate', result: 'ok', count: 2, target: 'kmip-agent/nas1', server: 'kms1:5696' },
    ]);
    expect(readFileSync(join(dir, 'audit.log'), 'utf8')).not.toContain(KEY_HEX);
  });

  it('records unlocks as ok, refused by the drive, withheld by the lockout guard, or error, with durations', async () => {
    const dir = tempDir();
    const clock = new FakeClock();
    const audit = new AuditLog({ onError, dir, clock, actor: processActor('daemon') });
    const failures: Record<string, string> = {
      'EMU-2': 'DRIVE_PIN_REFUSED',
      'EMU-3': 'DRIVE_PIN_ALREADY_REFUSED',
      'EMU-4': 'DRIVE_NOT_FOUND',
    };
    const unlocker = auditedUnlocker(
      {
        async unlock(target) {
          await clock.advance(250);
          const code = failures[target.id];
          if (code) throw new KmipAgentError(`${target.id} failed`, code);
          return 'unlocked';
        },
      },
      audit,
      clock,
    );
    const target = (id: string): UnlockTarget => ({ id, kind: 'opal', device: `emu:/x/${id}`, keyUid: `uid-${id}` });
    expect(await unlocker.unlock(target('EMU-1'), Buffer.from(KEY))).toBe('unlocked');
    for (const id of ['EMU-2', 'EMU-3', 'EMU-4'])
      await expect(unlocker.unlock(target(id), Buffer.from(KEY))).rejects.toMatchObject({ code: failures[id] });
    await audit.close();
    expect(fileEvents(dir).map((e) => [e.target, e.kind, e.result, e.code, e.durationMs])).toEqual([
      ['EMU-1', 'opal', 'ok', undefined, 250],
      ['EMU-2', 'opal', 'refused', 'DRIVE_PIN_REFUSED', 250],
      ['EMU-3', 'opal', 'withheld', 'DRIVE_PIN_ALREADY_REFUSED', 250],
      ['EMU-4', 'opal', 'error', 'DRIVE_NOT_FOUND', 250],
    ]);
    expect(readFileSync(join(dir, 'audit.log'), 'utf8')).not.toContain(KEY_HEX);
  });

  it('tells subscribers of every event as it is recorded', async () => {
    const audit = new AuditLog({ onError, dir: tempDir(), clock: new FakeClock(), actor: processActor('cli') });
    const seen: string[] = [];
    audit.subscribe((e) => seen.push(`${e.operation}:${e.result}:${e.actor.kind}`));
    audit.record({ operation: 'enroll', result: 'ok', target: 'EMU-1' });
    expect(seen).toEqual(['enroll:ok:cli']);
    await audit.close();
  });
});

describe('ListAuditEvents over the API socket', () => {
  it('answers the events with since and limit, and refuses bad params with a typed error', async () => {
    const dir = tempDir();
    const clock = new FakeClock();
    const audit = new AuditLog({ onError, dir, clock, actor: processActor('daemon') });
    for (let i = 0; i < 5; i++) {
      audit.record({ operation: 'get', result: 'ok', keyUid: `uid-${i}` });
      await clock.advance(60_000);
    }
    const methods = agentMethods({
      status: () => {
        throw new Error('not used');
      },
      unlockNow: async () => undefined,
      enrollDrives: async () => [],
      auditEvents: (q) => audit.read(q),
    });
    const server = new ApiServer({ socketPath: join(dir, 'api.sock'), methods });
    await server.listen();
    try {
      const client = new ApiClient(join(dir, 'api.sock'));
      const all = await client.call<{ events: AuditEvent[] }>('ListAuditEvents');
      expect(all.events.map((e) => e.keyUid)).toEqual(['uid-0', 'uid-1', 'uid-2', 'uid-3', 'uid-4']);
      const some = await client.call<{ events: AuditEvent[] }>('ListAuditEvents', {
        since: '2026-12-01T10:02:00.000Z',
        limit: 2,
      });
      expect(some.events.map((e) => e.keyUid)).toEqual(['uid-3', 'uid-4']);
      await expect(client.call('ListAuditEvents', { since: 'yesterday' })).rejects.toMatchObject({
        code: 'API_INVALID_PARAMS',
      });
      await expect(client.call('ListAuditEvents', { limit: 0 })).rejects.toMatchObject({ code: 'API_INVALID_PARAMS' });
    } finally {
      await server.close();
      await audit.close();
    }
  });
});

describe('end to end: enrollment and unlock against PyKMIP, through the runtime and the CLI', () => {
  // The run's shared PyKMIP server (test/support/global-setup.ts).
  const kmip = inject('pykmip');

  it('audits register, enroll, get and unlock as the CLI, and neither the file nor the logs hold the key', async () => {
    const work = tempDir();
    const d = { config: join(work, 'etc'), state: join(work, 'state'), runtime: join(work, 'run') };
    mkdirSync(d.state, { recursive: true });
    const dirArgs = ['--config-dir', d.config, '--state-dir', d.state, '--runtime-dir', d.runtime];
    const setup = await runCliCaptured([
      '--json',
      'setup',
      '--appliance-id',
      'obs-audit',
      ...pykmipCliArgs(kmip),
      ...dirArgs,
    ]);
    expect(setup.code, setup.stdout + setup.stderr).toBe(0);
    const image = join(work, 'drive.img');
    const created = await runCliCaptured([
      'drive',
      'emulate',
      'create',
      `emu:${image}`,
      '--size',
      '16',
      '--serial',
      'AUD-1',
    ]);
    expect(created.code, created.stderr).toBe(0);

    const logged: string[] = [];
    const log = agentLogger({
      destination: new Writable({
        write(chunk: Buffer, _e, done) {
          logged.push(chunk.toString());
          done();
        },
      }) as unknown as { write(s: string): void },
      level: 'trace',
    });
    const runtime = await openAgentRuntime({ dirs: d, role: 'cli', log });
    let keyHex: string;
    try {
      const [enrolled] = await runtime.enrollDrives([`emu:${image}`]);
      const fetched = (await runtime.keys.fetch([enrolled!.keyUid])).get(enrolled!.keyUid);
      if (!fetched?.ok) throw new Error('the enrolled key is not on the server');
      keyHex = fetched.key.toString('hex');
      // A key handed to the logger by mistake, under a secret's name or not, never reaches the output.
      log.warn({ event: 'mistake', key: fetched.key, nested: { material: fetched.key, pin: keyHex } }, 'oops');
      fetched.key.fill(0);
      const outcomes = await runtime.agent.unlockNow({ all: true });
      expect(outcomes.map((o) => o.state)).toEqual(['unlocked']);
    } finally {
      await runtime.close();
    }

    const text = readFileSync(join(d.state, 'audit.log'), 'utf8');
    expect(keyHex).toMatch(/^[0-9a-f]{64}$/);
    expect(text).not.toContain(keyHex);
    expect(text.toLowerCase()).not.toContain(Buffer.from(keyHex, 'hex').toString('base64').toLowerCase());
    expect(logged.join('')).not.toContain(keyHex);
    expect(logged.join('')).toContain('"material":"[redacted]"');

    const audit = await runCliCaptured(['--json', 'audit', '--since', '1h', ...dirArgs]);
    expect(audit.code, audit.stderr).toBe(0);
    const { daemon, events } = audit.json<{ daemon: boolean; events: AuditEvent[] }>();
    expect(daemon).toBe(false);
    const summary = events.map((e) => `${e.operation}:${e.result}:${e.actor.kind}`);
    expect(summary).toEqual(['register:ok:cli', 'enroll:ok:cli', 'get:ok:cli', 'get:ok:cli', 'unlock:ok:cli']);
    const register = events[0]!;
    expect(register).toMatchObject({ keyName: 'kmip-agent/obs-audit/AUD-1', server: `127.0.0.1:${kmip.port}` });
    expect(events.find((e) => e.operation === 'unlock')).toMatchObject({
      target: 'AUD-1',
      kind: 'opal',
      keyUid: register.keyUid,
      device: `emu:${image}`,
    });
    const human = await runCliCaptured(['audit', '--limit', '1', ...dirArgs]);
    expect(human.stdout).toMatch(/unlock\s+ok\s+AUD-1 key \S+ \d+ ms {2}\(cli uid 0 pid \d+\)/);
    const bad = await runCliCaptured(['audit', '--since', 'last week', ...dirArgs]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('USAGE_SINCE');
    await runCliCaptured(['drive', 'emulate', 'destroy', `emu:${image}`, '--yes']);
  }, 120_000);
});
