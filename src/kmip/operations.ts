/**
 * One typed builder/parser per KMIP operation. Each `OperationSpec` encodes a request payload for the
 * negotiated protocol version and decodes the matching response payload; the client batches them.
 * `idempotent` decides whether the client may resend after a dropped connection.
 */
import {
  ItemType,
  byteString,
  childOf,
  childrenOf,
  dateTime,
  enumeration,
  integer,
  interval,
  structure,
  textString,
  type TtlvItem,
} from './ttlv/types.js';
import {
  EncodingOption,
  KeyFormatType,
  ObjectType,
  Operation,
  SecretDataType,
  T,
  WrappingMethod,
  valueName,
  type OperationCode,
} from './spec.js';
import {
  all,
  isKmip2,
  optional,
  optionalStructure,
  cloneItem,
  protocolError,
  required,
  type ProtocolVersion,
} from './fields.js';
import {
  attributeNameForTag,
  attributeTag,
  decodeAttribute1,
  decodeAttribute2,
  decodeAttributeList,
  encodeAttribute1,
  encodeAttribute2,
  encodeAttributeSet,
  type Attribute,
} from './attributes.js';

export interface OperationSpec<Req, Res> {
  code: OperationCode;
  name: string;
  /** Safe to send again when the first attempt's fate is unknown (connection dropped). */
  idempotent: boolean;
  encode(request: Req, version: ProtocolVersion): TtlvItem[];
  decode(payload: TtlvItem, version: ProtocolVersion): Res;
}

/** A request ready for a batch: the operation and its typed request. */
export interface BatchRequest<Res = unknown> {
  spec: OperationSpec<never, Res>;
  request: unknown;
}

function define<Req, Res>(spec: OperationSpec<Req, Res>) {
  const call = (request: Req): BatchRequest<Res> => ({ spec: spec as OperationSpec<never, Res>, request });
  return Object.assign(call, { spec });
}

const uid = (id: string) => textString(T.UniqueIdentifier, id);
const uidResult = (payload: TtlvItem) => ({
  uniqueIdentifier: required(payload, T.UniqueIdentifier, ItemType.TextString),
});

// ---------------------------------------------------------------- Discover Versions

export interface DiscoverVersionsRequest {
  /** The versions the client supports, most preferred first (empty: ask for all the server has). */
  versions: ProtocolVersion[];
}
export const discoverVersions = define<DiscoverVersionsRequest, { versions: ProtocolVersion[] }>({
  code: Operation.DiscoverVersions,
  name: 'DiscoverVersions',
  idempotent: true,
  encode: (r) => r.versions.map(encodeVersion),
  decode: (p) => ({ versions: childrenOf(p, T.ProtocolVersion).map(decodeVersion) }),
});

export function encodeVersion(v: ProtocolVersion): TtlvItem {
  return structure(T.ProtocolVersion, [
    integer(T.ProtocolVersionMajor, v.major),
    integer(T.ProtocolVersionMinor, v.minor),
  ]);
}
export function decodeVersion(item: TtlvItem): ProtocolVersion {
  return {
    major: required(item, T.ProtocolVersionMajor, ItemType.Integer),
    minor: required(item, T.ProtocolVersionMinor, ItemType.Integer),
  };
}

// ---------------------------------------------------------------- Query

