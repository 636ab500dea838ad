/**
 * Object attributes in both wire forms: KMIP 1.x wraps each one in Attribute {Attribute Name, Attribute
 * Index, Attribute Value} (inside a Template-Attribute for Create/Register/ReKey); KMIP 2.x writes each
 * attribute under its own tag inside an Attributes structure. Callers use one form: `Attribute`.
 */
import {
  ItemType,
  childOf,
  dateTime,
  enumeration,
  integer,
  longInteger,
  structure,
  textString,
  byteString,
  boolean,
  type TtlvItem,
} from './ttlv/types.js';
import { NameType, T, valueName } from './spec.js';
import {
  AttributeName,
  attributeTag as registryAttributeTag,
  hasValueNames,
  isMaskTag,
  maskText,
  tagName,
  type TagName,
} from './ttlv/registry.js';
import { cloneItem, isKmip2, protocolError, type ProtocolVersion } from './fields.js';

/**
 * A decoded or to-be-encoded attribute value: text, integer/enumeration (number), long (bigint),
 * boolean, date, bytes, or the raw TTLV item for structured attributes we do not model.
 */
export type AttributeValue = string | number | bigint | boolean | Date | Uint8Array | TtlvItem;

export interface Attribute {
  /** The spec name, e.g. "Cryptographic Algorithm", "Name", "Object Group", or a custom "x-..." name. */
  name: string;
  /** Attribute Index for multi-instance attributes (1.x only). */
  index?: number;
  value: AttributeValue;
  /**
   * On decoded attributes whose value is an enumeration or a mask: its registry name (`SymmetricKey`,
   * `Active`) or flags (`Encrypt|Decrypt`). Ignored when encoding.
   */
  valueName?: string;
}

type Kind = 'text' | 'integer' | 'enum' | 'date' | 'name';

/**
 * How this library encodes the attributes it models (the registry names attributes and tags but not
 * their item types); others travel as raw TTLV.
 */
const KIND: Partial<Record<TagName, Kind>> = {
  UniqueIdentifier: 'text',
  Name: 'name',
  ObjectType: 'enum',
  CryptographicAlgorithm: 'enum',
  CryptographicLength: 'integer',
  CryptographicUsageMask: 'integer',
  ObjectGroup: 'text',
  State: 'enum',
  OperationPolicyName: 'text',
  InitialDate: 'date',
  ActivationDate: 'date',
  DeactivationDate: 'date',
  DestroyDate: 'date',
  LastChangeDate: 'date',
  CompromiseOccurrenceDate: 'date',
};

/** The tag of an attribute name (KMIP 2.x writes the attribute under it); undefined if the registry lacks it. */
export function attributeTag(name: string): number | undefined {
  return registryAttributeTag(name);
}

/** The attribute name for a KMIP 2.x attribute tag (its 1.x Attribute Name; the tag name or hex otherwise). */
export function attributeNameForTag(tag: number): string {
  const name = tagName(tag);
  if (name === undefined) return `0x${tag.toString(16).padStart(6, '0')}`;
  return (AttributeName as Record<string, string>)[name] ?? name;
}

function kindOf(name: string): Kind | undefined {
  const tag = attributeTag(name);
  const known = tag === undefined ? undefined : tagName(tag);
  return known === undefined ? undefined : KIND[known as TagName];
}

function encodeValue(tag: number, name: string, value: AttributeValue): TtlvItem {
  const kind = kindOf(name);
  if (kind === 'name') {
    if (typeof value !== 'string') return retag(value, tag, name);
    return structure(tag, [textString(T.NameValue, value), enumeration(T.NameType, NameType.UninterpretedTextString)]);
  }
  if (typeof value === 'string') return textString(tag, value);
  if (typeof value === 'number') {
    if (!Number.isInteger(value)) throw new TypeError(`attribute ${name}: ${value} is not an integer`);
    return kind === 'enum' ? enumeration(tag, value) : integer(tag, value);
  }
  if (typeof value === 'bigint') return longInteger(tag, value);
  if (typeof value === 'boolean') return boolean(tag, value);
  if (value instanceof Date) return dateTime(tag, value);
  if (value instanceof Uint8Array) return byteString(tag, value);
  return retag(value, tag, name);
}

