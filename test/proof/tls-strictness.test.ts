/**
 * Proof: TLS strictness, the ten cases of issue 12 (weak chains counted as two: SHA-1 and RSA 1024).
 * The agent's KMIP client connects through the fault proxy to a TEST FIXTURE peer (a bare node:tls
 * server that asks for a client certificate and counts the bytes it decrypts; not KMIP). Each case is
 * refused with its own code and a hint saying what to fix, and the proxy shows that no KMIP request left
 * the agent: for refusals of the server's side, nothing but a ClientHello and at most one alert; for the
 * client's own unusable credentials, no connection at all. Same bounded run in CI and with
 * KMIP_AGENT_PROOF=full (it takes seconds).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, type Server, type TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KmipClient } from '../../src/kmip/client.js';
import { KmipError } from '../../src/kmip/errors.js';
import { TestCa, type Issued } from '../support/certs.js';
import { FaultProxy, type Flow } from '../support/fault-proxy.js';

const SERVER = { eku: ['serverAuth'], san: ['IP:127.0.0.1', 'DNS:localhost'] };
/** TLS 1.3 encrypts alerts: 2 alert bytes + 1 content type + 16 tag bytes, behind the 5-byte header. */
const ENCRYPTED_ALERT_RECORD = 5 + 2 + 1 + 16;

let dir: string;
let ca: TestCa;
let client: Issued;

/** What a case produced, printed in the closing PROOF line. */
const outcomes: { name: string; code: string; ok: boolean }[] = [];

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'kmip-agent-proof-tls-'));
  ca = TestCa.create(join(dir, 'ca'));
  client = ca.issue('client', { cn: 'kmip-agent-proof-client', eku: ['clientAuth'] });
});
afterAll(() => {
  const misbehaved = outcomes.filter((o) => !o.ok);
  console.log(
    `PROOF tls-strictness cases=${outcomes.length} refused-by-name=${outcomes.length - misbehaved.length} misbehaved=${misbehaved.length}` +
      (misbehaved.length ? ` (${misbehaved.map((m) => m.name).join(', ')})` : ''),
  );
  for (const o of outcomes) console.log(`PROOF tls-strictness case="${o.name}" code=${o.code} ok=${o.ok}`);
  rmSync(dir, { recursive: true, force: true });
});

interface Peer {
  server: Server;
  port: number;
  /** Bytes the peer decrypted from clients (a KMIP request would be among them). */
  decrypted: number;
  /** Resolves with the socket that delivered the first decrypted bytes. */
  firstData: Promise<TLSSocket>;
}

/**
 * TEST FIXTURE: a TLS server with `chain`/`key`, asking for a client certificate from the test CA. Security
 * level 0 so that it can load and offer the weak certificates under test.
 */
async function tlsPeer(chain: string, key: string, versions: { min?: string; max?: string } = {}): Promise<Peer> {
  let gotData: (s: TLSSocket) => void = () => undefined;
  const firstData = new Promise<TLSSocket>((resolve) => (gotData = resolve));
  const peer: Peer = { server: undefined as unknown as Server, port: 0, decrypted: 0, firstData };
  peer.server = createServer(
    {
      cert: chain,
      key,
      ca: readFileSync(ca.cert),
      requestCert: true,
      rejectUnauthorized: true,
      ciphers: 'DEFAULT@SECLEVEL=0',
      minVersion: (versions.min ?? 'TLSv1') as 'TLSv1',
      maxVersion: (versions.max ?? 'TLSv1.3') as 'TLSv1.3',
    },
    (socket: TLSSocket) =>
      socket.on('data', (chunk: Buffer) => {
        peer.decrypted += chunk.length;
        gotData(socket);
      }),
  );
  peer.server.on('tlsClientError', () => undefined);
  await new Promise<void>((resolve) => peer.server.listen(0, '127.0.0.1', resolve));
  peer.port = (peer.server.address() as { port: number }).port;
  return peer;
}

