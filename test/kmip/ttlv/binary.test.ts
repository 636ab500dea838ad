import { describe, expect, test } from 'vitest';
import {
  Enum,
  ItemType,
  Tag,
  childOf,
  decode,
  decodeMessageLength,
  encode,
  enumeration,
  integer,
  structure,
  textString,
  toText,
  type TtlvItem,
} from '../../../src/kmip/ttlv/index.js';
import { ttlvError } from './support.js';
import { SPEC_EXAMPLES, TESTCASE_VECTORS } from './vectors.js';

const hex = (h: string): Buffer => Buffer.from(h.replace(/\s+/g, ''), 'hex');

describe('KMIP 1.x spec TTLV encoding examples (section 9.1.2)', () => {
  test.each(SPEC_EXAMPLES)('$name decodes and re-encodes byte-identical', ({ hex: h }) => {
    const bytes = hex(h);
    expect(encode(decode(bytes))).toEqual(bytes);
  });

  test('values decode as the examples state', () => {
    const values = SPEC_EXAMPLES.map(({ hex: h }) => decode(hex(h)).value);
    expect(values.slice(0, 9)).toEqual([
      8,
      123456789000000000n,
      1234567890000000000000000000n,
      255,
      true,
      'Hello World',
      Buffer.from([1, 2, 3]),
      BigInt(Date.UTC(2008, 2, 14, 11, 56, 40) / 1000),
      864000,
    ]);
    expect(decode(hex(SPEC_EXAMPLES[9].hex))).toEqual(
      structure(0x420020, [enumeration(0x420004, 254), integer(0x420005, 255)]),
    );
  });
});

describe('KMIP 1.1 test-case document messages', () => {
  test.each(TESTCASE_VECTORS)('$name decodes and re-encodes byte-identical', ({ hex: h }) => {
    const bytes = hex(h);
    const item = decode(bytes);
    expect(encode(item)).toEqual(bytes);
    expect(decodeMessageLength(bytes.subarray(0, 8))).toBe(bytes.length);
    expect(toText(item)).toMatch(/^(Request|Response)Message \(Structure\)/);
  });

  test('3.1.1 Create request carries AES-128 with Encrypt|Decrypt', () => {
    const item = decode(hex(TESTCASE_VECTORS[0].hex));
    const batch = childOf(item, Tag.BatchItem) as TtlvItem;
    expect(childOf(batch, Tag.Operation)?.value).toBe(Enum.Operation.Create);
    const text = toText(item);
    expect(text).toContain('ObjectType (Enumeration): SymmetricKey');
    expect(text).toContain('AttributeValue (Enumeration): AES');
    expect(text).toContain('AttributeValue (Integer): 128');
    expect(text).toContain('AttributeValue (Integer): Encrypt|Decrypt');
  });

  test('3.1.3 Get response carries the 24-byte key and its time stamp', () => {
    const text = toText(decode(hex(TESTCASE_VECTORS[7].hex)));
    expect(text).toContain('TimeStamp (DateTime): 2012-04-27T08:12:23+00:00');
    expect(text).toContain('KeyMaterial (ByteString): 7367578051012a6d134a855e25c8cd5e4ca131455729d3c8 [24 bytes]');
    expect(text).toContain('CryptographicAlgorithm (Enumeration): DES3');
  });
});

describe('encoding', () => {
  test('unknown and extension tags are written unchanged', () => {
    const item = structure(0x540001, [textString(0x54ffff, 'vendor'), integer(0x4201ff, 7)]);
    expect(decode(encode(item))).toEqual(item);
  });

  test('big integers use minimal sign padding', () => {
    const big = (v: bigint): string => encode({ tag: 0x420020, type: ItemType.BigInteger, value: v }).toString('hex');
    expect(big(0n)).toBe('42002004000000080000000000000000');
    expect(big(-1n)).toBe('4200200400000008ffffffffffffffff');
    expect(big(0x7fffffffffffffffn)).toBe('42002004000000087fffffffffffffff');
    expect(big(0x8000000000000000n)).toBe('420020040000001000000000000000008000000000000000');
    expect(big(-0x8000000000000000n)).toBe('42002004000000088000000000000000');
    expect(big(-0x8000000000000001n)).toBe('4200200400000010ffffffffffffffff7fffffffffffffff');
  });

  test.each<[string, TtlvItem]>([
    ['Integer above 2^31-1', { tag: 0x420020, type: ItemType.Integer, value: 0x80000000 }],
    ['fractional Integer', { tag: 0x420020, type: ItemType.Integer, value: 1.5 }],
    ['negative Enumeration', { tag: 0x420020, type: ItemType.Enumeration, value: -1 }],
    ['Long Integer beyond 64 bits', { tag: 0x420020, type: ItemType.LongInteger, value: 1n << 63n }],
    ['tag beyond 3 bytes', { tag: 0x1000000, type: ItemType.Integer, value: 1 }],
    ['text with a lone surrogate', { tag: 0x420020, type: ItemType.TextString, value: 'a\ud800b' }],
  ])('refuses %s with KMIP_TTLV_BAD_VALUE', (_, item) => {
    expect(ttlvError(() => encode(item)).code).toBe('KMIP_TTLV_BAD_VALUE');
  });

  test('refuses an unknown type', () => {
    const item = { tag: 0x420020, type: 0x0c, value: 1 } as unknown as TtlvItem;
    expect(ttlvError(() => encode(item)).code).toBe('KMIP_TTLV_BAD_TYPE');
  });
});

