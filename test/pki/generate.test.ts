/**
 * Key pairs, certificate requests and self-signed certificates made by the pki layer, checked by the real
 * openssl CLI (signature, extensions, algorithms), and a request signed by a CA with `openssl x509 -req`.
 */
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import {
  createCertificateRequest,
  createSelfSignedCertificate,
  describeCertificate,
  generateKeyPair,
  KEY_TYPE_NAMES,
  loadPrivateKey,
  parseCertificates,
  parseSubjectAltName,
  validateClientCertificate,
  type KeyTypeName,
} from '../../src/pki/index.js';
import { TestCa } from '../support/certs.js';
import { openssl, tempDir, write } from './support.js';

const EXPECTED: Record<KeyTypeName, { key: RegExp; signature: string; usage: string }> = {
  rsa2048: { key: /-Key: \(2048 bit/, signature: 'sha256WithRSAEncryption', usage: 'Key Encipherment' },
  rsa3072: { key: /-Key: \(3072 bit/, signature: 'sha256WithRSAEncryption', usage: 'Key Encipherment' },
  rsa4096: { key: /-Key: \(4096 bit/, signature: 'sha256WithRSAEncryption', usage: 'Key Encipherment' },
  p256: { key: /NIST CURVE: P-256/, signature: 'ecdsa-with-SHA256', usage: 'Key Agreement' },
  p384: { key: /NIST CURVE: P-384/, signature: 'ecdsa-with-SHA384', usage: 'Key Agreement' },
};

const sans = ['DNS:nas-01.example.com', 'IP:192.0.2.10'].map(parseSubjectAltName);
const subject = { cn: 'nas-01', o: 'Example, Inc.', ou: 'Storage', c: 'DE' };

describe('key pairs and certificate requests', () => {
  it.each(KEY_TYPE_NAMES)(
    '%s: a PKCS#8 key and a CSR openssl verifies, with clientAuth and the right usages',
    async (type) => {
      const dir = tempDir();
      const pair = await generateKeyPair(type);
      expect(pair.privateKeyPem).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
      const keyFile = write(dir, 'client.key', pair.privateKeyPem);
      expect(openssl(['pkey', '-in', keyFile, '-noout', '-text'])).toMatch(EXPECTED[type].key);

      const csr = await createCertificateRequest({ privateKey: pair.privateKey, subject, sans });
      const csrFile = write(dir, 'client.csr', csr);
      // -verify fails (non-zero exit) on a bad self-signature.
      openssl(['req', '-in', csrFile, '-verify', '-noout']);
      const text = openssl(['req', '-in', csrFile, '-noout', '-text', '-nameopt', 'RFC2253']);
      expect(text).toContain('Subject: CN=nas-01,OU=Storage,O=Example\\, Inc.,C=DE');
      expect(text).toMatch(EXPECTED[type].key);
      expect(text).toContain(`Signature Algorithm: ${EXPECTED[type].signature}`);
      expect(text).toMatch(/Extended Key Usage: *\n *TLS Web Client Authentication\n/);
      expect(text).toMatch(new RegExp(`Key Usage: critical\\n *Digital Signature, ${EXPECTED[type].usage}\\n`));
      expect(text).toContain('DNS:nas-01.example.com, IP Address:192.0.2.10');
      // The key on its own is the one in the request.
      expect(openssl(['req', '-in', csrFile, '-noout', '-pubkey'])).toBe(openssl(['pkey', '-in', keyFile, '-pubout']));
    },
  );

  it('a CSR signed by a CA with `openssl x509 -req` imports with the key it was made with', async () => {
    const dir = tempDir();
    const ca = TestCa.create(dir);
    const pair = await generateKeyPair('p256');
    const csrFile = write(dir, 'agent.csr', await createCertificateRequest({ privateKey: pair.privateKey, subject }));
    const cert = ca.sign('agent', csrFile, { eku: ['clientAuth'], days: 10 });
    const now = new Date();
    const result = validateClientCertificate(
      { certPem: readFileSync(cert, 'utf8'), keyPem: pair.privateKeyPem },
      { now },
    );
    expect(result.warnings).toEqual([]);
    expect(result.certificate).toMatchObject({
      issuer: 'CN=kmip-agent test CA',
      keyType: 'EC P-256',
      extendedKeyUsage: ['clientAuth'],
      keyUsage: ['digitalSignature', 'keyAgreement'],
      selfSigned: false,
      isCa: false,
      daysLeft: 9,
    });
    expect(result.certificate.subject).toMatch(/CN=nas-01/);
  });

  it('a self-signed certificate: openssl parses it and verifies it as an SSL client certificate', async () => {
    const dir = tempDir();
    const now = new Date('2026-12-01T12:00:00Z');
    for (const type of ['rsa2048', 'p384'] as const) {
      const pair = await generateKeyPair(type);
      const pem = await createSelfSignedCertificate({ privateKey: pair.privateKey, subject, sans, now, days: 365 });
      const file = write(dir, `${type}.crt`, pem);
      const text = openssl(['x509', '-in', file, '-noout', '-text']);
      expect(text).toContain(`Signature Algorithm: ${EXPECTED[type].signature}`);
      expect(text).toContain('CA:FALSE');
      expect(text).toContain('TLS Web Client Authentication');
      expect(openssl(['x509', '-in', file, '-noout', '-startdate', '-enddate'])).toBe(
        'notBefore=Dec  1 11:55:00 2026 GMT\nnotAfter=Dec  1 12:00:00 2027 GMT\n',
      );
      // Trusting the certificate as itself, for client authentication, at a time inside its validity.
      const at = String(Math.floor(now.getTime() / 1000));
      expect(openssl(['verify', '-attime', at, '-purpose', 'sslclient', '-CAfile', file, file])).toContain(': OK');
      const info = describeCertificate(parseCertificates(pem, 'test')[0], now);
      expect(info).toMatchObject({ selfSigned: true, daysLeft: 365, subject: info.issuer });
      expect(info.subjectAltNames).toEqual(['DNS:nas-01.example.com', 'IP:192.0.2.10']);
      expect(validateClientCertificate({ certPem: pem, keyPem: pair.privateKeyPem }, { now }).warnings).toEqual([]);
    }
  });

  it('the serial of a self-signed certificate comes from the random source, positive', async () => {
    const pair = await generateKeyPair('p256');
    const now = new Date('2026-12-01T12:00:00Z');
    const pem = await createSelfSignedCertificate({
      privateKey: pair.privateKey,
      subject: { cn: 'x' },
      now,
      days: 1,
      random: (n) => Buffer.alloc(n, 0xff),
    });
    expect(describeCertificate(parseCertificates(pem, 'test')[0], now).serial).toBe('7F' + 'FF'.repeat(15));
  });

  it('refuses bad subjects, SANs and validity before signing anything', async () => {
    const { privateKey } = await generateKeyPair('p256');
    const now = new Date();
    await expect(createCertificateRequest({ privateKey, subject: { cn: '' } })).rejects.toMatchObject({
      code: 'PKI_BAD_SUBJECT',
    });
    await expect(createCertificateRequest({ privateKey, subject: { cn: 'x'.repeat(65) } })).rejects.toMatchObject({
      code: 'PKI_BAD_SUBJECT',
    });
    await expect(createCertificateRequest({ privateKey, subject: { cn: 'a', c: 'Germany' } })).rejects.toMatchObject({
      code: 'PKI_BAD_SUBJECT',
      message: /two-letter/,
    });
    expect(() => parseSubjectAltName('DNS:has space')).toThrow(expect.objectContaining({ code: 'PKI_BAD_SAN' }));
    expect(() => parseSubjectAltName('IP:300.1.1.1')).toThrow(expect.objectContaining({ code: 'PKI_BAD_SAN' }));
    expect(parseSubjectAltName('10.0.0.1')).toEqual({ type: 'ip', value: '10.0.0.1' });
    expect(parseSubjectAltName('::1')).toEqual({ type: 'ip', value: '::1' });
    expect(parseSubjectAltName('nas.example')).toEqual({ type: 'dns', value: 'nas.example' });
    await expect(createSelfSignedCertificate({ privateKey, subject: { cn: 'a' }, now, days: 0 })).rejects.toMatchObject(
      { code: 'PKI_BAD_VALIDITY' },
    );
  });

  it('loads PKCS#1 and SEC1 keys written by openssl and signs requests with them', async () => {
    const dir = tempDir();
    const rsa = write(dir, 'rsa.key', openssl(['genrsa', '-traditional', '2048']));
    const ec = openssl(['ecparam', '-name', 'prime256v1', '-genkey']); // "EC PARAMETERS" block, then the key
    expect(readFileSync(rsa, 'utf8')).toMatch(/BEGIN RSA PRIVATE KEY/);
    expect(ec).toMatch(/BEGIN EC PARAMETERS[\s\S]*BEGIN EC PRIVATE KEY/);
    for (const pem of [readFileSync(rsa, 'utf8'), ec]) {
      const csr = write(dir, 'x.csr', await createCertificateRequest({ privateKey: loadPrivateKey(pem), subject }));
      openssl(['req', '-in', csr, '-verify', '-noout']);
    }
  });
});
