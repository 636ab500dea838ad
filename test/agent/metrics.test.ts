/**
 * The agent's Prometheus metrics: prom-client's real exposition text, parsed back; served at GET /metrics on
 * the real API socket (curl --unix-socket); the node_exporter textfile written atomically on changes and on a
 * FakeClock's interval. The end-to-end test runs the real daemon (the CLI, as systemd starts it) against
 * PyKMIP with an emulated drive: after READY, /metrics shows the drive unlocked, the KMIP requests of the
 * boot and the unlock duration; the audit trail shows the boot as the daemon's and an API enrollment as the
 * API caller's.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { register as globalRegistry } from 'prom-client';
import { afterEach, describe, expect, inject, it } from 'vitest';
import type { AuditEvent } from '../../src/agent/audit.js';
import { saveConfig, loadConfig } from '../../src/agent/config.js';
import { FAULT_DEFINITIONS } from '../../src/agent/faults.js';
import { luksFormat } from '../luks/images.js';
import { AgentMetrics, TextfileExporter, TEXTFILE_NAME, type MetricsStatus } from '../../src/agent/metrics.js';
import { ApiClient } from '../../src/api/client.js';
import { ApiServer } from '../../src/api/server.js';
import { packageRoot } from '../../src/native/addon.js';
import { runCliCaptured } from '../support/cli.js';
import { FakeClock } from '../support/fake-clock.js';
import { NotifyReceiver } from '../support/notify-receiver.js';
import { pykmipCliArgs } from '../support/pykmip.js';
import { requestKey } from '../keysocket/cryptsetup-client.js';

/** curl runs beside the event loop: the API server under test answers from this process. */
const curl = async (args: string[]) => {
  const { stdout } = await promisify(execFile)('curl', ['-sS', ...args], { encoding: 'utf8', timeout: 20_000 });
  return stdout;
};