export interface QueryResult {
  operations: number[];
  /** `operations` as the registry names them (`Get`, `DiscoverVersions`; hex for values it does not know). */
  operationNames: string[];
  objectTypes: number[];
  /** `objectTypes` as the registry names them (`SymmetricKey`, `PGPKey`). */
  objectTypeNames: string[];
  vendorIdentification?: string;
  /** Server Information is vendor-defined: kept as raw TTLV. */
  serverInformation?: TtlvItem;
}
export const query = define<{ functions: number[] }, QueryResult>({
  code: Operation.Query,
  name: 'Query',
  idempotent: true,
  encode: (r) => r.functions.map((f) => enumeration(T.QueryFunction, f)),
  decode: (p) => {
    const operations = all(p, T.Operation, ItemType.Enumeration);
    const objectTypes = all(p, T.ObjectType, ItemType.Enumeration);
    const result: QueryResult = {
      operations,
      operationNames: operations.map((op) => valueName(T.Operation, op)),
      objectTypes,
      objectTypeNames: objectTypes.map((type) => valueName(T.ObjectType, type)),
    };
    const vendor = optional(p, T.VendorIdentification, ItemType.TextString);
    if (vendor !== undefined) result.vendorIdentification = vendor;
    const info = childOf(p, T.ServerInformation);
    if (info !== undefined) result.serverInformation = cloneItem(info);
    return result;
  },
});

// ---------------------------------------------------------------- Create

export interface CreateSymmetricKeyRequest {
  /** Cryptographic Algorithm enumeration (e.g. CryptographicAlgorithm.AES). */
  algorithm: number;
  /** Length in bits. */
  length: number;
  /** Cryptographic Usage Mask bits (e.g. UsageMask.Encrypt | UsageMask.Decrypt). */
  usageMask: number;
  name?: string;
  objectGroup?: string;
  /** Further attributes, in the library's attribute form. */
  attributes?: Attribute[];
}
export const create = define<
  CreateSymmetricKeyRequest,
  { objectType: number; objectTypeName: string; uniqueIdentifier: string }
>({
  code: Operation.Create,
  name: 'Create',
  idempotent: false,
  encode: (r, v) => [enumeration(T.ObjectType, ObjectType.SymmetricKey), ...encodeAttributeSet(keyAttributes(r), v)],
  decode: (p) => {
    const objectType = required(p, T.ObjectType, ItemType.Enumeration);
    return {
      objectType,
      objectTypeName: valueName(T.ObjectType, objectType),
      uniqueIdentifier: required(p, T.UniqueIdentifier, ItemType.TextString),
    };
  },
});

function keyAttributes(r: CreateSymmetricKeyRequest): Attribute[] {
  const list: Attribute[] = [
    { name: 'Cryptographic Algorithm', value: r.algorithm },
    { name: 'Cryptographic Length', value: r.length },
    { name: 'Cryptographic Usage Mask', value: r.usageMask },
  ];
  return [...list, ...namingAttributes(r), ...(r.attributes ?? [])];
}

function namingAttributes(r: { name?: string; objectGroup?: string }): Attribute[] {
  const list: Attribute[] = [];
  if (r.name !== undefined) list.push({ name: 'Name', value: r.name });
  if (r.objectGroup !== undefined) list.push({ name: 'Object Group', value: r.objectGroup });
  return list;
}

// ---------------------------------------------------------------- Register

export type RegisterRequest =
  | {
      kind: 'symmetric-key';
      /** Raw key bytes; the caller keeps ownership (and zeroes it afterwards). */
      key: Uint8Array;
      algorithm: number;
      usageMask: number;
      name?: string;
      objectGroup?: string;
      attributes?: Attribute[];
    }
  | {
      /** Secret Data of type Password: what drive PINs and LUKS passphrases are stored as. */
      kind: 'secret-data';
      secret: Uint8Array;
      usageMask?: number;
      name?: string;
      objectGroup?: string;
      attributes?: Attribute[];
    };

export const register = define<RegisterRequest, { uniqueIdentifier: string }>({
  code: Operation.Register,
  name: 'Register',
  idempotent: false,
  encode: (r, v) => {
    if (r.kind === 'symmetric-key') {
      const attributes = keyAttributes({ ...r, length: r.key.length * 8 });
      return [
        enumeration(T.ObjectType, ObjectType.SymmetricKey),
        ...encodeAttributeSet(attributes, v),
        structure(T.SymmetricKey, [
          keyBlock(KeyFormatType.Raw, r.key, [
            enumeration(T.CryptographicAlgorithm, r.algorithm),
            integer(T.CryptographicLength, r.key.length * 8),
          ]),
        ]),
      ];
    }
    const attributes: Attribute[] = [
      ...(r.usageMask === undefined ? [] : [{ name: 'Cryptographic Usage Mask', value: r.usageMask }]),
      ...namingAttributes(r),
      ...(r.attributes ?? []),
    ];
    return [
      enumeration(T.ObjectType, ObjectType.SecretData),
      ...encodeAttributeSet(attributes, v),
      structure(T.SecretData, [
        enumeration(T.SecretDataType, SecretDataType.Password),
        keyBlock(KeyFormatType.Opaque, r.secret, []),
      ]),
    ];
  },
  decode: uidResult,
});

