/**
 * The agent's client certificate: expiry faults on an injected clock (raised before and after notAfter,
 * cleared when replaced), and the Element-style API methods over the real files, with replacement tested
 * against the run's PyKMIP server.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  clientCertificateService,
  CLIENT_CERTIFICATE_SUBJECT,
  generatePendingKeyPair,
  importClientCertificate,
  prepareImport,
  replaceClientCertificate,
  watchClientCertificateExpiry,
} from '../../src/agent/client-certificate.js';
import { loadConfig, saveConfig } from '../../src/agent/config.js';
import { FaultRegistry } from '../../src/agent/faults.js';
import { agentMethods, type AgentApi } from '../../src/api/methods.js';
import type { RpcMethod } from '../../src/api/server.js';
import { TestCa } from '../support/certs.js';
import { FakeClock } from '../support/fake-clock.js';
import { TestAppliance } from './appliance.js';

const DAY = 86_400_000;
const cleanups: (() => void)[] = [];
afterEach(() => cleanups.splice(0).forEach((c) => c()));

function configDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'kmip-agent-client-cert-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  // No key servers: nothing to test a replacement against; the client disabled until a certificate exists.
  writeFileSync(
    join(dir, 'config.json'),
    JSON.stringify({ schemaVersion: 2, applianceId: 'app-1', client: { enabled: false, expiryWarningDays: 30 } }),
  );
  return dir;
}

/** A self-signed client certificate of `days` made by the agent at the clock's time. */
async function selfSigned(dir: string, clock: FakeClock, days: number) {
  const pending = await generatePendingKeyPair(dir, {
    keyType: 'p256',
    subject: { cn: 'nas-01' },
    sans: [],
    selfSignedDays: days,
    now: clock.now(),
  });
  return prepareImport(dir, { certPem: pending.certPem!, now: clock.now() });
}

const codes = (faults: FaultRegistry) => faults.list().map((f) => `${f.code}:${f.subject}`);

describe('client certificate expiry faults', () => {
  it('CertificateExpiring N days before, CertificateExpired after, cleared when replaced', async () => {
    const dir = configDir();
    const clock = new FakeClock(Date.now());
    const faults = new FaultRegistry(() => clock.now());
    await importClientCertificate(dir, await selfSigned(dir, clock, 40));
    const errors: unknown[] = [];
    const watch = watchClientCertificateExpiry({ configDir: dir, faults, clock, onError: (e) => errors.push(e) });
    cleanups.push(() => watch.stop());
    await clock.advance(0);
    await watch.settled();
    expect(codes(faults)).toEqual([]);

    await clock.advance(9 * DAY);

    await watch.settled();
    expect(codes(faults)).toEqual([]); // 31 days left
    await clock.advance(1 * DAY);
    await watch.settled();
    expect(codes(faults)).toEqual([`CertificateExpiring:${CLIENT_CERTIFICATE_SUBJECT}`]);
    expect(faults.list()[0]!.details).toMatchObject({ subject: 'CN=nas-01', daysLeft: 29 });

    await clock.advance(31 * DAY);

    await watch.settled();
    expect(codes(faults)).toEqual([`CertificateExpired:${CLIENT_CERTIFICATE_SUBJECT}`]);
    expect(faults.list()[0]!.severity).toBe('critical');

    // The replacement is seen at the next daily check without being told...
    await replaceClientCertificate(dir, await selfSigned(dir, clock, 365));
    await clock.advance(DAY);
    await watch.settled();
    expect(codes(faults)).toEqual([]);
    expect(errors).toEqual([]);
  });

  it("watches each key server's trusted CA file too: the earliest certificate decides, gone with the server", async () => {
    const dir = configDir();
    const clock = new FakeClock(Date.now());
    const faults = new FaultRegistry(() => clock.now());
    const pem = async (days: number) =>
      (
        await generatePendingKeyPair(dir, {
          keyType: 'p256',
          subject: { cn: `ca-${days}` },
          sans: [],
          selfSignedDays: days,
          now: clock.now(),
        })
      ).certPem!;
    writeFileSync(join(dir, 'kms.ca.pem'), (await pem(400)) + (await pem(40)));
    const config = await loadConfig(dir);
    await saveConfig(dir, { ...config, servers: { kms: { host: 'kms.example', ca: 'kms.ca.pem' } } });
    const watch = watchClientCertificateExpiry({ configDir: dir, faults, clock, onError: () => undefined });
    cleanups.push(() => watch.stop());
    await watch.settled();
    expect(codes(faults)).toEqual([]);

    await clock.advance(11 * DAY);
    await watch.settled();
    expect(codes(faults)).toEqual(['CertificateExpiring:server:kms']);
    expect(faults.list()[0]!.details).toMatchObject({ server: 'kms', subject: 'CN=ca-40', daysLeft: 28 });
    await clock.advance(30 * DAY);
    await watch.settled();
    expect(codes(faults)).toEqual(['CertificateExpired:server:kms']);

    await saveConfig(dir, { ...(await loadConfig(dir)), servers: {} });
    await watch.recheck();
    expect(codes(faults)).toEqual([]);
  });

  it('the warning window comes from config.client.expiryWarningDays; a change through the API rechecks at once', async () => {
    const dir = configDir();
    const config = await loadConfig(dir);
    await saveConfig(dir, { ...config, client: { ...config.client, expiryWarningDays: 7 } });
    const clock = new FakeClock(Date.now());
    const faults = new FaultRegistry(() => clock.now());
    await importClientCertificate(dir, await selfSigned(dir, clock, 10));
    const watch = watchClientCertificateExpiry({ configDir: dir, faults, clock, onError: () => undefined });
    cleanups.push(() => watch.stop());
    await clock.advance(2 * DAY);
    await watch.settled();
    expect(codes(faults)).toEqual([]); // 8 days left, outside a 7-day window
    await clock.advance(DAY);
    await watch.settled();
    expect(codes(faults)).toEqual([`CertificateExpiring:${CLIENT_CERTIFICATE_SUBJECT}`]);

    const api = methods({ clientCertificate: clientCertificateService(dir, clock, () => watch.recheck()) });
    const { certPem } = (await api.CreatePublicPrivateKeyPair!(
      { keyType: 'rsa2048', subject: { cn: 'nas-01' }, selfSignedDays: 90 },
      caller,
    )) as { certPem: string };
    await api.ImportClientCertificate!({ certPem, replace: true }, caller);
    expect(codes(faults)).toEqual([]);
  });
});