const dirs: string[] = [];
const tempDir = () => {
  const d = mkdtempSync(join(tmpdir(), 'kmip-agent-metrics-'));
  dirs.push(d);
  return d;
};
afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses Prometheus text exposition (0.0.4): samples, and the TYPE of each family. */
function parseExposition(text: string): { samples: Sample[]; types: Map<string, string> } {
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (!line) continue;
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type) types.set(type[1]!, type[2]!);
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`not an exposition line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    samples.push({ name: m[1]!, labels, value: m[3] === '+Inf' ? Infinity : Number(m[3]) });
  }
  return { samples, types };
}

/** The value of the one sample named `name` whose labels include `labels`. */
function value(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  const found = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  if (found.length > 1) throw new Error(`${name} ${JSON.stringify(labels)} matches ${found.length} samples`);
  return found[0]?.value;
}

function fedMetrics(): { metrics: AgentMetrics; status: MetricsStatus } {
  const metrics = new AgentMetrics({ version: '9.8.7' });
  const status: MetricsStatus = {
    ready: true,
    drives: [
      { kind: 'opal', state: 'unlocked' },
      { kind: 'opal', state: 'unlocked' },
      { kind: 'opal', state: 'key-not-found' },
      { kind: 'luks', state: 'served' },
    ],
    faults: [{ code: 'KeyNotFound' }],
  };
  metrics.bindStatus(() => status);
  metrics.observeKmipAttempt({
    endpoint: 'kms1:5696',
    outcome: 'failed',
    code: 'KMIP_CONNECTION_REFUSED',
    latencyMs: 3,
  });
  metrics.observeKmipAttempt({ endpoint: 'kms2:5696', outcome: 'answered', latencyMs: 40 });
  metrics.observeKmipAttempt({ endpoint: 'kms2:5696', outcome: 'answered', latencyMs: 2000 });
  const actor = { kind: 'daemon' as const, pid: 1, uid: 0 };
  const time = '2026-12-01T10:00:00.000Z';
  metrics.observeAudit({ time, actor, operation: 'unlock', kind: 'opal', result: 'ok', durationMs: 80 });
  metrics.observeAudit({ time, actor, operation: 'unlock', kind: 'opal', result: 'ok', durationMs: 700 });
  metrics.observeAudit({ time, actor, operation: 'unlock', kind: 'opal', result: 'refused', durationMs: 30 });
  metrics.observeAudit({ time, actor, operation: 'get', result: 'ok' });
  metrics.markReady(4200);
  return { metrics, status };
}

describe('the metrics text', () => {
  it('exposes unlocks, drives by state, faults by code, KMIP per server, READY and build info', async () => {
    const { metrics, status } = fedMetrics();
    const { samples, types } = parseExposition(await metrics.text());
    expect(value(samples, 'kmip_agent_build_info', { version: '9.8.7', node: process.version })).toBe(1);
    expect(value(samples, 'kmip_agent_ready')).toBe(1);
    expect(value(samples, 'kmip_agent_boot_duration_seconds')).toBe(4.2);
    expect(value(samples, 'kmip_agent_drives', { kind: 'opal', state: 'unlocked' })).toBe(2);
    expect(value(samples, 'kmip_agent_drives', { kind: 'opal', state: 'key-not-found' })).toBe(1);
    expect(value(samples, 'kmip_agent_drives', { kind: 'luks', state: 'served' })).toBe(1);
    expect(value(samples, 'kmip_agent_faults', { code: 'KeyNotFound', severity: 'error' })).toBe(1);
    expect(value(samples, 'kmip_agent_faults', { code: 'KmipServerFault', severity: 'critical' })).toBe(0);
    // Every fault code has a series, raised or not (0), so alerts can rely on it.
    expect(samples.filter((s) => s.name === 'kmip_agent_faults')).toHaveLength(Object.keys(FAULT_DEFINITIONS).length);
    expect(value(samples, 'kmip_agent_kmip_requests_total', { server: 'kms1:5696', outcome: 'failed' })).toBe(1);
    expect(value(samples, 'kmip_agent_kmip_requests_total', { server: 'kms2:5696', outcome: 'answered' })).toBe(2);
    expect(
      value(samples, 'kmip_agent_kmip_errors_total', { server: 'kms1:5696', code: 'KMIP_CONNECTION_REFUSED' }),
    ).toBe(1);
    expect(value(samples, 'kmip_agent_kmip_errors_total', { server: 'kms2:5696' })).toBeUndefined();
    expect(value(samples, 'kmip_agent_kmip_request_duration_seconds_count', { server: 'kms2:5696' })).toBe(2);
    expect(value(samples, 'kmip_agent_kmip_request_duration_seconds_sum', { server: 'kms2:5696' })).toBeCloseTo(2.04);
    expect(value(samples, 'kmip_agent_kmip_request_duration_seconds_bucket', { server: 'kms2:5696', le: '0.05' })).toBe(
      1,
    );
    expect(value(samples, 'kmip_agent_unlock_duration_seconds_count', { kind: 'opal', result: 'ok' })).toBe(2);
    expect(value(samples, 'kmip_agent_unlock_duration_seconds_bucket', { kind: 'opal', result: 'ok', le: '0.1' })).toBe(
      1,
    );
    expect(value(samples, 'kmip_agent_unlock_duration_seconds_bucket', { kind: 'opal', result: 'ok', le: '1' })).toBe(
      2,
    );
    expect(value(samples, 'kmip_agent_unlock_duration_seconds_count', { kind: 'opal', result: 'refused' })).toBe(1);
    expect(value(samples, 'kmip_agent_key_operations_total', { operation: 'unlock', result: 'ok' })).toBe(2);
    expect(value(samples, 'kmip_agent_key_operations_total', { operation: 'get', result: 'ok' })).toBe(1);
    expect(types.get('kmip_agent_unlock_duration_seconds')).toBe('histogram');
    expect(types.get('kmip_agent_kmip_requests_total') ?? types.get('kmip_agent_kmip_requests')).toBe('counter');
    expect(types.get('kmip_agent_drives')).toBe('gauge');

    // Drive states are read at scrape time: a state that went away leaves no stale series.
    status.drives = [{ kind: 'opal', state: 'unlocked' }];
    status.ready = false;
    const again = parseExposition(await metrics.text()).samples;
    expect(value(again, 'kmip_agent_drives', { kind: 'opal', state: 'key-not-found' })).toBeUndefined();
    expect(value(again, 'kmip_agent_drives', { kind: 'opal', state: 'unlocked' })).toBe(1);
    expect(value(again, 'kmip_agent_ready')).toBe(0);
  });

  it('uses a registry of its own: two agents in one process coexist and the global registry stays empty', async () => {
    const a = new AgentMetrics({ version: '1' });
    const b = new AgentMetrics({ version: '2' });
    a.observeKmipAttempt({ endpoint: 'x:1', outcome: 'answered', latencyMs: 1 });
    expect(value(parseExposition(await b.text()).samples, 'kmip_agent_kmip_requests_total', { server: 'x:1' })).toBe(
      undefined,
    );
    expect(await globalRegistry.metrics()).not.toContain('kmip_agent_');
  });
});

describe('GET /metrics on the API socket', () => {
  it('serves the exposition text to curl --unix-socket and to the API client', async () => {
    const dir = tempDir();
    const { metrics } = fedMetrics();
    const socketPath = join(dir, 'api.sock');
    const server = new ApiServer({ socketPath, methods: {}, metrics: () => metrics.text() });
    await server.listen();
    try {
      const [head, body] = (await curl(['-i', '--unix-socket', socketPath, 'http://localhost/metrics'])).split(
        '\r\n\r\n',
      );
      expect(head).toMatch(/^HTTP\/1\.1 200/);
      expect(head).toMatch(/content-type: text\/plain; version=0\.0\.4/i);
      const { samples } = parseExposition(body!);
      expect(value(samples, 'kmip_agent_drives', { kind: 'opal', state: 'unlocked' })).toBe(2);
      expect(await new ApiClient(socketPath).metrics()).toBe(body);
    } finally {
      await server.close();
    }
  });
});

describe('the node_exporter textfile', () => {
  it('is written atomically (0644) at start, on changes and on every interval, and not after stop', async () => {
    const dir = tempDir();
    const clock = new FakeClock();
    const { metrics, status } = fedMetrics();
    const errors: Error[] = [];
    const exporter = new TextfileExporter({ dir, metrics, clock, intervalMs: 15_000, onError: (e) => errors.push(e) });
    const path = join(dir, TEXTFILE_NAME);
    exporter.start();
    await exporter.flush();
    expect(exporter.writes).toBe(1);
    expect(statSync(path).mode & 0o777).toBe(0o644);
    const firstInode = statSync(path).ino;
    expect(value(parseExposition(readFileSync(path, 'utf8')).samples, 'kmip_agent_ready')).toBe(1);

    // A change is written at once; the file is replaced by rename (a new inode), never rewritten in place.
    status.ready = false;
    exporter.changed();
    await exporter.flush();
    expect(exporter.writes).toBe(2);
    expect(statSync(path).ino).not.toBe(firstInode);
    expect(value(parseExposition(readFileSync(path, 'utf8')).samples, 'kmip_agent_ready')).toBe(0);

    // A burst of changes while a write is under way is coalesced into one more write.
    exporter.changed();
    exporter.changed();
    exporter.changed();
    await exporter.flush();
    expect(exporter.writes).toBe(4);

    await clock.advance(14_999);
    await exporter.flush();
    expect(exporter.writes).toBe(4);
    await clock.advance(1);
    await exporter.flush();
    expect(exporter.writes).toBe(5);
    await clock.advance(30_000);
    await exporter.flush();
    expect(exporter.writes).toBe(7);

    await exporter.stop();
    exporter.changed();
    await clock.advance(60_000);
    expect(exporter.writes).toBe(7);
    expect(clock.waiting).toBe(0);
    // Only the .prom file: no temp file is ever left where node_exporter looks.
    expect(readdirSync(dir)).toEqual([TEXTFILE_NAME]);
    expect(errors).toEqual([]);
  });

  it('reports a directory it cannot write to and keeps going', async () => {
    const clock = new FakeClock();
    const errors: Error[] = [];
    const exporter = new TextfileExporter({
      dir: join(tempDir(), 'missing'),
      metrics: new AgentMetrics({ version: '1' }),
      clock,
      onError: (e) => errors.push(e),
    });
    exporter.start();
    await exporter.flush();
    expect(errors.map((e) => (e as { code?: string }).code)).toEqual(['FILE_WRITE_FAILED']);
    await exporter.stop();
  });
});

describe('end to end: the daemon against PyKMIP', () => {
  // The run's shared PyKMIP server (test/support/global-setup.ts).
  const kmip = inject('pykmip');

  it('serves /metrics and the audit trail after READY, and writes the textfile', async () => {
    const work = tempDir();
    const d = { config: join(work, 'etc'), state: join(work, 'state'), runtime: join(work, 'run') };
    const textfileDir = join(work, 'textfile');
    mkdirSync(textfileDir);
    mkdirSync(d.state, { recursive: true });
    const dirArgs = ['--config-dir', d.config, '--state-dir', d.state, '--runtime-dir', d.runtime];
    const cli = async (args: string[]) => {
      const run = await runCliCaptured([...args, ...dirArgs]);
      expect(run.code, `${args.join(' ')}: ${run.stdout}${run.stderr}`).toBe(0);
      return run;
    };
    await cli(['setup', '--appliance-id', 'obs-metrics', ...pykmipCliArgs(kmip)]);
    await saveConfig(d.config, {
      ...(await loadConfig(d.config)),
      metrics: { textfileDir, textfileIntervalSeconds: 3600 },
    });
    const images = [join(work, 'a.img'), join(work, 'b.img')];
    for (const [i, image] of images.entries())
      expect(
        (await runCliCaptured(['drive', 'emulate', 'create', `emu:${image}`, '--size', '16', '--serial', `MET-${i}`]))
          .code,
      ).toBe(0);
    await cli(['drive', 'enroll', `emu:${images[0]}`]);
    expect((await runCliCaptured(['drive', 'emulate', 'power-cycle', `emu:${images[0]}`])).code).toBe(0);
    // A LUKS2 volume whose key the daemon serves to systemd-cryptsetup on the key socket.
    const volume = join(work, 'vol.img');
    const passphrase = randomBytes(32);
    luksFormat(volume, passphrase);
    const enrolledVolume = await runCliCaptured(
      ['volume', 'enroll', volume, '--name', 'obs-data', '--key-file', '-', '--key-socket', ...dirArgs],
      passphrase,
    );
    expect(enrolledVolume.code, enrolledVolume.stderr).toBe(0);

    const notifyPath = join(work, 'notify.sock');
    const receiver = await NotifyReceiver.start(notifyPath);
    let daemon: ChildProcess | undefined;
    let stdout = '';
    try {
      // The daemon as systemd runs it: the built CLI (npx tsc -p tsconfig.json first).
      daemon = spawn(process.execPath, [join(packageRoot(), 'dist/kmip-agent.mjs'), 'daemon', ...dirArgs], {
        env: { ...process.env, NOTIFY_SOCKET: notifyPath },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      daemon.stdout!.on('data', (c: Buffer) => (stdout += c.toString()));
      daemon.stderr!.on('data', (c: Buffer) => (stdout += c.toString()));
      await receiver.waitForMessage((m) => m.split('\n').includes('READY=1'), 60_000);

      const socketPath = join(d.runtime, 'api.sock');
      const { samples } = parseExposition(await curl(['--unix-socket', socketPath, 'http://localhost/metrics']));
      const server = `127.0.0.1:${kmip.port}`;
      expect(value(samples, 'kmip_agent_ready')).toBe(1);
      expect(value(samples, 'kmip_agent_drives', { kind: 'opal', state: 'unlocked' })).toBe(1);
      expect(value(samples, 'kmip_agent_drives', { kind: 'luks', state: 'served' })).toBe(1);
      expect(value(samples, 'kmip_agent_unlock_duration_seconds_count', { kind: 'opal', result: 'ok' })).toBe(1);
      expect(value(samples, 'kmip_agent_kmip_requests_total', { server, outcome: 'answered' })).toBeGreaterThanOrEqual(
        1,
      );
      expect(value(samples, 'kmip_agent_boot_duration_seconds')).toBeGreaterThan(0);
      expect(value(samples, 'kmip_agent_faults', { code: 'KmipServerFault' })).toBe(0);

      // The second drive is enrolled through the daemon: its key operations are the API caller's.
      // systemd-cryptsetup asks for the volume's key: a hand-out by the key socket, as that peer's.
      const served = await requestKey(join(d.runtime, 'luks.sock'), 'obs-data');
      expect(served.key).toHaveLength(32);
      const servedHex = served.key!.toString('hex');

      await cli(['drive', 'enroll', `emu:${images[1]}`]);
      const client = new ApiClient(socketPath);
      const { events } = await client.call<{ events: AuditEvent[] }>('ListAuditEvents', {});
      const summary = events.map((e) => `${e.operation}:${e.result}:${e.actor.kind}`);
      expect(summary.slice(0, 4)).toEqual(['register:ok:cli', 'enroll:ok:cli', 'register:ok:cli', 'enroll:ok:cli']);
      // The boot: one batched Get of both keys, then both unlocks (in parallel: either order).
      expect(summary.slice(4, 8).sort()).toEqual([
        'get:ok:daemon',
        'get:ok:daemon',
        'unlock:ok:daemon',
        'unlock:ok:daemon',
      ]);
      expect(summary.slice(8)).toEqual([
        'get:ok:key-socket',
        'serve:ok:key-socket',
        'register:ok:api',
        'enroll:ok:api',
      ]);
      expect(events[9]).toMatchObject({ target: events[3]!.target, actor: { kind: 'key-socket', pid: served.pid } });
      expect(events.at(-1)!.actor).toEqual({ kind: 'api', pid: process.pid, uid: 0 });
      expect(readFileSync(join(d.state, 'audit.log'), 'utf8')).not.toContain(servedHex);
      // `kmip-agent audit` asks the running daemon.
      const viaCli = (await cli(['--json', 'audit', '--limit', '2'])).json<{ daemon: boolean; events: AuditEvent[] }>();
      expect(viaCli.daemon).toBe(true);
      expect(viaCli.events).toEqual(events.slice(-2));
      expect(events.find((e) => e.operation === 'get')!.server).toBe(server);

      const after = parseExposition(await client.metrics()).samples;
      expect(value(after, 'kmip_agent_key_operations_total', { operation: 'enroll', result: 'ok' })).toBe(1);
      const textfile = readFileSync(join(textfileDir, TEXTFILE_NAME), 'utf8');
      expect(statSync(join(textfileDir, TEXTFILE_NAME)).mode & 0o777).toBe(0o644);
      expect(value(parseExposition(textfile).samples, 'kmip_agent_ready')).toBe(1);
      expect(value(parseExposition(textfile).samples, 'kmip_agent_drives', { kind: 'opal', state: 'unlocked' })).toBe(
        1,
      );

      const exited = new Promise<number | null>((resolve) => daemon!.once('exit', (code) => resolve(code)));
      daemon.kill('SIGTERM');
      expect(await exited).toBe(0);
      daemon = undefined;
      // Every log line is JSON (not under journald: no priority prefix) and none carries key bytes.
      const lines = stdout.trim().split('\n');
      for (const l of lines) expect(() => JSON.parse(l) as unknown, l).not.toThrow();
      expect(stdout).not.toContain(servedHex);
      expect(lines.some((l) => (JSON.parse(l) as { event?: string }).event === 'ready')).toBe(true);
    } finally {
      daemon?.kill('SIGKILL');
      receiver.stop();
      for (const image of images) await runCliCaptured(['drive', 'emulate', 'destroy', `emu:${image}`, '--yes']);
    }
  }, 180_000);
});
