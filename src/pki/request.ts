/**
 * What the appliance asks a CA for: a PKCS#10 request, or a self-signed certificate, for a TLS client
 * key (EKU clientAuth). Subjects and SANs are checked here, before anything is signed.
 */
import { isIP } from 'node:net';
import { randomBytes, webcrypto, type KeyObject } from 'node:crypto';
import {
  AuthorityKeyIdentifierExtension,
  BasicConstraintsExtension,
  ExtendedKeyUsage,
  ExtendedKeyUsageExtension,
  type Extension,
  type JsonName,
  KeyUsageFlags,
  KeyUsagesExtension,
  Pkcs10CertificateRequestGenerator,
  SubjectAlternativeNameExtension,
  SubjectKeyIdentifierExtension,
  X509CertificateGenerator,
} from '@peculiar/x509';
import { pkiError } from './errors.js';
import { describeKey, signingKeys } from './keys.js';

export interface SubjectInput {
  /** Common name: the appliance's identity (PyKMIP uses it as the client's user name). */
  cn: string;
  o?: string;
  ou?: string;
  /** Two-letter country code. */
  c?: string;
}

export interface SubjectAltName {
  type: 'dns' | 'ip';
  value: string;
}

/** RFC 5280 upper bounds (ub-common-name, ub-organization-name, ub-organizational-unit-name). */
const MAX_NAME = 64;
const HOSTNAME =
  /^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

/** The subject as @peculiar/x509 takes it, in the usual order C, O, OU, CN; each field checked. */
export function subjectName(subject: SubjectInput): JsonName {
  const name: JsonName = [];
  const field = (key: string, label: string, value: string | undefined) => {
    if (value === undefined) return;
    if (value.trim() !== value || value.length === 0 || value.length > MAX_NAME || /[\p{Cc}]/u.test(value))
      throw pkiError(
        'PKI_BAD_SUBJECT',
        `subject ${label} ${JSON.stringify(value)} is empty, too long, padded or has control characters`,
        `give 1 to ${MAX_NAME} printable characters without leading or trailing spaces`,
      );
    name.push({ [key]: [value] });
  };
  if (subject.c !== undefined && !/^[A-Z]{2}$/.test(subject.c))
    throw pkiError(
      'PKI_BAD_SUBJECT',
      `subject country ${JSON.stringify(subject.c)}`,
      'give a two-letter ISO code such as DE',
    );
  field('C', 'country', subject.c);
  field('O', 'organization', subject.o);
  field('OU', 'organizational unit', subject.ou);
  if (subject.cn === undefined)
    throw pkiError('PKI_BAD_SUBJECT', 'the subject has no common name', 'give one (--cn NAME)');
  field('CN', 'common name', subject.cn);
  return name;
}

/** "DNS:host", "IP:10.0.0.1", or a bare host name or address. */
export function parseSubjectAltName(text: string): SubjectAltName {
  const match = /^(DNS|IP):(.*)$/i.exec(text);
  const value = match ? match[2] : text;
  const type = match ? (match[1].toLowerCase() as 'dns' | 'ip') : isIP(text) ? 'ip' : 'dns';
  if (type === 'ip' ? isIP(value) === 0 : !HOSTNAME.test(value))
    throw pkiError(
      'PKI_BAD_SAN',
      `subject alternative name ${JSON.stringify(text)} is not a valid ${type === 'ip' ? 'IP address' : 'DNS name'}`,
      'give DNS:host.example.com or IP:192.0.2.10',
    );
  return { type, value };
}

/**
 * The key usages a TLS client key needs. RSA: digitalSignature (ECDHE suites, TLS 1.3) + keyEncipherment
 * (RSA key transport). EC keys cannot encrypt, so keyEncipherment is meaningless for them (RFC 5480 §3
 * does not allow it for id-ecPublicKey): digitalSignature (ECDSA) + keyAgreement (static ECDH suites).
 */
function keyUsages(key: KeyObject): KeyUsageFlags {
  return describeKey(key).algorithm === 'EC'
    ? KeyUsageFlags.digitalSignature | KeyUsageFlags.keyAgreement
    : KeyUsageFlags.digitalSignature | KeyUsageFlags.keyEncipherment;
}

function clientExtensions(key: KeyObject, sans: SubjectAltName[]): Extension[] {
  const extensions: Extension[] = [
    new BasicConstraintsExtension(false, undefined, true),
    new KeyUsagesExtension(keyUsages(key), true),
    new ExtendedKeyUsageExtension([ExtendedKeyUsage.clientAuth]),
  ];
  if (sans.length > 0) extensions.push(new SubjectAlternativeNameExtension(sans));
  return extensions;
}

export interface RequestInput {
  privateKey: KeyObject;
  subject: SubjectInput;
  sans?: SubjectAltName[];
}

/** A PKCS#10 request (PEM) for a client certificate, self-signed by `privateKey`. */
export async function createCertificateRequest(input: RequestInput): Promise<string> {
  const { keys, signingAlgorithm } = await signingKeys(input.privateKey);
  const csr = await Pkcs10CertificateRequestGenerator.create(
    {
      name: subjectName(input.subject),
      keys,
      signingAlgorithm,
      extensions: clientExtensions(input.privateKey, input.sans ?? []),
    },
    webcrypto,
  );
  return csr.toString('pem') + '\n';
}

export interface SelfSignedInput extends RequestInput {
  /** Start of validity (injected time). */
  now: Date;
  /** Days of validity, 1 to 3650. */
  days: number;
  /** Random bytes for the serial (injected in tests); node's CSPRNG by default. */
  random?: (size: number) => Buffer;
}

export const MAX_DAYS = 3650;
/** notBefore this much before `now`, so a server whose clock is a little behind accepts it at once. */
const BACKDATE_MS = 5 * 60_000;
const DAY_MS = 86_400_000;

/** A self-signed client certificate (PEM) for `privateKey`. */
export async function createSelfSignedCertificate(input: SelfSignedInput): Promise<string> {
  if (!Number.isInteger(input.days) || input.days < 1 || input.days > MAX_DAYS)
    throw pkiError(
      'PKI_BAD_VALIDITY',
      `validity of ${input.days} days`,
      `give a whole number of days from 1 to ${MAX_DAYS}`,
    );
  const name = subjectName(input.subject);
  const { keys, signingAlgorithm } = await signingKeys(input.privateKey);
  const crypto = webcrypto;
  const serial = (input.random ?? randomBytes)(16);
  serial[0] &= 0x7f; // a positive INTEGER, as RFC 5280 requires
  serial[0] |= 0x40; // and no leading zero byte to strip
  const extensions = clientExtensions(input.privateKey, input.sans ?? []);
  const keyId = await SubjectKeyIdentifierExtension.create(keys.publicKey, false, crypto);
  extensions.push(keyId, new AuthorityKeyIdentifierExtension(keyId.keyId));
  const certificate = await X509CertificateGenerator.createSelfSigned(
    {
      name,
      keys,
      signingAlgorithm,
      serialNumber: serial.toString('hex'),
      notBefore: new Date(input.now.getTime() - BACKDATE_MS),
      notAfter: new Date(input.now.getTime() + input.days * DAY_MS),
      extensions,
    },
    crypto,
  );
  return certificate.toString('pem') + '\n';
}
