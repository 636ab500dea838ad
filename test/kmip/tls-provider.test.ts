/**
 * TLS verification (chain, host name, versions, client chains with intermediates) and the failover
 * provider, against TEST FIXTURE servers with their own throwaway PKIs.
 */
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KmipFixtureServer } from '../support/kmip-fixture-server.js';
import { TestCa, makeTestPki, type TestPki } from '../support/certs.js';
import { freePort } from '../support/pykmip.js';
import { KmipClient, type KmipClientOptions } from '../../src/kmip/client.js';
import { KmipProvider, type KmipProviderOptions, type ServerAttempt } from '../../src/kmip/provider.js';
import { KmipError, KmipOperationError } from '../../src/kmip/errors.js';
import { CryptographicAlgorithm, Operation, UsageMask } from '../../src/kmip/spec.js';

let dir: string;
let fixture: KmipFixtureServer;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'kmip-agent-tls-'));
  fixture = await KmipFixtureServer.start();
});
afterAll(async () => {
  await fixture.stop();
  rmSync(dir, { recursive: true, force: true });
});

function credentials(pki: TestPki): Pick<KmipClientOptions, 'ca' | 'cert' | 'key'> {
  return { ca: readFileSync(pki.ca.cert), cert: pki.client.certPem, key: pki.client.keyPem };
}

const aes = { algorithm: CryptographicAlgorithm.AES, length: 128, usageMask: UsageMask.Encrypt };

describe('TLS', () => {
  test('TLS 1.3 by default, TLS 1.2 when capped', async () => {
    for (const [maxVersion, expected] of [
      [undefined, 'TLSv1.3'],
      ['TLSv1.2', 'TLSv1.2'],
    ] as const) {
      const client = new KmipClient({
        host: '127.0.0.1',
        port: fixture.port,
        ...credentials(fixture.pki),
        ...(maxVersion ? { maxVersion } : {}),
      });
      try {
        await client.connect();
        expect(client.tlsVersion).toBe(expected);
      } finally {
        client.close();
      }
    }
  });

  test('the server name is verified: a certificate for another name is refused, the right servername passes', async () => {
    const ca = TestCa.create(join(dir, 'named'));
    const pki: TestPki = {
      ca,
      server: ca.issue('server', { cn: 'kms.example', eku: ['serverAuth'], san: ['DNS:kms.example'] }),
      client: ca.issue('client', { cn: 'client', eku: ['clientAuth'] }),
    };
    const named = await KmipFixtureServer.start({ pki });
    try {
      for (const host of ['127.0.0.1', 'localhost']) {
        const client = new KmipClient({ host, port: named.port, ...credentials(pki) });
        await expect(client.connect()).rejects.toMatchObject({ code: 'KMIP_TLS_HOSTNAME_MISMATCH' });
      }
      const right = new KmipClient({
        host: '127.0.0.1',
        servername: 'kms.example',
        port: named.port,
        ...credentials(pki),
      });
      try {
        await right.connect();
      } finally {
        right.close();
      }
      expect(named.connections).toBe(1);
    } finally {
      await named.stop();
    }
  });

  test('a server chain from another CA is refused', async () => {
    const other = makeTestPki(join(dir, 'other'));
    const client = new KmipClient({
      host: '127.0.0.1',
      port: fixture.port,
      ...credentials(fixture.pki),
      ca: readFileSync(other.ca.cert),
    });
    await expect(client.connect()).rejects.toMatchObject({ code: 'KMIP_TLS_UNTRUSTED', requestSent: false });
  });

  test('a client certificate the server does not trust fails with a TLS code', async () => {
    const other = makeTestPki(join(dir, 'stranger'));
    for (const maxVersion of ['TLSv1.2', 'TLSv1.3'] as const) {
      const client = new KmipClient({
        host: '127.0.0.1',
        port: fixture.port,
        ca: readFileSync(fixture.pki.ca.cert),
        cert: other.client.certPem,
        key: other.client.keyPem,
        maxVersion,
      });
      const error = await client.connect().catch((e: unknown) => e);
      expect((error as { code: string }).code).toMatch(
        /^KMIP_(TLS_HANDSHAKE_FAILED|CONNECTION_RESET|CONNECTION_CLOSED)$/,
      );
      client.close();
    }
  });

  test('a client certificate for serverAuth only is named as such, in TLS 1.2 and 1.3', async () => {
    const serverOnly = fixture.pki.ca.issue('server-only', { cn: 'server-only', eku: ['serverAuth'] });
    for (const maxVersion of ['TLSv1.2', 'TLSv1.3'] as const) {
      const client = new KmipClient({
        host: '127.0.0.1',
        port: fixture.port,
        ca: readFileSync(fixture.pki.ca.cert),
        cert: serverOnly.certPem,
        key: serverOnly.keyPem,
        maxVersion,
      });
      await expect(client.connect(), maxVersion).rejects.toMatchObject({
        code: 'KMIP_TLS_CLIENT_CERT_NOT_CLIENT_AUTH',
        message: expect.stringContaining('lacks extendedKeyUsage clientAuth'),
        hint: 'reissue the client certificate with extendedKeyUsage clientAuth',
      });
      client.close();
    }
  });

  test('a client certificate issued by an intermediate is accepted when the intermediate is sent along', async () => {
    const root = fixture.pki.ca;
    const intermediate = root.issue('intermediate', { cn: 'kmip-agent test intermediate', isCa: true });
    const leafKey = join(root.dir, 'leaf.key');
    const leafCsr = join(root.dir, 'leaf.csr');
    const leafCert = join(root.dir, 'leaf.crt');
    const ext = join(root.dir, 'leaf.ext');
    execFileSync('sh', [
      '-c',
      `printf 'basicConstraints=critical,CA:FALSE\\nextendedKeyUsage=clientAuth\\n' > ${ext} && ` +
        `openssl ecparam -name prime256v1 -genkey -noout -out ${leafKey} && ` +
        `openssl req -new -key ${leafKey} -subj /CN=leaf-client -out ${leafCsr} 2>/dev/null && ` +
        `openssl x509 -req -in ${leafCsr} -CA ${intermediate.cert} -CAkey ${intermediate.key} -set_serial 77 ` +
        `-days 2 -sha256 -extfile ${ext} -out ${leafCert} 2>/dev/null`,
    ]);
    const leaf = readFileSync(leafCert, 'utf8');
    const key = readFileSync(leafKey, 'utf8');
    const withChain = new KmipClient({
      host: '127.0.0.1',
      port: fixture.port,
      ca: readFileSync(root.cert),
      cert: leaf + intermediate.certPem,
      key,
    });
    try {
      await withChain.connect();
    } finally {
      withChain.close();
    }
    const withoutChain = new KmipClient({
      host: '127.0.0.1',
      port: fixture.port,
      ca: readFileSync(root.cert),
      cert: leaf,
      key,
    });
    await expect(withoutChain.connect()).rejects.toMatchObject({
      code: expect.stringMatching(/^KMIP_(TLS|CONNECTION)_/),
    });
    withoutChain.close();
  });

  test('connection refused has its own code', async () => {
    const port = await freePort();
    const refused = new KmipClient({ host: '127.0.0.1', port, ...credentials(fixture.pki) });
    await expect(refused.connect()).rejects.toMatchObject({ code: 'KMIP_CONNECTION_REFUSED' });
  });
});

