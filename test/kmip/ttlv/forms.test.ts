/** JSON, XML and text forms: exact output shapes, placeholders, and typed errors for bad input. */
import { describe, expect, test } from 'vitest';
import {
  Enum,
  ItemType,
  Placeholders,
  Tag,
  bigInteger,
  boolean,
  byteString,
  dateTime,
  dateTimeExtended,
  encode,
  enumeration,
  fromJson,
  fromXml,
  integer,
  interval,
  longInteger,
  structure,
  textString,
  toJson,
  toText,
  toXml,
  toXmlDocument,
  type TtlvItem,
} from '../../../src/kmip/ttlv/index.js';
import { ttlvError } from './support.js';

const usage = Enum.CryptographicUsageMask;
const sample = structure(Tag.RequestMessage, [
  integer(Tag.BatchCount, 1),
  longInteger(Tag.UsageLimitsTotal, 1n << 60n),
  bigInteger(Tag.Modulus, -129n),
  enumeration(Tag.Operation, Enum.Operation.Get),
  enumeration(Tag.ObjectType, 0x80000001),
  boolean(Tag.Sensitive, true),
  textString(Tag.UniqueIdentifier, 'a "quoted" <uid> & more\n'),
  byteString(Tag.KeyMaterial, Buffer.from('00ff10', 'hex')),
  dateTime(Tag.TimeStamp, new Date('2012-04-27T08:12:21Z')),
  interval(Tag.LeaseTime, 3600),
  dateTimeExtended(Tag.TimeStamp, 1335514341000001n),
  integer(Tag.CryptographicUsageMask, usage.Encrypt | usage.Decrypt),
  structure(Tag.Attribute, [
    textString(Tag.AttributeName, 'Cryptographic Algorithm'),
    enumeration(Tag.AttributeValue, Enum.CryptographicAlgorithm.AES),
  ]),
  textString(0x540001, 'vendor'),
  structure(Tag.RequestPayload, []),
]);

