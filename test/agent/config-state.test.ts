/**
 * The agent's directories, configuration file and state store: precedence of options and environment,
 * schema errors that name the field, durable writes (mode, previous generation, no torn file), the state
 * checksum, the refused-key memory (refused-keys.json) and the one-owner lock (held across processes, released by a crash).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { resolveDirs } from '../../src/agent/paths.js';
import {
  configJsonSchema,
  loadConfig,
  parseConfig,
  saveConfig,
  type AgentConfigInput,
} from '../../src/agent/config.js';
import { previousGeneration, writeDurably } from '../../src/agent/durable-file.js';
import { RefusedKeyFile } from '../../src/agent/refused-keys.js';
import { StateStore, encodeState, emptyState } from '../../src/agent/state.js';
import { acquireStateLock, LOCK_FILE } from '../../src/agent/state-lock.js';
import { addonPath } from '../../src/native/addon.js';

const dirs: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'kmip-agent-state-'));
  dirs.push(dir);
  return dir;
}
afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return (e as { code?: string }).code;
  }
  return undefined;
}

async function codeOfAsync(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
  } catch (e) {
    return (e as { code?: string }).code;
  }
  return undefined;
}

const minimalConfig = () =>
  ({
    schemaVersion: 2,
    applianceId: 'nas1',
    client: { cert: 'client.pem', key: 'client.key' },
    servers: { kms1: { host: 'kms1.example', ca: 'ca.pem' } },
    providers: { default: { servers: ['kms1'] } },
  }) satisfies AgentConfigInput;

/** The issues parseConfig names for `document`, as "path: message". */
function issuesOf(document: unknown): string[] {
  try {
    parseConfig(document);
  } catch (e) {
    const err = e as { code: string; details(): { issues: { path: string; message: string }[] } };
    expect(err.code).toBe('CONFIG_INVALID');
    return err.details().issues.map((i) => `${i.path}: ${i.message}`);
  }
  return [];
}

describe('agent directories', () => {
  it('uses the defaults with nothing set', () => {
    const d = resolveDirs({}, {});
    expect([d.config, d.state, d.runtime]).toEqual(['/etc/kmip-agent', '/var/lib/kmip-agent', '/run/kmip-agent']);
    expect(d.sources.state.from).toBe('default');
  });

  it('prefers options over KMIP_AGENT_* over the systemd variables', () => {
    const env = {
      KMIP_AGENT_STATE_DIR: '/tmp/own-state',
      STATE_DIRECTORY: '/var/lib/kmip-agent:/var/lib/other',
      CONFIGURATION_DIRECTORY: '/etc/kmip-agent-sd',
      RUNTIME_DIRECTORY: '/run/sd',
    };
    const d = resolveDirs({ runtime: '/tmp/opt-run' }, env);
    expect(d.runtime).toBe('/tmp/opt-run');
    expect(d.sources.runtime.from).toBe('option');
    expect(d.state).toBe('/tmp/own-state');
    expect(d.sources.state).toMatchObject({ from: 'environment', variable: 'KMIP_AGENT_STATE_DIR' });
    expect(d.config).toBe('/etc/kmip-agent-sd');
    expect(d.sources.config).toMatchObject({ from: 'systemd', variable: 'CONFIGURATION_DIRECTORY' });
  });

  it('takes the first of several systemd directories and ignores relative ones', () => {
    expect(resolveDirs({}, { STATE_DIRECTORY: '/a:/b' }).state).toBe('/a');
    expect(resolveDirs({}, { STATE_DIRECTORY: 'relative' }).state).toBe('/var/lib/kmip-agent');
  });
});

