/**
 * When the certificates of a PEM text run out, read by Node's own X.509 parser: what the daemon's expiry
 * check needs, without loading @peculiar/x509 (describeCertificate, for everything else a certificate says).
 */
import { X509Certificate } from 'node:crypto';
import { certificateBlock, malformed, parsePem } from './pem-blocks.js';

export interface CertificateValidity {
  /** ISO 8601, as CertificateInfo.notAfter. */
  notAfter: string;
  /** Uppercase hex with colons, as CertificateInfo.fingerprintSha256. */
  fingerprintSha256: string;
}

/** The validity end of every certificate of `text` (one or more CERTIFICATE blocks; others are an error). */
export function certificateValidities(text: string, what: string): CertificateValidity[] {
  return parsePem(text, what).map((block, index) => {
    const { der } = certificateBlock(block, index, what);
    let certificate: X509Certificate;
    try {
      certificate = new X509Certificate(der);
    } catch (cause) {
      throw malformed(what, `certificate ${index + 1} is not a valid X.509 certificate`, 're-export it as PEM', cause);
    }
    return {
      notAfter: new Date(certificate.validTo).toISOString(),
      fingerprintSha256: certificate.fingerprint256,
    };
  });
}
