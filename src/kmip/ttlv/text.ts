/**
 * A readable dump for people: one line per item, indented by depth, `Name (Type): value` with
 * enumerations and masks by name, bytes in hex, text quoted, dates in ISO 8601.
 */
import { Tag, tagLabel } from './registry.js';
import { ItemType, type TtlvItem } from './types.js';
import { TYPE_NAMES, attributeNameOf, formatValue, valueTag } from './values.js';

/**
 * Tags whose values are key material, passwords or plaintext; `redact` hides them (whole subtrees for
 * structures such as a transparent key's Key Material). Conservative: P and Q are also public DSA
 * parameters, Data is also ciphertext.
 */
export const SECRET_TAGS: ReadonlySet<number> = new Set([
  Tag.KeyMaterial,
  Tag.Password,
  Tag.PrivateExponent,
  Tag.PrimeExponentP,
  Tag.PrimeExponentQ,
  Tag.CRTCoefficient,
  Tag.P,
  Tag.Q,
  Tag.D,
  Tag.X,
  Tag.OpaqueDataValue,
  Tag.Data,
  Tag.DerivationData,
  Tag.Salt,
  Tag.ServerHashedPassword,
  Tag.HashedPassword,
  Tag.OneTimePassword,
  Tag.TicketValue,
]);

export interface TextOptions {
  /** Replace the values of SECRET_TAGS by `<redacted>` (for logs). */
  redact?: boolean;
}

function dump(
  item: TtlvItem,
  depth: number,
  attributeName: string | undefined,
  out: string[],
  opts: TextOptions,
): void {
  const head = `${'  '.repeat(depth)}${tagLabel(item.tag)} (${TYPE_NAMES[item.type]})`;
  if (opts.redact && SECRET_TAGS.has(item.tag)) {
    out.push(`${head}: <redacted>`);
    return;
  }
  if (item.type === ItemType.Structure) {
    out.push(item.value.length === 0 ? `${head}: empty` : head);
    let siblingName: string | undefined;
    for (const child of item.value) {
      dump(child, depth + 1, siblingName, out, opts);
      siblingName = attributeNameOf(child) ?? siblingName;
    }
    return;
  }
  const text = formatValue(item, valueTag(item.tag, attributeName));
  const shown =
    item.type === ItemType.TextString
      ? JSON.stringify(text)
      : item.type === ItemType.ByteString
        ? `${text || '(empty)'} [${item.value.length} bytes]`
        : text;
  out.push(`${head}: ${shown}`);
}

/** The indented text dump of an item. */
export function toText(item: TtlvItem, opts: TextOptions = {}): string {
  const out: string[] = [];
  dump(item, 0, undefined, out, opts);
  return out.join('\n') + '\n';
}
