/**
 * Placeholders of the OASIS test cases (`$UNIQUE_IDENTIFIER_0`, `$NOW`, `$DATA_0`): values a live run
 * fills in. Representation, chosen so a file round-trips without loss:
 * - in a Text String the placeholder stays the literal text (`$UNIQUE_IDENTIFIER_0`), needing no table;
 * - in other types it needs a value of that type: `bind()` gives real ones (a test runner's UIDs, the
 *   current time); an unbound name gets a reserved stand-in, remembered so `toXml` writes the
 *   placeholder back: Date-Time / Long / Date-Time-Extended -> distinct negative values counting down
 *   from -1 (never a real KMIP time); Byte String -> the ASCII bytes of the placeholder; Integer,
 *   Interval, Enumeration -> counting down from 0xffffffff / -1; Big Integer -> negative like dates.
 * Without a table, a placeholder in a non-text value is an error (KMIP_TTLV_BAD_VALUE).
 */
import { ItemType, type TtlvItem } from './types.js';

type Value = TtlvItem['value'];

export const PLACEHOLDER = /^\$[A-Z][A-Z0-9_]*([+-]\d+)?$/;

export class Placeholders {
  private readonly bound = new Map<string, Value>();
  private readonly standIns = new Map<string, { type: ItemType; value: Value }>();
  private next = 1;

  /** Gives a placeholder a real value for every type it appears in (type-checked at use). */
  bind(name: string, value: Value): this {
    this.bound.set(name, value);
    return this;
  }

  /** The value to use for a placeholder in an item of `type`. */
  resolve(name: string, type: ItemType): Value {
    const bound = this.bound.get(name);
    if (bound !== undefined) return bound;
    const key = `${type}:${name}`;
    const known = this.standIns.get(key);
    if (known) return known.value;
    const n = this.next++;
    let value: Value;
    switch (type) {
      case ItemType.TextString:
        value = name;
        break;
      case ItemType.ByteString:
        value = Buffer.from(name, 'latin1');
        break;
      case ItemType.Integer:
        value = -n;
        break;
      case ItemType.Enumeration:
      case ItemType.Interval:
        value = 0x1_0000_0000 - n;
        break;
      case ItemType.Boolean:
        throw new Error('a boolean placeholder cannot have a distinct stand-in');
      default:
        value = BigInt(-n);
    }
    this.standIns.set(key, { type, value });
    return value;
  }

  /** The placeholder whose stand-in is this value, if any (bound real values are not reversed). */
  nameOf(item: TtlvItem): string | undefined {
    for (const [key, standIn] of this.standIns) {
      if (standIn.type !== item.type) continue;
      const a = standIn.value;
      const b = item.value;
      const same = a instanceof Uint8Array && b instanceof Uint8Array ? Buffer.compare(a, b) === 0 : a === b;
      if (same) return key.slice(key.indexOf(':') + 1);
    }
    return undefined;
  }
}