describe('configuration', () => {
  it('fills defaults and derives the documented schema', () => {
    const config = parseConfig(minimalConfig());
    expect(config.keyMode).toBe('direct');
    expect(config.servers.kms1).toMatchObject({ port: 5696, label: '', connectTimeoutMs: 10_000 });
    expect(config.client).toMatchObject({ enabled: true, expiryWarningDays: 30 });
    expect(config.boot).toEqual({
      deadlineSeconds: 120,
      retryCapSeconds: 60,
      refusedRetryCapSeconds: 1,
      concurrency: 16,
      triesReserve: 2,
    });
    const schema = configJsonSchema() as { properties: Record<string, unknown> };
    expect(Object.keys(schema.properties)).toEqual(
      expect.arrayContaining(['schemaVersion', 'applianceId', 'providers']),
    );
  });

  it('names every bad field', () => {
    const bad = minimalConfig() as Record<string, unknown>;
    bad.servers = { k: { host: 'k', port: 70000, ca: 'a' } };
    bad.providers = { default: { servers: ['k'] } };
    bad.boot = { concurrency: 0 };
    bad.colour = 'blue';
    try {
      parseConfig(bad);
      expect.unreachable();
    } catch (e) {
      const err = e as { code: string; message: string; details(): { issues: { path: string }[] } };
      expect(err.code).toBe('CONFIG_INVALID');
      const paths = err.details().issues.map((i) => i.path);
      expect(paths).toEqual(expect.arrayContaining(['servers.k.port', 'boot.concurrency', '(top level)']));
      expect(err.message).toContain('servers.k.port');
      expect(err.message).toContain('colour');
    }
  });

  it('requires a provider named default and a usable appliance id', () => {
    const noDefault = { ...minimalConfig(), providers: { other: minimalConfig().providers.default } };
    expect(codeOf(() => parseConfig(noDefault))).toBe('CONFIG_INVALID');
    expect(codeOf(() => parseConfig({ ...minimalConfig(), applianceId: 'a/b' }))).toBe('CONFIG_INVALID');
  });

  it('refuses a newer schema version with an upgrade hint', () => {
    expect(codeOf(() => parseConfig({ ...minimalConfig(), schemaVersion: 3 }))).toBe('CONFIG_VERSION_UNSUPPORTED');
  });

  it('names each bad key server or provider field', () => {
    const server = (fields: Record<string, unknown>) => ({
      ...minimalConfig(),
      servers: { kms1: { host: 'kms1.example', ca: 'ca.pem', ...fields } },
    });
    expect(issuesOf(server({ label: 'x'.repeat(51) }))).toEqual(['servers.kms1.label: at most 50 characters']);
    expect(issuesOf(server({ label: 'x'.repeat(50) }))).toEqual([]);
    expect(issuesOf(server({ port: 0 }))[0]).toMatch(/^servers\.kms1\.port: /);
    expect(issuesOf(server({ port: 70000 }))[0]).toMatch(/^servers\.kms1\.port: /);
    expect(issuesOf(server({ host: 'kms one' }))[0]).toMatch(/^servers\.kms1\.host: a hostname or an IP address/);
    expect(issuesOf(server({ host: '::1' }))).toEqual([]);
    expect(issuesOf(server({ pinnedSha256: 'ab:cd' }))[0]).toMatch(/^servers\.kms1\.pinnedSha256: /);
    const twice = {
      ...minimalConfig(),
      servers: { a: { host: 'kms.example', ca: 'ca.pem' }, b: { host: 'KMS.example', port: 5696, ca: 'ca.pem' } },
      providers: { default: { servers: ['a', 'a'] } },
    };
    expect(issuesOf(twice)).toEqual(
      expect.arrayContaining([
        'servers.b: the same server as "a" (kms.example:5696)',
        'providers.default.servers: a key server is listed twice',
      ]),
    );
    expect(issuesOf({ ...minimalConfig(), providers: { default: { servers: [] } } })).toEqual([
      'providers.default.servers: a provider needs at least one key server',
    ]);
    expect(issuesOf({ ...minimalConfig(), providers: { default: { servers: ['kms9'] } } })).toEqual([
      'providers.default.servers[0]: no key server named "kms9" (servers: kms1)',
    ]);
    expect(issuesOf({ ...minimalConfig(), client: { key: 'k' } })).toEqual([
      'client.cert: required while the client is enabled',
    ]);
  });

  it('lets a disabled client go without certificate and providers', () => {
    const reset = { schemaVersion: 2, applianceId: 'nas1', client: { enabled: false } };
    expect(parseConfig(reset).providers).toEqual({});
  });

  it('migrates a version-1 file: named servers with their CA, one client identity', () => {
    const v1 = {
      schemaVersion: 1,
      applianceId: 'nas1',
      providers: {
        default: {
          label: 'primary',
          servers: [{ host: 'kms1.example' }, { host: 'kms1.example', port: 5697, servername: 'kms' }],
          ca: 'ca.pem',
          cert: 'client.pem',
          key: 'client.key',
          timeoutMs: 5000,
          untested: true,
        },
        dr: { servers: [{ host: 'kms1.example' }], ca: 'ca.pem', cert: 'client.pem', key: 'client.key' },
      },
    };
    const config = parseConfig(v1);
    expect(config.schemaVersion).toBe(2);
    expect(config.client).toMatchObject({ enabled: true, cert: 'client.pem', key: 'client.key' });
    expect(config.servers).toEqual({
      'kms1.example': expect.objectContaining({
        host: 'kms1.example',
        port: 5696,
        ca: 'ca.pem',
        requestTimeoutMs: 5000,
      }),
      'kms1.example-5697': expect.objectContaining({ port: 5697, servername: 'kms' }),
    });
    expect(config.providers).toEqual({
      default: { label: 'primary', servers: ['kms1.example', 'kms1.example-5697'], untested: true },
      dr: { servers: ['kms1.example'] },
    });
    const ownCert = structuredClone(v1);
    ownCert.providers.dr.cert = 'other.pem';
    expect(codeOf(() => parseConfig(ownCert))).toBe('CONFIG_MIGRATION_FAILED');
  });

  it('saves 0600 with the previous version kept, and loads it back', async () => {
    const dir = tempDir();
    await saveConfig(dir, minimalConfig());
    await saveConfig(dir, { ...minimalConfig(), applianceId: 'nas2' });
    expect(statSync(join(dir, 'config.json')).mode & 0o777).toBe(0o600);
    expect((await loadConfig(dir)).applianceId).toBe('nas2');
    expect(JSON.parse(readFileSync(previousGeneration(join(dir, 'config.json')), 'utf8')).applianceId).toBe('nas1');
  });

  it('says what to run when there is no configuration, and names bad JSON', async () => {
    const dir = tempDir();
    expect(await codeOfAsync(loadConfig(dir))).toBe('CONFIG_MISSING');
    writeFileSync(join(dir, 'config.json'), '{"schemaVersion": 1,');
    expect(await codeOfAsync(loadConfig(dir))).toBe('CONFIG_INVALID_JSON');
  });
});