describe('JSON form', () => {
  test('names, numbers and hex as the KMIP JSON encoding writes them', () => {
    expect(toJson(sample)).toEqual({
      tag: 'RequestMessage',
      type: 'Structure',
      value: [
        { tag: 'BatchCount', type: 'Integer', value: 1 },
        { tag: 'UsageLimitsTotal', type: 'LongInteger', value: '0x1000000000000000' },
        { tag: 'Modulus', type: 'BigInteger', value: '0xffffffffffffff7f' },
        { tag: 'Operation', type: 'Enumeration', value: 'Get' },
        { tag: 'ObjectType', type: 'Enumeration', value: '0x80000001' },
        { tag: 'Sensitive', type: 'Boolean', value: true },
        { tag: 'UniqueIdentifier', type: 'TextString', value: 'a "quoted" <uid> & more\n' },
        { tag: 'KeyMaterial', type: 'ByteString', value: '00ff10' },
        { tag: 'TimeStamp', type: 'DateTime', value: '2012-04-27T08:12:21+00:00' },
        { tag: 'LeaseTime', type: 'Interval', value: 3600 },
        { tag: 'TimeStamp', type: 'DateTimeExtended', value: '2012-04-27T08:12:21.000001+00:00' },
        { tag: 'CryptographicUsageMask', type: 'Integer', value: 'Encrypt|Decrypt' },
        {
          tag: 'Attribute',
          type: 'Structure',
          value: [
            { tag: 'AttributeName', type: 'TextString', value: 'Cryptographic Algorithm' },
            { tag: 'AttributeValue', type: 'Enumeration', value: 'AES' },
          ],
        },
        { tag: '0x540001', type: 'TextString', value: 'vendor' },
        { tag: 'RequestPayload', type: 'Structure', value: [] },
      ],
    });
    expect(fromJson(toJson(sample))).toEqual(sample);
  });

  test('accepts numbers for enumerations and dates, hex for integers, omitted type for structures', () => {
    const item = fromJson({
      tag: 'BatchItem',
      value: [
        { tag: 'Operation', type: 'Enumeration', value: 10 },
        { tag: 'BatchCount', type: 'Integer', value: '0xffffffff' },
        { tag: 'TimeStamp', type: 'DateTime', value: 1335514341 },
        { tag: 'CryptographicUsageMask', type: 'Integer', value: 'Encrypt Decrypt' },
      ],
    });
    expect(item).toEqual(
      structure(Tag.BatchItem, [
        enumeration(Tag.Operation, Enum.Operation.Get),
        integer(Tag.BatchCount, -1),
        dateTime(Tag.TimeStamp, 1335514341n),
        integer(Tag.CryptographicUsageMask, 12),
      ]),
    );
  });

  test.each<[string, unknown, string]>([
    ['not an object', [1], 'KMIP_TTLV_BAD_SYNTAX'],
    ['an extra member', { tag: 'BatchCount', type: 'Integer', value: 1, extra: 1 }, 'KMIP_TTLV_BAD_SYNTAX'],
    [
      'a structure whose value is not an array',
      { tag: 'BatchItem', type: 'Structure', value: 1 },
      'KMIP_TTLV_BAD_SYNTAX',
    ],
    ['an unknown tag', { tag: 'Nope', type: 'Integer', value: 1 }, 'KMIP_TTLV_UNKNOWN_NAME'],
    ['a 7-digit hex tag', { tag: '0x5400001', type: 'Integer', value: 1 }, 'KMIP_TTLV_UNKNOWN_NAME'],
    ['an unknown type', { tag: 'BatchCount', type: 'Float', value: 1 }, 'KMIP_TTLV_BAD_TYPE'],
    ['a fractional number', { tag: 'BatchCount', type: 'Integer', value: 1.5 }, 'KMIP_TTLV_BAD_VALUE'],
    ['a boolean as a string', { tag: 'Sensitive', type: 'Boolean', value: 'yes' }, 'KMIP_TTLV_BAD_VALUE'],
    ['odd hex bytes', { tag: 'KeyMaterial', type: 'ByteString', value: 'abc' }, 'KMIP_TTLV_BAD_VALUE'],
    ['a big integer without 0x', { tag: 'Modulus', type: 'BigInteger', value: '01' }, 'KMIP_TTLV_BAD_VALUE'],
    [
      'an impossible date',
      { tag: 'TimeStamp', type: 'DateTime', value: '2012-02-30T00:00:00Z' },
      'KMIP_TTLV_BAD_VALUE',
    ],
    [
      'a date with fractions',
      { tag: 'TimeStamp', type: 'DateTime', value: '2012-02-03T00:00:00.5Z' },
      'KMIP_TTLV_BAD_VALUE',
    ],
    ['an unknown enumeration name', { tag: 'Operation', type: 'Enumeration', value: 'Gett' }, 'KMIP_TTLV_UNKNOWN_NAME'],
    ['a missing value', { tag: 'BatchCount', type: 'Integer' }, 'KMIP_TTLV_BAD_VALUE'],
  ])('%s -> %s', (_, json, code) => {
    expect(ttlvError(() => fromJson(json)).code).toBe(code);
  });

  test('nesting is limited like binary, even when the caller asks for more than the cap', () => {
    let json: unknown = { tag: 'BatchItem', value: [] };
    for (let i = 0; i < 40; i++) json = { tag: 'BatchItem', value: [json] };
    expect(ttlvError(() => fromJson(json)).code).toBe('KMIP_TTLV_TOO_DEEP');
    const deep = '{"tag":"BatchItem","value":['.repeat(100_000) + ']}'.repeat(100_000);
    expect(ttlvError(() => fromJson(deep, { maxDepth: 1e9 })).code).toBe('KMIP_TTLV_TOO_DEEP');
  });
});