function keyBlock(format: number, material: Uint8Array, trailer: TtlvItem[]): TtlvItem {
  return structure(T.KeyBlock, [
    enumeration(T.KeyFormatType, format),
    structure(T.KeyValue, [byteString(T.KeyMaterial, material)]),
    ...trailer,
  ]);
}

// ---------------------------------------------------------------- Get

export interface KeyWrappingSpecification {
  /** Wrapping Method (WrappingMethod.Encrypt by default). */
  wrappingMethod?: number;
  /** The wrapping key's Unique Identifier. */
  wrappingKeyId: string;
  /** Block Cipher Mode for the wrapping key (e.g. BlockCipherMode.NISTKeyWrap). */
  blockCipherMode?: number;
  /** Encoding Option of the wrapped key (default No Encoding: the raw key bytes are wrapped). */
  encodingOption?: number;
}

export interface GetRequest {
  uniqueIdentifier: string;
  keyFormatType?: number;
  keyWrapping?: KeyWrappingSpecification;
}

/**
 * A managed object as Get returns it. Each enumeration comes as its code and, in the `...Name` field
 * beside it, its registry name (`objectType: 7, objectTypeName: 'SecretData'`).
 */
export interface ManagedObject {
  objectType: number;
  objectTypeName: string;
  uniqueIdentifier: string;
  /** 0 for objects without a Key Block (certificates, opaque objects). */
  keyFormatType: number;
  /** `Raw`, `Opaque`, `TransparentSymmetricKey`...; absent when there is no Key Block. */
  keyFormatTypeName?: string;
  /** The key material (or secret bytes); wrapped bytes when a wrapping specification was used. Zero it after use. */
  value: Buffer;
  wrapped: boolean;
  cryptographicAlgorithm?: number;
  cryptographicAlgorithmName?: string;
  cryptographicLength?: number;
  secretDataType?: number;
  secretDataTypeName?: string;
}

export const get = define<GetRequest, ManagedObject>({
  code: Operation.Get,
  name: 'Get',
  idempotent: true,
  encode: (r) => {
    const items = [uid(r.uniqueIdentifier)];
    if (r.keyFormatType !== undefined) items.push(enumeration(T.KeyFormatType, r.keyFormatType));
    if (r.keyWrapping) {
      const keyInfo = [uid(r.keyWrapping.wrappingKeyId)];
      if (r.keyWrapping.blockCipherMode !== undefined)
        keyInfo.push(
          structure(T.CryptographicParameters, [enumeration(T.BlockCipherMode, r.keyWrapping.blockCipherMode)]),
        );
      items.push(
        structure(T.KeyWrappingSpecification, [
          enumeration(T.WrappingMethod, r.keyWrapping.wrappingMethod ?? WrappingMethod.Encrypt),
          structure(T.EncryptionKeyInformation, keyInfo),
          enumeration(T.EncodingOption, r.keyWrapping.encodingOption ?? EncodingOption.NoEncoding),
        ]),
      );
    }
    return items;
  },
  decode: (p) => decodeManagedObject(p),
});

const OBJECT_TAGS: [number, number][] = [
  [T.SymmetricKey, ObjectType.SymmetricKey],
  [T.SecretData, ObjectType.SecretData],
  [T.Certificate, ObjectType.Certificate],
  [T.PublicKey, ObjectType.PublicKey],
  [T.PrivateKey, ObjectType.PrivateKey],
  [T.OpaqueObject, ObjectType.OpaqueObject],
];

