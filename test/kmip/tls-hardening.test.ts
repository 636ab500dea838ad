/**
 * TLS hardening of the client: weak server chains (RSA < 2048, EC < 256, SHA-1), certificates not yet
 * valid, servers stuck on TLS 1.0/1.1 and encrypted client keys each fail with their own code and a
 * hint, before any request is written. Real TLS, certificates made per test with openssl, against a
 * TEST FIXTURE peer: a bare node:tls server (not KMIP) that loads any certificate and counts the bytes
 * clients send after the handshake.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, type DetailedPeerCertificate, type TLSSocket } from 'node:tls';
import { TestCa, type Issued } from '../support/certs.js';
import { KmipConnection, weakChainError, type TlsEndpoint } from '../../src/kmip/connection.js';
import { KmipError } from '../../src/kmip/errors.js';

let dir: string;
let ca: TestCa;
/** The client's own identity (the fixture peers do not ask for it; the client insists on having one). */
let client: Issued;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'kmip-agent-tls-hardening-'));
  ca = TestCa.create(join(dir, 'ca'));
  client = ca.issue('client', { cn: 'kmip-agent-test-client', eku: ['clientAuth'] });
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const SERVER = { eku: ['serverAuth'], san: ['IP:127.0.0.1'] };

interface Peer {
  port: number;
  connections: number;
  /** Bytes clients sent after the handshake, counted once every connection has closed. */
  bytesAfterClose(): Promise<number>;
  close(): Promise<void>;
}

