/**
 * Seeded, reproducible mutation of binary inputs for the fuzz targets (test/fuzz/targets.ts): a
 * small PRNG (so a seed and an input index name one input exactly), generic byte mutations, and
 * TTLV-aware ones that edit the fields a decoder trusts (tags, types, lengths) so mutated frames
 * reach past the first length check.
 */
import { decode, encode } from '../../src/kmip/ttlv/binary.js';
import { ItemType, type StructureItem, type TtlvItem } from '../../src/kmip/ttlv/types.js';

/** mulberry32: fast, 32-bit state, good enough to spread mutations; not for secrets. */
export class Rng {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0;
  }
  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
}

/** The PRNG for input `index` of a run seeded with `seed`: inputs can be replayed one by one. */
export function inputRng(seed: number, index: number): Rng {
  return new Rng((Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) + Math.imul(index, 0xc2b2ae35)) >>> 0);
}

/** Values that sit on the boundaries parsers get wrong. */
const INTERESTING_32 = [0, 1, 7, 8, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0xffff, 0x7fffffff, 0x80000000, 0xffffffff];

type Mutation = (rng: Rng, input: Buffer) => Buffer;

const byteMutations: Mutation[] = [
  // flip one bit
  (rng, b) => {
    if (b.length === 0) return Buffer.of(rng.int(256));
    const out = Buffer.from(b);
    out[rng.int(out.length)]! ^= 1 << rng.int(8);
    return out;
  },
  // overwrite one byte
  (rng, b) => {
    if (b.length === 0) return b;
    const out = Buffer.from(b);
    out[rng.int(out.length)] = rng.int(256);
    return out;
  },
  // overwrite a 32-bit word with a boundary value (big- or little-endian)
  (rng, b) => {
    if (b.length < 4) return b;
    const out = Buffer.from(b);
    const at = rng.int(out.length - 3);
    const value = rng.pick(INTERESTING_32);
    if (rng.int(2) === 0) out.writeUInt32BE(value, at);
    else out.writeUInt32LE(value, at);
    return out;
  },
  // truncate
  (rng, b) => b.subarray(0, rng.int(b.length + 1)),
  // insert random bytes
  (rng, b) => {
    const at = rng.int(b.length + 1);
    const extra = Buffer.alloc(1 + rng.int(16));
    for (let i = 0; i < extra.length; i++) extra[i] = rng.int(256);
    return Buffer.concat([b.subarray(0, at), extra, b.subarray(at)]);
  },
  // delete a run of bytes
  (rng, b) => {
    if (b.length === 0) return b;
    const at = rng.int(b.length);
    return Buffer.concat([b.subarray(0, at), b.subarray(at + 1 + rng.int(16))]);
  },
  // duplicate a run of bytes in place
  (rng, b) => {
    if (b.length === 0) return b;
    const at = rng.int(b.length);
    const run = b.subarray(at, at + 1 + rng.int(32));
    return Buffer.concat([b.subarray(0, at), run, run, b.subarray(at + run.length)]);
  },
];

/** Start offsets of every TTLV item header in `b` (walks structures; stops where the bytes stop making sense). */
export function ttlvItemOffsets(b: Buffer): number[] {
  const offsets: number[] = [];
  const walk = (start: number, end: number): void => {
    let at = start;
    while (at + 8 <= end && offsets.length < 4096) {
      offsets.push(at);
      const type = b[at + 3]!;
      const length = b.readUInt32BE(at + 4);
      if (type === 0x01) walk(at + 8, Math.min(end, at + 8 + length));
      at += 8 + (type === 0x01 ? length : Math.ceil(length / 8) * 8);
    }
  };
  walk(0, b.length);
  return offsets;
}

const ttlvMutations: Mutation[] = [
  // change an item's type byte (to any of the 11 types, or garbage)
  (rng, b) => {
    const offsets = ttlvItemOffsets(b);
    if (offsets.length === 0) return b;
    const out = Buffer.from(b);
    out[rng.pick(offsets) + 3] = rng.int(4) === 0 ? rng.int(256) : 1 + rng.int(11);
    return out;
  },
  // change an item's length: off by a little, a boundary value, or past the end
  (rng, b) => {
    const offsets = ttlvItemOffsets(b);
    if (offsets.length === 0) return b;
    const out = Buffer.from(b);
    const at = rng.pick(offsets) + 4;
    const old = out.readUInt32BE(at);
    const choice = rng.int(3);
    const value =
      choice === 0 ? old + rng.int(17) - 8 : choice === 1 ? rng.pick(INTERESTING_32) : b.length + rng.int(64);
    out.writeUInt32BE(value >>> 0, at);
    return out;
  },
  // change an item's tag (another known-looking 0x42xxxx tag, or garbage)
  (rng, b) => {
    const offsets = ttlvItemOffsets(b);
    if (offsets.length === 0) return b;
    const out = Buffer.from(b);
    const at = rng.pick(offsets);
    if (rng.int(2) === 0) out.writeUIntBE(0x420000 | rng.int(0x160), at, 3);
    else out.writeUIntBE(rng.int(0x1000000), at, 3);
    return out;
  },
  // remove one item (its header and value), leaving the parent's length as it was
  (rng, b) => {
    const offsets = ttlvItemOffsets(b);
    if (offsets.length < 2) return b;
    const at = offsets[1 + rng.int(offsets.length - 1)]!;
    const type = b[at + 3]!;
    const length = b.readUInt32BE(at + 4);
    const size = 8 + (type === 0x01 ? length : Math.ceil(length / 8) * 8);
    return Buffer.concat([b.subarray(0, at), b.subarray(at + size)]);
  },
];

