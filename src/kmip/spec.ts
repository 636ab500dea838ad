/**
 * Tags and the enumeration values the message layer uses (KMIP 1.0-2.1 specifications). Tags come from
 * the codec's registry; the enumerations here carry short, typed names for library users and the CLI
 * (the registry keeps the XML profile spellings, e.g. HMAC_SHA256, for the text forms).
 */
import { Tag } from './ttlv/registry.js';

/** Tag numbers, from the codec's registry (one table for the whole library). */
export const T = Tag;

export const Operation = {
  Create: 0x01,
  Register: 0x03,
  ReKey: 0x04,
  Locate: 0x08,
  Get: 0x0a,
  GetAttributes: 0x0b,
  GetAttributeList: 0x0c,
  AddAttribute: 0x0d,
  ModifyAttribute: 0x0e,
  DeleteAttribute: 0x0f,
  Activate: 0x12,
  Revoke: 0x13,
  Destroy: 0x14,
  Query: 0x18,
  DiscoverVersions: 0x1e,
  SetAttribute: 0x31,
} as const;
export type OperationCode = (typeof Operation)[keyof typeof Operation];

export const ResultStatus = { Success: 0, OperationFailed: 1, OperationPending: 2, OperationUndone: 3 } as const;

/** Result Reason values (KMIP 1.x and the 2.x additions). */
export const ResultReason = {
  ItemNotFound: 0x01,
  ResponseTooLarge: 0x02,
  AuthenticationNotSuccessful: 0x03,
  InvalidMessage: 0x04,
  OperationNotSupported: 0x05,
  MissingData: 0x06,
  InvalidField: 0x07,
  FeatureNotSupported: 0x08,
  OperationCanceledByRequester: 0x09,
  CryptographicFailure: 0x0a,
  IllegalOperation: 0x0b,
  PermissionDenied: 0x0c,
  ObjectArchived: 0x0d,
  IndexOutOfBounds: 0x0e,
  ApplicationNamespaceNotSupported: 0x0f,
  KeyFormatTypeNotSupported: 0x10,
  KeyCompressionTypeNotSupported: 0x11,
  EncodingOptionError: 0x12,
  KeyValueNotPresent: 0x13,
  AttestationRequired: 0x14,
  AttestationFailed: 0x15,
  Sensitive: 0x16,
  NotExtractable: 0x17,
  ObjectAlreadyExists: 0x18,
  InvalidTicket: 0x19,
  UsageLimitExceeded: 0x1a,
  NumericRange: 0x1b,
  InvalidDataType: 0x1c,
  ReadOnlyAttribute: 0x1d,
  MultiValuedAttribute: 0x1e,
  UnsupportedAttribute: 0x1f,
  AttributeInstanceNotFound: 0x20,
  AttributeNotFound: 0x21,
  AttributeReadOnly: 0x22,
  AttributeSingleValued: 0x23,
  BadCryptographicParameters: 0x24,
  BadPassword: 0x25,
  CodecError: 0x26,
  IllegalObjectType: 0x28,
  IncompatibleCryptographicUsageMask: 0x29,
  InternalServerError: 0x2a,
  InvalidAsynchronousCorrelationValue: 0x2b,
  InvalidAttribute: 0x2c,
  InvalidAttributeValue: 0x2d,
  InvalidCorrelationValue: 0x2e,
  InvalidCsr: 0x2f,
  InvalidObjectType: 0x30,
  KeyWrapTypeNotSupported: 0x32,
  MissingInitializationVector: 0x34,
  NonUniqueNameAttribute: 0x35,
  ObjectDestroyed: 0x36,
  ObjectNotFound: 0x37,
  NotAuthorised: 0x39,
  ServerLimitExceeded: 0x3a,
  UnknownEnumeration: 0x3b,
  UnknownMessageExtension: 0x3c,
  UnknownTag: 0x3d,
  UnsupportedCryptographicParameters: 0x3e,
  UnsupportedProtocolVersion: 0x3f,
  WrappingObjectArchived: 0x40,
  WrappingObjectDestroyed: 0x41,
  WrappingObjectNotFound: 0x42,
  WrongKeyLifecycleState: 0x43,
  GeneralFailure: 0x100,
} as const;

export const ObjectType = {
  Certificate: 0x01,
  SymmetricKey: 0x02,
  PublicKey: 0x03,
  PrivateKey: 0x04,
  SplitKey: 0x05,
  Template: 0x06,
  SecretData: 0x07,
  OpaqueObject: 0x08,
  PgpKey: 0x09,
  CertificateRequest: 0x0a,
} as const;

export const CryptographicAlgorithm = {
  DES: 0x01,
  TripleDES: 0x02,
  AES: 0x03,
  RSA: 0x04,
  DSA: 0x05,
  ECDSA: 0x06,
  HmacSha1: 0x07,
  HmacSha224: 0x08,
  HmacSha256: 0x09,
  HmacSha384: 0x0a,
  HmacSha512: 0x0b,
  HmacMd5: 0x0c,
  Blowfish: 0x10,
  Camellia: 0x11,
  ChaCha20: 0x1c,
} as const;

export const KeyFormatType = {
  Raw: 0x01,
  Opaque: 0x02,
  Pkcs1: 0x03,
  Pkcs8: 0x04,
  X509: 0x05,
  ECPrivateKey: 0x06,
  TransparentSymmetricKey: 0x07,
} as const;

export const SecretDataType = { Password: 0x01, Seed: 0x02 } as const;
export const NameType = { UninterpretedTextString: 0x01, Uri: 0x02 } as const;

export const State = {
  PreActive: 0x01,
  Active: 0x02,
  Deactivated: 0x03,
  Compromised: 0x04,
  Destroyed: 0x05,
  DestroyedCompromised: 0x06,
} as const;

export const RevocationReasonCode = {
  Unspecified: 0x01,
  KeyCompromise: 0x02,
  CACompromise: 0x03,
  AffiliationChanged: 0x04,
  Superseded: 0x05,
  CessationOfOperation: 0x06,
  PrivilegeWithdrawn: 0x07,
} as const;

export const QueryFunction = {
  Operations: 0x01,
  Objects: 0x02,
  ServerInformation: 0x03,
  ApplicationNamespaces: 0x04,
  ExtensionList: 0x05,
  ExtensionMap: 0x06,
} as const;

export const UsageMask = {
  Sign: 0x1,
  Verify: 0x2,
  Encrypt: 0x4,
  Decrypt: 0x8,
  WrapKey: 0x10,
  UnwrapKey: 0x20,
  Export: 0x40,
  MacGenerate: 0x80,
  MacVerify: 0x100,
  DeriveKey: 0x200,
} as const;

export const WrappingMethod = { Encrypt: 0x01, MacSign: 0x02 } as const;
export const EncodingOption = { NoEncoding: 0x01, TtlvEncoding: 0x02 } as const;
export const BatchErrorContinuationOption = { Continue: 0x01, Stop: 0x02, Undo: 0x03 } as const;
export const BlockCipherMode = { CBC: 0x01, ECB: 0x02, GCM: 0x09, NISTKeyWrap: 0x0d } as const;

/** Reverse lookup: the name of `value` in one of the tables above (e.g. for messages), or hex. */
export function nameOf(table: Record<string, number>, value: number): string {
  for (const [name, v] of Object.entries(table)) if (v === value) return name;
  return `0x${value.toString(16).padStart(2, '0')}`;
}