/** TEST FIXTURE: a bare TLS server with the given chain and versions; it never answers. */
async function tlsPeer(chain: string, key: string, versions: Partial<Record<'min' | 'max', string>> = {}) {
  let bytes = 0;
  const open = new Set<Promise<void>>();
  const server = createServer(
    {
      cert: chain,
      key,
      // Security level 0 so that the fixture can load (and offer) the weak certificates under test.
      ciphers: 'DEFAULT@SECLEVEL=0',
      minVersion: (versions.min ?? 'TLSv1') as 'TLSv1',
      maxVersion: (versions.max ?? 'TLSv1.3') as 'TLSv1.3',
    },
    (socket: TLSSocket) => socket.on('data', (chunk: Buffer) => (bytes += chunk.length)),
  );
  const peer: Peer = {
    port: 0,
    connections: 0,
    bytesAfterClose: async () => {
      await Promise.all(open);
      return bytes;
    },
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
  server.on('connection', (socket) => {
    peer.connections++;
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    open.add(closed);
  });
  server.on('tlsClientError', () => undefined);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  peer.port = (server.address() as { port: number }).port;
  return peer;
}

function target(port: number, extra: Partial<TlsEndpoint> = {}): TlsEndpoint {
  return { host: '127.0.0.1', port, ca: readFileSync(ca.cert), cert: client.certPem, key: client.keyPem, ...extra };
}

async function refusal(peer: Peer, extra: Partial<TlsEndpoint> = {}): Promise<KmipError> {
  const error = await KmipConnection.open(target(peer.port, extra)).then(
    (c) => {
      c.close();
      throw new Error('the connection was accepted');
    },
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(KmipError);
  return error as KmipError;
}

/** Opens against `peer`, expects `code` with a hint in the JSON form, and that nothing was sent. */
async function expectRefused(peer: Peer, code: string, message: RegExp, extra: Partial<TlsEndpoint> = {}) {
  try {
    const error = await refusal(peer, extra);
    expect(error.code).toBe(code);
    expect(error.message).toMatch(message);
    expect(error.hint).toEqual(expect.any(String));
    expect(JSON.parse(JSON.stringify(error))).toMatchObject({ code, hint: error.hint });
    expect(await peer.bytesAfterClose()).toBe(0);
  } finally {
    await peer.close();
  }
}

describe('weak server chains are refused before any request', () => {
  test('a server certificate with a 1024-bit RSA key: KMIP_TLS_WEAK_KEY', async () => {
    const leaf = ca.issue('rsa1024', { cn: 'weak-rsa', ...SERVER, keyType: { rsa: 1024 } });
    await expectRefused(await tlsPeer(leaf.certPem, leaf.keyPem), 'KMIP_TLS_WEAK_KEY', /1024-bit RSA/);
  });

  test('a 2048-bit RSA server certificate is accepted', async () => {
    const leaf = ca.issue('rsa2048', { cn: 'rsa-ok', ...SERVER, keyType: { rsa: 2048 } });
    const peer = await tlsPeer(leaf.certPem, leaf.keyPem);
    try {
      const connection = await KmipConnection.open(target(peer.port));
      connection.close();
    } finally {
      await peer.close();
    }
  });

  test('an intermediate CA with a 224-bit EC key in the chain: KMIP_TLS_WEAK_KEY naming the CA certificate', async () => {
    const intermediate = ca.issue('ec224-ca', { cn: 'weak-intermediate', isCa: true, keyType: { curve: 'secp224r1' } });
    const leaf = ca.under(intermediate).issue('under-ec224', { cn: 'under-ec224', ...SERVER });
    await expectRefused(
      await tlsPeer(leaf.certPem + intermediate.certPem, leaf.keyPem),
      'KMIP_TLS_WEAK_KEY',
      /a CA certificate of the server chain \(CN=weak-intermediate\) has a 224-bit EC key/,
    );
  });

  test('a SHA-1-signed server certificate: KMIP_TLS_WEAK_SIGNATURE, not a connection failure', async () => {
    const leaf = ca.issue('sha1', { cn: 'sha1-signed', ...SERVER, digest: 'sha1' });
    await expectRefused(await tlsPeer(leaf.certPem, leaf.keyPem), 'KMIP_TLS_WEAK_SIGNATURE', /SHA-1/);
  });

  test("the library's own chain check finds SHA-1 signatures where OpenSSL's policy lets them through", () => {
    const sha1 = ca.issue('sha1-own', { cn: 'sha1-own', ...SERVER, digest: 'sha1' });
    const sha256 = ca.issue('sha256-own', { cn: 'sha256-own', ...SERVER });
    const error = weakChainError(peerChain([sha1.certPem, readFileSync(ca.cert, 'utf8')]), 'kms:5696');
    expect(error).toMatchObject({ code: 'KMIP_TLS_WEAK_SIGNATURE', hint: expect.any(String) });
    expect(error!.message).toBe('kms:5696: the server certificate (CN=sha1-own) is signed with ecdsa-with-SHA1');
    expect(weakChainError(peerChain([sha256.certPem, readFileSync(ca.cert, 'utf8')]), 'kms:5696')).toBeUndefined();
  });
});

describe('misreported TLS failures name their cause', () => {
  test('a certificate not valid yet: KMIP_TLS_CERT_NOT_YET_VALID (not EXPIRED)', async () => {
    const leaf = ca.issue('future', { cn: 'future', ...SERVER, notBefore: '20400101000000Z' });
    await expectRefused(await tlsPeer(leaf.certPem, leaf.keyPem), 'KMIP_TLS_CERT_NOT_YET_VALID', /not valid yet/);
  });

  test('an expired certificate: KMIP_TLS_CERT_EXPIRED', async () => {
    const leaf = ca.issue('expired', { cn: 'expired', ...SERVER, notBefore: '20200101000000Z' });
    await expectRefused(await tlsPeer(leaf.certPem, leaf.keyPem), 'KMIP_TLS_CERT_EXPIRED', /has expired/);
  });

  test('a server that speaks only TLS 1.0/1.1: KMIP_TLS_PROTOCOL_VERSION', async () => {
    const leaf = ca.issue('old-tls', { cn: 'old-tls', ...SERVER });
    await expectRefused(
      await tlsPeer(leaf.certPem, leaf.keyPem, { min: 'TLSv1', max: 'TLSv1.1' }),
      'KMIP_TLS_PROTOCOL_VERSION',
      /no TLS version in common with the server.*TLS 1\.0 and 1\.1 are refused/,
    );
  });

  test('an encrypted client key: KMIP_TLS_KEY_ENCRYPTED without a passphrase or with a wrong one; the right one connects', async () => {
    const leaf = ca.issue('key-server', { cn: 'key-server', ...SERVER });
    const client = ca.issue('enc-client', { cn: 'enc-client', eku: ['clientAuth'] });
    const encryptedKey = encrypt(client, 'correct horse');
    const peer = await tlsPeer(leaf.certPem, leaf.keyPem);
    try {
      const credentials = { cert: client.certPem, key: encryptedKey };
      const none = await refusal(peer, credentials);
      expect(none).toMatchObject({ code: 'KMIP_TLS_KEY_ENCRYPTED', hint: expect.stringContaining('passphrase') });
      expect(none.message).toMatch(/encrypted and no passphrase was given/);
      expect(none.message).not.toMatch(/bad decrypt/);
      // Refused before connecting: the peer saw nobody.
      expect(peer.connections).toBe(0);
      const wrong = await refusal(peer, { ...credentials, passphrase: 'wrong' });
      expect(wrong.code).toBe('KMIP_TLS_KEY_ENCRYPTED');
      expect(wrong.message).toMatch(/passphrase does not decrypt/);
      const right = await KmipConnection.open(target(peer.port, { ...credentials, passphrase: 'correct horse' }));
      right.close();
      expect(peer.connections).toBe(1);
    } finally {
      await peer.close();
    }
  });
});

describe('a pinned server certificate (trust on first use)', () => {
  test('the pinned leaf is accepted; another leaf of the same CA is refused with both fingerprints, nothing sent', async () => {
    const first = ca.issue('pinned-first', { cn: 'kms', ...SERVER });
    const second = ca.issue('pinned-second', { cn: 'kms', ...SERVER });
    const pin = new X509Certificate(first.certPem).fingerprint256;
    const presented = new X509Certificate(second.certPem).fingerprint256;
    const good = await tlsPeer(first.certPem, first.keyPem);
    try {
      const connection = await KmipConnection.open(target(good.port, { pinnedSha256: pin.toLowerCase() }));
      connection.close();
    } finally {
      await good.close();
    }
    const changed = await tlsPeer(second.certPem, second.keyPem);
    const error = await refusal(changed, { pinnedSha256: pin });
    expect(error.code).toBe('KMIP_TLS_SERVER_CERT_CHANGED');
    expect(error.message).toContain(pin);
    expect(error.message).toContain(presented);
    expect(error.hint).toMatch(/kmip-agent server trust/);
    expect(error.details()).toMatchObject({ pinnedSha256: pin, presentedSha256: presented });
    expect(await changed.bytesAfterClose()).toBe(0);
    await changed.close();
  });

  test('a pin does not replace chain verification: the pinned leaf from an untrusted CA is refused as untrusted', async () => {
    const other = TestCa.create(join(dir, 'other-ca'), 'another CA');
    const leaf = other.issue('pinned-other', { cn: 'kms', ...SERVER });
    const pin = new X509Certificate(leaf.certPem).fingerprint256;
    await expectRefused(await tlsPeer(leaf.certPem, leaf.keyPem), 'KMIP_TLS_UNTRUSTED', /not trusted/, {
      pinnedSha256: pin,
    });
  });
});

function encrypt(issued: Issued, passphrase: string): string {
  return execFileSync('openssl', ['pkey', '-in', issued.key, '-aes256', '-passout', 'stdin'], {
    input: passphrase + '\n',
    encoding: 'utf8',
  });
}

/** The chain as node:tls reports it (getPeerCertificate(true)), built from PEMs, leaf first. */
function peerChain(pems: string[]): DetailedPeerCertificate {
  const certs = pems.map((pem) => {
    const x509 = new X509Certificate(pem);
    const details = x509.publicKey.asymmetricKeyDetails ?? {};
    const bits = details.modulusLength ?? { prime256v1: 256, secp384r1: 384 }[details.namedCurve ?? ''];
    return {
      raw: x509.raw,
      bits,
      fingerprint256: x509.fingerprint256,
      subject: { CN: /CN=([^\n]*)/.exec(x509.subject)?.[1] },
    } as unknown as DetailedPeerCertificate;
  });
  certs.forEach((cert, i) => (cert.issuerCertificate = certs[i + 1] ?? cert));
  return certs[0]!;
}
