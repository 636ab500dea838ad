/** What a certificate says, in the form status screens, `--json` and checks use. */
import { X509Certificate as NodeCertificate } from 'node:crypto';
import {
  ExtendedKeyUsageExtension,
  KeyUsageFlags,
  KeyUsagesExtension,
  SubjectAlternativeNameExtension,
  X509Certificate,
} from '@peculiar/x509';
import { describeKey } from './keys.js';
import { parseCertificates } from './pem.js';

export interface CertificateInfo {
  subject: string;
  issuer: string;
  /** Uppercase hex, as `openssl x509 -serial` prints it. */
  serial: string;
  /** ISO 8601. */
  notBefore: string;
  notAfter: string;
  /** Whole days from `now` to notAfter (negative once expired). */
  daysLeft: number;
  /** Uppercase hex with colons, as `openssl x509 -fingerprint -sha256` prints it. */
  fingerprintSha256: string;
  /** "RSA 2048", "EC P-256". */
  keyType: string;
  /** "sha256WithRSAEncryption", "ecdsa-with-SHA256", ... (OpenSSL's names). */
  signatureAlgorithm: string;
  /** "DNS:host", "IP:192.0.2.1", "email:...", "URI:...". */
  subjectAltNames: string[];
  /** Extended key usages by name ("clientAuth"), unknown ones as OIDs; empty when the extension is absent. */
  extendedKeyUsage: string[];
  keyUsage: string[];
  selfSigned: boolean;
  isCa: boolean;
}

const DAY_MS = 86_400_000;

const EKU_NAMES: Record<string, string> = {
  '1.3.6.1.5.5.7.3.1': 'serverAuth',
  '1.3.6.1.5.5.7.3.2': 'clientAuth',
  '1.3.6.1.5.5.7.3.3': 'codeSigning',
  '1.3.6.1.5.5.7.3.4': 'emailProtection',
  '1.3.6.1.5.5.7.3.8': 'timeStamping',
  '1.3.6.1.5.5.7.3.9': 'OCSPSigning',
  '2.5.29.37.0': 'anyExtendedKeyUsage',
};

const SAN_PREFIX: Record<string, string> = { dns: 'DNS', ip: 'IP', email: 'email', url: 'URI' };

/** OpenSSL's names of signature algorithms @peculiar/x509 does not map to Web Crypto (it returns the OID). */
const SIGNATURE_OIDS: Record<string, string> = {
  '1.2.840.113549.1.1.2': 'md2WithRSAEncryption',
  '1.2.840.113549.1.1.4': 'md5WithRSAEncryption',
  '1.2.840.113549.1.1.5': 'sha1WithRSAEncryption',
  '1.3.14.3.2.29': 'sha1WithRSA',
  '1.2.840.10040.4.3': 'dsa_with_SHA1',
  '1.2.840.10045.4.1': 'ecdsa-with-SHA1',
};

/** Signatures no one should rely on any more (collisions are practical). */
export const WEAK_SIGNATURES = new Set(Object.values(SIGNATURE_OIDS));

/** The signature algorithm of `certificate`, by OpenSSL's name. */
export function signatureAlgorithmName(certificate: X509Certificate): string {
  const algorithm = certificate.signatureAlgorithm as { name: string; hash?: { name: string } };
  const hash = algorithm.hash?.name.replace('-', '');
  if (SIGNATURE_OIDS[algorithm.name]) return SIGNATURE_OIDS[algorithm.name];
  if (algorithm.name === 'RSASSA-PKCS1-v1_5' && hash)
    return hash === 'SHA1' ? 'sha1WithRSAEncryption' : `${hash.toLowerCase()}WithRSAEncryption`;
  if (algorithm.name === 'ECDSA' && hash) return `ecdsa-with-${hash}`;
  if (algorithm.name === 'RSA-PSS') return hash === 'SHA1' ? 'rsassaPss with SHA1' : `rsassaPss with ${hash}`;
  return algorithm.name;
}

/** True when the signature uses SHA-1, MD5 or MD2. */
export function isWeakSignature(name: string): boolean {
  return WEAK_SIGNATURES.has(name) || /SHA1$/.test(name);
}

/**
 * Issued by itself and signed by its own key. Not X509_check_issued (checkIssued): that also wants
 * keyUsage keyCertSign, which a self-signed client certificate has no reason to carry.
 */
export function isSelfSigned(node: NodeCertificate): boolean {
  return node.subject === node.issuer && node.verify(node.publicKey);
}

export function nodeCertificate(certificate: X509Certificate): NodeCertificate {
  return new NodeCertificate(Buffer.from(certificate.rawData));
}

/** The description of `certificate`; `now` (injected) gives daysLeft. */
export function describeCertificate(certificate: X509Certificate, now: Date): CertificateInfo {
  const node = nodeCertificate(certificate);
  const eku = certificate.getExtension(ExtendedKeyUsageExtension);
  const keyUsage = certificate.getExtension(KeyUsagesExtension);
  const san = certificate.getExtension(SubjectAlternativeNameExtension);
  return {
    subject: certificate.subject,
    issuer: certificate.issuer,
    serial: node.serialNumber.toUpperCase(),
    notBefore: certificate.notBefore.toISOString(),
    notAfter: certificate.notAfter.toISOString(),
    daysLeft: Math.floor((certificate.notAfter.getTime() - now.getTime()) / DAY_MS),
    fingerprintSha256: node.fingerprint256,
    keyType: describeKey(node.publicKey).label,
    signatureAlgorithm: signatureAlgorithmName(certificate),
    subjectAltNames: (san?.names.items ?? []).map((n) => `${SAN_PREFIX[n.type] ?? n.type}:${n.value}`),
    extendedKeyUsage: (eku?.usages ?? []).map((oid) => EKU_NAMES[String(oid)] ?? String(oid)),
    keyUsage: keyUsage === null ? [] : keyUsageNames(keyUsage.usages),
    selfSigned: isSelfSigned(node),
    isCa: node.ca,
  };
}

function keyUsageNames(flags: KeyUsageFlags): string[] {
  return Object.entries(KeyUsageFlags)
    .filter(([name, bit]) => typeof bit === 'number' && Number.isNaN(Number(name)) && (flags & bit) !== 0)
    .map(([name]) => name);
}

/** The description of the first certificate of a PEM text (`what` names it in errors). */
export function describeCertificatePem(pem: string, now: Date, what = 'the certificate'): CertificateInfo {
  return describeCertificate(parseCertificates(pem, what)[0]!, now);
}
