/**
 * PEM text to DER blocks, and the CERTIFICATE blocks of a text. Without the x509 library (pem.ts parses the
 * certificates with it), so that what only needs the blocks (keys, the expiry check) does not load it.
 */
import { pkiError } from './errors.js';

export interface PemBlock {
  /** The label of the BEGIN line, e.g. "CERTIFICATE", "PRIVATE KEY", "ENCRYPTED PRIVATE KEY". */
  label: string;
  der: Buffer;
  /** Header lines inside the block (RFC 1421 style, e.g. "Proc-Type: 4,ENCRYPTED"), as written. */
  headers: string[];
  /** The block as written, BEGIN to END. */
  text: string;
}

const BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----\r?\n([\s\S]*?)-----END ([A-Z0-9 ]+)-----/g;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/**
 * Every PEM block of `text`, in order. Text between blocks is allowed (openssl writes "Bag Attributes"
 * and `-text` dumps there); a BEGIN without its END, mismatched labels, or bad base64 are not.
 * `what` names the input in errors ("the certificate file").
 */
export function parsePem(text: string, what: string): PemBlock[] {
  const blocks: PemBlock[] = [];
  let end = 0;
  for (const match of text.matchAll(BLOCK)) {
    const [whole, label, body, endLabel] = match;
    if (label !== endLabel)
      throw malformed(what, `a "BEGIN ${label}" block ends with "END ${endLabel}"`, 'repair or re-export the PEM file');
    const lines = body.split(/\r?\n/).map((line) => line.trim());
    const headers = lines.filter((line) => line.includes(':'));
    const base64 = lines.filter((line) => !line.includes(':')).join('');
    if (base64.length === 0 || !BASE64.test(base64) || base64.length % 4 !== 0)
      throw malformed(what, `the "${label}" block is not valid base64`, 'repair or re-export the PEM file');
    blocks.push({ label, der: Buffer.from(base64, 'base64'), headers, text: whole });
    end = match.index + whole.length;
  }
  if (/-----BEGIN /.test(text.slice(end)))
    throw malformed(what, 'a PEM block has no END line (truncated?)', 'copy the whole file, BEGIN to END');
  if (blocks.length === 0)
    throw malformed(what, 'no PEM block found', 'give a PEM file ("-----BEGIN ...-----" lines), not DER or a path');
  return blocks;
}

/** `block` (the `index`th of `what`) when it is a CERTIFICATE; a typed error when it is another block. */
export function certificateBlock(block: PemBlock, index: number, what: string): PemBlock {
  if (block.label !== 'CERTIFICATE')
    throw malformed(
      what,
      `block ${index + 1} is a "${block.label}", not a CERTIFICATE`,
      'give certificates in this file (the private key goes in its own file)',
    );
  return block;
}

export function malformed(what: string, problem: string, fix: string, cause?: unknown) {
  return pkiError('PKI_PEM_MALFORMED', `${what}: ${problem}`, fix, { cause });
}

/** DER to PEM with 64-character lines, as openssl writes it. */
export function toPem(der: Uint8Array | ArrayBuffer, label: string): string {
  const base64 = Buffer.from(der instanceof ArrayBuffer ? new Uint8Array(der) : der).toString('base64');
  return `-----BEGIN ${label}-----\n${base64.replace(/.{64}(?=.)/g, '$&\n')}\n-----END ${label}-----\n`;
}
