/**
 * Key servers and key providers administered with the real CLI against the real PyKMIP server: create,
 * get, list and test (the last connection result kept and shown), failover order (a dead first server is
 * reported and unlock uses the live one), refusals of what enrolled drives use, a wrong CA named as a TLS
 * error, trust on first use followed by a changed server certificate, bad input refused with nothing
 * saved, and a running daemon taking a new key server without a restart.
 */
import { spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createServer as createTlsServer } from 'node:tls';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { ApiClient } from '../../src/api/client.js';
import { powerCycleEmulatedDrive } from '../../src/drives/index.js';
import { makeTestPki, TestCa } from '../support/certs.js';
import { Appliance, cli, ok, running } from '../support/daemon-harness.js';
import { NotifyReceiver } from '../support/notify-receiver.js';
import { freePort, pykmipCliArgs, startPykmip, type PykmipServer } from '../support/pykmip.js';
import { CLI, TestAppliance } from './appliance.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const d of running) d.kill();
  running.clear();
  for (const c of cleanups.splice(0).reverse()) await c();
});

function appliance(): TestAppliance {
  const a = new TestAppliance();
  cleanups.push(() => a.close());
  a.setup();
  return a;
}

const configOf = (a: TestAppliance) => readFileSync(join(a.dirs.config, 'config.json'), 'utf8');

