/**
 * `kmip-agent cert ...` as operators run it (the built CLI, separate processes) against the run's PyKMIP
 * server: a CSR made by kmip-agent and signed by the server's CA with the openssl CLI is imported and used
 * to fetch a key; refusals at import (no clientAuth, expired) name the fix; replace tests every server
 * first and keeps the old certificate when the test fails; export, delete, status.
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { afterAll, afterEach, describe, expect, inject, it } from 'vitest';
import { ApiClient } from '../../src/api/client.js';
import { loadConfig } from '../../src/agent/config.js';
import { TestCa } from '../support/certs.js';
import { TestAppliance } from '../agent/appliance.js';
import { Appliance, exitOf, ok, running } from '../support/daemon-harness.js';
import type { PykmipServer } from '../support/pykmip.js';

const appliances: TestAppliance[] = [];
afterEach(() => appliances.splice(0).forEach((a) => a.close()));

/** The CN of the fixture's client certificate: PyKMIP ties objects to it, so new certificates keep it. */
const CN = 'kmip-agent-test-client';

function appliance(): TestAppliance {
  const a = new TestAppliance();
  appliances.push(a);
  a.setup();
  return a;
}

/** The PyKMIP fixture's CA (the one the server trusts for clients). */
const serverCa = (a: TestAppliance) => TestCa.open(join(a.server.dir, 'pki'));

let serial = 0;
/** `cert generate` a CSR and have `ca` sign it with openssl; returns the certificate's path. */
function newCertificate(a: TestAppliance, ca: TestCa, options: { eku?: string[]; notBefore?: string } = {}): string {
  const generated = a.ok(['cert', 'generate', '--cn', CN, '--key-type', 'p256', '--san', 'DNS:nas-01.example']);
  const csr = join(a.work, `agent-${++serial}.csr`);
  writeFileSync(csr, generated.csrPem as string);
  return ca.sign(`agent-${serial}-${a.id}`, csr, { eku: options.eku ?? ['clientAuth'], ...options });
}

function fingerprint(path: string): string {
  return /Fingerprint=(.*)\n/.exec(
    execFileSync('openssl', ['x509', '-in', path, '-noout', '-fingerprint', '-sha256'], { encoding: 'utf8' }),
  )![1]!;
}

