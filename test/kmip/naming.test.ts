/**
 * One naming of KMIP values: the library's enumeration tables are the registry's, parsed responses carry
 * the registry names next to the codes, and errors name values the same way.
 */
import { describe, expect, test } from 'vitest';
import * as spec from '../../src/kmip/spec.js';
import { Enum, enumName, enumValue, Tag } from '../../src/kmip/ttlv/registry.js';
import { KmipOperationError } from '../../src/kmip/errors.js';
import * as ops from '../../src/kmip/operations.js';
import { byteString, enumeration, integer, structure, textString } from '../../src/kmip/ttlv/types.js';

const V14 = { major: 1, minor: 4 };

describe('one naming of KMIP values', () => {
  test('every table spec.ts exports is the registry table of that enumeration, unrenamed', () => {
    const tables: [keyof typeof spec, keyof typeof Enum][] = [
      ['Operation', 'Operation'],
      ['ResultStatus', 'ResultStatus'],
      ['ResultReason', 'ResultReason'],
      ['ObjectType', 'ObjectType'],
      ['CryptographicAlgorithm', 'CryptographicAlgorithm'],
      ['KeyFormatType', 'KeyFormatType'],
      ['SecretDataType', 'SecretDataType'],
      ['NameType', 'NameType'],
      ['State', 'State'],
      ['RevocationReasonCode', 'RevocationReasonCode'],
      ['QueryFunction', 'QueryFunction'],
      ['CryptographicUsageMask', 'CryptographicUsageMask'],
      ['UsageMask', 'CryptographicUsageMask'],
      ['WrappingMethod', 'WrappingMethod'],
      ['EncodingOption', 'EncodingOption'],
      ['BatchErrorContinuationOption', 'BatchErrorContinuationOption'],
      ['BlockCipherMode', 'BlockCipherMode'],
    ];
    for (const [exported, registry] of tables) {
      // Enumerable entries only: the deprecated UsageMask aliases are hidden from listings.
      expect(Object.entries(spec[exported] as object), exported).toEqual(Object.entries(Enum[registry]));
      for (const [name, value] of Object.entries(spec[exported] as Record<string, number>))
        expect(enumValue(Tag[registry as keyof typeof Tag] ?? Tag.CryptographicUsageMask, name), name).toBe(value);
    }
  });

  test('the spellings that had drifted are the registry ones', () => {
    expect(spec.ResultReason.NotAuthorized).toBe(Enum.ResultReason.NotAuthorized);
    expect(spec.ObjectType.PGPKey).toBe(9);
    expect(spec.CryptographicAlgorithm.DES3).toBe(2);
    for (const [table, gone] of [
      [spec.ResultReason, 'NotAuthorised'],
      [spec.ObjectType, 'PgpKey'],
      [spec.CryptographicAlgorithm, 'TripleDES'],
    ] as const)
      expect(Object.hasOwn(table, gone), gone).toBe(false);
  });

  test('the deprecated usage-mask aliases still resolve but do not show up as second names', () => {
    expect(spec.UsageMask.MacGenerate).toBe(spec.UsageMask.MACGenerate);
    expect(spec.UsageMask.MacVerify).toBe(spec.UsageMask.MACVerify);
    expect(Object.keys(spec.UsageMask)).not.toContain('MacGenerate');
    expect(spec.nameOf(spec.UsageMask, 0x80)).toBe('MACGenerate');
  });

  test('valueName: the registry name, or hex for values it does not know', () => {
    expect(spec.valueName(Tag.ObjectType, 2)).toBe('SymmetricKey');
    expect(spec.valueName(Tag.ObjectType, 0x4242)).toBe('0x00004242');
  });

  test('a server refusal names operation, status and reason as the registry does', () => {
    const error = new KmipOperationError(
      spec.Operation.Get,
      spec.ResultStatus.OperationFailed,
      spec.ResultReason.NotAuthorized,
      undefined,
    );
    expect(error.operation).toBe('Get');
    expect(error.resultStatus.name).toBe('OperationFailed');
    expect(error.resultReason).toEqual({ name: 'NotAuthorized', code: spec.ResultReason.NotAuthorized });
    expect(error.message).toBe('KMIP Get failed: NotAuthorized');
  });

  test('Get, Create and Query results carry names next to codes', () => {
    const get = ops.get.spec.decode(
      structure(Tag.ResponsePayload, [
        enumeration(Tag.ObjectType, spec.ObjectType.SymmetricKey),
        textString(Tag.UniqueIdentifier, 'uid-1'),
        structure(Tag.SymmetricKey, [
          structure(Tag.KeyBlock, [
            enumeration(Tag.KeyFormatType, spec.KeyFormatType.Raw),
            structure(Tag.KeyValue, [byteString(Tag.KeyMaterial, Buffer.alloc(24, 1))]),
            enumeration(Tag.CryptographicAlgorithm, spec.CryptographicAlgorithm.DES3),
            integer(Tag.CryptographicLength, 192),
          ]),
        ]),
      ]),
      V14,
    );
    expect(get).toMatchObject({
      objectType: 2,
      objectTypeName: 'SymmetricKey',
      keyFormatTypeName: 'Raw',
      cryptographicAlgorithm: 2,
      cryptographicAlgorithmName: 'DES3',
    });
    const created = ops.create.spec.decode(
      structure(Tag.ResponsePayload, [enumeration(Tag.ObjectType, 2), textString(Tag.UniqueIdentifier, 'u')]),
      V14,
    );
    expect(created.objectTypeName).toBe('SymmetricKey');
    const query = ops.query.spec.decode(
      structure(Tag.ResponsePayload, [
        enumeration(Tag.Operation, spec.Operation.Get),
        enumeration(Tag.Operation, 0x7777),
        enumeration(Tag.ObjectType, spec.ObjectType.PGPKey),
      ]),
      V14,
    );
    expect(query.operationNames).toEqual(['Get', '0x00007777']);
    expect(query.objectTypeNames).toEqual([enumName(Tag.ObjectType, 9)]);
    expect(query.objectTypeNames).toEqual(['PGPKey']);
  });
});
