/**
 * Key pairs: generation (RSA 2048/3072/4096, ECDSA P-256/P-384), loading a PEM private key (PKCS#8, PKCS#1,
 * SEC1; encrypted with a passphrase), naming a key ("RSA 2048", "EC P-256") and judging its strength.
 */
import {
  createPrivateKey,
  createPublicKey,
  generateKeyPair as generateNodeKeyPair,
  webcrypto,
  type KeyObject,
} from 'node:crypto';
import { promisify } from 'node:util';
import { pkiError, type PkiError } from './errors.js';
import { parsePem } from './pem-blocks.js';

const generate = promisify(generateNodeKeyPair);

export const KEY_TYPES = {
  rsa2048: { kind: 'rsa', bits: 2048 },
  rsa3072: { kind: 'rsa', bits: 3072 },
  rsa4096: { kind: 'rsa', bits: 4096 },
  p256: { kind: 'ec', curve: 'P-256' },
  p384: { kind: 'ec', curve: 'P-384' },
} as const;

export type KeyTypeName = keyof typeof KEY_TYPES;
export const KEY_TYPE_NAMES = Object.keys(KEY_TYPES) as KeyTypeName[];
export const DEFAULT_KEY_TYPE: KeyTypeName = 'rsa2048';

export const MIN_RSA_BITS = 2048;
export const MIN_EC_BITS = 256;

export interface GeneratedKeyPair {
  keyType: KeyTypeName;
  /** PKCS#8 PEM, unencrypted: the caller writes it to a 0600 file. */
  privateKeyPem: string;
  privateKey: KeyObject;
}

/** A new key pair (off the event loop: RSA 4096 takes a second or more). */
export async function generateKeyPair(keyType: KeyTypeName = DEFAULT_KEY_TYPE): Promise<GeneratedKeyPair> {
  const spec = KEY_TYPES[keyType];
  if (spec === undefined) throw new TypeError(`unknown key type ${String(keyType)}`);
  const { privateKey } =
    spec.kind === 'rsa'
      ? await generate('rsa', { modulusLength: spec.bits, publicExponent: 0x10001 })
      : await generate('ec', { namedCurve: spec.curve });
  const privateKeyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
  return { keyType, privateKeyPem, privateKey };
}

export interface LoadKeyOptions {
  /** For an encrypted key (PKCS#8 "ENCRYPTED PRIVATE KEY" or a legacy "Proc-Type: 4,ENCRYPTED" one). */
  passphrase?: string | Buffer;
  /** Names the input in errors, e.g. "the key file". */
  what?: string;
}

/** The private key of a PEM text (other blocks, e.g. "EC PARAMETERS", are skipped). */
export function loadPrivateKey(pem: string, options: LoadKeyOptions = {}): KeyObject {
  const what = options.what ?? 'the private key';
  const keys = parsePem(pem, what).filter((block) => block.label.endsWith('PRIVATE KEY'));
  if (keys.length !== 1)
    throw pkiError(
      'PKI_PEM_MALFORMED',
      `${what}: ${keys.length === 0 ? 'no PRIVATE KEY block' : `${keys.length} PRIVATE KEY blocks`}`,
      'give exactly one private key (PEM) in this file',
    );
  const block = keys[0];
  const encrypted = block.label === 'ENCRYPTED PRIVATE KEY' || block.headers.some((h) => /ENCRYPTED/.test(h));
  if (encrypted && options.passphrase === undefined)
    throw pkiError(
      'PKI_KEY_ENCRYPTED',
      `${what} is encrypted`,
      'give its passphrase (--passphrase-file), or decrypt it first with `openssl pkey -in KEY -out PLAIN.key`',
    );
  try {
    return createPrivateKey({ key: block.text, format: 'pem', passphrase: encrypted ? options.passphrase : undefined });
  } catch (cause) {
    if (encrypted)
      throw pkiError('PKI_KEY_PASSPHRASE_WRONG', `${what} could not be decrypted`, 'check the passphrase', { cause });
    throw pkiError('PKI_PEM_MALFORMED', `${what} is not a valid private key`, 're-export it as PEM', { cause });
  }
}

export interface KeyDescription {
  /** "RSA", "EC", "RSA-PSS", "ED25519", ... */
  algorithm: string;
  bits?: number;
  /** NIST name when it has one ("P-256"), else the OpenSSL name ("secp256k1"). */
  curve?: string;
  /** "RSA 2048", "EC P-256", "ED25519". */
  label: string;
}