function retag(value: AttributeValue, tag: number, name: string): TtlvItem {
  if (typeof value === 'object' && value !== null && 'tag' in value && 'type' in value) return { ...value, tag };
  throw new TypeError(`attribute ${name}: unsupported value`);
}

function decodeValue(name: string, item: TtlvItem): AttributeValue {
  const kind = kindOf(name);
  if (kind === 'name' && item.type === ItemType.Structure) {
    const value = childOf(item, T.NameValue);
    if (value?.type === ItemType.TextString) return value.value;
    return cloneItem(item);
  }
  switch (item.type) {
    case ItemType.TextString:
    case ItemType.Integer:
    case ItemType.Enumeration:
    case ItemType.LongInteger:
    case ItemType.Boolean:
      return item.value;
    case ItemType.ByteString:
      return Buffer.from(item.value);
    case ItemType.DateTime:
      return new Date(Number(item.value) * 1000);
    default:
      return cloneItem(item);
  }
}

/** One attribute in the 1.x form: Attribute {Attribute Name, Attribute Index?, Attribute Value}. */
export function encodeAttribute1(attribute: Attribute): TtlvItem {
  const children = [textString(T.AttributeName, attribute.name)];
  if (attribute.index !== undefined) children.push(integer(T.AttributeIndex, attribute.index));
  children.push(encodeValue(T.AttributeValue, attribute.name, attribute.value));
  return structure(T.Attribute, children);
}

/** One attribute in the 2.x form: the value under the attribute's own tag. */
export function encodeAttribute2(attribute: Attribute): TtlvItem {
  const tag = attributeTag(attribute.name);
  if (tag === undefined) throw new TypeError(`attribute ${attribute.name} has no KMIP 2.x tag known to this library`);
  return encodeValue(tag, attribute.name, attribute.value);
}

/**
 * Attributes for Create/Register/ReKey/Locate: Template-Attribute (1.x; required in Create and Register
 * even when empty) or Attributes (2.x); Locate 1.x lists bare Attribute items.
 */
export function encodeAttributeSet(attributes: Attribute[], version: ProtocolVersion, locate = false): TtlvItem[] {
  if (isKmip2(version)) return [structure(T.Attributes, attributes.map(encodeAttribute2))];
  const items = attributes.map(encodeAttribute1);
  return locate ? items : [structure(T.TemplateAttribute, items)];
}

export function decodeAttribute1(item: TtlvItem): Attribute {
  const name = childOf(item, T.AttributeName);
  const value = childOf(item, T.AttributeValue);
  if (name?.type !== ItemType.TextString || value === undefined)
    throw protocolError('Attribute without Attribute Name/Attribute Value', 'KMIP_PROTOCOL_MISSING_FIELD');
  const index = childOf(item, T.AttributeIndex);
  const attribute = named(name.value, attributeTag(name.value), value);
  if (index?.type === ItemType.Integer) attribute.index = index.value;
  return attribute;
}

export function decodeAttribute2(item: TtlvItem): Attribute {
  return named(attributeNameForTag(item.tag), item.tag, item);
}

/** The decoded attribute, with the registry's name for an enumeration value or mask. */
function named(name: string, tag: number | undefined, item: TtlvItem): Attribute {
  const attribute: Attribute = { name, value: decodeValue(name, item) };
  if (tag !== undefined && hasValueNames(tag)) {
    if (item.type === ItemType.Enumeration) attribute.valueName = valueName(tag, item.value);
    else if (item.type === ItemType.Integer && isMaskTag(tag)) attribute.valueName = maskText(tag, item.value);
  }
  return attribute;
}

/** Attributes of a response payload in either form (Attribute* children, or an Attributes structure). */
export function decodeAttributeList(payload: TtlvItem): Attribute[] {
  if (payload.type !== ItemType.Structure) return [];
  const out: Attribute[] = [];
  for (const child of payload.value) {
    if (child.tag === T.Attribute) out.push(decodeAttribute1(child));
    else if (child.tag === T.Attributes && child.type === ItemType.Structure)
      out.push(...child.value.map(decodeAttribute2));
    else if (child.tag === T.TemplateAttribute) out.push(...decodeAttributeList(child));
  }
  return out;
}

/** Convenience view of decoded attributes: first value per name, all values for multi-instance names. */
export function attributeValues(attributes: Attribute[], name: string): AttributeValue[] {
  return attributes.filter((a) => a.name === name).map((a) => a.value);
}