/**
 * Hands the caller the key bytes the decoder already copied, without a further copy: the tree keeps an
 * empty buffer in their place, so wiping the tree afterwards leaves the caller's value intact.
 */
function takeBytes(item: Extract<TtlvItem, { type: typeof ItemType.ByteString }>): Buffer {
  const { value } = item;
  item.value = Buffer.alloc(0);
  return Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
}

function decodeManagedObject(p: TtlvItem): ManagedObject {
  const objectType = required(p, T.ObjectType, ItemType.Enumeration);
  const objectTypeName = valueName(T.ObjectType, objectType);
  const uniqueIdentifier = required(p, T.UniqueIdentifier, ItemType.TextString);
  const entry = OBJECT_TAGS.find(([, type]) => type === objectType);
  const object = entry ? optionalStructure(p, entry[0]) : undefined;
  if (!object) throw protocolError(`Get response has no object of type ${objectType}`, 'KMIP_PROTOCOL_MISSING_FIELD');
  const block = childOf(object, T.KeyBlock);
  if (!block) {
    // Certificates and opaque objects carry their bytes directly.
    const bytes =
      object.type === ItemType.Structure ? object.value.find((c) => c.type === ItemType.ByteString) : undefined;
    if (bytes?.type !== ItemType.ByteString) throw protocolError('object has neither Key Block nor value bytes');
    return { objectType, objectTypeName, uniqueIdentifier, keyFormatType: 0, value: takeBytes(bytes), wrapped: false };
  }
  const keyFormatType = required(block, T.KeyFormatType, ItemType.Enumeration);
  const wrapped = childOf(block, T.KeyWrappingData) !== undefined;
  const keyValue = childOf(block, T.KeyValue);
  let bytes: TtlvItem | undefined;
  if (keyValue?.type === ItemType.ByteString) bytes = keyValue;
  else if (keyValue?.type === ItemType.Structure) {
    const material = childOf(keyValue, T.KeyMaterial);
    bytes = material?.type === ItemType.Structure ? childOf(material, T.Key) : material;
  }
  if (bytes?.type !== ItemType.ByteString)
    throw protocolError('Key Block has no key material', 'KMIP_PROTOCOL_MISSING_FIELD');
  const result: ManagedObject = {
    objectType,
    objectTypeName,
    uniqueIdentifier,
    keyFormatType,
    keyFormatTypeName: valueName(T.KeyFormatType, keyFormatType),
    value: takeBytes(bytes),
    wrapped,
  };
  const algorithm = optional(block, T.CryptographicAlgorithm, ItemType.Enumeration);
  if (algorithm !== undefined) {
    result.cryptographicAlgorithm = algorithm;
    result.cryptographicAlgorithmName = valueName(T.CryptographicAlgorithm, algorithm);
  }
  const length = optional(block, T.CryptographicLength, ItemType.Integer);
  if (length !== undefined) result.cryptographicLength = length;
  const secretType = optional(object, T.SecretDataType, ItemType.Enumeration);
  if (secretType !== undefined) {
    result.secretDataType = secretType;
    result.secretDataTypeName = valueName(T.SecretDataType, secretType);
  }
  return result;
}

// ---------------------------------------------------------------- Locate

