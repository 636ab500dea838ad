/**
 * Property tests over random item trees (all types, known, unknown and 0x54xxxx extension tags,
 * nesting, 1.x Attribute Name/Value pairs) and over random and mutated bytes.
 */
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import {
  AttributeName,
  ItemType,
  Tag,
  TtlvError,
  decode,
  encode,
  fromJson,
  fromXml,
  toJson,
  toText,
  toXml,
  type TtlvItem,
} from '../../../src/kmip/ttlv/index.js';

const knownTags = Object.values(Tag);
const tagArb = fc.oneof(
  fc.constantFrom(...knownTags),
  fc.integer({ min: 0x540000, max: 0x54ffff }),
  fc.integer({ min: 0, max: 0xffffff }),
);
const int64 = fc.bigInt({ min: -(1n << 63n), max: (1n << 63n) - 1n });

type TextChars = 'any' | 'xml';
function scalarArb(chars: TextChars): fc.Arbitrary<TtlvItem> {
  // XML 1.0 cannot carry most C0 controls, U+FFFE/U+FFFF; other forms carry any well-formed text.
  const xmlSafe = (s: string): string =>
    Array.from(s, (ch) => {
      const c = ch.codePointAt(0) as number;
      return (c < 0x20 && c !== 0x9 && c !== 0xa && c !== 0xd) || c === 0xfffe || c === 0xffff ? '?' : ch;
    }).join('');
  const text = fc.string({ unit: 'binary', maxLength: 40 }).map((s) => (chars === 'any' ? s : xmlSafe(s)));
  return fc.oneof(
    fc.record({
      tag: tagArb,
      type: fc.constant(ItemType.Integer),
      value: fc.integer({ min: -0x80000000, max: 0x7fffffff }),
    }),
    fc.record({ tag: tagArb, type: fc.constant(ItemType.LongInteger), value: int64 }),
    fc.record({
      tag: tagArb,
      type: fc.constant(ItemType.BigInteger),
      value: fc.bigInt({ min: -(1n << 300n), max: 1n << 300n }),
    }),
    fc.record({ tag: tagArb, type: fc.constant(ItemType.Enumeration), value: fc.integer({ min: 0, max: 0xffffffff }) }),
    fc.record({ tag: tagArb, type: fc.constant(ItemType.Boolean), value: fc.boolean() }),
    fc.record({ tag: tagArb, type: fc.constant(ItemType.TextString), value: text }),
    fc.record({
      tag: tagArb,
      type: fc.constant(ItemType.ByteString),
      value: fc.uint8Array({ maxLength: 40 }).map((u) => Buffer.from(u)),
    }),
    fc.record({ tag: tagArb, type: fc.constant(ItemType.DateTime), value: int64 }),
    fc.record({ tag: tagArb, type: fc.constant(ItemType.Interval), value: fc.integer({ min: 0, max: 0xffffffff }) }),
    fc.record({ tag: tagArb, type: fc.constant(ItemType.DateTimeExtended), value: int64 }),
  ) as fc.Arbitrary<TtlvItem>;
}

/** A 1.x attribute: its value's names come from the attribute named beside it. */
const attributeArb = (chars: TextChars): fc.Arbitrary<TtlvItem> =>
  fc.tuple(fc.constantFrom(...Object.values(AttributeName), 'x-custom'), scalarArb(chars)).map(([name, value]) => ({
    tag: Tag.Attribute,
    type: ItemType.Structure,
    value: [
      { tag: Tag.AttributeName, type: ItemType.TextString, value: name },
      { ...value, tag: Tag.AttributeValue } as TtlvItem,
    ],
  }));

function treeArb(chars: TextChars): fc.Arbitrary<TtlvItem> {
  const { tree } = fc.letrec<{ tree: TtlvItem }>((tie) => ({
    tree: fc.oneof(
      { depthSize: 'small', withCrossShrink: true },
      scalarArb(chars),
      attributeArb(chars),
      fc.record({
        tag: tagArb,
        type: fc.constant(ItemType.Structure),
        value: fc.array(tie('tree'), { maxLength: 5 }),
      }) as fc.Arbitrary<TtlvItem>,
    ),
  }));
  return tree;
}

