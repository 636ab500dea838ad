/** Certificates out of PEM (one or several per text), parsed by @peculiar/x509. */
import { X509Certificate } from '@peculiar/x509';
import { certificateBlock, malformed, parsePem } from './pem-blocks.js';

export { parsePem, toPem, type PemBlock } from './pem-blocks.js';

/** The certificates of `text` (one or more CERTIFICATE blocks; other blocks are an error). */
export function parseCertificates(text: string, what: string): X509Certificate[] {
  return parsePem(text, what).map((block, index) => {
    const { der } = certificateBlock(block, index, what);
    try {
      return new X509Certificate(der);
    } catch (cause) {
      throw malformed(what, `certificate ${index + 1} is not a valid X.509 certificate`, 're-export it as PEM', cause);
    }
  });
}