describe('durable writes', () => {
  it('replaces the previous generation only with a newer one: with the file gone, .prev stays', async () => {
    const path = join(tempDir(), 'state.json');
    await writeDurably(path, 'one', { keepPrevious: true });
    await writeDurably(path, 'two', { keepPrevious: true });
    rmSync(path);
    await writeDurably(path, 'three', { keepPrevious: true });
    expect(readFileSync(previousGeneration(path), 'utf8')).toBe('one');
    await writeDurably(path, 'four', { keepPrevious: true });
    expect(readFileSync(previousGeneration(path), 'utf8')).toBe('three');
    expect(readdirSync(dirname(path)).sort()).toEqual(['state.json', 'state.json.prev']);
  });

  it('leaves no temp file behind when the write fails', async () => {
    const dir = tempDir();
    const target = join(dir, 'missing-subdir', 'f.json');
    expect(await codeOfAsync(writeDurably(target, 'x'))).toBe('FILE_WRITE_FAILED');
    expect(readdirSync(dir)).toEqual([]);
  });

  it('writes mode 0600 even under a permissive umask', async () => {
    const dir = tempDir();
    const old = process.umask(0);
    try {
      await writeDurably(join(dir, 'f'), 'x');
    } finally {
      process.umask(old);
    }
    expect(statSync(join(dir, 'f')).mode & 0o777).toBe(0o600);
  });
});

