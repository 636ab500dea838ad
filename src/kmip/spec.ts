/**
 * Tags and the enumeration values the message layer uses (KMIP 1.0-2.1 specifications). Codes come from
 * the codec's registry (one table for the whole library); the enumerations here only give them short,
 * typed names for library users and the CLI (the registry keeps the XML profile spellings, e.g.
 * HMAC_SHA256, for the text forms).
 */
import { Enum, Tag } from './ttlv/registry.js';

/** Tag numbers, from the codec's registry (one table for the whole library). */
export const T = Tag;

export const Operation = {
  Create: Enum.Operation.Create,
  Register: Enum.Operation.Register,
  ReKey: Enum.Operation.ReKey,
  Locate: Enum.Operation.Locate,
  Get: Enum.Operation.Get,
  GetAttributes: Enum.Operation.GetAttributes,
  GetAttributeList: Enum.Operation.GetAttributeList,
  AddAttribute: Enum.Operation.AddAttribute,
  ModifyAttribute: Enum.Operation.ModifyAttribute,
  DeleteAttribute: Enum.Operation.DeleteAttribute,
  Activate: Enum.Operation.Activate,
  Revoke: Enum.Operation.Revoke,
  Destroy: Enum.Operation.Destroy,
  Query: Enum.Operation.Query,
  DiscoverVersions: Enum.Operation.DiscoverVersions,
  SetAttribute: Enum.Operation.SetAttribute,
} as const;
export type OperationCode = (typeof Operation)[keyof typeof Operation];

export const ResultStatus = {
  Success: Enum.ResultStatus.Success,
  OperationFailed: Enum.ResultStatus.OperationFailed,
  OperationPending: Enum.ResultStatus.OperationPending,
  OperationUndone: Enum.ResultStatus.OperationUndone,
} as const;