describe('client certificate files', () => {
  it('a replacement keeps the replaced files as .prev, one generation back; the new key is 0600', async () => {
    const dir = configDir();
    const clock = new FakeClock(Date.now());
    const a = await importClientCertificate(dir, await selfSigned(dir, clock, 30));
    const b = await replaceClientCertificate(dir, await selfSigned(dir, clock, 60));
    const c = await replaceClientCertificate(dir, await selfSigned(dir, clock, 90));
    expect(b.install!.previous).toEqual([`${a.files.cert}.prev`, `${a.files.key}.prev`]);
    const files = readdirSync(join(dir, 'pki'))
      .map((f) => `pki/${f}`)
      .sort();
    expect(files).toEqual(
      [
        c.install!.files.cert,
        c.install!.files.key,
        `${b.install!.files.cert}.prev`,
        `${b.install!.files.key}.prev`,
      ].sort(),
    );
    expect(statSync(join(dir, c.install!.files.key)).mode & 0o777).toBe(0o600);
    expect((await loadConfig(dir)).client).toMatchObject({ cert: c.install!.files.cert, key: c.install!.files.key });
  });
});

const caller = { uid: 0, gid: 0, pid: process.pid };

function methods(extra: Partial<AgentApi>): Record<string, RpcMethod> {
  return agentMethods({
    status: () => {
      throw new Error('unused');
    },
    unlockNow: async () => undefined,
    enrollDrives: async () => [],
    auditEvents: async () => [],
    ...extra,
  });
}

async function rejection(promise: unknown): Promise<{ code: string; message: string }> {
  try {
    await promise;
  } catch (error) {
    return error as { code: string; message: string };
  }
  throw new Error('expected a rejection');
}