describe('state store', () => {
  const fixedNow = () => new Date('2026-12-01T10:00:00.000Z');
  const seeded = (n: number) => Buffer.alloc(n, 7);

  it('starts fresh without a file, then keeps generations and a checksum', async () => {
    const dir = tempDir();
    const store = new StateStore({ dir, now: fixedNow, random: seeded });
    expect((await store.load()).fresh).toBe(true);
    await store.update((s) => {
      s.connections.push({ endpoint: 'kms1:5696', at: fixedNow().toISOString(), ok: true });
    });
    await store.update((s) => {
      s.connections[0]!.ok = false;
    });
    const file = JSON.parse(readFileSync(store.path, 'utf8')) as { generation: number; checksum: string };
    expect(file.generation).toBe(2);
    expect(file.checksum).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(statSync(store.path).mode & 0o777).toBe(0o600);
    const prev = JSON.parse(readFileSync(previousGeneration(store.path), 'utf8')) as { generation: number };
    expect(prev.generation).toBe(1);
    const again = new StateStore({ dir });
    const loaded = await again.load();
    expect(loaded.fresh).toBe(false);
    expect(loaded.body.connections[0]!.ok).toBe(false);
  });

  it('detects an edited, torn or empty file and never overwrites it', async () => {
    const dir = tempDir();
    const store = new StateStore({ dir, now: fixedNow, random: seeded });
    await store.load();
    await store.update((s) => {
      s.connections.push({ endpoint: 'kms1:5696', at: fixedNow().toISOString(), ok: true });
    });
    const good = readFileSync(store.path, 'utf8');
    const cases = [good.replace('"ok": true', '"ok": false'), good.slice(0, good.length / 2), ''];
    for (const text of cases) {
      writeFileSync(store.path, text);
      const fresh = new StateStore({ dir });
      expect(await codeOfAsync(fresh.load())).toBe('STATE_CORRUPT');
      expect(readFileSync(store.path, 'utf8')).toBe(text);
    }
    const aside = await new StateStore({ dir, now: fixedNow }).quarantine();
    expect(existsSync(aside)).toBe(true);
    expect(existsSync(store.path)).toBe(false);
  });

  it('refuses content that passes the checksum but not the schema', async () => {
    const dir = tempDir();
    const body = { ...emptyState(seeded), drives: [{ id: 'x' }] } as unknown as ReturnType<typeof emptyState>;
    // Mode 0600 as the agent writes it (the run's hygiene scan checks every state file it finds).
    writeFileSync(join(dir, 'state.json'), encodeState(body, 1, fixedNow()), { mode: 0o600 });
    expect(await codeOfAsync(new StateStore({ dir }).load())).toBe('STATE_CORRUPT');
  });

  it('remembers refused keys by drive identity and authority without storing the key', async () => {
    const dir = tempDir();
    const memory = new RefusedKeyFile({ dir, now: fixedNow });
    const key = Buffer.from('a'.repeat(64), 'hex');
    await memory.remember('WWN-5000c500a1b2c3d4', 'Admin1', 'none', key);
    expect(await memory.isRefused('WWN-5000c500a1b2c3d4', 'Admin1', 'none', key)).toBe(true);
    expect(await memory.isRefused('WWN-5000c500a1b2c3d4', 'User1', 'none', key)).toBe(false);
    expect(await memory.isRefused('WWN-5000c500a1b2c3d4', 'Admin1', 'sedutil', key)).toBe(false);
    expect(await memory.isRefused('WWN-other', 'Admin1', 'none', key)).toBe(false);
    expect(await memory.isRefused('WWN-5000c500a1b2c3d4', 'Admin1', 'none', Buffer.alloc(32, 1))).toBe(false);
    expect(readFileSync(memory.path, 'utf8')).not.toContain(key.toString('hex'));
    expect(statSync(memory.path).mode & 0o777).toBe(0o600);
    // Another process (a later boot) sees the same memory; the state file holds none of it.
    const later = new RefusedKeyFile({ dir });
    expect(await later.isRefused('WWN-5000c500a1b2c3d4', 'Admin1', 'none', key)).toBe(true);
    expect(await later.forget('WWN-5000c500a1b2c3d4')).toBe(1);
    expect(await later.isRefused('WWN-5000c500a1b2c3d4', 'Admin1', 'none', key)).toBe(false);
    expect(await memory.isRefused('WWN-5000c500a1b2c3d4', 'Admin1', 'none', key)).toBe(false);
  });

  it('the refused-key memory fails closed on a file it cannot trust, and keeps it', async () => {
    const dir = tempDir();
    const memory = new RefusedKeyFile({ dir });
    writeFileSync(memory.path, '{"schemaVersion":1,"salt":"zz"', { mode: 0o600 });
    expect(await codeOfAsync(memory.isRefused('WWN-1', 'Admin1', 'none', Buffer.from('k')))).toBe(
      'REFUSED_KEYS_CORRUPT',
    );
    expect(await codeOfAsync(memory.remember('WWN-1', 'Admin1', 'none', Buffer.from('k')))).toBe(
      'REFUSED_KEYS_CORRUPT',
    );
    expect(readFileSync(memory.path, 'utf8')).toBe('{"schemaVersion":1,"salt":"zz"');
    // What could not be written is still remembered by this process; anything else is still refused.
    expect(await memory.isRefused('WWN-1', 'Admin1', 'none', Buffer.from('k'))).toBe(true);
    expect(await codeOfAsync(memory.isRefused('WWN-1', 'Admin1', 'none', Buffer.from('j')))).toBe(
      'REFUSED_KEYS_CORRUPT',
    );
  });

  it('a failed update changes nothing', async () => {
    const dir = tempDir();
    const store = new StateStore({ dir, now: fixedNow });
    await store.load();
    await expect(
      store.update((s) => {
        (s.connections as unknown[]).push({ endpoint: 1 });
      }),
    ).rejects.toThrow();
    expect(store.snapshot().connections).toEqual([]);
    expect(existsSync(store.path)).toBe(false);
  });
});