describe('hostile input: typed errors with offset and tag', () => {
  test.each<[string, string, string, number, number | undefined]>([
    ['empty input', '', 'KMIP_TTLV_TRUNCATED', 0, undefined],
    ['a header cut short', '4200200200', 'KMIP_TTLV_TRUNCATED', 0, undefined],
    ['a value cut short', '420020070000000b48656c6c6f', 'KMIP_TTLV_TRUNCATED', 0, 0x420020],
    ['padding missing', '420020020000000400000008', 'KMIP_TTLV_TRUNCATED', 0, 0x420020],
    ['Integer of length 8', '42002002000000080000000000000008', 'KMIP_TTLV_BAD_LENGTH', 0, 0x420020],
    ['Long Integer of length 4', '42002003000000040000000800000000', 'KMIP_TTLV_BAD_LENGTH', 0, 0x420020],
    ['Enumeration of length 8', '42002005000000080000000000000001', 'KMIP_TTLV_BAD_LENGTH', 0, 0x420020],
    ['Boolean of length 4', '42002006000000040000000100000000', 'KMIP_TTLV_BAD_LENGTH', 0, 0x420020],
    ['Date-Time of length 4', '42002009000000040000000100000000', 'KMIP_TTLV_BAD_LENGTH', 0, 0x420020],
    ['Interval of length 8', '4200200a000000080000000000000001', 'KMIP_TTLV_BAD_LENGTH', 0, 0x420020],
    ['Date-Time Extended of length 4', '4200200b000000040000000100000000', 'KMIP_TTLV_BAD_LENGTH', 0, 0x420020],
    ['Big Integer of length 4', '42002004000000040000000100000000', 'KMIP_TTLV_BAD_LENGTH', 0, 0x420020],
    ['Big Integer of length 0', '4200200400000000', 'KMIP_TTLV_BAD_LENGTH', 0, 0x420020],
    ['Boolean value 2', '42002006000000080000000000000002', 'KMIP_TTLV_BAD_VALUE', 8, 0x420020],
    ['Boolean value with high bits', '42002006000000080100000000000001', 'KMIP_TTLV_BAD_VALUE', 8, 0x420020],
    ['non-zero Integer padding', '42002002000000040000000800000100', 'KMIP_TTLV_BAD_PADDING', 14, 0x420020],
    [
      'non-zero text padding',
      '420020070000000b48656c6c6f20576f726c640000000001',
      'KMIP_TTLV_BAD_PADDING',
      23,
      0x420020,
    ],
    ['non-zero byte-string padding', '4200200800000003010203ff00000000', 'KMIP_TTLV_BAD_PADDING', 11, 0x420020],
    ['invalid UTF-8', '4200200700000002c328000000000000', 'KMIP_TTLV_BAD_VALUE', 8, 0x420020],
    ['UTF-8 encoded surrogate', '4200200700000003eda080000000000000', 'KMIP_TTLV_BAD_VALUE', 8, 0x420020],
    ['overlong UTF-8', '4200200700000002c0af000000000000', 'KMIP_TTLV_BAD_VALUE', 8, 0x420020],
    [
      'redundant Big Integer sign padding',
      '420020040000001000000000000000000000000000000001',
      'KMIP_TTLV_BAD_VALUE',
      8,
      0x420020,
    ],
    [
      'redundant negative Big Integer sign padding',
      '4200200400000010ffffffffffffffffffffffffffffffff',
      'KMIP_TTLV_BAD_VALUE',
      8,
      0x420020,
    ],
    ['type 0x00', '42002000000000040000000800000000', 'KMIP_TTLV_BAD_TYPE', 0, 0x420020],
    ['type 0x0c', '4200200c000000040000000800000000', 'KMIP_TTLV_BAD_TYPE', 0, 0x420020],
    ['trailing bytes', '4200200200000004000000080000000000', 'KMIP_TTLV_TRAILING_BYTES', 16, undefined],
    [
      'a second item',
      '4200200200000004000000080000000042002002000000040000000800000000',
      'KMIP_TTLV_TRAILING_BYTES',
      16,
      undefined,
    ],
    [
      'a child longer than its structure',
      '420078010000001042002007000000100000000000000000000000000000000000000000',
      'KMIP_TTLV_BAD_LENGTH',
      8,
      0x420020,
    ],
    [
      'a structure longer than the input',
      '4200780100000100420020020000000400000008000000004',
      'KMIP_TTLV_TRUNCATED',
      0,
      0x420078,
    ],
    [
      'a 2 GiB structure in 24 bytes',
      '420078018000000042002002000000040000000800000000',
      'KMIP_TTLV_TRUNCATED',
      0,
      0x420078,
    ],
    ['a 4 GiB text string', '42002007fffffff8', 'KMIP_TTLV_TRUNCATED', 0, 0x420020],
    ['structure length not a multiple of 8', '42007801000000044200200200000000', 'KMIP_TTLV_BAD_LENGTH', 0, 0x420078],
    ['a child cut short at the end of input', '42007801000000084200200200000004', 'KMIP_TTLV_TRUNCATED', 8, 0x420020],
  ])('%s -> %s', (_, h, code, offset, tag) => {
    const e = ttlvError(() => decode(hex(h.length % 2 ? h.slice(0, -1) : h)));
    expect(e.code).toBe(code);
    expect(e.offset).toBe(offset);
    expect(e.tag).toBe(tag);
    expect(e.reason.length).toBeGreaterThan(0);
    expect(e.message).toContain(`offset ${offset}`);
  });

  function nested(depth: number): Buffer {
    // depth structures, each holding the next; the innermost is empty.
    const buf = Buffer.alloc(depth * 8);
    for (let i = 0; i < depth; i++) {
      buf.writeUIntBE(0x420078, i * 8, 3);
      buf[i * 8 + 3] = ItemType.Structure;
      buf.writeUInt32BE((depth - 1 - i) * 8, i * 8 + 4);
    }
    return buf;
  }

  test('nesting up to the limit is accepted, one deeper is KMIP_TTLV_TOO_DEEP', () => {
    expect(() => decode(nested(32))).not.toThrow();
    const e = ttlvError(() => decode(nested(33)));
    expect(e.code).toBe('KMIP_TTLV_TOO_DEEP');
    expect(e.offset).toBe(32 * 8);
    expect(ttlvError(() => decode(nested(5), { maxDepth: 4 })).code).toBe('KMIP_TTLV_TOO_DEEP');
  });

  test('runaway nesting (100000 levels) fails fast without exhausting the stack', () => {
    expect(ttlvError(() => decode(nested(100_000))).code).toBe('KMIP_TTLV_TOO_DEEP');
  });

  test('input over the size limit is KMIP_TTLV_TOO_LARGE before parsing', () => {
    const bytes = hex(TESTCASE_VECTORS[0].hex);
    expect(ttlvError(() => decode(bytes, { maxBytes: bytes.length - 8 })).code).toBe('KMIP_TTLV_TOO_LARGE');
    expect(decode(bytes, { maxBytes: bytes.length })).toBeDefined();
  });

  test('the decoded byte string is a copy, not a view of the input', () => {
    const bytes = hex('42002008000000030102030000000000');
    const item = decode(bytes);
    bytes.fill(0);
    expect(item.value).toEqual(Buffer.from([1, 2, 3]));
  });
});

