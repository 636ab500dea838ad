/**
 * Import validation against certificates made by the openssl CLI (test/support/certs.ts): every refusal
 * has its code and names the fix; `force` turns the overridable ones into warnings.
 */
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { validateClientCertificate, type PkiError } from '../../src/pki/index.js';
import { TestCa } from '../support/certs.js';
import { openssl, tempDir } from './support.js';

const now = () => new Date();
const DAY = 86_400_000;

function refusal(run: () => unknown): PkiError {
  try {
    run();
  } catch (error) {
    return error as PkiError;
  }
  throw new Error('expected a refusal');
}

describe('validateClientCertificate', () => {
  it('accepts a CA-issued certificate with clientAuth, its key and intermediates in any order or file', () => {
    const dir = tempDir();
    const root = TestCa.create(dir);
    const mid = root.issue('mid', { cn: 'kmip-agent test intermediate', isCa: true });
    const client = root.under(mid).issue('client', { cn: 'nas-01', eku: ['clientAuth'] });
    const rootPem = readFileSync(root.cert, 'utf8');
    const separate = validateClientCertificate(
      { certPem: client.certPem, keyPem: client.keyPem, chainPem: rootPem + mid.certPem },
      { now: now() },
    );
    expect(separate.chain.map((c) => c.subject)).toEqual(['CN=kmip-agent test intermediate', 'CN=kmip-agent test CA']);
    expect(separate.chainPem).toBe(mid.certPem + rootPem);
    const together = validateClientCertificate(
      { certPem: client.certPem + mid.certPem, keyPem: client.keyPem },
      { now: now() },
    );
    expect(together.chain.map((c) => c.subject)).toEqual(['CN=kmip-agent test intermediate']);
    expect(together.keyPem).toMatch(/^-----BEGIN PRIVATE KEY-----/);
  });

  it('refuses intermediates that do not chain to the leaf (PKI_CHAIN_BROKEN)', () => {
    const dir = tempDir();
    const ca = TestCa.create(dir);
    const client = ca.issue('client', { cn: 'nas-01', eku: ['clientAuth'] });
    const other = TestCa.create(`${dir}/other`, 'some other CA');
    const error = refusal(() =>
      validateClientCertificate(
        { certPem: client.certPem, keyPem: client.keyPem, chainPem: readFileSync(other.cert, 'utf8') },
        { now: now() },
      ),
    );
    expect(error.code).toBe('PKI_CHAIN_BROKEN');
    expect(error.message).toContain('some other CA');
    expect(error.hint).toMatch(/intermediates/);
  });

  it('refuses a certificate without EKU clientAuth, explaining what the server would do; force warns', () => {
    const dir = tempDir();
    const ca = TestCa.create(dir);
    for (const eku of [['serverAuth'], []]) {
      const cert = ca.issue(`server-${eku.length}`, { cn: 'nas-01', eku });
      const error = refusal(() =>
        validateClientCertificate({ certPem: cert.certPem, keyPem: cert.keyPem }, { now: now() }),
      );
      expect(error.code).toBe('PKI_NO_CLIENT_AUTH');
      expect(error.message).toMatch(
        eku.length ? /extendedKeyUsage serverAuth but not clientAuth/ : /no extendedKeyUsage/,
      );
      expect(error.message).toMatch(
        /accept the TLS handshake .* refuse every request with "Authentication Not Successful"/,
      );
      expect(error.hint).toMatch(/reissue it with extendedKeyUsage clientAuth/);
      const forced = validateClientCertificate(
        { certPem: cert.certPem, keyPem: cert.keyPem },
        { now: now(), force: true },
      );
      expect(forced.warnings.map((w) => w.code)).toEqual(['PKI_NO_CLIENT_AUTH']);
    }
  });

  it('refuses an expired and a not yet valid certificate at the injected time', () => {
    const dir = tempDir();
    const cert = TestCa.create(dir).issue('client', { cn: 'nas-01', eku: ['clientAuth'], days: 1 });
    const input = { certPem: cert.certPem, keyPem: cert.keyPem };
    const expired = refusal(() => validateClientCertificate(input, { now: new Date(Date.now() + 2 * DAY) }));
    expect(expired.code).toBe('PKI_EXPIRED');
    expect(expired.message).toMatch(/the client certificate expired on \d{4}-/);
    expect(expired.hint).toMatch(/cert replace/);
    const early = refusal(() => validateClientCertificate(input, { now: new Date(Date.now() - DAY) }));
    expect(early.code).toBe('PKI_NOT_YET_VALID');
    expect(early.hint).toMatch(/clock/);
    expect(validateClientCertificate(input, { now: now() }).certificate.daysLeft).toBe(0);
  });

  it('refuses a certificate the key does not belong to (PKI_KEY_MISMATCH), even with force', () => {
    const dir = tempDir();
    const ca = TestCa.create(dir);
    const a = ca.issue('a', { cn: 'a', eku: ['clientAuth'] });
    const b = ca.issue('b', { cn: 'b', eku: ['clientAuth'], keyType: { rsa: 2048 } });
    const error = refusal(() =>
      validateClientCertificate({ certPem: a.certPem, keyPem: b.keyPem }, { now: now(), force: true }),
    );
    expect(error.code).toBe('PKI_KEY_MISMATCH');
    expect(error.message).toContain('RSA 2048');
    expect(error.message).toContain('EC P-256');
  });

  it('refuses malformed PEM with PKI_PEM_MALFORMED, saying what is wrong', () => {
    const dir = tempDir();
    const cert = TestCa.create(dir).issue('client', { cn: 'nas-01', eku: ['clientAuth'] });
    const cases: Array<[string, string, RegExp]> = [
      ['not pem at all', cert.keyPem, /no PEM block/],
      [cert.certPem.slice(0, 200), cert.keyPem, /no END line/],
      [cert.certPem.replace(/\n[A-Za-z0-9+/]{10}/, '\n!!!!!!!!!!'), cert.keyPem, /not valid base64/],
      [cert.keyPem, cert.keyPem, /block 1 is a "PRIVATE KEY", not a CERTIFICATE/],
      ['-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n', cert.keyPem, /not a valid X.509/],
      [cert.certPem, cert.certPem, /the private key: no PRIVATE KEY block/],
    ];
    for (const [certPem, keyPem, message] of cases) {
      const error = refusal(() => validateClientCertificate({ certPem, keyPem }, { now: now() }));
      expect(error.code).toBe('PKI_PEM_MALFORMED');
      expect(error.message).toMatch(message);
      expect(error.hint).toBeTruthy();
    }
  });

  it('an encrypted key needs its passphrase (PKCS#8 and the legacy Proc-Type form)', () => {
    const dir = tempDir();
    const cert = TestCa.create(dir).issue('client', { cn: 'nas-01', eku: ['clientAuth'] });
    const pkcs8 = openssl(['pkcs8', '-topk8', '-in', cert.key, '-v2', 'aes-256-cbc', '-passout', 'pass:s3cret']);
    const legacy = openssl(['ec', '-in', cert.key, '-aes256', '-passout', 'pass:s3cret']);
    expect(pkcs8).toMatch(/BEGIN ENCRYPTED PRIVATE KEY/);
    expect(legacy).toMatch(/Proc-Type: 4,ENCRYPTED/);
    for (const keyPem of [pkcs8, legacy]) {
      const input = { certPem: cert.certPem, keyPem };
      const locked = refusal(() => validateClientCertificate(input, { now: now() }));
      expect(locked.code).toBe('PKI_KEY_ENCRYPTED');
      expect(locked.hint).toMatch(/passphrase/);
      expect(refusal(() => validateClientCertificate(input, { now: now(), passphrase: 'wrong' })).code).toBe(
        'PKI_KEY_PASSPHRASE_WRONG',
      );
      const result = validateClientCertificate(input, { now: now(), passphrase: Buffer.from('s3cret') });
      // Installed unencrypted: the daemon has no one to ask for the passphrase at boot.
      expect(result.keyPem).toMatch(/^-----BEGIN PRIVATE KEY-----/);
    }
  });

  it('refuses RSA 1024 and EC P-224 keys (PKI_WEAK_KEY), in the leaf or the chain', () => {
    const dir = tempDir();
    const ca = TestCa.create(dir);
    for (const keyType of [{ rsa: 1024 }, { curve: 'secp224r1' }]) {
      const name = 'rsa' in keyType ? 'rsa1024' : 'p224';
      const cert = ca.issue(name, { cn: name, eku: ['clientAuth'], keyType });
      const error = refusal(() =>
        validateClientCertificate({ certPem: cert.certPem, keyPem: cert.keyPem }, { now: now() }),
      );
      expect(error.code).toBe('PKI_WEAK_KEY');
      expect(error.message).toContain('rsa' in keyType ? 'RSA 1024' : 'EC P-224');
      expect(error.hint).toMatch(/cert generate/);
    }
    const weakMid = ca.issue('weak-mid', { cn: 'weak intermediate', isCa: true, keyType: { rsa: 1024 } });
    const client = ca.under(weakMid).issue('client', { cn: 'nas-01', eku: ['clientAuth'] });
    const error = refusal(() =>
      validateClientCertificate(
        { certPem: client.certPem, keyPem: client.keyPem, chainPem: weakMid.certPem },
        { now: now() },
      ),
    );
    expect(error).toMatchObject({ code: 'PKI_WEAK_KEY', message: /chain certificate CN=weak intermediate/ });
  });

  it('refuses a SHA-1 signed certificate (PKI_WEAK_SIGNATURE); force lists it as a warning', () => {
    const dir = tempDir();
    const cert = TestCa.create(dir).issue('sha1', { cn: 'nas-01', eku: ['clientAuth'], digest: 'sha1' });
    const input = { certPem: cert.certPem, keyPem: cert.keyPem };
    const error = refusal(() => validateClientCertificate(input, { now: now() }));
    expect(error.code).toBe('PKI_WEAK_SIGNATURE');
    expect(error.message).toContain('ecdsa-with-SHA1');
    expect(validateClientCertificate(input, { now: now(), force: true }).warnings.map((w) => w.code)).toEqual([
      'PKI_WEAK_SIGNATURE',
    ]);
  });

  it('describes the certificate as openssl does: fingerprint, serial, dates, subject', () => {
    const dir = tempDir();
    const cert = TestCa.create(dir).issue('client', {
      cn: 'nas-01',
      eku: ['clientAuth', 'serverAuth'],
      san: ['DNS:nas-01.example', 'IP:192.0.2.7'],
      keyType: { rsa: 3072 },
      days: 30,
    });
    const info = validateClientCertificate({ certPem: cert.certPem, keyPem: cert.keyPem }, { now: now() }).certificate;
    const printed = openssl(['x509', '-in', cert.cert, '-noout', '-fingerprint', '-sha256', '-serial', '-enddate']);
    expect(printed).toContain(`sha256 Fingerprint=${info.fingerprintSha256}\n`);
    expect(info.fingerprintSha256).toMatch(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
    expect(printed).toContain(`serial=${info.serial}\n`);
    const enddate = /notAfter=(.*)\n/.exec(printed)![1];
    expect(Date.parse(info.notAfter)).toBe(Date.parse(enddate));
    expect(info).toMatchObject({
      subject: 'CN=nas-01',
      issuer: 'CN=kmip-agent test CA',
      keyType: 'RSA 3072',
      signatureAlgorithm: 'ecdsa-with-SHA256',
      extendedKeyUsage: ['clientAuth', 'serverAuth'],
      keyUsage: ['digitalSignature', 'keyEncipherment'],
      subjectAltNames: ['DNS:nas-01.example', 'IP:192.0.2.7'],
      selfSigned: false,
      daysLeft: 29,
    });
  });
});