describe('kmip-agent cert', () => {
  it('generate, sign with openssl, import into a fresh client, fetch a key; status, export, delete', async () => {
    const a = appliance();
    const uid = await a.registerKey('cert-test', Buffer.alloc(32, 0x5a));

    // Delete is refused while the client is enabled; disabled, it removes setup's certificate.
    expect(a.cli(['cert', 'delete', '--yes'])).toMatchObject({ code: 1, json: { error: { code: 'CLIENT_ENABLED' } } });
    expect(a.cli(['cert', 'delete'])).toMatchObject({ code: 2, json: { error: { code: 'USAGE_CONFIRM' } } });
    a.ok(['client', 'disable']);
    expect(a.ok(['cert', 'delete', '--yes'])).toMatchObject({ deleted: true, removed: ['client.pem', 'client.key'] });
    expect(existsSync(join(a.dirs.config, 'client.key'))).toBe(false);
    expect(a.cli(['cert', 'csr'])).toMatchObject({ code: 1, json: { error: { code: 'CERT_NO_PENDING_KEY' } } });

    const cert = newCertificate(a, serverCa(a));
    expect(statSync(join(a.dirs.config, 'pki/pending.key')).mode & 0o777).toBe(0o600);
    const reprinted = a.ok(['cert', 'csr']);
    expect(reprinted.csrPem).toMatch(/^-----BEGIN CERTIFICATE REQUEST-----/);

    const imported = a.ok(['cert', 'import', '--cert', cert]);
    expect(imported).toMatchObject({ installed: true, certificate: { fingerprintSha256: fingerprint(cert) } });
    expect(existsSync(join(a.dirs.config, 'pki/pending.key'))).toBe(false);
    const files = imported.files as { cert: string; key: string };
    expect(statSync(join(a.dirs.config, files.key)).mode & 0o777).toBe(0o600);
    expect(a.cli(['cert', 'import', '--cert', cert])).toMatchObject({
      code: 1,
      json: { error: { code: 'CERT_EXISTS' } },
    });

    expect((await loadConfig(a.dirs.config)).client).toMatchObject({
      enabled: false,
      cert: files.cert,
      key: files.key,
    });
    a.ok(['client', 'enable']);
    const got = a.ok(['kmip', 'get', '--provider', 'default', uid]);
    expect(JSON.stringify(got)).toContain('5a'.repeat(32));

    const status = a.ok(['cert', 'status']);
    expect(status).toMatchObject({
      enabled: true,
      installed: true,
      certificate: {
        subject: `CN=${CN}`,
        issuer: 'CN=kmip-agent test CA',
        fingerprintSha256: fingerprint(cert),
        keyType: 'EC P-256',
        extendedKeyUsage: ['clientAuth'],
        daysLeft: 29,
      },
      expiry: { status: 'expiring', daysLeft: 29, warningDays: 30 },
    });
    expect((status.certificate as { serial: string }).serial).toMatch(/^[0-9A-F]+$/);

    const exported = a.ok(['cert', 'export']);
    expect(exported.pem).toBe(readFileSync(cert, 'utf8').replace(/\n*$/, '\n'));
    expect(a.cli(['cert', 'export', '--with-private-key'])).toMatchObject({ code: 2 });
    const bundle = join(a.work, 'bundle.pem');
    a.ok(['cert', 'export', '--with-private-key', '--out', bundle]);
    expect(statSync(bundle).mode & 0o777).toBe(0o600);
    expect(readFileSync(bundle, 'utf8')).toMatch(/BEGIN CERTIFICATE[\s\S]*BEGIN PRIVATE KEY/);
    expect(a.cli(['cert', 'export', '--with-private-key', '--out', bundle])).toMatchObject({
      code: 1,
      json: { error: { code: 'CERT_EXPORT_EXISTS' } },
    });
  });

  it('refuses a certificate without clientAuth, explaining why; forced, the server refusal is reported', async () => {
    const a = appliance();
    const uid = await a.registerKey('no-client-auth', Buffer.alloc(32, 1));
    const cert = newCertificate(a, serverCa(a), { eku: ['serverAuth'] });
    const refused = a.cli(['cert', 'replace', '--cert', cert]);
    expect(refused.code).toBe(1);
    expect(refused.json.error).toMatchObject({
      code: 'PKI_NO_CLIENT_AUTH',
      message: expect.stringMatching(/accept the TLS handshake .* "Authentication Not Successful"/),
      hint: expect.stringMatching(/extendedKeyUsage clientAuth/),
    });
    const before = readFileSync(join(a.dirs.config, 'config.json'), 'utf8');

    const forced = a.ok(['cert', 'replace', '--cert', cert, '--force']);
    expect(forced).toMatchObject({ replaced: true, forced: true });
    const [server] = (forced.tests as { servers: { ok: boolean; error?: { code: string; message: string } }[] }[])[0]!
      .servers;
    expect(server!.ok).toBe(false);
    // PyKMIP takes the handshake and refuses the request: the KMIP result, named as such.
    expect(server!.error!.code).toMatch(/^KMIP_(OPERATION_FAILED|TLS_CLIENT_CERT_NOT_CLIENT_AUTH)$/);
    expect(server!.error!.message).toMatch(/Authentication Not Successful|clientAuth/);
    expect(readFileSync(join(a.dirs.config, 'config.json'), 'utf8')).not.toBe(before);
    expect(existsSync(join(a.dirs.config, 'client.pem.prev'))).toBe(true);
    expect(a.cli(['kmip', 'get', '--provider', 'default', uid]).code).not.toBe(0);
  });

  it('refuses an expired certificate at import', () => {
    const a = appliance();
    const cert = newCertificate(a, serverCa(a), { notBefore: '20200101000000Z' });
    const refused = a.cli(['cert', 'replace', '--cert', cert]);
    expect(refused).toMatchObject({ code: 1, json: { error: { code: 'PKI_EXPIRED' } } });
    expect((refused.json.error as { message: string }).message).toMatch(/expired on 2021-01-01/);
    // The pending key stays for the next attempt.
    expect(existsSync(join(a.dirs.config, 'pki/pending.key'))).toBe(true);
  });

  it('replace with a certificate from a CA the server does not trust: test fails, the old one keeps working', async () => {
    const a = appliance();
    const uid = await a.registerKey('wrong-ca', Buffer.alloc(32, 2));
    const otherCa = TestCa.create(join(a.work, 'other-ca'), 'a CA the key server does not know');
    const cert = newCertificate(a, otherCa);
    const before = readFileSync(join(a.dirs.config, 'config.json'), 'utf8');
    const failed = a.cli(['cert', 'replace', '--cert', cert]);
    expect(failed.code).toBe(1);
    const error = failed.json.error as {
      code: string;
      message: string;
      tests: { servers: { ok: boolean; error: { code: string } }[] }[];
    };
    expect(error.code).toBe('CERT_TEST_FAILED');
    expect(error.message).toMatch(/old certificate stays in use/);
    expect(error.tests[0]!.servers[0]).toMatchObject({ ok: false, error: { code: expect.stringMatching(/^KMIP_/) } });
    expect(readFileSync(join(a.dirs.config, 'config.json'), 'utf8')).toBe(before);
    expect(a.ok(['kmip', 'get', '--provider', 'default', uid])).toBeTruthy();

    // Signed by the right CA, the same request's key replaces it; the old files are kept as .prev.
    const good = newCertificate(a, serverCa(a));
    const replaced = a.ok(['cert', 'replace', '--cert', good]);
    expect(replaced).toMatchObject({
      replaced: true,
      forced: false,
      install: { previous: ['client.pem.prev', 'client.key.prev'] },
    });
    expect(a.ok(['cert', 'status'])).toMatchObject({ certificate: { fingerprintSha256: fingerprint(good) } });
    expect(a.ok(['kmip', 'get', '--provider', 'default', uid])).toBeTruthy();
  });

  it('refuses bad input before writing anything', () => {
    const a = appliance();
    expect(a.cli(['cert', 'generate'])).toMatchObject({ code: 2 });
    expect(a.cli(['cert', 'generate', '--cn', 'x', '--key-type', 'rsa1024'])).toMatchObject({ code: 2 });
    expect(a.cli(['cert', 'generate', '--cn', 'x', '--san', 'DNS:bad name'])).toMatchObject({
      code: 1,
      json: { error: { code: 'PKI_BAD_SAN' } },
    });
    expect(existsSync(join(a.dirs.config, 'pki/pending.key'))).toBe(false);
    const garbage = join(a.work, 'garbage.pem');
    writeFileSync(garbage, 'not a certificate\n');
    expect(a.cli(['cert', 'replace', '--cert', garbage, '--key', garbage])).toMatchObject({
      code: 1,
      json: { error: { code: 'PKI_PEM_MALFORMED' } },
    });
  });
});

