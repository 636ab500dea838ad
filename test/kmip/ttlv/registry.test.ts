import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { sharedDir } from '../../support/shared.js';
import {
  AttributeName,
  Enum,
  Tag,
  attributeTag,
  enumName,
  enumValue,
  maskText,
  maskValue,
  normalizeName,
  hasValueNames,
  tagCode,
  tagLabel,
  tagName,
} from '../../../src/kmip/ttlv/index.js';

describe('tag registry', () => {
  test('codes from the specifications', () => {
    expect(Tag.ActivationDate).toBe(0x420001);
    expect(Tag.UniqueIdentifier).toBe(0x420094);
    expect(Tag.RequestMessage).toBe(0x420078);
    expect(Tag.ResponseMessage).toBe(0x42007b);
    expect(Tag.ObjectType).toBe(0x420057);
    expect(Tag.Attributes).toBe(0x420125); // 2.0
    expect(Tag.PublicProtectionStorageMasks).toBe(0x420165); // 2.0, last standard tag of 2.0
  });

  test('name <-> code, hex form for unknown tags', () => {
    expect(tagName(0x420094)).toBe('UniqueIdentifier');
    expect(tagCode('UniqueIdentifier')).toBe(0x420094);
    expect(tagName(0x540001)).toBeUndefined();
    expect(tagLabel(0x540001)).toBe('0x540001');
    expect(tagCode('0x540001')).toBe(0x540001);
    expect(tagCode('toString')).toBeUndefined();
    expect(tagCode('NoSuchTag')).toBeUndefined();
  });
});

describe('enumerations', () => {
  test('operations named in the brief', () => {
    expect(Enum.Operation).toMatchObject({
      Create: 0x01,
      Register: 0x03,
      ReKey: 0x04,
      Locate: 0x08,
      Get: 0x0a,
      GetAttributes: 0x0b,
      GetAttributeList: 0x0c,
      AddAttribute: 0x0d,
      ModifyAttribute: 0x0e,
      DeleteAttribute: 0x0f,
      Activate: 0x12,
      Revoke: 0x13,
      Destroy: 0x14,
      Query: 0x18,
      DiscoverVersions: 0x1e,
      SetAttribute: 0x31,
    });
    expect(Enum.ObjectType.SymmetricKey).toBe(2);
    expect(Enum.ObjectType.SecretData).toBe(7);
    expect(Enum.ObjectType.Template).toBe(6); // 1.x only, kept
    expect(Enum.ResultStatus.OperationFailed).toBe(1);
    expect(Enum.SecretDataType.Password).toBe(1);
    expect(Enum.CryptographicAlgorithm.AES).toBe(3);
    expect(Enum.HashingAlgorithm.SHA_256).toBe(6);
  });

  test('lookups per tag, including tags sharing a table', () => {
    expect(enumName(Tag.Operation, 0x0a)).toBe('Get');
    expect(enumValue(Tag.Operation, 'Get')).toBe(0x0a);
    expect(enumName(Tag.MaskGeneratorHashingAlgorithm, 4)).toBe('SHA_1');
    expect(enumName(Tag.Operation, 0x7fffffff)).toBeUndefined();
    expect(enumName(Tag.UniqueIdentifier + 0x100000, 1)).toBeUndefined();
  });

  test('masks print as names joined by |, parse from | or spaces', () => {
    const m = Enum.CryptographicUsageMask;
    expect(maskText(Tag.CryptographicUsageMask, m.Encrypt | m.Decrypt)).toBe('Encrypt|Decrypt');
    expect(maskText(Tag.CryptographicUsageMask, 0)).toBe('0x00000000');
    expect(maskText(Tag.CryptographicUsageMask, m.Sign | 0x80000000)).toBe('Sign|0x80000000');
    expect(maskValue(Tag.CryptographicUsageMask, 'Decrypt   Encrypt')).toBe(m.Encrypt | m.Decrypt);
    expect(maskValue(Tag.CryptographicUsageMask, 'Sign|0x80000000')).toBe(0x80000001);
    expect(maskValue(Tag.CryptographicUsageMask, 'Bogus')).toBeUndefined();
  });
});

describe('profile name normalization', () => {
  test.each([
    ['Unique Identifier', 'UniqueIdentifier'],
    ['SHA-256', 'SHA_256'],
    ['3DES', 'DES3'],
    ['PKCS#1', 'PKCS_1'],
    ['X.509 Certificate Identifier', 'X_509CertificateIdentifier'],
    ['Polynomial Sharing GF (2^8)', 'PolynomialSharingGF2_8'],
    ['SHA-256 with RSA Encryption', 'SHA_256WithRSAEncryption'],
    ['Username and Password', 'UsernameAndPassword'],
  ])('%s -> %s', (spec, xml) => expect(normalizeName(spec)).toBe(xml));

  test('1.x attribute names map to their tags', () => {
    for (const [key, text] of Object.entries(AttributeName)) expect(attributeTag(text)).toBe(tagCode(key));
    expect(attributeTag('Cryptographic   Algorithm')).toBe(Tag.CryptographicAlgorithm);
    expect(attributeTag('x-Purpose')).toBeUndefined();
  });
});

describe('registry against the OASIS test cases', () => {
  const root = join(sharedDir(), 'kmip-testcases');
  const texts = readdirSync(root)
    .filter((v) => v.startsWith('v1.'))
    .flatMap((v) => readdirSync(join(root, v)).map((f) => readFileSync(join(root, v, f), 'utf8')));

  test('every element name the files use is a known tag', () => {
    const names = new Set(texts.flatMap((t) => [...t.matchAll(/<([A-Za-z][A-Za-z0-9_]*)[\s/>]/g)].map((m) => m[1])));
    names.delete('KMIP');
    names.delete('TTLV');
    expect([...names].filter((n) => tagCode(n) === undefined)).toEqual([]);
    expect(names.size).toBeGreaterThan(150);
  });

  test("every enumeration value named directly under its own tag is in that tag's table", () => {
    const unknown = new Set<string>();
    for (const t of texts)
      for (const m of t.matchAll(/<([A-Za-z_0-9]+) type="Enumeration" value="([^"]+)"/g)) {
        const tag = tagCode(m[1]);
        if (m[1] === 'AttributeValue' || m[2].startsWith('0x') || m[2].startsWith('$')) continue;
        if (tag === undefined || !hasValueNames(tag) || enumValue(tag, m[2]) === undefined)
          unknown.add(`${m[1]}=${m[2]}`);
      }
    expect([...unknown]).toEqual([]);
  });
});