/** Result Reason values (KMIP 1.x and the 2.x additions). */
export const ResultReason = {
  ItemNotFound: Enum.ResultReason.ItemNotFound,
  ResponseTooLarge: Enum.ResultReason.ResponseTooLarge,
  AuthenticationNotSuccessful: Enum.ResultReason.AuthenticationNotSuccessful,
  InvalidMessage: Enum.ResultReason.InvalidMessage,
  OperationNotSupported: Enum.ResultReason.OperationNotSupported,
  MissingData: Enum.ResultReason.MissingData,
  InvalidField: Enum.ResultReason.InvalidField,
  FeatureNotSupported: Enum.ResultReason.FeatureNotSupported,
  OperationCanceledByRequester: Enum.ResultReason.OperationCanceledByRequester,
  CryptographicFailure: Enum.ResultReason.CryptographicFailure,
  IllegalOperation: Enum.ResultReason.IllegalOperation,
  PermissionDenied: Enum.ResultReason.PermissionDenied,
  ObjectArchived: Enum.ResultReason.ObjectArchived,
  IndexOutOfBounds: Enum.ResultReason.IndexOutOfBounds,
  ApplicationNamespaceNotSupported: Enum.ResultReason.ApplicationNamespaceNotSupported,
  KeyFormatTypeNotSupported: Enum.ResultReason.KeyFormatTypeNotSupported,
  KeyCompressionTypeNotSupported: Enum.ResultReason.KeyCompressionTypeNotSupported,
  EncodingOptionError: Enum.ResultReason.EncodingOptionError,
  KeyValueNotPresent: Enum.ResultReason.KeyValueNotPresent,
  AttestationRequired: Enum.ResultReason.AttestationRequired,
  AttestationFailed: Enum.ResultReason.AttestationFailed,
  Sensitive: Enum.ResultReason.Sensitive,
  NotExtractable: Enum.ResultReason.NotExtractable,
  ObjectAlreadyExists: Enum.ResultReason.ObjectAlreadyExists,
  InvalidTicket: Enum.ResultReason.InvalidTicket,
  UsageLimitExceeded: Enum.ResultReason.UsageLimitExceeded,
  NumericRange: Enum.ResultReason.NumericRange,
  InvalidDataType: Enum.ResultReason.InvalidDataType,
  ReadOnlyAttribute: Enum.ResultReason.ReadOnlyAttribute,
  MultiValuedAttribute: Enum.ResultReason.MultiValuedAttribute,
  UnsupportedAttribute: Enum.ResultReason.UnsupportedAttribute,
  AttributeInstanceNotFound: Enum.ResultReason.AttributeInstanceNotFound,
  AttributeNotFound: Enum.ResultReason.AttributeNotFound,
  AttributeReadOnly: Enum.ResultReason.AttributeReadOnly,
  AttributeSingleValued: Enum.ResultReason.AttributeSingleValued,
  BadCryptographicParameters: Enum.ResultReason.BadCryptographicParameters,
  BadPassword: Enum.ResultReason.BadPassword,
  CodecError: Enum.ResultReason.CodecError,
  IllegalObjectType: Enum.ResultReason.IllegalObjectType,
  IncompatibleCryptographicUsageMask: Enum.ResultReason.IncompatibleCryptographicUsageMask,
  InternalServerError: Enum.ResultReason.InternalServerError,
  InvalidAsynchronousCorrelationValue: Enum.ResultReason.InvalidAsynchronousCorrelationValue,
  InvalidAttribute: Enum.ResultReason.InvalidAttribute,
  InvalidAttributeValue: Enum.ResultReason.InvalidAttributeValue,
  InvalidCorrelationValue: Enum.ResultReason.InvalidCorrelationValue,
  InvalidCsr: Enum.ResultReason.InvalidCSR,
  InvalidObjectType: Enum.ResultReason.InvalidObjectType,
  KeyWrapTypeNotSupported: Enum.ResultReason.KeyWrapTypeNotSupported,
  MissingInitializationVector: Enum.ResultReason.MissingInitializationVector,
  NonUniqueNameAttribute: Enum.ResultReason.NonUniqueNameAttribute,
  ObjectDestroyed: Enum.ResultReason.ObjectDestroyed,
  ObjectNotFound: Enum.ResultReason.ObjectNotFound,
  NotAuthorised: Enum.ResultReason.NotAuthorized,
  ServerLimitExceeded: Enum.ResultReason.ServerLimitExceeded,
  UnknownEnumeration: Enum.ResultReason.UnknownEnumeration,
  UnknownMessageExtension: Enum.ResultReason.UnknownMessageExtension,
  UnknownTag: Enum.ResultReason.UnknownTag,
  UnsupportedCryptographicParameters: Enum.ResultReason.UnsupportedCryptographicParameters,
  UnsupportedProtocolVersion: Enum.ResultReason.UnsupportedProtocolVersion,
  WrappingObjectArchived: Enum.ResultReason.WrappingObjectArchived,
  WrappingObjectDestroyed: Enum.ResultReason.WrappingObjectDestroyed,
  WrappingObjectNotFound: Enum.ResultReason.WrappingObjectNotFound,
  WrongKeyLifecycleState: Enum.ResultReason.WrongKeyLifecycleState,
  GeneralFailure: Enum.ResultReason.GeneralFailure,
} as const;

export const ObjectType = {
  Certificate: Enum.ObjectType.Certificate,
  SymmetricKey: Enum.ObjectType.SymmetricKey,
  PublicKey: Enum.ObjectType.PublicKey,
  PrivateKey: Enum.ObjectType.PrivateKey,
  SplitKey: Enum.ObjectType.SplitKey,
  Template: Enum.ObjectType.Template,
  SecretData: Enum.ObjectType.SecretData,
  OpaqueObject: Enum.ObjectType.OpaqueObject,
  PgpKey: Enum.ObjectType.PGPKey,
  CertificateRequest: Enum.ObjectType.CertificateRequest,
} as const;

export const CryptographicAlgorithm = {
  DES: Enum.CryptographicAlgorithm.DES,
  TripleDES: Enum.CryptographicAlgorithm.DES3,
  AES: Enum.CryptographicAlgorithm.AES,
  RSA: Enum.CryptographicAlgorithm.RSA,
  DSA: Enum.CryptographicAlgorithm.DSA,
  ECDSA: Enum.CryptographicAlgorithm.ECDSA,
  HmacSha1: Enum.CryptographicAlgorithm.HMAC_SHA1,
  HmacSha224: Enum.CryptographicAlgorithm.HMAC_SHA224,
  HmacSha256: Enum.CryptographicAlgorithm.HMAC_SHA256,
  HmacSha384: Enum.CryptographicAlgorithm.HMAC_SHA384,
  HmacSha512: Enum.CryptographicAlgorithm.HMAC_SHA512,
  HmacMd5: Enum.CryptographicAlgorithm.HMAC_MD5,
  Blowfish: Enum.CryptographicAlgorithm.Blowfish,
  Camellia: Enum.CryptographicAlgorithm.Camellia,
  ChaCha20: Enum.CryptographicAlgorithm.ChaCha20,
} as const;