describe('XML form', () => {
  test('writes elements like the OASIS files, escaping attribute text', () => {
    const xml = toXml(sample);
    expect(xml).toContain('<RequestMessage>\n\t<BatchCount type="Integer" value="1"/>');
    expect(xml).toContain('<Modulus type="BigInteger" value="ffffffffffffff7f"/>');
    expect(xml).toContain(
      '<UniqueIdentifier type="TextString" value="a &quot;quoted&quot; &lt;uid&gt; &amp; more&#xA;"/>',
    );
    expect(xml).toContain('<CryptographicUsageMask type="Integer" value="Encrypt|Decrypt"/>');
    expect(xml).toContain('<AttributeValue type="Enumeration" value="AES"/>');
    expect(xml).toContain('<TTLV tag="0x540001" type="TextString" value="vendor"/>');
    expect(xml).toContain('<RequestPayload></RequestPayload>');
    expect(fromXml(xml)).toEqual([sample]);
    expect(fromXml(toXmlDocument([sample, sample]))).toEqual([sample, sample]);
  });

  test('placeholders: text kept literally, others need a table, stand-ins written back', () => {
    const xml = `<KMIP>
      <RequestMessage>
        <UniqueIdentifier type="TextString" value="$UNIQUE_IDENTIFIER_0"/>
        <TimeStamp type="DateTime" value="$NOW"/>
        <ActivationDate type="DateTime" value="$NOW-3600"/>
        <Data type="ByteString" value="$DATA_0"/>
      </RequestMessage>
    </KMIP>`;
    expect(ttlvError(() => fromXml(xml)).reason).toContain('placeholder $NOW');
    const table = new Placeholders();
    const [item] = fromXml(xml, { placeholders: table });
    expect(item.value).toEqual([
      textString(Tag.UniqueIdentifier, '$UNIQUE_IDENTIFIER_0'),
      dateTime(Tag.TimeStamp, -1n),
      dateTime(Tag.ActivationDate, -2n),
      byteString(Tag.Data, Buffer.from('$DATA_0')),
    ]);
    expect(encode(item).length).toBeGreaterThan(0);
    const back = toXml(item, { placeholders: table });
    expect(back).toContain('value="$NOW"');
    expect(back).toContain('value="$NOW-3600"');
    expect(back).toContain('value="$DATA_0"');
    const now = new Date('2026-11-24T00:00:00Z');
    const bound = new Placeholders().bind('$NOW', BigInt(now.getTime() / 1000));
    const [live] = fromXml(xml.replace('$NOW-3600', '2026-11-23T23:00:00+00:00').replace('$DATA_0', '00'), {
      placeholders: bound,
    });
    expect((live as Extract<TtlvItem, { type: typeof ItemType.Structure }>).value[1]).toEqual(
      dateTime(Tag.TimeStamp, now),
    );
  });

  test.each<[string, string, string]>([
    ['malformed XML', '<RequestMessage><BatchCount type="Integer" value="1"></RequestMessage>', 'KMIP_TTLV_BAD_SYNTAX'],
    ['two roots', '<A/><B/>', 'KMIP_TTLV_BAD_SYNTAX'],
    ['an unknown element', '<KMIP><Nope type="Integer" value="1"/></KMIP>', 'KMIP_TTLV_UNKNOWN_NAME'],
    [
      'a TTLV element without hex tag',
      '<KMIP><TTLV tag="Nope" type="Integer" value="1"/></KMIP>',
      'KMIP_TTLV_UNKNOWN_NAME',
    ],
    ['an unknown type', '<KMIP><BatchCount type="Float" value="1"/></KMIP>', 'KMIP_TTLV_BAD_TYPE'],
    ['a missing value', '<KMIP><BatchCount type="Integer"/></KMIP>', 'KMIP_TTLV_BAD_SYNTAX'],
    ['text content', '<KMIP><BatchItem>hello</BatchItem></KMIP>', 'KMIP_TTLV_BAD_SYNTAX'],
    [
      'a scalar with children',
      '<KMIP><BatchCount type="Integer" value="1"><BatchCount type="Integer" value="1"/></BatchCount></KMIP>',
      'KMIP_TTLV_BAD_SYNTAX',
    ],
    ['an Integer out of range', '<KMIP><BatchCount type="Integer" value="2147483648"/></KMIP>', 'KMIP_TTLV_BAD_VALUE'],
    [
      'an unknown mask flag',
      '<KMIP><CryptographicUsageMask type="Integer" value="Encrypt Frob"/></KMIP>',
      'KMIP_TTLV_UNKNOWN_NAME',
    ],
    ['a forbidden character reference', '<KMIP><Name type="TextString" value="&#x1;"/></KMIP>', 'KMIP_TTLV_BAD_SYNTAX'],
  ])('%s -> %s', (_, xml, code) => {
    expect(ttlvError(() => fromXml(xml)).code).toBe(code);
  });

  test('runaway nesting is KMIP_TTLV_TOO_DEEP, also where the XML parser stops it first', () => {
    const nest = (n: number): string => '<BatchItem>'.repeat(n) + '</BatchItem>'.repeat(n);
    expect(fromXml(nest(32))).toHaveLength(1);
    expect(ttlvError(() => fromXml(nest(33))).code).toBe('KMIP_TTLV_TOO_DEEP');
    expect(ttlvError(() => fromXml(nest(100_000))).code).toBe('KMIP_TTLV_TOO_DEEP');
  });

  test('text XML cannot carry is refused on output', () => {
    expect(ttlvError(() => toXml(textString(Tag.Name, 'a\u0001b'))).code).toBe('KMIP_TTLV_BAD_VALUE');
  });
});