describe('provider failover', () => {
  function provider(servers: { host: string; port: number; ca?: Buffer }[], extra: Partial<KmipProviderOptions> = {}) {
    return new KmipProvider({ servers, ...credentials(fixture.pki), requestTimeoutMs: 700, ...extra });
  }

  test('a server that is down moves the request to the next one; health records both', async () => {
    const down = await freePort();
    const group = provider([
      { host: '127.0.0.1', port: down },
      { host: '127.0.0.1', port: fixture.port },
    ]);
    try {
      const { uniqueIdentifier } = await group.create(aes);
      expect((await group.get(uniqueIdentifier)).value).toHaveLength(16);
      const [first, second] = group.health();
      expect(first!.lastFailure?.code).toBe('KMIP_CONNECTION_REFUSED');
      expect(first!.lastSuccess).toBeUndefined();
      expect(second!.lastSuccess).toBeInstanceOf(Date);
      expect(second!.latencyMs).toBeGreaterThan(0);
      expect(second!.protocolVersion).toBe('1.4');
      expect(group.activeEndpoint).toBe(`127.0.0.1:${fixture.port}`);
    } finally {
      group.close();
    }
  });

  const failure = (call: Promise<unknown>) =>
    call.then(
      () => {
        throw new Error('expected a KmipError, the call succeeded');
      },
      (error: unknown) => error as KmipError,
    );

  test('no server answers: the group says "refused" only when every server refused', async () => {
    const [downA, downB] = [await freePort(), await freePort()];
    const stalling = await KmipFixtureServer.start({ pki: fixture.pki });
    stalling.handler = () => ({ kind: 'stall' });
    const allDown = provider([
      { host: '127.0.0.1', port: downA },
      { host: '127.0.0.1', port: downB },
    ]);
    // The stalling server first, the refusing one last: the last failure alone would read "refused".
    const mixed = provider([
      { host: '127.0.0.1', port: stalling.port },
      { host: '127.0.0.1', port: downA },
    ]);
    try {
      const refused = await failure(allDown.query([1]));
      expect(refused).toMatchObject({ code: 'KMIP_CONNECTION_REFUSED' });
      const loaded = await failure(mixed.query([1]));
      expect(loaded).toMatchObject({ code: 'KMIP_TIMEOUT' });
      expect(loaded.message).toMatch(/no KMIP server of the group answered: .*refused/);
      expect((loaded.details()?.attempts as ServerAttempt[]).map((a) => a.code)).toEqual([
        'KMIP_TIMEOUT',
        'KMIP_CONNECTION_REFUSED',
      ]);
    } finally {
      allDown.close();
      mixed.close();
      await stalling.stop();
    }
  });

  test('a server with a certificate from the wrong CA is skipped', async () => {
    const foreign = await KmipFixtureServer.start({ pki: makeTestPki(join(dir, 'foreign')) });
    const group = provider([
      { host: '127.0.0.1', port: foreign.port },
      { host: '127.0.0.1', port: fixture.port },
    ]);
    try {
      await group.query([1]);
      expect(group.health()[0]!.lastFailure?.code).toBe('KMIP_TLS_UNTRUSTED');
      expect(foreign.requests).toHaveLength(0);
    } finally {
      group.close();
      await foreign.stop();
    }
  });

  test('a server that refuses our client certificate is skipped', async () => {
    const picky = await KmipFixtureServer.start({ pki: makeTestPki(join(dir, 'picky')) });
    const group = provider([
      { host: '127.0.0.1', port: picky.port, ca: readFileSync(picky.pki.ca.cert) },
      { host: '127.0.0.1', port: fixture.port },
    ]);
    try {
      const created = await group.create(aes);
      expect(created.uniqueIdentifier).toBeDefined();
      expect(group.health()[0]!.lastFailure?.code).toMatch(
        /^KMIP_(TLS_HANDSHAKE_FAILED|CONNECTION_RESET|CONNECTION_CLOSED)$/,
      );
      expect(picky.requests).toHaveLength(0);
    } finally {
      group.close();
      await picky.stop();
    }
  });

  test('a stalling server: idempotent requests fail over, a sent Create does not', async () => {
    const stalling = await KmipFixtureServer.start({ pki: fixture.pki });
    const group = provider([
      { host: '127.0.0.1', port: stalling.port },
      { host: '127.0.0.1', port: fixture.port },
    ]);
    try {
      // Negotiation stalls: nothing was sent yet, so even a Create may go to the next server.
      stalling.handler = () => ({ kind: 'stall' });
      const created = await group.create(aes);
      expect(group.health()[0]!.lastFailure?.code).toBe('KMIP_TIMEOUT');

      // Now the first server negotiates, then stalls on the Create itself: no resend anywhere.
      const solo = provider([
        { host: '127.0.0.1', port: stalling.port },
        { host: '127.0.0.1', port: fixture.port },
      ]);
      stalling.handler = (request) =>
        request.items[0]!.operation === Operation.Create ? { kind: 'stall' } : stalling.respond(request);
      const creates = () => fixture.requests.filter((r) => r.items[0]!.operation === Operation.Create).length;
      const before = creates();
      await expect(solo.create(aes)).rejects.toMatchObject({ code: 'KMIP_TIMEOUT' });
      expect(creates()).toBe(before);
      // A Get stalls the same way and is served by the second server.
      stalling.handler = (request) =>
        request.items[0]!.operation === Operation.Get ? { kind: 'stall' } : stalling.respond(request);
      expect((await solo.get(created.uniqueIdentifier)).value).toHaveLength(16);
      solo.close();
    } finally {
      group.close();
      await stalling.stop();
    }
  });

  test('a server that failed is tried last during its cooldown, then first again (fail back)', async () => {
    // The cooldown runs on Date: faked alone (timers and sockets stay real), it is advanced, not waited for.
    vi.useFakeTimers({ toFake: ['Date'] });
    const primary = await KmipFixtureServer.start({ pki: fixture.pki });
    const group = provider(
      [
        { host: '127.0.0.1', port: primary.port },
        { host: '127.0.0.1', port: fixture.port },
      ],
      { cooldownMs: 300 },
    );
    try {
      primary.handler = () => ({ kind: 'stall' });
      await group.query([1]);
      expect(group.activeEndpoint).toBe(`127.0.0.1:${fixture.port}`);
      primary.handler = (request) => primary.respond(request);
      const seen = primary.requests.length;
      await group.query([1]);
      expect(primary.requests.length).toBe(seen);
      vi.advanceTimersByTime(299);
      await group.query([1]);
      expect(primary.requests.length).toBe(seen);
      vi.advanceTimersByTime(1);
      await group.query([1]);
      expect(group.activeEndpoint).toBe(`127.0.0.1:${primary.port}`);
      expect(group.health()[0]!.lastSuccess).toBeInstanceOf(Date);
    } finally {
      vi.useRealTimers();
      group.close();
      await primary.stop();
    }
  });

  test('a refusal from a healthy server is the answer: no failover', async () => {
    const second = await KmipFixtureServer.start({ pki: fixture.pki });
    const group = provider([
      { host: '127.0.0.1', port: fixture.port },
      { host: '127.0.0.1', port: second.port },
    ]);
    try {
      const error = await group.get('no-such-object').catch((e: unknown) => e);
      expect(error).toBeInstanceOf(KmipOperationError);
      expect(second.requests).toHaveLength(0);
      expect(group.health()[0]!.lastFailure).toBeUndefined();
    } finally {
      group.close();
      await second.stop();
    }
  });

  test('failover is never silent: onAttempt sees each server tried and why it was passed over', async () => {
    const down = await freePort();
    const seen: ServerAttempt[] = [];
    const group = provider(
      [
        { host: '127.0.0.1', port: down },
        { host: '127.0.0.1', port: fixture.port },
      ],
      { onAttempt: (a) => seen.push(a) },
    );
    try {
      await group.query([1]);
      expect(seen).toEqual([
        {
          endpoint: `127.0.0.1:${down}`,
          outcome: 'failed',
          code: 'KMIP_CONNECTION_REFUSED',
          message: expect.stringContaining('refused'),
          latencyMs: expect.any(Number),
        },
        { endpoint: `127.0.0.1:${fixture.port}`, outcome: 'answered', latencyMs: expect.any(Number) },
      ]);
      seen.length = 0;
      // A refusal is an answer (the server is healthy): nothing else is tried.
      await expect(group.get('no-such-object')).rejects.toBeInstanceOf(KmipOperationError);
      expect(seen).toEqual([
        { endpoint: `127.0.0.1:${fixture.port}`, outcome: 'answered', latencyMs: expect.any(Number) },
      ]);
    } finally {
      group.close();
    }
  });

  test('when every server fails, the error carries the attempts; servers in cooldown are marked demoted', async () => {
    const [a, b] = [await freePort(), await freePort()];
    const seen: ServerAttempt[] = [];
    const group = provider(
      [
        { host: '127.0.0.1', port: a },
        { host: '127.0.0.1', port: b },
      ],
      { onAttempt: (attempt) => seen.push(attempt) },
    );
    try {
      const first = (await group.query([1]).catch((e: unknown) => e)) as KmipError;
      const failed = (port: number, demoted?: boolean) => ({
        endpoint: `127.0.0.1:${port}`,
        outcome: 'failed',
        code: 'KMIP_CONNECTION_REFUSED',
        message: expect.any(String),
        latencyMs: expect.any(Number),
        ...(demoted ? { demoted } : {}),
      });
      expect(first).toBeInstanceOf(KmipError);
      expect(first.code).toBe('KMIP_CONNECTION_REFUSED');
      expect(first.details()?.attempts).toEqual([failed(a), failed(b)]);
      expect(JSON.parse(JSON.stringify(first)).attempts).toEqual([failed(a), failed(b)]);
      expect(seen).toEqual([failed(a), failed(b)]);
      // Both failed within the cooldown (30 s by default): tried again, in list order, marked demoted.
      const second = (await group.query([1]).catch((e: unknown) => e)) as KmipError;
      expect(second.details()?.attempts).toEqual([failed(a, true), failed(b, true)]);
      // One server alone: its own error, with its one attempt.
      const solo = provider([{ host: '127.0.0.1', port: a }]);
      const only = (await solo.query([1]).catch((e: unknown) => e)) as KmipError;
      expect(only.message).toContain(`127.0.0.1:${a}`);
      expect(only.details()?.attempts).toEqual([failed(a)]);
      expect(only.requestSent).toBe(false);
      solo.close();
    } finally {
      group.close();
    }
  });

  test('every server failing gives one error naming them all; testConnection reports each', async () => {
    const a = await freePort();
    const group = provider([
      { host: '127.0.0.1', port: a },
      { host: '127.0.0.1', port: fixture.port, ca: readFileSync(makeTestPki(join(dir, 'third')).ca.cert) },
    ]);
    try {
      const error = await group.query([1]).catch((e: unknown) => e);
      expect(error).toMatchObject({ code: 'KMIP_TLS_UNTRUSTED' });
      expect((error as Error).message).toContain(`127.0.0.1:${a}`);
      const tests = await group.testConnection();
      expect(tests.map((t) => [t.ok, t.error?.code])).toEqual([
        [false, 'KMIP_CONNECTION_REFUSED'],
        [false, 'KMIP_TLS_UNTRUSTED'],
      ]);
    } finally {
      group.close();
    }
    const healthy = provider([{ host: '127.0.0.1', port: fixture.port }]);
    try {
      const [result] = await healthy.testConnection();
      expect(result).toMatchObject({ ok: true, protocolVersion: '1.4', tlsVersion: 'TLSv1.3' });
    } finally {
      healthy.close();
    }
  });
});
