/**
 * The text form of single values shared by the XML, JSON and text renderings: enumerations and masks
 * by name (hex when unnamed), dates in ISO 8601, bytes and big integers in hex. Also resolves which tag
 * names a value: a 1.x Attribute Value takes its enumeration table from its sibling Attribute Name.
 */
import { bigIntBytes } from './binary.js';
import { TtlvError, TtlvErrorCode } from './errors.js';
import { attributeTag, enumName, enumValue, hex32, isMaskTag, maskText, maskValue, Tag } from './registry.js';
import { ItemType, type TtlvItem } from './types.js';

/** Type names of the text forms, by type code. */
export const TYPE_NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(ItemType).map(([name, code]) => [code, name]),
);

export function typeCode(name: string): ItemType | undefined {
  return Object.hasOwn(ItemType, name) ? ItemType[name as keyof typeof ItemType] : undefined;
}

/**
 * The tag whose enumeration/mask table names this value: for an Attribute Value, the tag of the
 * attribute named by the `attributeName` sibling (1.x Template-Attribute form); otherwise the item's own tag.
 */
export function valueTag(tag: number, attributeName: string | undefined): number {
  if (tag !== Tag.AttributeValue || attributeName === undefined) return tag;
  return attributeTag(attributeName) ?? tag;
}

/** Tracks the Attribute Name seen among a structure's children, for the Attribute Value after it. */
export function attributeNameOf(item: TtlvItem): string | undefined {
  return item.tag === Tag.AttributeName && item.type === ItemType.TextString ? item.value : undefined;
}

const INT64_SPAN = 1n << 64n;
const MIN_ISO_SECONDS = -62167219200n; // 0000-01-01T00:00:00Z
const MAX_ISO_SECONDS = 253402300799n; // 9999-12-31T23:59:59Z

function hex64(value: bigint): string {
  return '0x' + BigInt.asUintN(64, value).toString(16).padStart(16, '0');
}

function isoSeconds(seconds: bigint, micros?: number): string {
  const date = new Date(Number(seconds) * 1000).toISOString().slice(0, 19);
  return micros === undefined ? `${date}+00:00` : `${date}.${String(micros).padStart(6, '0')}+00:00`;
}

/** Text of a scalar value as the XML form writes it (structures have none). */
export function formatValue(item: TtlvItem, tagForNames: number): string {
  switch (item.type) {
    case ItemType.Structure:
      return '';
    case ItemType.Integer:
      return isMaskTag(tagForNames) ? maskText(tagForNames, item.value) : String(item.value);
    case ItemType.Enumeration:
      return enumName(tagForNames, item.value) ?? hex32(item.value);
    case ItemType.Interval:
    case ItemType.LongInteger:
      return String(item.value);
    case ItemType.BigInteger:
      return bigIntBytes(item.value).toString('hex');
    case ItemType.Boolean:
      return item.value ? 'true' : 'false';
    case ItemType.TextString:
      return item.value;
    case ItemType.ByteString:
      return Buffer.from(item.value.buffer, item.value.byteOffset, item.value.byteLength).toString('hex');
    case ItemType.DateTime:
      return item.value >= MIN_ISO_SECONDS && item.value <= MAX_ISO_SECONDS
        ? isoSeconds(item.value)
        : hex64(item.value);
    case ItemType.DateTimeExtended: {
      const seconds = item.value / 1_000_000n - (item.value % 1_000_000n < 0n ? 1n : 0n);
      const micros = Number(item.value - seconds * 1_000_000n);
      return seconds >= MIN_ISO_SECONDS && seconds <= MAX_ISO_SECONDS ? isoSeconds(seconds, micros) : hex64(item.value);
    }
  }
}

const DECIMAL = /^[+-]?\d+$/;
const HEX = /^0x[0-9a-fA-F]+$/;
const ISO = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$/;

/** Where a text-form value sits, for error messages. */
export type ValuePath = () => string;

function bad(path: ValuePath, reason: string, code: TtlvErrorCode = TtlvErrorCode.BadValue): TtlvError {
  return new TtlvError(code, `${path()}: ${reason}`);
}

function int64(text: string, path: ValuePath): bigint {
  let value: bigint;
  if (DECIMAL.test(text)) value = BigInt(text);
  else if (HEX.test(text) && text.length <= 18) value = BigInt.asIntN(64, BigInt(text));
  else throw bad(path, `'${text}' is not a 64-bit integer`);
  if (value < -(INT64_SPAN >> 1n) || value >= INT64_SPAN >> 1n) throw bad(path, `${text} is out of 64-bit range`);
  return value;
}

