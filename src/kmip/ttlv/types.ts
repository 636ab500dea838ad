/**
 * The TTLV data model shared by every part of the KMIP library: an item is a tag (3 bytes,
 * 0x42xxxx standard, 0x54xxxx extension), a type and a value. This file is the contract between
 * the codec (binary, JSON, XML, text) and the message layer; it holds no encoding logic.
 */

export const ItemType = {
  Structure: 0x01,
  Integer: 0x02,
  LongInteger: 0x03,
  BigInteger: 0x04,
  Enumeration: 0x05,
  Boolean: 0x06,
  TextString: 0x07,
  ByteString: 0x08,
  DateTime: 0x09,
  Interval: 0x0a,
  DateTimeExtended: 0x0b,
} as const;
export type ItemType = (typeof ItemType)[keyof typeof ItemType];

/**
 * Value representations, chosen to be lossless:
 * Integer/Interval/Enumeration -> number (32-bit), LongInteger/BigInteger -> bigint,
 * DateTime -> bigint seconds since the epoch, DateTimeExtended -> bigint microseconds,
 * ByteString -> Uint8Array (a Buffer when decoded), TextString -> string (UTF-8 on the wire).
 */
export type TtlvItem =
  | { tag: number; type: typeof ItemType.Structure; value: TtlvItem[] }
  | { tag: number; type: typeof ItemType.Integer; value: number }
  | { tag: number; type: typeof ItemType.LongInteger; value: bigint }
  | { tag: number; type: typeof ItemType.BigInteger; value: bigint }
  | { tag: number; type: typeof ItemType.Enumeration; value: number }
  | { tag: number; type: typeof ItemType.Boolean; value: boolean }
  | { tag: number; type: typeof ItemType.TextString; value: string }
  | { tag: number; type: typeof ItemType.ByteString; value: Uint8Array }
  | { tag: number; type: typeof ItemType.DateTime; value: bigint }
  | { tag: number; type: typeof ItemType.Interval; value: number }
  | { tag: number; type: typeof ItemType.DateTimeExtended; value: bigint };

export type StructureItem = Extract<TtlvItem, { type: typeof ItemType.Structure }>;

// Builders: the message layer writes `structure(Tag.RequestMessage, [...])`.
export const structure = (tag: number, value: TtlvItem[]): TtlvItem => ({ tag, type: ItemType.Structure, value });
export const integer = (tag: number, value: number): TtlvItem => ({ tag, type: ItemType.Integer, value });
export const longInteger = (tag: number, value: bigint): TtlvItem => ({ tag, type: ItemType.LongInteger, value });
export const bigInteger = (tag: number, value: bigint): TtlvItem => ({ tag, type: ItemType.BigInteger, value });
export const enumeration = (tag: number, value: number): TtlvItem => ({ tag, type: ItemType.Enumeration, value });
export const boolean = (tag: number, value: boolean): TtlvItem => ({ tag, type: ItemType.Boolean, value });
export const textString = (tag: number, value: string): TtlvItem => ({ tag, type: ItemType.TextString, value });
export const byteString = (tag: number, value: Uint8Array): TtlvItem => ({ tag, type: ItemType.ByteString, value });
export const interval = (tag: number, value: number): TtlvItem => ({ tag, type: ItemType.Interval, value });
export const dateTimeExtended = (tag: number, micros: bigint): TtlvItem => ({
  tag,
  type: ItemType.DateTimeExtended,
  value: micros,
});
/** Date-Time from a Date (whole seconds) or from seconds since the epoch. */
export const dateTime = (tag: number, value: Date | bigint): TtlvItem => ({
  tag,
  type: ItemType.DateTime,
  value: value instanceof Date ? BigInt(Math.floor(value.getTime() / 1000)) : value,
});

/** Children of a structure with the given tag (empty for non-structures). */
export function childrenOf(item: TtlvItem, tag: number): TtlvItem[] {
  return item.type === ItemType.Structure ? item.value.filter((c) => c.tag === tag) : [];
}

/** First child of a structure with the given tag, if any. */
export function childOf(item: TtlvItem, tag: number): TtlvItem | undefined {
  return item.type === ItemType.Structure ? item.value.find((c) => c.tag === tag) : undefined;
}
