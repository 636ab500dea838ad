/** Attributes in both wire forms: every modelled attribute survives encode/decode in 1.x and 2.x. */
import { describe, expect, test } from 'vitest';
import fc from 'fast-check';
import { decode, encode } from '../../src/kmip/ttlv/binary.js';
import {
  decodeAttribute1,
  decodeAttribute2,
  decodeAttributeList,
  encodeAttribute1,
  encodeAttribute2,
  encodeAttributeSet,
  type Attribute,
} from '../../src/kmip/attributes.js';
import { childOf, ItemType, structure } from '../../src/kmip/ttlv/types.js';
import { T } from '../../src/kmip/spec.js';
import { enumName, maskText } from '../../src/kmip/ttlv/registry.js';

const text = fc.string({ minLength: 1, maxLength: 40 });
const u32 = fc.integer({ min: 0, max: 0x7fffffff });
const date = fc.integer({ min: 0, max: 4_000_000_000 }).map((s) => new Date(s * 1000));

/** What decoding adds to an attribute: the registry name of an enumeration value, the flags of a mask. */
function withValueName(a: Attribute): Attribute {
  if (typeof a.value !== 'number') return a;
  const tag = { 'Cryptographic Algorithm': T.CryptographicAlgorithm, State: T.State, 'Object Type': T.ObjectType }[
    a.name
  ];
  if (tag !== undefined)
    return { ...a, valueName: enumName(tag, a.value) ?? `0x${a.value.toString(16).padStart(8, '0')}` };
  if (a.name === 'Cryptographic Usage Mask') return { ...a, valueName: maskText(T.CryptographicUsageMask, a.value) };
  return a;
}

const attribute: fc.Arbitrary<Attribute> = fc.oneof(
  text.map((value) => ({ name: 'Name', value })),
  text.map((value) => ({ name: 'Object Group', value })),
  text.map((value) => ({ name: 'Unique Identifier', value })),
  u32.map((value) => ({ name: 'Cryptographic Algorithm', value })),
  u32.map((value) => ({ name: 'Cryptographic Length', value })),
  u32.map((value) => ({ name: 'Cryptographic Usage Mask', value })),
  u32.map((value) => ({ name: 'State', value })),
  u32.map((value) => ({ name: 'Object Type', value })),
  fc.boolean().map((value) => ({ name: 'Sensitive', value })),
  date.map((value) => ({ name: 'Activation Date', value })),
  date.map((value) => ({ name: 'Destroy Date', value })),
);

describe('attributes', () => {
  test('1.x form (Attribute Name/Index/Value) round-trips through binary TTLV', () => {
    fc.assert(
      fc.property(attribute, fc.option(fc.integer({ min: 0, max: 5 }), { nil: undefined }), (a, index) => {
        const input = index === undefined ? a : { ...a, index };
        expect(decodeAttribute1(decode(encode(encodeAttribute1(input))))).toEqual(withValueName(input));
      }),
      { numRuns: 300 },
    );
  });

  test('2.x form (own tag) round-trips through binary TTLV', () => {
    fc.assert(
      fc.property(attribute, (a) => {
        expect(decodeAttribute2(decode(encode(encodeAttribute2(a))))).toEqual(withValueName(a));
      }),
      { numRuns: 300 },
    );
  });

  test('attribute sets: Template-Attribute for 1.x (even empty), Attributes for 2.x, bare items for 1.x Locate', () => {
    fc.assert(
      fc.property(fc.array(attribute, { maxLength: 6 }), (list) => {
        const v1 = encodeAttributeSet(list, { major: 1, minor: 4 });
        expect(v1.map((i) => i.tag)).toEqual([T.TemplateAttribute]);
        const v2 = encodeAttributeSet(list, { major: 2, minor: 0 });
        expect(v2.map((i) => i.tag)).toEqual([T.Attributes]);
        const locate = encodeAttributeSet(list, { major: 1, minor: 2 }, true);
        expect(locate.every((i) => i.tag === T.Attribute)).toBe(true);
        for (const form of [v1, v2, locate])
          expect(decodeAttributeList(decode(encode(structure(T.ResponsePayload, form))))).toEqual(
            list.map(withValueName),
          );
      }),
      { numRuns: 200 },
    );
  });

  test('a Name is a structure of Name Value and Name Type (uninterpreted text)', () => {
    const item = encodeAttribute2({ name: 'Name', value: 'kmip-agent/appliance/drive' });
    expect(item.type).toBe(ItemType.Structure);
    expect(childOf(item, T.NameValue)?.value).toBe('kmip-agent/appliance/drive');
    expect(childOf(item, T.NameType)?.value).toBe(1);
  });

  test('custom x- attributes travel in 1.x; 2.x refuses names it has no tag for', () => {
    const custom = { name: 'x-drive-wwn', value: '5000c500a1b2c3d4' };
    expect(decodeAttribute1(encodeAttribute1(custom))).toEqual(custom);
    expect(() => encodeAttribute2(custom)).toThrow(/no KMIP 2.x tag/);
  });

  test('decoded enumerations and masks carry the registry names next to the codes', () => {
    const decoded = decodeAttributeList(
      structure(
        T.ResponsePayload,
        encodeAttributeSet(
          [
            { name: 'Object Type', value: 9 },
            { name: 'Cryptographic Algorithm', value: 2 },
            { name: 'Cryptographic Usage Mask', value: 0x0c | 0x80 },
            { name: 'Cryptographic Length', value: 128 },
          ],
          { major: 1, minor: 4 },
        ),
      ),
    );
    expect(decoded).toEqual([
      { name: 'Object Type', value: 9, valueName: 'PGPKey' },
      { name: 'Cryptographic Algorithm', value: 2, valueName: 'DES3' },
      { name: 'Cryptographic Usage Mask', value: 0x8c, valueName: 'Encrypt|Decrypt|MACGenerate' },
      { name: 'Cryptographic Length', value: 128 },
    ]);
  });
});
