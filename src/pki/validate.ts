/**
 * Import validation of a client certificate: the PEM parses, the key is readable and matches, the key and
 * signatures are strong enough, the dates hold at `now` (injected), EKU clientAuth is present, and the
 * intermediates chain to the leaf. The first problem is thrown as a PkiError naming the fix; with `force`,
 * the problems a server might still tolerate come back as `warnings` instead.
 */
import type { KeyObject } from 'node:crypto';
import type { X509Certificate } from '@peculiar/x509';
import {
  describeCertificate,
  isSelfSigned,
  isWeakSignature,
  nodeCertificate,
  type CertificateInfo,
} from './certificate-info.js';
import { pkiError, type PkiCode, type PkiError } from './errors.js';
import { describeKey, loadPrivateKey, weakKeyError } from './keys.js';
import { parseCertificates } from './pem.js';

export interface ClientCertificateInput {
  /** The certificate PEM; certificates after the first are taken as intermediates. */
  certPem: string;
  /** The private key PEM (PKCS#8, PKCS#1 or SEC1, possibly encrypted). */
  keyPem: string;
  /** Intermediate CA certificates (PEM, one or several). */
  chainPem?: string;
}

export interface ValidateOptions {
  /** The time the dates are checked against. */
  now: Date;
  /** For an encrypted private key. */
  passphrase?: string | Buffer;
  /** Report the overridable problems (see FORCEABLE) as warnings instead of throwing them. */
  force?: boolean;
}

/** Problems an operator may override: a server with other rules, or a clock that is wrong, may still accept. */
export const FORCEABLE: ReadonlySet<PkiCode> = new Set<PkiCode>([
  'PKI_NOT_YET_VALID',
  'PKI_EXPIRED',
  'PKI_NO_CLIENT_AUTH',
  'PKI_WEAK_KEY',
  'PKI_WEAK_SIGNATURE',
  'PKI_CHAIN_BROKEN',
]);

export interface ValidatedClientCertificate {
  certificate: CertificateInfo;
  /** The intermediates leaf-side first, as they chain. */
  chain: CertificateInfo[];
  /** The leaf (PEM), as given. */
  certPem: string;
  /** The intermediates (PEM) in chain order; empty string when there are none. */
  chainPem: string;
  /** The key, unencrypted PKCS#8 PEM (the daemon reads it without a passphrase): write it 0600. */
  keyPem: string;
  privateKey: KeyObject;
  /** Overridden problems (only with `force`). */
  warnings: PkiError[];
}

const CLIENT_AUTH_FIX =
  'have the CA reissue it with extendedKeyUsage clientAuth (`kmip-agent cert generate` puts it in the request)';

export function validateClientCertificate(
  input: ClientCertificateInput,
  options: ValidateOptions,
): ValidatedClientCertificate {
  const given = parseCertificates(input.certPem, 'the certificate');
  const leaf = given[0];
  const intermediates = [
    ...given.slice(1),
    ...(input.chainPem === undefined || input.chainPem.trim() === ''
      ? []
      : parseCertificates(input.chainPem, 'the chain')),
  ];
  const privateKey = loadPrivateKey(input.keyPem, { passphrase: options.passphrase, what: 'the private key' });
  const node = nodeCertificate(leaf);
  if (!node.checkPrivateKey(privateKey)) {
    const info = describeCertificate(leaf, options.now);
    throw pkiError(
      'PKI_KEY_MISMATCH',
      `the private key (${describeKey(privateKey).label}) is not the key of the certificate ${info.subject} (${info.keyType})`,
      'give the key the certificate request was made with (without --key: the pending key of `cert generate`)',
    );
  }
  const warnings: PkiError[] = [];
  const problem = (error: PkiError | undefined) => {
    if (error === undefined) return;
    if (options.force && FORCEABLE.has(error.code)) warnings.push(error);
    else throw error;
  };
  const certificate = describeCertificate(leaf, options.now);
  problem(checkStrength(leaf, certificate, 'the client certificate'));
  problem(checkDates(leaf, certificate, 'the client certificate', options.now));
  problem(checkClientAuth(certificate));
  const { chain, error } = orderChain(leaf, intermediates);
  problem(error);
  const chainInfo = chain.map((c) => describeCertificate(c, options.now));
  chain.forEach((c, i) => {
    const what = `the chain certificate ${chainInfo[i].subject}`;
    problem(checkStrength(c, chainInfo[i], what));
    problem(checkDates(c, chainInfo[i], what, options.now));
  });
  return {
    certificate,
    chain: chainInfo,
    certPem: leaf.toString('pem') + '\n',
    chainPem: chain.map((c) => c.toString('pem') + '\n').join(''),
    keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    privateKey,
    warnings,
  };
}