describe('KMIP 2.x tag-valued enumerations', () => {
  test('Attribute Reference values are named by tag name', () => {
    const xml = '<KMIP><AttributeReference type="Enumeration" value="CryptographicAlgorithm"/></KMIP>';
    const [item] = fromXml(xml);
    expect(item).toEqual(enumeration(Tag.AttributeReference, Tag.CryptographicAlgorithm));
    expect(toXml(item)).toBe('<AttributeReference type="Enumeration" value="CryptographicAlgorithm"/>\n');
    expect(toJson(enumeration(Tag.AttributeReference, 0x540001)).value).toBe('0x00540001');
  });
});

describe('text dump', () => {
  test('redact hides key material and passwords, whole subtrees included', () => {
    const item = structure(Tag.KeyValue, [
      byteString(Tag.KeyMaterial, Buffer.from('00112233445566778899', 'hex')),
      structure(Tag.Credential, [textString(Tag.Username, 'admin'), textString(Tag.Password, 'hunter2')]),
      structure(Tag.KeyMaterial, [bigInteger(Tag.PrivateExponent, 12345678901234567890n)]),
    ]);
    const text = toText(item, { redact: true });
    expect(text).toContain('KeyMaterial (ByteString): <redacted>');
    expect(text).toContain('Username (TextString): "admin"');
    expect(text).toContain('Password (TextString): <redacted>');
    expect(text).toContain('KeyMaterial (Structure): <redacted>');
    expect(text).not.toMatch(/00112233|hunter2|PrivateExponent/);
    expect(toText(item)).toContain('hunter2');
  });

  test('one line per item, indented, with names, quotes and hex', () => {
    expect(toText(sample).split('\n').slice(0, 16)).toEqual([
      'RequestMessage (Structure)',
      '  BatchCount (Integer): 1',
      '  UsageLimitsTotal (LongInteger): 1152921504606846976',
      '  Modulus (BigInteger): ffffffffffffff7f',
      '  Operation (Enumeration): Get',
      '  ObjectType (Enumeration): 0x80000001',
      '  Sensitive (Boolean): true',
      '  UniqueIdentifier (TextString): "a \\"quoted\\" <uid> & more\\n"',
      '  KeyMaterial (ByteString): 00ff10 [3 bytes]',
      '  TimeStamp (DateTime): 2012-04-27T08:12:21+00:00',
      '  LeaseTime (Interval): 3600',
      '  TimeStamp (DateTimeExtended): 2012-04-27T08:12:21.000001+00:00',
      '  CryptographicUsageMask (Integer): Encrypt|Decrypt',
      '  Attribute (Structure)',
      '    AttributeName (TextString): "Cryptographic Algorithm"',
      '    AttributeValue (Enumeration): AES',
    ]);
    expect(toText(sample)).toContain('  0x540001 (TextString): "vendor"\n  RequestPayload (Structure): empty\n');
  });
});