/** A self-signed server certificate (no CA behind it), as a server set up by hand presents. */
function selfSigned(name: string): Issued {
  const key = join(dir, `${name}.key`);
  const cert = join(dir, `${name}.crt`);
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      key,
      '-out',
      cert,
      '-days',
      '30',
      '-subj',
      '/CN=localhost',
      '-addext',
      'subjectAltName=IP:127.0.0.1,DNS:localhost',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  return { cert, key, certPem: readFileSync(cert, 'utf8'), keyPem: readFileSync(key, 'utf8') };
}

/** Nothing but a ClientHello (and a ChangeCipherSpec) and at most one alert went from the client. */
function helloAndAlertOnly(flow: Flow): boolean {
  const [hello, ...rest] = flow.frames;
  if (hello?.type !== 22) return false;
  const alerts = rest.filter((f) => f.type === 21 || (f.type === 23 && f.length <= ENCRYPTED_ALERT_RECORD));
  const others = rest.filter((f) => f.type !== 20 && !alerts.includes(f));
  return others.length === 0 && alerts.length <= 1;
}

interface Case {
  name: string;
  server: () => Issued;
  versions?: { min?: string; max?: string };
  /** Client credentials instead of the good ones. */
  credentials?: () => { cert?: string; key?: string };
  /** The server side is refused in the handshake; else the client refuses before connecting. */
  side: 'server' | 'client';
  code: string;
  hint: RegExp;
}

const CASES: Case[] = [
  {
    name: 'wrong CA',
    server: () => TestCa.create(join(dir, 'other-ca')).issue('wrong-ca', { cn: 'localhost', ...SERVER }),
    side: 'server',
    code: 'KMIP_TLS_UNTRUSTED',
    hint: /trust the CA/,
  },
  {
    name: 'expired server certificate',
    server: () => ca.issue('expired', { cn: 'localhost', ...SERVER, notBefore: '20200101000000Z' }),
    side: 'server',
    code: 'KMIP_TLS_CERT_EXPIRED',
    hint: /renewed|clock/,
  },
  {
    name: 'server certificate not yet valid',
    server: () => ca.issue('future', { cn: 'localhost', ...SERVER, notBefore: '20990101000000Z' }),
    side: 'server',
    code: 'KMIP_TLS_CERT_NOT_YET_VALID',
    hint: /clock/,
  },
  {
    name: 'hostname mismatch',
    server: () => ca.issue('other-name', { cn: 'kms.example', eku: ['serverAuth'], san: ['DNS:kms.example'] }),
    side: 'server',
    code: 'KMIP_TLS_HOSTNAME_MISMATCH',
    hint: /servername|name the server certificate lists/,
  },
  {
    name: 'no client certificate',
    server: () => ca.issue('for-no-client-cert', { cn: 'localhost', ...SERVER }),
    credentials: () => ({}),
    side: 'client',
    code: 'KMIP_TLS_NO_CLIENT_CERT',
    hint: /client certificate and its private key/,
  },
  {
    name: 'client certificate without EKU clientAuth',
    server: () => ca.issue('for-server-only-client', { cn: 'localhost', ...SERVER }),
    credentials: () => {
      const c = ca.issue('server-only-client', { cn: 'kmip-agent-proof-client', eku: ['serverAuth'] });
      return { cert: c.certPem, key: c.keyPem };
    },
    side: 'client',
    code: 'KMIP_TLS_CLIENT_CERT_NOT_CLIENT_AUTH',
    hint: /extendedKeyUsage clientAuth/,
  },
  {
    name: 'TLS 1.0/1.1-only server',
    server: () => ca.issue('old-tls', { cn: 'localhost', ...SERVER }),
    versions: { min: 'TLSv1', max: 'TLSv1.1' },
    side: 'server',
    code: 'KMIP_TLS_PROTOCOL_VERSION',
    hint: /TLS 1\.2 or later/,
  },
  {
    name: 'self-signed untrusted server',
    server: () => selfSigned('self-signed'),
    side: 'server',
    code: 'KMIP_TLS_UNTRUSTED',
    hint: /trust the CA/,
  },
  {
    name: 'certificate/key mismatch',
    server: () => ca.issue('for-mismatch', { cn: 'localhost', ...SERVER }),
    credentials: () => ({ cert: client.certPem, key: ca.issue('stray', { cn: 'stray', eku: ['clientAuth'] }).keyPem }),
    side: 'client',
    code: 'KMIP_TLS_BAD_CREDENTIALS',
    hint: /private key does not belong to the client certificate/,
  },
  {
    name: 'weak signature (SHA-1)',
    server: () => ca.issue('sha1', { cn: 'localhost', ...SERVER, digest: 'sha1' }),
    side: 'server',
    code: 'KMIP_TLS_WEAK_SIGNATURE',
    hint: /SHA-256 or stronger/,
  },
  {
    name: 'weak key (RSA 1024)',
    server: () => ca.issue('rsa1024', { cn: 'localhost', ...SERVER, keyType: { rsa: 1024 } }),
    side: 'server',
    code: 'KMIP_TLS_WEAK_KEY',
    hint: /at least 2048 bits/,
  },
];

