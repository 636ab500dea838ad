/**
 * Lookups over the KMIP tag and enumeration tables (spec-data.ts): tag name <-> code, enumeration and
 * bit-mask value <-> name, and the 1.x attribute name strings. Names are the XML/JSON profile forms
 * (`UniqueIdentifier`, `SHA_256`). Unknown tags and values are not errors here: callers decide.
 */
import { ENUM_TAGS, SpecEnums, SpecMasks, Tag } from './spec-data.js';

export { Tag };
export type TagName = keyof typeof Tag;

/** Every enumeration and mask, name -> value: `Enum.Operation.Get === 0x0a`. */
export const Enum = { ...SpecEnums, ...SpecMasks } as const;
export type EnumName = keyof typeof Enum;

/**
 * Attribute names as KMIP 1.x sends them in Attribute Name text strings (spec section 3), keyed by the
 * tag-style name. `x-`/`y-` custom attributes are free text and not listed.
 */
export const AttributeName = {
  UniqueIdentifier: 'Unique Identifier',
  Name: 'Name',
  ObjectType: 'Object Type',
  CryptographicAlgorithm: 'Cryptographic Algorithm',
  CryptographicLength: 'Cryptographic Length',
  CryptographicParameters: 'Cryptographic Parameters',
  CryptographicDomainParameters: 'Cryptographic Domain Parameters',
  CertificateType: 'Certificate Type',
  CertificateLength: 'Certificate Length',
  X_509CertificateIdentifier: 'X.509 Certificate Identifier',
  X_509CertificateSubject: 'X.509 Certificate Subject',
  X_509CertificateIssuer: 'X.509 Certificate Issuer',
  CertificateIdentifier: 'Certificate Identifier',
  CertificateSubject: 'Certificate Subject',
  CertificateIssuer: 'Certificate Issuer',
  DigitalSignatureAlgorithm: 'Digital Signature Algorithm',
  Digest: 'Digest',
  OperationPolicyName: 'Operation Policy Name',
  CryptographicUsageMask: 'Cryptographic Usage Mask',
  LeaseTime: 'Lease Time',
  UsageLimits: 'Usage Limits',
  State: 'State',
  InitialDate: 'Initial Date',
  ActivationDate: 'Activation Date',
  ProcessStartDate: 'Process Start Date',
  ProtectStopDate: 'Protect Stop Date',
  DeactivationDate: 'Deactivation Date',
  DestroyDate: 'Destroy Date',
  CompromiseOccurrenceDate: 'Compromise Occurrence Date',
  CompromiseDate: 'Compromise Date',
  RevocationReason: 'Revocation Reason',
  ArchiveDate: 'Archive Date',
  ObjectGroup: 'Object Group',
  Fresh: 'Fresh',
  Link: 'Link',
  ApplicationSpecificInformation: 'Application Specific Information',
  ContactInformation: 'Contact Information',
  LastChangeDate: 'Last Change Date',
  AlternativeName: 'Alternative Name',
  KeyValuePresent: 'Key Value Present',
  KeyValueLocation: 'Key Value Location',
  OriginalCreationDate: 'Original Creation Date',
  RandomNumberGenerator: 'Random Number Generator',
  PKCS_12FriendlyName: 'PKCS#12 Friendly Name',
  Description: 'Description',
  Comment: 'Comment',
  Sensitive: 'Sensitive',
  AlwaysSensitive: 'Always Sensitive',
  Extractable: 'Extractable',
  NeverExtractable: 'Never Extractable',
} as const satisfies Partial<Record<TagName, string>>;

/**
 * The XML/JSON profiles' name normalization: brackets become spaces, a punctuation mark before a word
 * becomes a space, other punctuation an underscore, leading digits move to the end of the first word,
 * words are capitalized and joined (`SHA-256 with RSA Encryption` -> `SHA_256WithRSAEncryption`).
 */
export function normalizeName(specName: string): string {
  const spaced = specName
    .replace(/[()]/g, ' ')
    .replace(/[^\w\s](?=[A-Za-z][a-z])/g, ' ')
    .replace(/[^\w\s]/g, '_');
  const words = spaced.split(/\s+/).filter((w) => w.length > 0);
  if (words.length === 0) return '';
  const lead = /^(\d+)(.+)$/.exec(words[0]);
  if (lead) words[0] = lead[2] + lead[1];
  return words.map((w) => w[0].toUpperCase() + w.slice(1)).join('');
}

const nameByCode = new Map<number, string>();
for (const [name, code] of Object.entries(Tag)) nameByCode.set(code, name);