function checkStrength(cert: X509Certificate, info: CertificateInfo, what: string): PkiError | undefined {
  const weakKey = weakKeyError(describeKey(nodeCertificate(cert).publicKey), what);
  if (weakKey) return weakKey;
  // A self-signed certificate's own signature proves nothing to anyone (it is trusted as itself).
  if (!info.selfSigned && isWeakSignature(info.signatureAlgorithm))
    return pkiError(
      'PKI_WEAK_SIGNATURE',
      `${what} is signed with ${info.signatureAlgorithm}, which can be forged`,
      'have the CA reissue it with SHA-256 or better',
    );
  return undefined;
}

function checkDates(cert: X509Certificate, info: CertificateInfo, what: string, now: Date): PkiError | undefined {
  if (now.getTime() < cert.notBefore.getTime())
    return pkiError(
      'PKI_NOT_YET_VALID',
      `${what} is not valid before ${info.notBefore} (now ${now.toISOString()})`,
      "check this system's clock, or wait until then",
    );
  if (now.getTime() > cert.notAfter.getTime())
    return pkiError(
      'PKI_EXPIRED',
      `${what} expired on ${info.notAfter}`,
      'have a new certificate issued (`kmip-agent cert generate`, then `cert replace`)',
    );
  return undefined;
}

function checkClientAuth(info: CertificateInfo): PkiError | undefined {
  if (info.extendedKeyUsage.includes('clientAuth')) return undefined;
  const has =
    info.extendedKeyUsage.length === 0
      ? 'has no extendedKeyUsage'
      : `has extendedKeyUsage ${info.extendedKeyUsage.join(', ')} but not clientAuth`;
  return pkiError(
    'PKI_NO_CLIENT_AUTH',
    `the client certificate ${has}; PyKMIP and other KMIP servers accept the TLS handshake with it and then ` +
      'refuse every request with "Authentication Not Successful"',
    CLIENT_AUTH_FIX,
  );
}

/**
 * The intermediates in order from the leaf up: each the issuer of the one before (names match and its
 * key verifies the signature). One left over, or a leaf whose issuer is missing while intermediates were
 * given, breaks the chain.
 */
function orderChain(
  leaf: X509Certificate,
  intermediates: X509Certificate[],
): { chain: X509Certificate[]; error?: PkiError } {
  const remaining = [...intermediates];
  const chain: X509Certificate[] = [];
  let current = nodeCertificate(leaf);
  while (remaining.length > 0) {
    const index = remaining.findIndex((candidate) => {
      const issuer = nodeCertificate(candidate);
      return current.checkIssued(issuer) && current.verify(issuer.publicKey);
    });
    if (index < 0) break;
    const [next] = remaining.splice(index, 1);
    chain.push(next);
    const node = nodeCertificate(next);
    if (isSelfSigned(node)) break; // a root: nothing above it
    current = node;
  }
  if (remaining.length === 0) return { chain };
  const strays = remaining.map((c) => c.subject).join('; ');
  return {
    chain,
    error: pkiError(
      'PKI_CHAIN_BROKEN',
      `the chain does not lead from the client certificate (issuer ${current.issuer.replace(/\n/g, ', ')}) ` +
        `through ${strays}`,
      "give the intermediates of this certificate's CA, in any order, or none",
    ),
  };
}