const RUNS = 300;

describe('round trips over random trees', () => {
  test('decode(encode(x)) equals x', () => {
    fc.assert(
      fc.property(treeArb('any'), (item) => {
        expect(decode(encode(item), { maxDepth: 64 })).toEqual(item);
      }),
      { numRuns: RUNS },
    );
  });

  test('fromJson(JSON text of toJson(x)) equals x', () => {
    fc.assert(
      fc.property(treeArb('any'), (item) => {
        expect(fromJson(JSON.stringify(toJson(item)), { maxDepth: 64 })).toEqual(item);
      }),
      { numRuns: RUNS },
    );
  });

  test('fromXml(toXml(x)) equals x for XML-representable text', () => {
    fc.assert(
      fc.property(treeArb('xml'), (item) => {
        expect(fromXml(toXml(item), { maxDepth: 64 })).toEqual([item]);
      }),
      { numRuns: RUNS },
    );
  });

  test('toText renders every tree', () => {
    fc.assert(
      fc.property(treeArb('any'), (item) => {
        expect(toText(item).split('\n').length).toBeGreaterThan(1);
      }),
      { numRuns: 100 },
    );
  });
});

/** Decoding either fails with a TtlvError or succeeds on canonical bytes only. */
function decodesCanonicallyOrRefuses(bytes: Uint8Array): void {
  let item: TtlvItem;
  try {
    item = decode(bytes);
  } catch (e) {
    expect(e).toBeInstanceOf(TtlvError);
    return;
  }
  expect(encode(item)).toEqual(Buffer.from(bytes));
}

describe('random text for the JSON and XML readers', () => {
  const onlyTtlvErrors = (fn: () => unknown): void => {
    try {
      fn();
    } catch (e) {
      expect(e).toBeInstanceOf(TtlvError);
    }
  };
  const xmlish = fc
    .array(
      fc.constantFrom(
        '<',
        '>',
        '/',
        '"',
        '=',
        ' ',
        'BatchItem',
        'TTLV',
        'type',
        'value',
        'Integer',
        '&#x1;',
        '&amp;',
        '1',
      ),
      {
        maxLength: 30,
      },
    )
    .map((parts) => parts.join(''));

  test('fromXml: an item list or a TtlvError', () => {
    fc.assert(
      fc.property(fc.oneof(xmlish, fc.string()), (text) => onlyTtlvErrors(() => fromXml(text))),
      {
        numRuns: RUNS,
      },
    );
  });

  test('fromJson: an item or a TtlvError', () => {
    fc.assert(
      fc.property(fc.oneof(fc.json(), fc.string()), (text) => onlyTtlvErrors(() => fromJson(text))),
      {
        numRuns: RUNS,
      },
    );
  });
});

describe('random and mutated bytes', () => {
  test('random bytes: a TtlvError or a canonical item, never anything else', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 64 }), decodesCanonicallyOrRefuses), { numRuns: 1000 });
  });

  test('valid encodings with bytes flipped, cut or extended', () => {
    const mutated = fc
      .tuple(
        treeArb('any'),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { maxLength: 4 }),
        fc.integer({ min: -9, max: 9 }),
      )
      .map(([item, flips, cut]) => {
        const bytes = Buffer.from(encode(item));
        for (const [at, xor] of flips) if (bytes.length > 0) bytes[at % bytes.length] ^= xor;
        return cut < 0 ? bytes.subarray(0, Math.max(0, bytes.length + cut)) : Buffer.concat([bytes, Buffer.alloc(cut)]);
      });
    fc.assert(fc.property(mutated, decodesCanonicallyOrRefuses), { numRuns: RUNS });
  });
});