describe('state lock', () => {
  it('refuses a second owner and names the first', async () => {
    const dir = tempDir();
    const lock = await acquireStateLock(dir, 'daemon');
    try {
      await expect(acquireStateLock(dir, 'cli')).rejects.toMatchObject({
        code: 'STATE_LOCKED',
        message: expect.stringContaining(`daemon (pid ${process.pid})`),
      });
    } finally {
      await lock.release();
    }
    const again = await acquireStateLock(dir, 'cli');
    await again.release();
    expect(statSync(join(dir, LOCK_FILE)).mode & 0o777).toBe(0o600);
  });

  it('is held across processes and released when the holder is killed', async () => {
    const dir = tempDir();
    const holder = spawn(process.execPath, [
      '-e',
      `const a = require(${JSON.stringify(addonPath())});
       const fs = require('fs');
       const fd = fs.openSync(${JSON.stringify(join(dir, LOCK_FILE))}, 'a+');
       if (!a.fileLock.tryLock(fd)) process.exit(3);
       fs.writeSync(fd, JSON.stringify({ pid: process.pid, role: 'daemon' }));
       console.log('locked');
       setInterval(() => {}, 1000);`,
    ]);
    await new Promise<void>((resolve, reject) => {
      holder.stdout.once('data', () => resolve());
      holder.once('exit', (code) => reject(new Error(`holder exited ${code}`)));
    });
    // The holder made the file with its umask's mode; whoever opens it next makes it 0600 again.
    expect(statSync(join(dir, LOCK_FILE)).mode & 0o077).not.toBe(0);
    await expect(acquireStateLock(dir, 'cli')).rejects.toMatchObject({ code: 'STATE_LOCKED' });
    expect(statSync(join(dir, LOCK_FILE)).mode & 0o777).toBe(0o600);
    const exited = new Promise((r) => holder.once('exit', r));
    holder.kill('SIGKILL');
    await exited;
    const lock = await acquireStateLock(dir, 'cli');
    await lock.release();
  });
});