type ValueTable = { byName: Map<string, number>; byValue: Map<number, string>; mask: boolean; enumName: string };
const tablesByTag = new Map<number, ValueTable>();
function addTable(enumName: string, values: Record<string, number>, mask: boolean): void {
  const table: ValueTable = { byName: new Map(), byValue: new Map(), mask, enumName };
  for (const [name, value] of Object.entries(values)) {
    table.byName.set(name, value);
    // Several names for one value only happen across versions; the first (lowest) name wins for output.
    if (!table.byValue.has(value)) table.byValue.set(value, name);
  }
  const tags = ENUM_TAGS[enumName] ?? (enumName in Tag ? [enumName as TagName] : []);
  for (const tagName of tags) tablesByTag.set(Tag[tagName], table);
}
for (const [name, values] of Object.entries(SpecEnums)) addTable(name, values, false);
for (const [name, values] of Object.entries(SpecMasks)) addTable(name, values, true);

const HEX_TAG = /^0x([0-9a-fA-F]{6})$/;

/** The profile name of a tag, or undefined for tags not in the registry (e.g. 0x54xxxx extensions). */
export function tagName(code: number): string | undefined {
  return nameByCode.get(code);
}

/** The tag's name, or its `0x54ffff`-style hex form when unknown (what the JSON and XML forms print). */
export function tagLabel(code: number): string {
  return nameByCode.get(code) ?? '0x' + code.toString(16).padStart(6, '0');
}

/** The code of a tag name (`UniqueIdentifier`) or hex form (`0x540001`); undefined if neither. */
export function tagCode(name: string): number | undefined {
  const known = (Tag as Record<string, number>)[name];
  if (known !== undefined && Object.hasOwn(Tag, name)) return known;
  const hex = HEX_TAG.exec(name);
  return hex ? parseInt(hex[1], 16) : undefined;
}

/** The tag of a 1.x Attribute Name string (`Cryptographic Algorithm`), tolerant of repeated spaces. */
export function attributeTag(attributeName: string): number | undefined {
  const code = tagCode(normalizeName(attributeName));
  return code !== undefined && nameByCode.has(code) ? code : undefined;
}

/** KMIP 2.x enumerations whose values are tags (Attribute Reference, Tag): named by tag name. */
const TAG_VALUED = new Set<number>([Tag.AttributeReference, Tag.Tag]);

/** Name of an enumeration value of a tag, or undefined when the tag has no table or the value is unknown. */
export function enumName(tag: number, value: number): string | undefined {
  if (TAG_VALUED.has(tag)) return nameByCode.get(value);
  return tablesByTag.get(tag)?.byValue.get(value);
}

/** Value of an enumeration name for a tag, or undefined. */
export function enumValue(tag: number, name: string): number | undefined {
  if (TAG_VALUED.has(tag)) {
    const code = Object.hasOwn(Tag, name) ? (Tag as Record<string, number>)[name] : undefined;
    return code;
  }
  return tablesByTag.get(tag)?.byName.get(name);
}

/** Whether the tag's Integer values are a bit mask with named flags (Cryptographic Usage Mask, ...). */
export function isMaskTag(tag: number): boolean {
  return tablesByTag.get(tag)?.mask === true;
}

/** Whether the tag has a table of named values (enumeration or mask). */
export function hasValueNames(tag: number): boolean {
  return tablesByTag.has(tag) || TAG_VALUED.has(tag);
}

/**
 * A mask as flag names joined by `|` (`Encrypt|Decrypt`), lowest bit first; bits without a name are
 * kept as one trailing hex term (`Encrypt|0x80000000`). Zero is `0x00000000`.
 */
export function maskText(tag: number, value: number): string {
  const table = tablesByTag.get(tag);
  const parts: string[] = [];
  let rest = value >>> 0;
  if (table?.mask) {
    for (let bit = 0; bit < 32; bit++) {
      const flag = (1 << bit) >>> 0;
      const name = table.byValue.get(flag);
      if ((rest & flag) !== 0 && name !== undefined) {
        parts.push(name);
        rest = (rest & ~flag) >>> 0;
      }
    }
  }
  if (rest !== 0 || parts.length === 0) parts.push(hex32(rest));
  return parts.join('|');
}

/**
 * Parses a mask's text form: flag names and hex terms separated by `|` or whitespace (the OASIS test
 * cases use spaces). Returns undefined if a term is neither a known flag nor hex.
 */
export function maskValue(tag: number, text: string): number | undefined {
  const table = tablesByTag.get(tag);
  let value = 0;
  const terms = text.split(/[\s|]+/).filter((t) => t.length > 0);
  if (terms.length === 0) return undefined;
  for (const term of terms) {
    const flag = table?.mask ? table.byName.get(term) : undefined;
    if (flag !== undefined) value = (value | flag) >>> 0;
    else if (/^0x[0-9a-fA-F]{1,8}$/.test(term)) value = (value | parseInt(term, 16)) >>> 0;
    else return undefined;
  }
  return value;
}

export function hex32(value: number): string {
  return '0x' + (value >>> 0).toString(16).padStart(8, '0');
}
