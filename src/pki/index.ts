/**
 * The pki layer: key pairs, certificate requests, import validation, certificate descriptions and expiry.
 * No appliance knowledge (config, files and faults belong to the agent); time comes in as `now`.
 */
export { PkiError, PKI_CODES, type PkiCode } from './errors.js';
export { parsePem, parseCertificates, toPem, type PemBlock } from './pem.js';
export {
  KEY_TYPES,
  KEY_TYPE_NAMES,
  DEFAULT_KEY_TYPE,
  MIN_RSA_BITS,
  MIN_EC_BITS,
  generateKeyPair,
  loadPrivateKey,
  describeKey,
  type GeneratedKeyPair,
  type KeyDescription,
  type KeyTypeName,
  type LoadKeyOptions,
} from './keys.js';
export {
  createCertificateRequest,
  createSelfSignedCertificate,
  parseSubjectAltName,
  MAX_DAYS,
  type RequestInput,
  type SelfSignedInput,
  type SubjectAltName,
  type SubjectInput,
} from './request.js';
export { describeCertificate, describeCertificatePem, type CertificateInfo } from './certificate-info.js';
export { checkExpiry, type ExpiryStatus, type ExpiryVerdict } from './expiry.js';
export {
  validateClientCertificate,
  FORCEABLE,
  type ClientCertificateInput,
  type ValidateOptions,
  type ValidatedClientCertificate,
} from './validate.js';