describe('kmip-agent server', () => {
  it('creates a server (CA copied 0644), tests it and shows the last result in get and list', () => {
    const a = appliance();
    const s = a.server;
    const created = a.ok([
      'server',
      'create',
      'kms2',
      '--host',
      'localhost',
      '--port',
      String(s.port),
      '--servername',
      'localhost',
      '--ca',
      s.ca,
      '--label',
      'second door',
      '--request-timeout',
      '20000',
    ]) as { server: Record<string, unknown> };
    expect(created.server).toMatchObject({ name: 'kms2', ca: 'servers/kms2.ca.pem', label: 'second door' });
    expect(created.server.lastConnection).toBeUndefined();
    expect(statSync(join(a.dirs.config, 'servers', 'kms2.ca.pem')).mode & 0o777).toBe(0o644);
    expect(readFileSync(join(a.dirs.config, 'servers', 'kms2.ca.pem'), 'utf8')).toBe(readFileSync(s.ca, 'utf8'));

    const tested = a.ok(['server', 'test', 'kms2']) as { test: Record<string, unknown> };
    expect(tested.test).toMatchObject({ server: 'kms2', ok: true, vendor: expect.any(String) });
    expect(tested.test.kmipVersions).toEqual(expect.arrayContaining(['1.2']));

    const got = a.ok(['server', 'get', 'kms2']) as { server: { lastConnection: Record<string, unknown> } };
    expect(got.server.lastConnection).toMatchObject({
      ok: true,
      server: 'kms2',
      vendor: tested.test.vendor,
      kmipVersions: tested.test.kmipVersions,
      latencyMs: expect.any(Number),
      at: expect.any(String),
    });
    const listed = a.ok(['server', 'list']) as { servers: { name: string; lastConnection?: unknown }[] };
    expect(listed.servers.map((x) => x.name).sort()).toEqual([s.host, 'kms2'].sort());
    // The table shows the last result too.
    const table = a.cli(['server', 'list']);
    expect(table.code).toBe(0);
  });

  it('a wrong CA is a named TLS error in the test result, kept as the last result', () => {
    const a = appliance();
    const other = makeTestPki(mkdtempSync(join(tmpdir(), 'kmip-agent-otherca-')));
    cleanups.push(() => rmSync(other.ca.dir, { recursive: true, force: true }));
    a.ok(['server', 'modify', a.server.host, '--ca', other.ca.cert]);
    const r = a.cli(['server', 'test', a.server.host]);
    expect(r.code).toBe(1);
    expect(r.json).toMatchObject({ test: { ok: false, error: { code: 'KMIP_TLS_UNTRUSTED' } } });
    const got = a.ok(['server', 'get', a.server.host]);
    expect(got).toMatchObject({ server: { lastConnection: { ok: false, error: { code: 'KMIP_TLS_UNTRUSTED' } } } });
  });

  it('refuses bad input naming the field, exit 2, nothing saved', async () => {
    const a = appliance();
    const s = a.server;
    const before = configOf(a);
    const garbage = join(a.work, 'garbage.pem');
    const { writeFileSync } = await import('node:fs');
    writeFileSync(garbage, '-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n');
    const base = ['server', 'create', 'bad', '--ca', s.ca];
    const cases: [string[], RegExp][] = [
      [[...base, '--host', 'kms.example', '--label', 'x'.repeat(51)], /servers\.bad\.label: at most 50 characters/],
      [[...base, '--host', 'kms.example', '--port', '0'], /servers\.bad\.port/],
      [[...base, '--host', 'kms.example', '--port', '70000'], /servers\.bad\.port/],
      [[...base, '--host', 'kms one'], /servers\.bad\.host: a hostname or an IP address/],
      [[...base, '--host', s.host, '--port', String(s.port)], /servers\.bad: the same server as/],
      [['server', 'create', 'bad', '--host', 'kms.example', '--ca', garbage], /servers\.bad\.ca: certificate 1/],
      [
        ['server', 'create', 'bad', '--host', 'kms.example', '--ca', s.clientKey],
        /servers\.bad\.ca: holds a private key/,
      ],
      [['provider', 'create', 'empty'], /providers\.empty\.servers: a provider needs at least one key server/],
      [['provider', 'create', 'twice', '--server', s.host, '--server', s.host], /a key server is listed twice/],
      [['server', 'modify', s.host, '--label', 'y'.repeat(51)], /label: at most 50 characters/],
    ];
    for (const [args, message] of cases) {
      const r = a.cli(args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(JSON.stringify(r.json), args.join(' ')).toMatch(message);
    }
    expect(configOf(a)).toBe(before);
    expect(() => statSync(join(a.dirs.config, 'servers', 'bad.ca.pem'))).toThrow();
  });
});

describe('kmip-agent provider', () => {
  it('a dead first server and a live second: test reports both, unlock uses the live one, deletes refused while a drive uses it', async () => {
    const a = appliance();
    const dead = await freePort();
    a.ok(['server', 'create', 'dead', '--host', '127.0.0.1', '--port', String(dead), '--ca', a.server.ca]);
    a.ok(['provider', 'add-server', 'default', 'dead', '--position', '0']);
    const provider = a.ok(['provider', 'get', 'default']) as { provider: { servers: { name: string }[] } };
    expect(provider.provider.servers.map((s) => s.name)).toEqual(['dead', a.server.host]);

    const test = a.ok(['provider', 'test', 'default']) as { servers: Record<string, unknown>[] };
    expect(test.servers).toEqual([
      expect.objectContaining({
        server: 'dead',
        ok: false,
        error: expect.objectContaining({ code: 'KMIP_CONNECTION_REFUSED' }),
      }),
      expect.objectContaining({ server: a.server.host, ok: true }),
    ]);

    const device = await a.emulatedDrive('KS-FAILOVER');
    const enrolled = a.ok(['drive', 'enroll', device]) as { enrolled: { id: string }[] };
    const id = enrolled.enrolled[0]!.id;
    await powerCycleEmulatedDrive(device.slice(4));
    const unlocked = a.ok(['unlock']) as { drives: { id: string; state: string }[] };
    expect(unlocked.drives.find((d) => d.id === id)?.state).toBe('unlocked');

    const before = configOf(a);
    const server = a.cli(['server', 'delete', a.server.host, '--yes']);
    expect(server.code).toBe(1);
    expect(server.json).toMatchObject({ error: { code: 'KEY_SERVER_IN_USE' } });
    expect(JSON.stringify(server.json)).toContain(id);
    const group = a.cli(['provider', 'delete', 'default', '--yes']);
    expect(group.json).toMatchObject({ error: { code: 'KEY_PROVIDER_IN_USE' } });
    expect(JSON.stringify(group.json)).toContain(id);
    expect(a.cli(['provider', 'delete', 'default']).json).toMatchObject({ error: { code: 'USAGE_CONFIRM' } });
    expect(configOf(a)).toBe(before);
    // Out of the provider the drive uses, the dead server goes, and leaves the unused provider's order.
    a.ok(['provider', 'create', 'spare', '--server', 'dead', '--server', a.server.host]);
    a.ok(['provider', 'remove-server', 'default', 'dead']);
    const last = a.cli(['provider', 'remove-server', 'default', a.server.host]);
    expect(last.json).toMatchObject({ error: { code: 'KEY_SERVER_IN_USE' } });
    const deleted = a.ok(['server', 'delete', 'dead', '--yes']);
    expect(deleted).toMatchObject({ removedFrom: ['spare'] });
    expect(JSON.parse(configOf(a)).providers).toMatchObject({
      default: { servers: [a.server.host] },
      spare: { servers: [a.server.host] },
    });
  });
});

describe('trust on first use', () => {
  it('shows the chain, pins with --yes, then refuses a changed server certificate with both fingerprints', async () => {
    // PyKMIP's OpenSSL sends the CA after the server certificate (it completes the chain from its ca_path).
    const first = await startPykmip();
    cleanups.push(() => first.stop());
    const a = new TestAppliance();
    cleanups.push(() => a.close());
    a.ok(['setup', '--appliance-id', a.id, ...pykmipCliArgs(first)]);
    const name = first.host;

    // No terminal and no --yes: refused, nothing pinned.
    const unconfirmed = a.cli(['server', 'trust', name]);
    expect(unconfirmed.json).toMatchObject({ error: { code: 'TRUST_CONFIRMATION_REQUIRED' } });
    expect(JSON.parse(configOf(a)).servers[name].pinnedSha256).toBeUndefined();

    const leaf = new X509Certificate(readFileSync(first.pki.server.cert)).fingerprint256;
    // On a terminal it asks; anything but "yes" trusts nothing.
    const declined = onTerminal(a, ['server', 'trust', name], 'no\n');
    expect(declined.output).toContain(leaf);
    expect(declined.output).toMatch(/Type "yes" to trust/);
    expect(declined.output).toContain('TRUST_DECLINED');
    expect(JSON.parse(configOf(a)).servers[name].pinnedSha256).toBeUndefined();
    const typed = onTerminal(a, ['server', 'trust', name], 'yes\n');
    expect(typed.code, typed.output).toBe(0);
    expect(JSON.parse(configOf(a)).servers[name].pinnedSha256).toBe(leaf);
    const trusted = a.ok(['server', 'trust', name, '--yes']) as {
      chain: { certificates: { sha256: string; subject: string; validTo: string }[] };
      server: { pinnedSha256: string; ca: string };
      test: { ok: boolean };
    };
    expect(trusted.chain.certificates.map((c) => c.sha256)).toEqual([
      leaf,
      new X509Certificate(readFileSync(first.pki.ca.cert)).fingerprint256,
    ]);
    expect(trusted.server).toMatchObject({ pinnedSha256: leaf, ca: `servers/${name}.ca.pem` });
    expect(trusted.test.ok).toBe(true);
    expect(readFileSync(join(a.dirs.config, 'servers', `${name}.ca.pem`), 'utf8').trim()).toBe(
      readFileSync(first.pki.ca.cert, 'utf8').trim(),
    );

    // Another server certificate from the same CA, same host name: the chain verifies, the pin refuses it.
    const second = await startPykmip({ ca: TestCa.open(first.pki.ca.dir) });
    cleanups.push(() => second.stop());
    const other = new X509Certificate(readFileSync(second.pki.server.cert)).fingerprint256;
    a.ok(['server', 'modify', name, '--port', String(second.port)]);
    const changed = a.cli(['server', 'test', name]);
    expect(changed.code).toBe(1);
    expect(changed.json).toMatchObject({ test: { ok: false, error: { code: 'KMIP_TLS_SERVER_CERT_CHANGED' } } });
    const message = JSON.stringify(changed.json);
    expect(message).toContain(leaf);
    expect(message).toContain(other);
    expect(message).toContain(`kmip-agent server trust ${name}`);
    // Trusted again, it is accepted.
    const again = a.ok(['server', 'trust', name, '--yes']) as { server: { pinnedSha256: string } };
    expect(again.server.pinnedSha256).toBe(other);
  });

  it('refuses a chain without its root unless --ca, and one whose certificate does not name the server', async () => {
    const a = appliance();
    // TEST FIXTURE: a bare TLS server sending its certificate alone (issued by the run's PyKMIP CA), no KMIP.
    const ca = TestCa.open(dirname(a.server.ca));
    const leaf = ca.issue(`bare-${a.id}`, {
      cn: 'localhost',
      eku: ['serverAuth'],
      san: ['IP:127.0.0.1', 'DNS:localhost'],
    });
    const bare = createTlsServer({ cert: leaf.certPem, key: leaf.keyPem }, (socket) => socket.end());
    bare.on('tlsClientError', () => undefined);
    await new Promise<void>((resolve) => bare.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise<void>((resolve) => bare.close(() => resolve())));
    const port = String((bare.address() as { port: number }).port);
    a.ok([
      'server',
      'create',
      'bare',
      '--host',
      '127.0.0.1',
      '--port',
      port,
      '--ca',
      a.server.ca,
      '--servername',
      'localhost',
    ]);

    const noRoot = await a.cliAsync(['server', 'trust', 'bare', '--yes']);
    expect(noRoot.json).toMatchObject({ error: { code: 'TRUST_NO_ROOT' } });
    expect(JSON.stringify(noRoot.json)).toMatch(/--ca FILE/);
    a.ok(['server', 'modify', 'bare', '--servername', 'kms.other.example']);
    const wrongName = await a.cliAsync(['server', 'trust', 'bare', '--yes', '--ca', a.server.ca]);
    expect(wrongName.json).toMatchObject({ error: { code: 'TRUST_NAME_MISMATCH' } });
    const other = makeTestPki(mkdtempSync(join(tmpdir(), 'kmip-agent-otherca-')));
    cleanups.push(() => rmSync(other.ca.dir, { recursive: true, force: true }));
    a.ok(['server', 'modify', 'bare', '--servername', 'localhost']);
    const wrongCa = await a.cliAsync(['server', 'trust', 'bare', '--yes', '--ca', other.ca.cert]);
    expect(wrongCa.json).toMatchObject({ error: { code: 'TRUST_CA_MISMATCH' } });
    expect(JSON.parse(configOf(a)).servers.bare.pinnedSha256).toBeUndefined();

    // With the CA that issued it, the certificate is pinned (the test after it fails: no KMIP there).
    const withCa = await a.cliAsync(['server', 'trust', 'bare', '--yes', '--ca', a.server.ca]);
    expect(withCa.json).toMatchObject({
      server: { pinnedSha256: new X509Certificate(leaf.certPem).fingerprint256 },
      test: { ok: false },
    });
  });
});

/** A TCP relay to `target` that counts the connections made through it. */
async function relay(target: { host: string; port: number }): Promise<{ port: number; connections: () => number }> {
  let count = 0;
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    count++;
    const upstream = connect(target.port, target.host);
    sockets.add(socket).add(upstream);
    socket.pipe(upstream).pipe(socket);
    const end = () => {
      socket.destroy();
      upstream.destroy();
    };
    socket.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  );
  return { port: (server.address() as { port: number }).port, connections: () => count };
}