describe('kmip-agent cert replace while the daemon runs', () => {
  const root = mkdtempSync(join(tmpdir(), 'kmip-agent-cert-daemon-'));
  afterEach(async () => {
    for (const d of [...running]) d.kill();
    await Promise.all([...running].map((d) => exitOf(d).catch(() => undefined)));
    running.clear();
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it('replaces the certificate beside the running daemon; no unlock is lost, before or after its restart', async () => {
    const server = inject('pykmip') as PykmipServer;
    const nas = new Appliance('certd', root);
    await nas.setup(server, server);
    await nas.createDrives(2);
    await nas.enroll();
    await nas.powerCycle();
    const daemon = nas.daemon(undefined);
    await daemon.waitForLog((l) => l.event === 'ready');
    expect((await nas.status()).drives.map((d) => d.state)).toEqual(['unlocked', 'unlocked']);

    const generated = JSON.parse(
      (await ok(['cert', 'generate', '--cn', CN, '--key-type', 'p256', '--json', ...nas.dirArgs()])).stdout,
    ) as { csrPem: string };
    const csr = join(nas.base, 'new.csr');
    writeFileSync(csr, generated.csrPem);
    const cert = TestCa.open(join(server.dir, 'pki')).sign(`daemon-${Date.now()}`, csr, { eku: ['clientAuth'] });
    const replaced = JSON.parse((await ok(['cert', 'replace', '--cert', cert, '--json', ...nas.dirArgs()])).stdout) as {
      replaced: boolean;
      daemon: string;
    };
    // Until the daemon reloads (ReloadConfig), it keeps the old identity in memory, still valid.
    expect(replaced).toMatchObject({ replaced: true, daemon: expect.stringMatching(/^(reloaded|restart-needed)$/) });
    const live = await new ApiClient(join(nas.runtimeDir, 'api.sock')).call<{
      certificate: { fingerprintSha256: string };
    }>('GetClientCertificate');
    expect(live.certificate.fingerprintSha256).toBe(fingerprint(cert));

    await nas.powerCycle();
    const unlocked = JSON.parse((await ok(['unlock', '--json', ...nas.dirArgs()])).stdout) as {
      drives: { state: string }[];
    };
    expect(unlocked.drives.map((d) => d.state)).toEqual(['unlocked', 'unlocked']);

    expect(await daemon.stop()).toEqual({ code: 0, signal: null });
    running.delete(daemon);
    await nas.powerCycle();
    const restarted = nas.daemon(undefined);
    await restarted.waitForLog((l) => l.event === 'ready');
    expect((await nas.status()).drives.map((d) => d.state)).toEqual(['unlocked', 'unlocked']);
  });
});