function uint32(text: string, path: ValuePath): number {
  if (!DECIMAL.test(text) && !(HEX.test(text) && text.length <= 10)) throw bad(path, `'${text}' is not a 32-bit value`);
  const value = Number(text);
  if (value < 0 || value > 0xffffffff) throw bad(path, `${text} is out of range`);
  return value;
}

/** Seconds (and sub-second digits) of an ISO 8601 date; undefined if the text is not one. */
function parseIso(text: string): { seconds: bigint; fraction: string } | undefined {
  const m = ISO.exec(text);
  if (!m) return undefined;
  const [, y, mo, d, h, mi, s, fraction = '', zone] = m;
  // setUTCFullYear, unlike Date.UTC, does not map years 0-99 to 19xx.
  const date = new Date(0);
  date.setUTCFullYear(+y, +mo - 1, +d);
  date.setUTCHours(+h, +mi, +s, 0);
  if (date.getUTCFullYear() !== +y || date.getUTCMonth() !== +mo - 1 || date.getUTCDate() !== +d) return undefined;
  if (+h > 23 || +mi > 59 || +s > 59) return undefined;
  const ms = date.getTime();
  let offset = 0;
  if (zone !== 'Z')
    offset = (zone[0] === '-' ? -1 : 1) * (Number(zone.slice(1, 3)) * 3600 + Number(zone.slice(4, 6)) * 60);
  return { seconds: BigInt(ms / 1000 - offset), fraction };
}

function hexBytes(text: string, path: ValuePath): Buffer {
  const digits = text.startsWith('0x') ? text.slice(2) : text;
  if (digits.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(digits))
    throw bad(path, 'bytes are not an even count of hex digits');
  return Buffer.from(digits, 'hex');
}

/** Parses the text of a scalar value of the given type (the inverse of formatValue; also accepts hex forms). */
export function parseValue(type: ItemType, text: string, tagForNames: number, path: ValuePath): TtlvItem['value'] {
  switch (type) {
    case ItemType.Integer: {
      if (DECIMAL.test(text)) {
        const value = Number(text);
        if (value < -0x80000000 || value > 0x7fffffff) throw bad(path, `${text} is out of 32-bit range`);
        return value;
      }
      if (HEX.test(text) && text.length <= 10) return Number(text) | 0;
      const mask = isMaskTag(tagForNames) ? maskValue(tagForNames, text) : undefined;
      if (mask === undefined)
        throw bad(path, `'${text}' is neither an integer nor known mask names`, TtlvErrorCode.UnknownName);
      return mask | 0;
    }
    case ItemType.Enumeration: {
      const named = enumValue(tagForNames, text);
      if (named !== undefined) return named;
      if (HEX.test(text) || DECIMAL.test(text)) return uint32(text, path);
      throw bad(path, `unknown enumeration name '${text}'`, TtlvErrorCode.UnknownName);
    }
    case ItemType.Interval:
      return uint32(text, path);
    case ItemType.LongInteger:
      return int64(text, path);
    case ItemType.BigInteger: {
      const bytes = hexBytes(text, path);
      if (bytes.length === 0) throw bad(path, 'big integer without digits');
      const unsigned = BigInt('0x' + bytes.toString('hex'));
      return (bytes[0] & 0x80) !== 0 ? unsigned - (1n << BigInt(8 * bytes.length)) : unsigned;
    }
    case ItemType.Boolean:
      if (text === 'true') return true;
      if (text === 'false') return false;
      throw bad(path, `'${text}' is not a boolean`);
    case ItemType.TextString:
      return text;
    case ItemType.ByteString:
      return hexBytes(text, path);
    case ItemType.DateTime: {
      if (HEX.test(text)) return int64(text, path);
      const iso = parseIso(text);
      if (!iso || /[1-9]/.test(iso.fraction)) throw bad(path, `'${text}' is not an ISO 8601 date in whole seconds`);
      return iso.seconds;
    }
    case ItemType.DateTimeExtended: {
      if (HEX.test(text)) return int64(text, path);
      const iso = parseIso(text);
      if (!iso || /[1-9]/.test(iso.fraction.slice(6)))
        throw bad(path, `'${text}' is not an ISO 8601 date in microseconds`);
      return iso.seconds * 1_000_000n + BigInt(iso.fraction.slice(0, 6).padEnd(6, '0'));
    }
    default:
      throw bad(path, `type ${TYPE_NAMES[type] ?? type} has no scalar value`, TtlvErrorCode.BadType);
  }
}