describe('client certificate API methods', () => {
  it('checks params and never answers with a private key', async () => {
    const dir = configDir();
    const clock = new FakeClock(Date.now());
    const api = methods({ clientCertificate: clientCertificateService(dir, clock, () => undefined) });
    expect(await rejection(api.CreatePublicPrivateKeyPair!({ subject: {} }, caller))).toMatchObject({
      code: 'API_INVALID_PARAMS',
    });
    expect(
      await rejection(api.CreatePublicPrivateKeyPair!({ keyType: 'dsa', subject: { cn: 'a' } }, caller)),
    ).toMatchObject({ code: 'API_INVALID_PARAMS' });
    expect(
      await rejection(api.CreatePublicPrivateKeyPair!({ subject: { cn: 'a' }, subjectAltNames: ['DNS:a b'] }, caller)),
    ).toMatchObject({ code: 'PKI_BAD_SAN' });
    expect(await rejection(api.GetClientCertificateSignRequest!({}, caller))).toMatchObject({
      code: 'CERT_NO_PENDING_KEY',
    });

    const created = (await api.CreatePublicPrivateKeyPair!(
      { keyType: 'p384', subject: { cn: 'nas-01', o: 'Example' }, subjectAltNames: ['IP:192.0.2.1'] },
      caller,
    )) as Record<string, unknown>;
    expect(JSON.stringify(created)).not.toMatch(/PRIVATE KEY/);
    const csr = join(dir, 'request.csr');
    writeFileSync(csr, created.csrPem as string);
    execFileSync('openssl', ['req', '-in', csr, '-verify', '-noout'], { stdio: 'pipe' });
    expect(await api.GetClientCertificateSignRequest!({}, caller)).toMatchObject({ csrPem: created.csrPem });
    expect(await rejection(api.ImportClientCertificate!({}, caller))).toMatchObject({ code: 'API_INVALID_PARAMS' });

    const ca = TestCa.create(join(dir, 'ca'));
    const signed = ca.sign('nas-01', csr, { eku: ['clientAuth'] });
    // openssl dated it by the real clock, which has moved on past the test's fake one meanwhile.
    await clock.advance(Math.max(0, Date.now() - clock.now().getTime()) + 1000);
    const installed = await api.ImportClientCertificate!({ certPem: readFileSync(signed, 'utf8') }, caller);
    expect(JSON.stringify(installed)).not.toMatch(/PRIVATE KEY/);
    expect(await api.GetClientCertificate!({}, caller)).toMatchObject({
      enabled: false,
      installed: true,
      certificate: { subject: 'O=Example, CN=nas-01', keyType: 'EC P-384', subjectAltNames: [] },
    });
    expect(await rejection(api.DeleteClientCertificate!({}, caller))).toMatchObject({ code: 'API_CONFIRM_REQUIRED' });
    expect(await api.DeleteClientCertificate!({ confirm: true }, caller)).toMatchObject({ removed: expect.any(Array) });
    expect(await api.GetClientCertificate!({}, caller)).toMatchObject({ installed: false });
  });

  it('ImportClientCertificate with replace tests against PyKMIP: its CA passes, another CA is refused', async () => {
    const a = new TestAppliance();
    cleanups.push(() => a.close());
    a.setup();
    // Real time: openssl dates the certificates it signs from now.
    const clock = { now: () => new Date() };
    const api = methods({ clientCertificate: clientCertificateService(a.dirs.config, clock, () => undefined) });
    const request = async () => {
      const { csrPem } = (await api.CreatePublicPrivateKeyPair!(
        { keyType: 'rsa2048', subject: { cn: 'kmip-agent-test-client' } },
        caller,
      )) as { csrPem: string };
      const path = join(a.work, `r-${Math.random().toString(16).slice(2)}.csr`);
      writeFileSync(path, csrPem);
      return path;
    };
    const wrong = TestCa.create(join(a.work, 'wrong-ca'), 'not the server CA').sign('wrong', await request(), {
      eku: ['clientAuth'],
      keyType: { rsa: 2048 },
    });
    const failed = (await rejection(
      api.ImportClientCertificate!({ certPem: readFileSync(wrong, 'utf8'), replace: true }, caller),
    )) as unknown as { code: string; details(): { tests: { servers: { ok: boolean }[] }[] } };
    expect(failed.code).toBe('CERT_TEST_FAILED');
    expect(failed.details().tests[0]!.servers[0]!.ok).toBe(false);
    expect((await loadConfig(a.dirs.config)).client.cert).toBe('client.pem');

    const right = TestCa.open(join(a.server.dir, 'pki')).sign(`right-${a.id}`, await request(), {
      eku: ['clientAuth'],
      keyType: { rsa: 2048 },
    });
    const replaced = (await api.ImportClientCertificate!(
      { certPem: readFileSync(right, 'utf8'), replace: true },
      caller,
    )) as { replaced: boolean; tests: { servers: { ok: boolean; vendor?: string }[] }[] };
    expect(replaced.replaced).toBe(true);
    expect(replaced.tests[0]!.servers[0]).toMatchObject({ ok: true });
    expect((await loadConfig(a.dirs.config)).client.cert).toMatch(/^pki\/client-[0-9a-f]{16}\.crt$/);
  });
});
