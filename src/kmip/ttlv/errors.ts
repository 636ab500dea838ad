/** Typed failures of the TTLV codec: every one carries a stable code, the byte offset and the tag. */
import { KmipAgentError } from '../coded-error.js';

export const TtlvErrorCode = {
  /** The input ends before the item it declares. */
  Truncated: 'KMIP_TTLV_TRUNCATED',
  /** A length that does not fit the type, or structure contents that do not fill their length. */
  BadLength: 'KMIP_TTLV_BAD_LENGTH',
  /** Non-zero padding bytes. */
  BadPadding: 'KMIP_TTLV_BAD_PADDING',
  /** An unknown item type, or a type a form or position does not allow. */
  BadType: 'KMIP_TTLV_BAD_TYPE',
  /** A value outside its type's domain (boolean not 0/1, invalid UTF-8, non-minimal big integer, ...). */
  BadValue: 'KMIP_TTLV_BAD_VALUE',
  /** An unknown tag or enumeration name in a text form (JSON, XML). */
  UnknownName: 'KMIP_TTLV_UNKNOWN_NAME',
  /** Malformed JSON or XML text. */
  BadSyntax: 'KMIP_TTLV_BAD_SYNTAX',
  TooDeep: 'KMIP_TTLV_TOO_DEEP',
  TooLarge: 'KMIP_TTLV_TOO_LARGE',
  TrailingBytes: 'KMIP_TTLV_TRAILING_BYTES',
  /** Reading the XML form without its optional parser (fast-xml-parser) installed. */
  XmlParserMissing: 'KMIP_TTLV_XML_PARSER_MISSING',
} as const;
export type TtlvErrorCode = (typeof TtlvErrorCode)[keyof typeof TtlvErrorCode];

export class TtlvError extends KmipAgentError {
  declare readonly code: TtlvErrorCode;
  /** Byte offset of the offending item or field in binary input (undefined for text forms). */
  readonly offset: number | undefined;
  /** Tag of the offending item when it was read. */
  readonly tag: number | undefined;
  /** What is wrong, without the location (the message adds offset and tag). */
  readonly reason: string;

  constructor(code: TtlvErrorCode, reason: string, where: { offset?: number; tag?: number } = {}) {
    const at = [
      where.offset === undefined ? '' : ` at offset ${where.offset}`,
      where.tag === undefined ? '' : ` (tag 0x${where.tag.toString(16).padStart(6, '0')})`,
    ].join('');
    super(`TTLV: ${reason}${at}`, code);
    this.offset = where.offset;
    this.tag = where.tag;
    this.reason = reason;
  }
}