export interface LocateRequest {
  name?: string;
  objectGroup?: string;
  objectType?: number;
  state?: number;
  maximumItems?: number;
  /** Offset Items (KMIP 1.3+). */
  offsetItems?: number;
  attributes?: Attribute[];
}
export const locate = define<LocateRequest, { uniqueIdentifiers: string[]; locatedItems?: number }>({
  code: Operation.Locate,
  name: 'Locate',
  idempotent: true,
  encode: (r, v) => {
    const items: TtlvItem[] = [];
    if (r.maximumItems !== undefined) items.push(integer(T.MaximumItems, r.maximumItems));
    if (r.offsetItems !== undefined) items.push(integer(T.OffsetItems, r.offsetItems));
    const attributes: Attribute[] = [];
    if (r.objectType !== undefined) attributes.push({ name: 'Object Type', value: r.objectType });
    if (r.state !== undefined) attributes.push({ name: 'State', value: r.state });
    attributes.push(...namingAttributes(r), ...(r.attributes ?? []));
    return [...items, ...encodeAttributeSet(attributes, v, true)];
  },
  decode: (p) => {
    const result: { uniqueIdentifiers: string[]; locatedItems?: number } = {
      uniqueIdentifiers: all(p, T.UniqueIdentifier, ItemType.TextString),
    };
    const located = optional(p, T.LocatedItems, ItemType.Integer);
    if (located !== undefined) result.locatedItems = located;
    return result;
  },
});

// ---------------------------------------------------------------- Get Attributes / Get Attribute List

/** 2.x names attributes by Attribute Reference (here the enumeration of the attribute's tag). */
function attributeReference(name: string, v: ProtocolVersion): TtlvItem {
  if (!isKmip2(v)) return textString(T.AttributeName, name);
  const tag = attributeTag(name);
  if (tag === undefined) throw new TypeError(`attribute ${name} has no KMIP 2.x tag known to this library`);
  return enumeration(T.AttributeReference, tag);
}

export const getAttributes = define<
  { uniqueIdentifier: string; names?: string[] },
  { uniqueIdentifier: string; attributes: Attribute[] }
>({
  code: Operation.GetAttributes,
  name: 'GetAttributes',
  idempotent: true,
  encode: (r, v) => [uid(r.uniqueIdentifier), ...(r.names ?? []).map((n) => attributeReference(n, v))],
  decode: (p) => ({ ...uidResult(p), attributes: decodeAttributeList(p) }),
});

export const getAttributeList = define<{ uniqueIdentifier: string }, { uniqueIdentifier: string; names: string[] }>({
  code: Operation.GetAttributeList,
  name: 'GetAttributeList',
  idempotent: true,
  encode: (r) => [uid(r.uniqueIdentifier)],
  decode: (p) => ({
    ...uidResult(p),
    names: [
      ...all(p, T.AttributeName, ItemType.TextString),
      ...childrenOf(p, T.AttributeReference).map((ref) =>
        ref.type === ItemType.Enumeration ? attributeNameForTag(ref.value) : String(ref.value),
      ),
    ],
  }),
});

// ---------------------------------------------------------------- Add / Modify / Set / Delete Attribute

function decodeSingleAttribute(p: TtlvItem): { uniqueIdentifier: string; attribute?: Attribute } {
  const result: { uniqueIdentifier: string; attribute?: Attribute } = uidResult(p);
  const one = childOf(p, T.Attribute);
  if (one) result.attribute = decodeAttribute1(one);
  return result;
}

function newAttribute(attribute: Attribute, v: ProtocolVersion): TtlvItem {
  return isKmip2(v) ? structure(T.NewAttribute, [encodeAttribute2(attribute)]) : encodeAttribute1(attribute);
}

export const addAttribute = define<
  { uniqueIdentifier: string; attribute: Attribute },
  { uniqueIdentifier: string; attribute?: Attribute }
>({
  code: Operation.AddAttribute,
  name: 'AddAttribute',
  idempotent: false,
  encode: (r, v) => [uid(r.uniqueIdentifier), newAttribute(r.attribute, v)],
  decode: decodeSingleAttribute,
});

export const modifyAttribute = define<
  { uniqueIdentifier: string; attribute: Attribute; current?: Attribute },
  { uniqueIdentifier: string; attribute?: Attribute }