/** One to four stacked byte-level mutations. */
export function mutateBytes(rng: Rng, input: Buffer): Buffer {
  let out = input;
  const rounds = 1 + rng.int(4);
  for (let i = 0; i < rounds; i++) out = rng.pick(byteMutations)(rng, out);
  return out;
}

/** One to four stacked mutations, TTLV-aware ones half the time. */
export function mutateTtlv(rng: Rng, input: Buffer): Buffer {
  let out = input;
  const rounds = 1 + rng.int(4);
  for (let i = 0; i < rounds; i++) out = rng.pick(rng.int(2) === 0 ? ttlvMutations : byteMutations)(rng, out);
  return out;
}

/** Every item of a tree with its parent structure (the root has none). */
function itemsOf(root: TtlvItem): { item: TtlvItem; parent?: StructureItem }[] {
  const out: { item: TtlvItem; parent?: StructureItem }[] = [{ item: root }];
  for (let i = 0; i < out.length; i++) {
    const { item } = out[i]!;
    if (item.type === ItemType.Structure) for (const child of item.value) out.push({ item: child, parent: item });
  }
  return out;
}

/** A value of another type under the same tag: the wrong-type answers a message layer must refuse. */
function retyped(rng: Rng, tag: number): TtlvItem {
  switch (rng.int(6)) {
    case 0:
      return { tag, type: ItemType.Integer, value: rng.pick(INTERESTING_32) | 0 };
    case 1:
      return { tag, type: ItemType.TextString, value: rng.pick(['', 'x', '\u00e9t\u00e9', '0'.repeat(300)]) };
    case 2:
      return { tag, type: ItemType.ByteString, value: Buffer.alloc(rng.int(40)) };
    case 3:
      return { tag, type: ItemType.Structure, value: [] };
    case 4:
      return { tag, type: ItemType.LongInteger, value: BigInt.asIntN(64, BigInt(rng.int(2 ** 31)) << 32n) };
    default:
      return { tag, type: ItemType.Boolean, value: rng.int(2) === 0 };
  }
}

const treeMutations: ((rng: Rng, root: TtlvItem) => void)[] = [
  // remove an item
  (rng, root) => {
    const withParent = itemsOf(root).filter((e) => e.parent);
    if (withParent.length === 0) return;
    const { item, parent } = rng.pick(withParent);
    parent!.value.splice(parent!.value.indexOf(item), 1);
  },
  // duplicate an item in place
  (rng, root) => {
    const withParent = itemsOf(root).filter((e) => e.parent);
    if (withParent.length === 0) return;
    const { item, parent } = rng.pick(withParent);
    parent!.value.splice(parent!.value.indexOf(item), 0, structuredClone(item));
  },
  // a boundary value in a number
  (rng, root) => {
    const numbers = itemsOf(root).filter((e) => typeof e.item.value === 'number');
    if (numbers.length === 0) return;
    (numbers[rng.int(numbers.length)]!.item as { value: number }).value = rng.pick(INTERESTING_32) | 0;
  },
  // another type under the same tag
  (rng, root) => {
    const withParent = itemsOf(root).filter((e) => e.parent);
    if (withParent.length === 0) return;
    const { item, parent } = rng.pick(withParent);
    parent!.value[parent!.value.indexOf(item)] = retyped(rng, item.tag);
  },
  // another tag (a neighbouring standard tag, or another item's)
  (rng, root) => {
    const all = itemsOf(root);
    const { item } = rng.pick(all);
    item.tag = rng.int(2) === 0 ? rng.pick(all).item.tag : 0x420000 | rng.int(0x160);
  },
  // move an item under another structure
  (rng, root) => {
    const all = itemsOf(root);
    const structures = all.filter((e) => e.item.type === ItemType.Structure).map((e) => e.item as StructureItem);
    const withParent = all.filter((e) => e.parent);
    if (withParent.length === 0) return;
    const { item, parent } = rng.pick(withParent);
    const target = rng.pick(structures);
    if (target === item) return;
    parent!.value.splice(parent!.value.indexOf(item), 1);
    target.value.push(item);
  },
];

/**
 * Structure-aware: decodes `frame`, edits the tree (items removed, duplicated, retyped, retagged,
 * moved, numbers set to boundary values) and encodes it again, so the bytes are well-formed TTLV
 * and the message layer behind the decoder is what gets exercised. Falls back to byte mutation
 * when `frame` does not decode.
 */
export function mutateTree(rng: Rng, frame: Buffer): Buffer {
  let tree: TtlvItem;
  try {
    tree = decode(frame);
  } catch {
    return mutateTtlv(rng, frame);
  }
  const rounds = 1 + rng.int(3);
  for (let i = 0; i < rounds; i++) rng.pick(treeMutations)(rng, tree);
  try {
    return encode(tree);
  } catch {
    return mutateTtlv(rng, frame);
  }
}