describe('a running daemon', () => {
  it('takes a key server added through the CLI without a restart: its next key operations go there', async () => {
    const kmip = inject('pykmip');
    const root = mkdtempSync(join(tmpdir(), 'kmip-agent-keyservers-'));
    cleanups.push(() => rmSync(root, { recursive: true, force: true }));
    const app = new Appliance(`ks${Date.now().toString(36)}`, root);
    await app.setup(kmip, kmip as PykmipServer);
    await app.createDrives(1);
    await app.enroll();
    const notify = await NotifyReceiver.start(join(root, 'notify.sock'));
    cleanups.push(() => notify.stop());
    const daemon = app.daemon(notify);
    await daemon.waitForLog((l) => l.event === 'ready');
    await notify.waitForMessage((m) => m.startsWith('READY=1'));
    const readyAt = notify.messages.length;
    const original = kmip.host;

    const door = await relay(kmip);
    const dirs = app.dirArgs();
    await ok([
      'server',
      'create',
      'door',
      '--host',
      '127.0.0.1',
      '--port',
      String(door.port),
      '--servername',
      'localhost',
      '--ca',
      kmip.ca,
      '--provider',
      'default',
      ...dirs,
    ]);
    await daemon.waitForLog((l) => l.event === 'config_reloaded');
    await ok(['provider', 'remove-server', 'default', original, ...dirs]);
    // The daemon made the changes (it owns the state), then reloaded itself.
    expect(daemon.events('api_call').map((l) => l.method)).toEqual(
      expect.arrayContaining(['CreateKeyServerKmip', 'RemoveKeyServerFromProviderKmip']),
    );
    // systemd hears of each reload: RELOADING=1 (with the monotonic time), then READY=1.
    const reloading = await notify.waitForMessage((m) => m.startsWith('RELOADING=1'), 20_000, readyAt);
    expect(reloading).toMatch(/^RELOADING=1\nMONOTONIC_USEC=\d+$/);
    const at = notify.messages.indexOf(reloading);
    await notify.waitForMessage((m) => m.startsWith('READY=1'), 20_000, at + 1);
    const reloaded = daemon.events('config_reloaded');
    expect(reloaded.length).toBeGreaterThanOrEqual(2);
    expect(daemon.events('stopping')).toEqual([]);

    // The next key operation goes to the new server: enrolling a drive through the daemon registers its key there.
    const before = door.connections();
    const [second] = await app.createDrives(1);
    await app.enroll([second!]);
    expect(door.connections()).toBeGreaterThan(before);
    const unlocked = JSON.parse((await ok(['unlock', '--json', ...dirs])).stdout) as { drives: { state: string }[] };
    expect(unlocked.drives.map((d) => d.state)).toEqual(['unlocked', 'unlocked']);

    // An invalid file is refused and logged; the running configuration stays.
    const configFile = join(app.configDir, 'config.json');
    const { writeFileSync } = await import('node:fs');
    const good = readFileSync(configFile, 'utf8');
    writeFileSync(configFile, good.replace('"port": ' + door.port, '"port": 70000'));
    const refused = await cli(['server', 'list', '--json', ...dirs]);
    expect(refused.code).toBe(2);
    const api = new ApiClient(join(app.runtimeDir, 'api.sock'));
    await expect(api.call('ReloadConfig')).rejects.toMatchObject({ code: 'CONFIG_INVALID' });
    process.kill(daemon.pid, 'SIGHUP');
    const line = await daemon.waitForLog((l) => l.event === 'config_reload_refused');
    expect(String(line.msg)).toMatch(/port/);
    writeFileSync(configFile, good);
    await expect(api.call('ReloadConfig')).resolves.toMatchObject({ servers: expect.arrayContaining(['door']) });
    await daemon.stop();
  });
});

/** The CLI on a pseudo-terminal (util-linux `script`), `input` typed into it; what the terminal showed. */
function onTerminal(a: TestAppliance, args: string[], input: string): { code: number; output: string } {
  const d = a.dirs;
  const argv = [CLI, ...args, '--config-dir', d.config, '--state-dir', d.state, '--runtime-dir', d.runtime];
  const line = [process.execPath, ...argv].map((x) => `'${x.replace(/'/g, "'\\''")}'`).join(' ');
  const run = spawnSync('script', ['-qec', line, '/dev/null'], { input, encoding: 'utf8', timeout: 60_000 });
  return { code: run.status ?? -1, output: run.stdout + run.stderr };
}
