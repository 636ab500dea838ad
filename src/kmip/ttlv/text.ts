/**
 * A readable dump for people: one line per item, indented by depth, `Name (Type): value` with
 * enumerations and masks by name, bytes in hex, text quoted, dates in ISO 8601.
 */
import { tagLabel } from './registry.js';
import { ItemType, type TtlvItem } from './types.js';
import { TYPE_NAMES, attributeNameOf, formatValue, valueTag } from './values.js';

function dump(item: TtlvItem, depth: number, attributeName: string | undefined, out: string[]): void {
  const head = `${'  '.repeat(depth)}${tagLabel(item.tag)} (${TYPE_NAMES[item.type]})`;
  if (item.type === ItemType.Structure) {
    out.push(item.value.length === 0 ? `${head}: empty` : head);
    let siblingName: string | undefined;
    for (const child of item.value) {
      dump(child, depth + 1, siblingName, out);
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
export function toText(item: TtlvItem): string {
  const out: string[] = [];
  dump(item, 0, undefined, out);
  return out.join('\n') + '\n';
}