>({
  code: Operation.ModifyAttribute,
  name: 'ModifyAttribute',
  // Setting a value to X twice leaves X: safe to resend.
  idempotent: true,
  encode: (r, v) => {
    if (!isKmip2(v)) return [uid(r.uniqueIdentifier), encodeAttribute1(r.attribute)];
    const items = [uid(r.uniqueIdentifier)];
    if (r.current) items.push(structure(T.CurrentAttribute, [encodeAttribute2(r.current)]));
    items.push(newAttribute(r.attribute, v));
    return items;
  },
  decode: decodeSingleAttribute,
});

/** Set Attribute exists only in KMIP 2.x. */
export const setAttribute = define<{ uniqueIdentifier: string; attribute: Attribute }, { uniqueIdentifier: string }>({
  code: Operation.SetAttribute,
  name: 'SetAttribute',
  idempotent: true,
  encode: (r) => [uid(r.uniqueIdentifier), structure(T.NewAttribute, [encodeAttribute2(r.attribute)])],
  decode: uidResult,
});

export const deleteAttribute = define<
  { uniqueIdentifier: string; name: string; index?: number; current?: Attribute },
  { uniqueIdentifier: string; attribute?: Attribute }
>({
  code: Operation.DeleteAttribute,
  name: 'DeleteAttribute',
  idempotent: false,
  encode: (r, v) => {
    if (isKmip2(v)) {
      if (r.current) return [uid(r.uniqueIdentifier), structure(T.CurrentAttribute, [encodeAttribute2(r.current)])];
      return [uid(r.uniqueIdentifier), attributeReference(r.name, v)];
    }
    const items = [uid(r.uniqueIdentifier), textString(T.AttributeName, r.name)];
    if (r.index !== undefined) items.push(integer(T.AttributeIndex, r.index));
    return items;
  },
  decode: (p) => {
    const result = decodeSingleAttribute(p);
    const attrs = optionalStructure(p, T.Attributes);
    if (!result.attribute && attrs && attrs.type === ItemType.Structure && attrs.value[0])
      result.attribute = decodeAttribute2(attrs.value[0]);
    return result;
  },
});

// ---------------------------------------------------------------- Activate / Revoke / Destroy / ReKey

export const activate = define<{ uniqueIdentifier: string }, { uniqueIdentifier: string }>({
  code: Operation.Activate,
  name: 'Activate',
  idempotent: false,
  encode: (r) => [uid(r.uniqueIdentifier)],
  decode: uidResult,
});

export interface RevokeRequest {
  uniqueIdentifier: string;
  /** Revocation Reason Code (RevocationReasonCode.*). */
  reason: number;
  message?: string;
  /** Compromise Occurrence Date, for key-compromise revocations. */
  compromiseDate?: Date;
}
export const revoke = define<RevokeRequest, { uniqueIdentifier: string }>({
  code: Operation.Revoke,
  name: 'Revoke',
  idempotent: false,
  encode: (r) => {
    const reason = [enumeration(T.RevocationReasonCode, r.reason)];
    if (r.message !== undefined) reason.push(textString(T.RevocationMessage, r.message));
    const items = [uid(r.uniqueIdentifier), structure(T.RevocationReason, reason)];
    if (r.compromiseDate) items.push(dateTime(T.CompromiseOccurrenceDate, r.compromiseDate));
    return items;
  },
  decode: uidResult,
});

export const destroy = define<{ uniqueIdentifier: string }, { uniqueIdentifier: string }>({
  code: Operation.Destroy,
  name: 'Destroy',
  idempotent: false,
  encode: (r) => [uid(r.uniqueIdentifier)],
  decode: uidResult,
});

export const reKey = define<
  { uniqueIdentifier: string; offsetSeconds?: number; attributes?: Attribute[] },
  { uniqueIdentifier: string }
>({
  code: Operation.ReKey,
  name: 'ReKey',
  idempotent: false,
  encode: (r, v) => {
    const items = [uid(r.uniqueIdentifier)];
    if (r.offsetSeconds !== undefined) items.push(interval(T.Offset, r.offsetSeconds));
    if (r.attributes && r.attributes.length > 0) items.push(...encodeAttributeSet(r.attributes, v));
    return items;
  },
  decode: uidResult,
});