describe('proof: TLS strictness (each case refused by name, with its fix; no KMIP request leaves the agent)', () => {
  it('control: good credentials against a good server get through the same proxy (the checks can fail)', async () => {
    const leaf = ca.issue('good', { cn: 'localhost', ...SERVER });
    const peer = await tlsPeer(leaf.certPem, leaf.keyPem);
    const proxy = await new FaultProxy({ host: '127.0.0.1', port: peer.port }).start();
    const kmip = new KmipClient({
      host: '127.0.0.1',
      port: proxy.port,
      ca: readFileSync(ca.cert),
      cert: client.certPem,
      key: client.keyPem,
      requestTimeoutMs: 30_000,
    });
    try {
      // The fixture never answers: once it has the request it hangs up, which ends the client's wait.
      const pending = kmip.connect().catch((e: unknown) => e);
      (await peer.firstData).destroy();
      expect(await pending).toBeInstanceOf(KmipError);
      expect(peer.decrypted).toBeGreaterThan(0);
      expect(helloAndAlertOnly(proxy.connections[0]!.toServer)).toBe(false);
    } finally {
      await proxy.close();
      await new Promise((r) => peer.server.close(r));
    }
  });

  for (const c of CASES) {
    it(`${c.name}: ${c.code}`, async () => {
      const leaf = c.server();
      const peer = await tlsPeer(leaf.certPem, leaf.keyPem, c.versions);
      const proxy = await new FaultProxy({ host: '127.0.0.1', port: peer.port }).start();
      const credentials = c.credentials ? c.credentials() : { cert: client.certPem, key: client.keyPem };
      const kmip = new KmipClient({
        host: '127.0.0.1',
        port: proxy.port,
        ca: readFileSync(ca.cert),
        ...credentials,
        requestTimeoutMs: 30_000,
      });
      let ok = false;
      let code = '(none)';
      try {
        const error = await kmip.connect().then(
          () => new Error('the connection was accepted'),
          (e: unknown) => e,
        );
        code = (error as { code?: string }).code ?? String(error);
        expect(error).toBeInstanceOf(KmipError);
        const refused = error as KmipError;
        expect(refused.code).toBe(c.code);
        expect(refused.hint).toMatch(c.hint);
        expect(JSON.parse(JSON.stringify(refused))).toMatchObject({ code: c.code, hint: refused.hint });
        // Wait for every proxied connection to finish before reading what crossed it.
        await Promise.all(proxy.connections.map((x) => proxy.closed(x)));
        if (c.side === 'client') expect(proxy.accepted).toBe(0);
        else {
          expect(proxy.accepted).toBeGreaterThanOrEqual(1);
          for (const x of proxy.connections)
            expect(helloAndAlertOnly(x.toServer), JSON.stringify(x.toServer)).toBe(true);
        }
        expect(peer.decrypted).toBe(0);
        ok = true;
      } finally {
        outcomes.push({ name: c.name, code, ok });
        kmip.close();
        await proxy.close();
        await new Promise((r) => peer.server.close(r));
      }
    });
  }
});
