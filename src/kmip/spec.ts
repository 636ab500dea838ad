/**
 * Tags and enumerations, as the codec's registry names them (one table for the whole library: the
 * specifications' names normalized as the KMIP XML/JSON profiles do, e.g. `DES3`, `HMAC_SHA256`,
 * `PGPKey`, `NotAuthorized`). Nothing is renamed here: each table below is the registry's own object,
 * so `kmip query`, `kmip get` and the text forms spell a value one way.
 */
import { Enum, Tag, enumName, hex32 } from './ttlv/registry.js';

/** Tag numbers, from the codec's registry. */
export const T = Tag;
/** Every enumeration and mask of the registry, by its enumeration name: `Enum.LinkType.ParentLink`. */
export { Enum };

export const Operation = Enum.Operation;
export type OperationCode = (typeof Operation)[keyof typeof Operation];
export const ResultStatus = Enum.ResultStatus;
/** Result Reason values (KMIP 1.x and the 2.x additions). */
export const ResultReason = Enum.ResultReason;
export const ObjectType = Enum.ObjectType;
export const CryptographicAlgorithm = Enum.CryptographicAlgorithm;
export const KeyFormatType = Enum.KeyFormatType;
export const SecretDataType = Enum.SecretDataType;
export const NameType = Enum.NameType;
export const State = Enum.State;
export const RevocationReasonCode = Enum.RevocationReasonCode;
export const QueryFunction = Enum.QueryFunction;
export const CryptographicUsageMask = Enum.CryptographicUsageMask;
export const WrappingMethod = Enum.WrappingMethod;
export const EncodingOption = Enum.EncodingOption;
export const BatchErrorContinuationOption = Enum.BatchErrorContinuationOption;
export const BlockCipherMode = Enum.BlockCipherMode;

type Mask = typeof Enum.CryptographicUsageMask;
/**
 * Cryptographic Usage Mask bits (the registry's table under a shorter name). `MacGenerate` and
 * `MacVerify` are kept, non-enumerable so that listing the table shows one name per bit, for callers
 * written against the earlier hand-made names.
 */
export const UsageMask: Mask & {
  /** @deprecated the registry spells it `MACGenerate` */
  readonly MacGenerate: Mask['MACGenerate'];
  /** @deprecated the registry spells it `MACVerify` */
  readonly MacVerify: Mask['MACVerify'];
} = Object.defineProperties(
  { ...Enum.CryptographicUsageMask },
  {
    MacGenerate: { value: Enum.CryptographicUsageMask.MACGenerate, enumerable: false },
    MacVerify: { value: Enum.CryptographicUsageMask.MACVerify, enumerable: false },
  },
) as never;

/**
 * The registry name of an enumeration value of `tag` (`valueName(T.ObjectType, 2) === 'SymmetricKey'`),
 * or the value in hex (`0x0000002a`) when the registry does not know it. What parsed responses carry
 * next to each code.
 */
export function valueName(tag: number, value: number): string {
  return enumName(tag, value) ?? hex32(value);
}

/** Reverse lookup in one of the tables above: the name of `value` (e.g. for messages), or hex. */
export function nameOf(table: Record<string, number>, value: number): string {
  for (const [name, v] of Object.entries(table)) if (v === value) return name;
  return `0x${value.toString(16).padStart(2, '0')}`;
}
