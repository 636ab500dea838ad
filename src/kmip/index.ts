/**
 * kmip-agent's KMIP library: typed operations, a client over one mutual-TLS connection, and a provider
 * that fails over across servers. No appliance knowledge; usable on its own.
 *
 * ```ts
 * const provider = new KmipProvider({ servers: [{ host: 'kms1', port: 5696 }], ca, cert, key });
 * const { uniqueIdentifier } = await provider.register({ kind: 'secret-data', secret, name: 'vol-1' });
 * const object = await provider.get(uniqueIdentifier); // object.value: Buffer, zero it after use
 * ```
 */
export { KmipClient, ALL_VERSIONS, wipeTree, type KmipClientOptions } from './client.js';
export {
  KmipProvider,
  type KmipProviderOptions,
  type ServerHealth,
  type ConnectionTest,
  type ServerAttempt,
} from './provider.js';
export { KmipOperationsApi, type CallOptions, type ItemResult, type Results } from './api.js';
export {
  KmipConnection,
  classifySocketError,
  DEFAULT_MAX_MESSAGE_BYTES,
  fetchServerChain,
  PINNED_CERT_HINT,
  type PresentedCertificate,
  type PresentedChain,
  type TlsEndpoint,
  type ConnectionOptions,
} from './connection.js';
export { KmipAgentError } from './coded-error.js';
export {
  KmipError,
  KmipOperationError,
  hasResultReason,
  isTransportCode,
  AUTHENTICATION_HINT,
  type KmipErrorOptions,
  type ResultReasonInfo,
} from './errors.js';
export * as kmipOperations from './operations.js';
export type {
  OperationSpec,
  BatchRequest,
  CreateSymmetricKeyRequest,
  RegisterRequest,
  GetRequest,
  KeyWrappingSpecification,
  ManagedObject,
  LocateRequest,
  RevokeRequest,
  QueryResult,
  DiscoverVersionsRequest,
} from './operations.js';
export {
  encodeAttributeSet,
  encodeAttribute1,
  encodeAttribute2,
  decodeAttributeList,
  attributeValues,
  attributeTag,
  attributeNameForTag,
  type Attribute,
  type AttributeValue,
} from './attributes.js';
export {
  buildRequest,
  parseResponse,
  type RequestItem,
  type RequestOptions,
  type ResponseItem,
  type ResponseMessage,
} from './message.js';
export { formatVersion, compareVersions, isKmip2, type ProtocolVersion } from './fields.js';
export {
  T as KmipTag,
  Enum as KmipEnum,
  Operation,
  ResultStatus,
  ResultReason,
  ObjectType,
  CryptographicAlgorithm,
  KeyFormatType,
  SecretDataType,
  NameType,
  State,
  RevocationReasonCode,
  QueryFunction,
  UsageMask,
  CryptographicUsageMask,
  WrappingMethod,
  EncodingOption,
  BatchErrorContinuationOption,
  BlockCipherMode,
  valueName,
  nameOf,
  type OperationCode,
} from './spec.js';
export * as ttlv from './ttlv/index.js';