export const KeyFormatType = {
  Raw: Enum.KeyFormatType.Raw,
  Opaque: Enum.KeyFormatType.Opaque,
  Pkcs1: Enum.KeyFormatType.PKCS_1,
  Pkcs8: Enum.KeyFormatType.PKCS_8,
  X509: Enum.KeyFormatType.X_509,
  ECPrivateKey: Enum.KeyFormatType.ECPrivateKey,
  TransparentSymmetricKey: Enum.KeyFormatType.TransparentSymmetricKey,
} as const;

export const SecretDataType = { Password: Enum.SecretDataType.Password, Seed: Enum.SecretDataType.Seed } as const;
export const NameType = {
  UninterpretedTextString: Enum.NameType.UninterpretedTextString,
  Uri: Enum.NameType.URI,
} as const;

export const State = {
  PreActive: Enum.State.PreActive,
  Active: Enum.State.Active,
  Deactivated: Enum.State.Deactivated,
  Compromised: Enum.State.Compromised,
  Destroyed: Enum.State.Destroyed,
  DestroyedCompromised: Enum.State.DestroyedCompromised,
} as const;

export const RevocationReasonCode = {
  Unspecified: Enum.RevocationReasonCode.Unspecified,
  KeyCompromise: Enum.RevocationReasonCode.KeyCompromise,
  CACompromise: Enum.RevocationReasonCode.CACompromise,
  AffiliationChanged: Enum.RevocationReasonCode.AffiliationChanged,
  Superseded: Enum.RevocationReasonCode.Superseded,
  CessationOfOperation: Enum.RevocationReasonCode.CessationOfOperation,
  PrivilegeWithdrawn: Enum.RevocationReasonCode.PrivilegeWithdrawn,
} as const;

export const QueryFunction = {
  Operations: Enum.QueryFunction.QueryOperations,
  Objects: Enum.QueryFunction.QueryObjects,
  ServerInformation: Enum.QueryFunction.QueryServerInformation,
  ApplicationNamespaces: Enum.QueryFunction.QueryApplicationNamespaces,
  ExtensionList: Enum.QueryFunction.QueryExtensionList,
  ExtensionMap: Enum.QueryFunction.QueryExtensionMap,
} as const;

export const UsageMask = {
  Sign: Enum.CryptographicUsageMask.Sign,
  Verify: Enum.CryptographicUsageMask.Verify,
  Encrypt: Enum.CryptographicUsageMask.Encrypt,
  Decrypt: Enum.CryptographicUsageMask.Decrypt,
  WrapKey: Enum.CryptographicUsageMask.WrapKey,
  UnwrapKey: Enum.CryptographicUsageMask.UnwrapKey,
  Export: Enum.CryptographicUsageMask.Export,
  MacGenerate: Enum.CryptographicUsageMask.MACGenerate,
  MacVerify: Enum.CryptographicUsageMask.MACVerify,
  DeriveKey: Enum.CryptographicUsageMask.DeriveKey,
} as const;

export const WrappingMethod = { Encrypt: Enum.WrappingMethod.Encrypt, MacSign: Enum.WrappingMethod.MACSign } as const;
export const EncodingOption = {
  NoEncoding: Enum.EncodingOption.NoEncoding,
  TtlvEncoding: Enum.EncodingOption.TTLVEncoding,
} as const;
export const BatchErrorContinuationOption = {
  Continue: Enum.BatchErrorContinuationOption.Continue,
  Stop: Enum.BatchErrorContinuationOption.Stop,
  Undo: Enum.BatchErrorContinuationOption.Undo,
} as const;
export const BlockCipherMode = {
  CBC: Enum.BlockCipherMode.CBC,
  ECB: Enum.BlockCipherMode.ECB,
  GCM: Enum.BlockCipherMode.GCM,
  NISTKeyWrap: Enum.BlockCipherMode.NISTKeyWrap,
} as const;

/** Reverse lookup: the name of `value` in one of the tables above (e.g. for messages), or hex. */
export function nameOf(table: Record<string, number>, value: number): string {
  for (const [name, v] of Object.entries(table)) if (v === value) return name;
  return `0x${value.toString(16).padStart(2, '0')}`;
}
