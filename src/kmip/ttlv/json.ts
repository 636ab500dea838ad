/**
 * The KMIP JSON encoding: `{"tag":"RequestMessage","type":"Structure","value":[...]}`. Tags by name
 * (hex `"0x54ffff"` when unknown); Integer and Interval as JSON numbers (masks as flag names joined by
 * `|`); Long Integer as a number when it is a safe integer, else a hex string; enumerations by name
 * (hex when unnamed); Big Integer and Byte String as hex; dates in ISO 8601. `fromJson` also accepts
 * numbers for enumerations and omitted `type` for structures.
 */
import { TtlvError, TtlvErrorCode } from './errors.js';
import { tagCode, tagLabel } from './registry.js';
import { ItemType, type TtlvItem } from './types.js';
import { TYPE_NAMES, attributeNameOf, formatValue, parseValue, typeCode, valueTag } from './values.js';
import { DEFAULT_MAX_DEPTH, MAX_DEPTH_CAP } from './binary.js';

export interface JsonTtlv {
  tag: string;
  type: string;
  value: JsonTtlv[] | string | number | boolean;
}

function jsonValue(item: TtlvItem, attributeName: string | undefined): JsonTtlv['value'] {
  switch (item.type) {
    case ItemType.Structure: {
      let siblingName: string | undefined;
      return item.value.map((child) => {
        const json = toJsonWith(child, siblingName);
        siblingName = attributeNameOf(child) ?? siblingName;
        return json;
      });
    }
    case ItemType.Interval:
      return item.value;
    case ItemType.Boolean:
      return item.value;
    case ItemType.LongInteger:
      return item.value >= BigInt(Number.MIN_SAFE_INTEGER) && item.value <= BigInt(Number.MAX_SAFE_INTEGER)
        ? Number(item.value)
        : '0x' + BigInt.asUintN(64, item.value).toString(16).padStart(16, '0');
    case ItemType.BigInteger:
      return '0x' + formatValue(item, item.tag);
    case ItemType.Integer: {
      const text = formatValue(item, valueTag(item.tag, attributeName));
      return /^-?\d+$/.test(text) ? item.value : text;
    }
    default:
      return formatValue(item, valueTag(item.tag, attributeName));
  }
}

function toJsonWith(item: TtlvItem, attributeName: string | undefined): JsonTtlv {
  return { tag: tagLabel(item.tag), type: TYPE_NAMES[item.type], value: jsonValue(item, attributeName) };
}

/** The JSON form of an item (a plain object; `JSON.stringify` it to send). */
export function toJson(item: TtlvItem): JsonTtlv {
  return toJsonWith(item, undefined);
}

function fail(code: TtlvErrorCode, path: string, reason: string): never {
  throw new TtlvError(code, `${path || '/'}: ${reason}`);
}

function fromJsonAt(
  json: unknown,
  path: string,
  depth: number,
  attributeName: string | undefined,
  maxDepth: number,
): TtlvItem {
  if (json === null || typeof json !== 'object' || Array.isArray(json))
    fail(TtlvErrorCode.BadSyntax, path, 'an item is an object with tag, type and value');
  const { tag: tagText, type: typeText, value, ...rest } = json as Record<string, unknown>;
  const extra = Object.keys(rest);
  if (extra.length > 0) fail(TtlvErrorCode.BadSyntax, path, `unexpected member '${extra[0]}'`);
  if (typeof tagText !== 'string') fail(TtlvErrorCode.BadSyntax, path, 'tag must be a string');
  const here = `${path}/${tagText}`;
  const tag = tagCode(tagText);
  if (tag === undefined) fail(TtlvErrorCode.UnknownName, here, 'unknown tag name');
  if (typeText !== undefined && typeof typeText !== 'string')
    fail(TtlvErrorCode.BadSyntax, here, 'type must be a string');
  const type = typeCode(typeText ?? 'Structure');
  if (type === undefined) fail(TtlvErrorCode.BadType, here, `unknown type '${String(typeText)}'`);
  if (type === ItemType.Structure) {
    if (depth > maxDepth) fail(TtlvErrorCode.TooDeep, here, `nested deeper than ${maxDepth}`);
    if (!Array.isArray(value)) fail(TtlvErrorCode.BadSyntax, here, 'a structure value is an array');
    const children: TtlvItem[] = [];
    let siblingName: string | undefined;
    for (const child of value) {
      const item = fromJsonAt(child, here, depth + 1, siblingName, maxDepth);
      siblingName = attributeNameOf(item) ?? siblingName;
      children.push(item);
    }
    return { tag, type, value: children };
  }
  const where = (): string => here;
  const names = valueTag(tag, attributeName);
  switch (typeof value) {
    case 'string':
      if (type === ItemType.BigInteger && !value.startsWith('0x'))
        fail(TtlvErrorCode.BadValue, here, 'a big integer is a 0x-prefixed hex string');
      return { tag, type, value: parseValue(type, value, names, where) } as TtlvItem;
    case 'number':
      if (!Number.isSafeInteger(value)) fail(TtlvErrorCode.BadValue, here, `${value} is not an integer`);
      if (type === ItemType.LongInteger || type === ItemType.DateTime || type === ItemType.DateTimeExtended)
        return { tag, type, value: BigInt(value) } as TtlvItem;
      if (type === ItemType.Integer || type === ItemType.Interval || type === ItemType.Enumeration)
        return { tag, type, value: parseValue(type, String(value), names, where) } as TtlvItem;
      return fail(TtlvErrorCode.BadValue, here, `a ${typeText} value is not a number`);
    case 'boolean':
      if (type !== ItemType.Boolean) fail(TtlvErrorCode.BadValue, here, `a ${typeText} value is not a boolean`);
      return { tag, type, value };
    default:
      return fail(TtlvErrorCode.BadValue, here, 'missing or invalid value');
  }
}

/** Reads the JSON form (an object, or its text). */
export function fromJson(json: unknown, limits: { maxDepth?: number } = {}): TtlvItem {
  let parsed = json;
  if (typeof json === 'string') {
    try {
      parsed = JSON.parse(json);
    } catch (e) {
      throw new TtlvError(TtlvErrorCode.BadSyntax, `invalid JSON: ${(e as Error).message}`);
    }
  }
  return fromJsonAt(parsed, '', 1, undefined, Math.min(limits.maxDepth ?? DEFAULT_MAX_DEPTH, MAX_DEPTH_CAP));
}