const CURVES: Record<string, { name: string; bits: number }> = {
  prime192v1: { name: 'P-192', bits: 192 },
  secp224r1: { name: 'P-224', bits: 224 },
  prime256v1: { name: 'P-256', bits: 256 },
  secp384r1: { name: 'P-384', bits: 384 },
  secp521r1: { name: 'P-521', bits: 521 },
  secp256k1: { name: 'secp256k1', bits: 256 },
};

/** What a key is (public or private KeyObject). */
export function describeKey(key: KeyObject): KeyDescription {
  const type = key.asymmetricKeyType ?? 'unknown';
  const details = key.asymmetricKeyDetails ?? {};
  if (type === 'ec') {
    const curve = details.namedCurve ?? 'unknown curve';
    const known = CURVES[curve];
    const bits = known?.bits ?? Number(/\d+/.exec(curve)?.[0] ?? NaN);
    return { algorithm: 'EC', curve: known?.name ?? curve, bits, label: `EC ${known?.name ?? curve}` };
  }
  const algorithm = type.toUpperCase();
  if (details.modulusLength !== undefined)
    return { algorithm, bits: details.modulusLength, label: `${algorithm} ${details.modulusLength}` };
  return { algorithm, label: algorithm };
}

/** A PKI_WEAK_KEY error when the key is below 2048-bit RSA/DSA or 256-bit EC, else undefined. */
export function weakKeyError(key: KeyDescription, whose: string): PkiError | undefined {
  const rsaLike = key.algorithm === 'RSA' || key.algorithm === 'RSA-PSS' || key.algorithm === 'DSA';
  const weak =
    (rsaLike && (key.bits ?? 0) < MIN_RSA_BITS) || (key.algorithm === 'EC' && !((key.bits ?? 0) >= MIN_EC_BITS));
  if (!weak) return undefined;
  return pkiError(
    'PKI_WEAK_KEY',
    `${whose} has a ${key.label} key; at least RSA ${MIN_RSA_BITS} or EC P-256 is required`,
    'generate a new key (`kmip-agent cert generate`) and have the certificate reissued for it',
  );
}

/** The Web Crypto form of a key pair, to sign CSRs and certificates with @peculiar/x509. */
export interface SigningKeys {
  keys: CryptoKeyPair;
  /** The signature the key makes: sha256WithRSAEncryption, ecdsa-with-SHA256 (P-256) / SHA384 (P-384). */
  signingAlgorithm: RsaHashedImportParams | EcdsaParams;
}

type CryptoKeyPair = webcrypto.CryptoKeyPair;
type RsaHashedImportParams = webcrypto.RsaHashedImportParams;
type EcdsaParams = webcrypto.EcdsaParams;

/** Imports a private KeyObject into Web Crypto (not extractable) with its public half. */
export async function signingKeys(privateKey: KeyObject, what = 'the private key'): Promise<SigningKeys> {
  const key = describeKey(privateKey);
  let algorithm: webcrypto.RsaHashedImportParams | webcrypto.EcKeyImportParams;
  let signingAlgorithm: RsaHashedImportParams | EcdsaParams;
  if (key.algorithm === 'RSA') {
    algorithm = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
    signingAlgorithm = algorithm;
  } else if (key.algorithm === 'EC' && (key.curve === 'P-256' || key.curve === 'P-384' || key.curve === 'P-521')) {
    algorithm = { name: 'ECDSA', namedCurve: key.curve };
    signingAlgorithm = {
      name: 'ECDSA',
      hash: key.curve === 'P-256' ? 'SHA-256' : key.curve === 'P-384' ? 'SHA-384' : 'SHA-512',
    };
  } else {
    throw pkiError(
      'PKI_KEY_UNSUPPORTED',
      `${what} is ${key.label}; requests can be signed with RSA or EC P-256/P-384 keys`,
      'generate one with `kmip-agent cert generate --key-type rsa2048|rsa3072|rsa4096|p256|p384`',
    );
  }
  const pkcs8 = privateKey.export({ type: 'pkcs8', format: 'der' });
  try {
    const subtle = webcrypto.subtle;
    const privateCrypto = await subtle.importKey('pkcs8', pkcs8, algorithm, false, ['sign']);
    const spki = createPublicKey(privateKey).export({ type: 'spki', format: 'der' });
    const publicCrypto = await subtle.importKey('spki', spki, algorithm, true, ['verify']);
    return { keys: { privateKey: privateCrypto, publicKey: publicCrypto }, signingAlgorithm };
  } finally {
    pkcs8.fill(0);
  }
}
