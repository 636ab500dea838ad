/**
 * Strict readers for decoded response structures: a field that is missing or of the wrong type is a
 * protocol error with a stable code, never an `undefined` that surfaces later as a wrong key.
 */
import { ItemType, childOf, childrenOf, type TtlvItem } from './ttlv/types.js';
import { KmipError } from './errors.js';

export type ProtocolVersion = { major: number; minor: number };

export const formatVersion = (v: ProtocolVersion): string => `${v.major}.${v.minor}`;
export const compareVersions = (a: ProtocolVersion, b: ProtocolVersion): number =>
  a.major !== b.major ? a.major - b.major : a.minor - b.minor;
export const isKmip2 = (v: ProtocolVersion): boolean => v.major >= 2;

const hexTag = (tag: number) => `0x${tag.toString(16).padStart(6, '0')}`;

export function protocolError(message: string, code = 'KMIP_PROTOCOL_INVALID_RESPONSE'): KmipError {
  return new KmipError(message, code);
}

type ValueMap = { [K in ItemType]: Extract<TtlvItem, { type: K }>['value'] };
type ValueOf<K extends ItemType> = ValueMap[K];

function typed<K extends ItemType>(item: TtlvItem | undefined, tag: number, type: K): ValueOf<K> | undefined {
  if (item === undefined) return undefined;
  if (item.type !== type)
    throw protocolError(`field ${hexTag(tag)} has type 0x${item.type.toString(16)}, expected 0x${type.toString(16)}`);
  return item.value as unknown as ValueOf<K>;
}

export function optional<K extends ItemType>(parent: TtlvItem, tag: number, type: K): ValueOf<K> | undefined {
  return typed(childOf(parent, tag), tag, type);
}

export function required<K extends ItemType>(parent: TtlvItem, tag: number, type: K): ValueOf<K> {
  const value = optional(parent, tag, type);
  if (value === undefined)
    throw protocolError(`required field ${hexTag(tag)} is missing`, 'KMIP_PROTOCOL_MISSING_FIELD');
  return value;
}

export function all<K extends ItemType>(parent: TtlvItem, tag: number, type: K): ValueOf<K>[] {
  return childrenOf(parent, tag).map((c) => typed(c, tag, type) as unknown as ValueOf<K>);
}

export function requiredStructure(parent: TtlvItem, tag: number): TtlvItem {
  const child = childOf(parent, tag);
  if (child === undefined)
    throw protocolError(`required structure ${hexTag(tag)} is missing`, 'KMIP_PROTOCOL_MISSING_FIELD');
  if (child.type !== ItemType.Structure) throw protocolError(`field ${hexTag(tag)} is not a structure`);
  return child;
}

export function optionalStructure(parent: TtlvItem, tag: number): TtlvItem | undefined {
  const child = childOf(parent, tag);
  if (child !== undefined && child.type !== ItemType.Structure)
    throw protocolError(`field ${hexTag(tag)} is not a structure`);
  return child;
}

/** Deep copy of a TTLV item, so values handed to callers survive the wiping of the response tree. */
export function cloneItem(item: TtlvItem): TtlvItem {
  if (item.type === ItemType.Structure) return { ...item, value: item.value.map(cloneItem) };
  if (item.type === ItemType.ByteString) return { ...item, value: Buffer.from(item.value) };
  return { ...item };
}
