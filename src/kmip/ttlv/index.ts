/** The TTLV layer of the KMIP library: data model, tag/enumeration registry, binary codec and text forms. */
export * from './types.js';
export * from './errors.js';
export {
  Tag,
  Enum,
  AttributeName,
  normalizeName,
  tagName,
  tagLabel,
  tagCode,
  attributeTag,
  enumName,
  enumValue,
  isMaskTag,
  hasValueNames,
  maskText,
  maskValue,
  type TagName,
  type EnumName,
} from './registry.js';
export {
  encode,
  decode,
  decodeMessageLength,
  Writer,
  Reader,
  HEADER_LENGTH,
  DEFAULT_MAX_BYTES,
  DEFAULT_MAX_DEPTH,
  type DecodeLimits,
} from './binary.js';
export { Placeholders } from './placeholders.js';
export { fromXml, toXml, toXmlDocument, type XmlOptions } from './xml.js';
export { fromJson, toJson, type JsonTtlv } from './json.js';
export { toText, SECRET_TAGS, type TextOptions } from './text.js';