describe('decodeMessageLength (frame length from the 8-byte header)', () => {
  test('returns header + declared length', () => {
    expect(decodeMessageLength(hex('4200780100000120'))).toBe(8 + 0x120);
    expect(decodeMessageLength(hex('42007b0100000000'))).toBe(8);
  });

  test('a 2 GiB declared length is refused from the header alone', () => {
    const e = ttlvError(() => decodeMessageLength(hex('4200780180000000')));
    expect(e.code).toBe('KMIP_TTLV_TOO_LARGE');
    expect(e.tag).toBe(Tag.RequestMessage);
    expect(ttlvError(() => decodeMessageLength(hex('42007801fffffff8'))).code).toBe('KMIP_TTLV_TOO_LARGE');
    expect(decodeMessageLength(hex('4200780180000000'), { maxBytes: 0x80000008 })).toBe(0x80000008);
  });

  test.each([
    ['short header', '42007801000000', 'KMIP_TTLV_TRUNCATED'],
    ['not a structure', '4200780700000010', 'KMIP_TTLV_BAD_TYPE'],
    ['length not a multiple of 8', '420078010000000c', 'KMIP_TTLV_BAD_LENGTH'],
  ])('%s -> %s', (_, h, code) => {
    expect(ttlvError(() => decodeMessageLength(hex(h))).code).toBe(code);
  });
});
