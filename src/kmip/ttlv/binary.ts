/**
 * Binary TTLV: a Writer cursor that grows one buffer and back-patches structure lengths, and a Reader
 * cursor that validates strictly (lengths per type, zero padding, UTF-8, minimal big integers, exact
 * structure fill, depth and size limits) before allocating anything for an item.
 */
import { TtlvError, TtlvErrorCode } from './errors.js';
import { ItemType, type TtlvItem } from './types.js';

export interface DecodeLimits {
  /** Deepest structure nesting accepted (the top-level item is depth 1). Default 32, at most 1000. */
  maxDepth?: number;
  /** Largest encoded item accepted, header included. Default 16 MiB. */
  maxBytes?: number;
}
export const DEFAULT_MAX_DEPTH = 32;
/** Depth limits above this are lowered to it: the readers recurse once per level. */
export const MAX_DEPTH_CAP = 1000;
export const DEFAULT_MAX_BYTES = 16 * 1024 * 1024;
export const HEADER_LENGTH = 8;

const INT32_MIN = -0x80000000;
const INT32_MAX = 0x7fffffff;
const UINT32_MAX = 0xffffffff;
const INT64_MIN = -(1n << 63n);
const INT64_MAX = (1n << 63n) - 1n;

// Arithmetic, not bit operations: lengths reach 2^32 - 1, beyond int32.
const padded = (length: number): number => length + ((8 - (length % 8)) % 8);

const TWO_32 = 0x1_0000_0000;
const SAFE_MIN = BigInt(Number.MIN_SAFE_INTEGER);
const SAFE_MAX = BigInt(Number.MAX_SAFE_INTEGER);

/** Big-endian 32 bits at `p` (the low 32 bits of `value`, two's complement for negatives). */
function put32(b: Uint8Array, p: number, value: number): void {
  b[p] = (value >>> 24) & 0xff;
  b[p + 1] = (value >>> 16) & 0xff;
  b[p + 2] = (value >>> 8) & 0xff;
  b[p + 3] = value & 0xff;
}

/** Unsigned big-endian 32 bits at `p`. */
const get32 = (b: Uint8Array, p: number): number =>
  ((b[p]! << 24) | (b[p + 1]! << 16) | (b[p + 2]! << 8) | b[p + 3]!) >>> 0;

// String.prototype.isWellFormed exists from Node 20 but not in the ES2023 type library.
const isWellFormed = (text: string): boolean => (text as unknown as { isWellFormed(): boolean }).isWellFormed();

function encodeError(reason: string, tag: number): TtlvError {
  return new TtlvError(TtlvErrorCode.BadValue, reason, { tag });
}

/** Two's complement, big-endian, sign-extended to a multiple of 8 bytes with the fewest bytes possible. */
export function bigIntBytes(value: bigint): Buffer {
  let bytes = 1;
  // Smallest n with -2^(8n-1) <= value < 2^(8n-1).
  while (value >= 1n << BigInt(8 * bytes - 1) || value < -(1n << BigInt(8 * bytes - 1))) bytes++;
  const length = padded(bytes);
  const unsigned = value < 0n ? (1n << BigInt(8 * length)) + value : value;
  return Buffer.from(unsigned.toString(16).padStart(length * 2, '0'), 'hex');
}

export class Writer {
  private buf: Buffer;
  private pos = 0;

  constructor(initialSize = 512) {
    this.buf = Buffer.alloc(initialSize);
  }

  get capacity(): number {
    return this.buf.length;
  }

  private ensure(extra: number): void {
    const need = this.pos + extra;
    if (need <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < need) size *= 2;
    const grown = Buffer.alloc(size);
    this.buf.copy(grown, 0, 0, this.pos);
    // The old buffer may hold key material: wipe it rather than leave it to the GC.
    this.buf.fill(0);
    this.buf = grown;
  }

  // Plain byte stores: the hot path of encoding (Buffer's write helpers re-validate every argument).
  private header(tag: number, type: number, length: number): void {
    const b = this.buf;
    const p = this.pos;
    b[p] = tag >>> 16;
    b[p + 1] = (tag >>> 8) & 0xff;
    b[p + 2] = tag & 0xff;
    b[p + 3] = type;
    put32(b, p + 4, length);
    this.pos = p + HEADER_LENGTH;
  }

  write(item: TtlvItem): this {
    const { tag } = item;
    if (!Number.isInteger(tag) || tag < 0 || tag > 0xffffff) throw encodeError(`tag ${tag} is not a 3-byte value`, tag);
    switch (item.type) {
      case ItemType.Structure: {
        this.ensure(HEADER_LENGTH);
        const start = this.pos;
        this.header(tag, item.type, 0);
        const children = item.value;
        for (let i = 0; i < children.length; i++) this.write(children[i]!);
        put32(this.buf, start + 4, this.pos - start - HEADER_LENGTH);
        return this;
      }
      case ItemType.Integer:
        return this.int32(tag, item.type, item.value, INT32_MIN, INT32_MAX);
      case ItemType.Enumeration:
      case ItemType.Interval:
        return this.int32(tag, item.type, item.value, 0, UINT32_MAX);
      case ItemType.LongInteger:
      case ItemType.DateTime:
      case ItemType.DateTimeExtended: {
        const v = item.value;
        if (typeof v !== 'bigint' || v < INT64_MIN || v > INT64_MAX)
          throw encodeError(`${String(v)} is not a signed 64-bit bigint`, tag);
        this.ensure(16);
        this.header(tag, item.type, 8);
        if (v >= SAFE_MIN && v <= SAFE_MAX) {
          // Dates and most long integers fit a double exactly: two 32-bit halves, no BigInt arithmetic.
          const n = Number(v);
          const high = Math.floor(n / TWO_32);
          put32(this.buf, this.pos, high);
          put32(this.buf, this.pos + 4, n - high * TWO_32);
        } else this.buf.writeBigInt64BE(v, this.pos);
        this.pos += 8;
        return this;
      }
      case ItemType.Boolean: {
        if (typeof item.value !== 'boolean') throw encodeError('boolean value expected', tag);
        this.ensure(16);
        this.header(tag, item.type, 8);
        put32(this.buf, this.pos, 0);
        put32(this.buf, this.pos + 4, item.value ? 1 : 0);
        this.pos += 8;
        return this;
      }
      case ItemType.BigInteger: {
        if (typeof item.value !== 'bigint') throw encodeError('bigint value expected', tag);
        return this.bytes(tag, item.type, bigIntBytes(item.value));
      }
      case ItemType.ByteString:
        if (!(item.value instanceof Uint8Array)) throw encodeError('Uint8Array value expected', tag);
        return this.bytes(tag, item.type, item.value);
      case ItemType.TextString: {
        const text = item.value;
        if (typeof text !== 'string') throw encodeError('string value expected', tag);
        // Short ASCII text (UIDs, names, attribute names: most of KMIP's) is its own UTF-8: stored byte by byte.
        let ascii = text.length <= 64;
        for (let i = 0; i < text.length && ascii; i++) ascii = text.charCodeAt(i) < 0x80;
        if (ascii) {
          this.ensure(HEADER_LENGTH + padded(text.length));
          this.header(tag, item.type, text.length);
          const b = this.buf;
          const p = this.pos;
          for (let i = 0; i < text.length; i++) b[p + i] = text.charCodeAt(i);
          this.pos = p + text.length;
          this.zeroPad(text.length);
          return this;
        }
        if (!isWellFormed(text)) throw encodeError('text has unpaired surrogates (not UTF-8 encodable)', tag);
        const length = Buffer.byteLength(text, 'utf8');
        this.ensure(HEADER_LENGTH + padded(length));
        this.header(tag, item.type, length);
        this.buf.write(text, this.pos, 'utf8');
        this.pos += length;
        this.zeroPad(length);
        return this;
      }
      default: {
        const unknown = item as { type: unknown };
        throw new TtlvError(TtlvErrorCode.BadType, `unknown item type ${String(unknown.type)}`, { tag });
      }
    }
  }

  private int32(tag: number, type: number, value: number, min: number, max: number): this {
    if (!Number.isInteger(value) || value < min || value > max)
      throw encodeError(`${value} is out of range [${min}, ${max}]`, tag);
    this.ensure(16);
    this.header(tag, type, 4);
    const b = this.buf;
    const p = this.pos;
    // Two's complement for negatives: the same four bytes either way once shifted as 32 bits.
    put32(b, p, value);
    b[p + 4] = b[p + 5] = b[p + 6] = b[p + 7] = 0;
    this.pos = p + 8;
    return this;
  }

  private bytes(tag: number, type: number, value: Uint8Array): this {
    this.ensure(HEADER_LENGTH + padded(value.length));
    this.header(tag, type, value.length);
    if (value.length <= 64) {
      // Short values (keys, nonces) by hand: set() has a fixed cost above a short loop's.
      const b = this.buf;
      const p = this.pos;
      for (let i = 0; i < value.length; i++) b[p + i] = value[i]!;
    } else this.buf.set(value, this.pos);
    this.pos += value.length;
    this.zeroPad(value.length);
    return this;
  }

  private zeroPad(length: number): void {
    const pad = padded(length) - length;
    const b = this.buf;
    const p = this.pos;
    for (let i = 0; i < pad; i++) b[p + i] = 0;
    this.pos = p + pad;
  }

  /** The bytes written so far, copied out; the internal buffer is wiped. */
  finish(): Buffer {
    // Every byte is overwritten by the copy: no zero fill needed, and no shared pool.
    const out = Buffer.allocUnsafeSlow(this.pos);
    this.buf.copy(out, 0, 0, this.pos);
    this.wipe();
    return out;
  }

  /** Zeroes what was written and starts over. */
  wipe(): void {
    this.buf.fill(0, 0, this.pos);
    this.pos = 0;
  }
}

/** Encodes one item (usually a Request Message) to TTLV bytes. */
// Encoding is synchronous and never re-entered, so one scratch writer serves every call (wiped after each).
let scratch = new Writer(4096);

export function encode(item: TtlvItem): Buffer {
  const writer = scratch;
  try {
    return writer.write(item).finish();
  } finally {
    // On a refused item, key material written so far must not stay behind in the scratch buffer.
    writer.wipe();
    // A rare large message does not keep its scratch space alive.
    if (writer.capacity > 65536) scratch = new Writer(4096);
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

export class Reader {
  private pos = 0;
  private readonly maxDepth: number;

  /** The input as a Buffer (no copy), for its latin1 slice on the ASCII fast path of text strings. */
  private readonly bytes: Buffer;

  constructor(
    private readonly buf: Uint8Array,
    limits: DecodeLimits = {},
  ) {
    this.bytes = Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
    this.maxDepth = Math.min(limits.maxDepth ?? DEFAULT_MAX_DEPTH, MAX_DEPTH_CAP);
    const maxBytes = limits.maxBytes ?? DEFAULT_MAX_BYTES;
    if (buf.length > maxBytes)
      throw new TtlvError(TtlvErrorCode.TooLarge, `input of ${buf.length} bytes exceeds the limit of ${maxBytes}`, {
        offset: 0,
      });
  }

  /** Reads exactly one item that spans the whole input. */
  readAll(): TtlvItem {
    const item = this.item(this.buf.length, 1);
    if (this.pos !== this.buf.length)
      throw new TtlvError(TtlvErrorCode.TrailingBytes, `${this.buf.length - this.pos} bytes after the item`, {
        offset: this.pos,
      });
    return item;
  }

  private fail(code: TtlvErrorCode, reason: string, offset: number, tag?: number): never {
    throw new TtlvError(code, reason, { offset, tag });
  }

  // Bytes are read by hand: a DataView per message costs more than the reads it would serve.
  private item(end: number, depth: number): TtlvItem {
    const b = this.buf;
    const start = this.pos;
    if (end - start < HEADER_LENGTH) {
      const code = end === this.buf.length ? TtlvErrorCode.Truncated : TtlvErrorCode.BadLength;
      this.fail(code, `${end - start} bytes left where an 8-byte item header is needed`, start);
    }
    const tag = (b[start]! << 16) | (b[start + 1]! << 8) | b[start + 2]!;
    const type = b[start + 3]!;
    const length = get32(b, start + 4);
    const body = start + HEADER_LENGTH;
    const fixed = type < FIXED_LENGTH.length ? FIXED_LENGTH[type]! : -1;
    if (fixed < 0) this.fail(TtlvErrorCode.BadType, `unknown item type 0x${type.toString(16)}`, start, tag);
    if (fixed > 0 && length !== fixed)
      this.fail(TtlvErrorCode.BadLength, `length ${length} for a type of length ${fixed}`, start, tag);
    if (type === ItemType.Structure && length % 8 !== 0)
      this.fail(TtlvErrorCode.BadLength, 'structure length not a multiple of 8', start, tag);
    const next = body + padded(length);
    if (next > end) {
      // Past the enclosing structure but inside the buffer is a lie about lengths; past the buffer, truncation.
      const code = end === this.buf.length ? TtlvErrorCode.Truncated : TtlvErrorCode.BadLength;
      const where = end === this.buf.length ? 'the input' : 'its structure';
      this.fail(code, `item of ${padded(length)} value bytes runs past the end of ${where}`, start, tag);
    }
    for (let i = body + length; i < next; i++)
      if (b[i] !== 0) this.fail(TtlvErrorCode.BadPadding, 'non-zero padding byte', i, tag);
    this.pos = next;
    switch (type) {
      case ItemType.Structure: {
        if (depth > this.maxDepth)
          this.fail(TtlvErrorCode.TooDeep, `structures nested deeper than ${this.maxDepth}`, start, tag);
        const children: TtlvItem[] = [];
        this.pos = body;
        while (this.pos < next) children.push(this.item(next, depth + 1));
        return { tag, type, value: children };
      }
      case ItemType.Integer:
        return { tag, type, value: get32(b, body) | 0 };
      case ItemType.Enumeration:
      case ItemType.Interval:
        return { tag, type, value: get32(b, body) };
      case ItemType.LongInteger:
      case ItemType.DateTime:
      case ItemType.DateTimeExtended: {
        const high = get32(b, body) | 0;
        // Within 2^53 (dates, most counts) the value is exact as a double: one conversion, no BigInt shifts.
        if (high >= -0x200000 && high < 0x200000)
          return { tag, type, value: BigInt(high * TWO_32 + get32(b, body + 4)) };
        return { tag, type, value: this.bytes.readBigInt64BE(body) };
      }
      case ItemType.Boolean: {
        const high = get32(b, body);
        const low = get32(b, body + 4);
        if (high !== 0 || low > 1) {
          const v = this.bytes.readBigUInt64BE(body);
          this.fail(TtlvErrorCode.BadValue, `boolean value ${v} is neither 0 nor 1`, body, tag);
        }
        return { tag, type, value: low === 1 };
      }
      case ItemType.TextString: {
        // Most KMIP text (UIDs, names, attribute names) is ASCII, where latin1 is UTF-8 and needs no validation.
        let ascii = true;
        for (let i = body; i < body + length && ascii; i++) ascii = b[i]! < 0x80;
        if (ascii) return { tag, type, value: this.bytes.toString('latin1', body, body + length) };
        let value: string;
        try {
          value = utf8.decode(this.buf.subarray(body, body + length));
        } catch {
          this.fail(TtlvErrorCode.BadValue, 'text string is not valid UTF-8', body, tag);
        }
        return { tag, type, value };
      }
      case ItemType.ByteString: {
        // A copy: the caller may reuse or wipe the input buffer.
        const value = Buffer.allocUnsafe(length);
        if (length <= 64) for (let i = 0; i < length; i++) value[i] = b[body + i]!;
        else this.bytes.copy(value, 0, body, body + length);
        return { tag, type, value };
      }
      case ItemType.BigInteger:
        return { tag, type, value: this.bigInteger(body, length, start, tag) };
      default:
        return this.fail(TtlvErrorCode.BadType, `unknown item type 0x${type.toString(16)}`, start, tag);
    }
  }

  private bigInteger(body: number, length: number, start: number, tag: number): bigint {
    if (length === 0 || length % 8 !== 0)
      this.fail(TtlvErrorCode.BadLength, `big integer length ${length} is not a positive multiple of 8`, start, tag);
    const bytes = this.buf.subarray(body, body + length);
    if (length > 8) {
      // Minimal sign extension: a leading 8-byte block may not be pure sign bytes matching the next bit.
      const sign = bytes[0];
      if (sign === 0x00 || sign === 0xff) {
        let redundant = (bytes[8] & 0x80) === (sign & 0x80);
        for (let i = 1; i < 8 && redundant; i++) redundant = bytes[i] === sign;
        if (redundant) this.fail(TtlvErrorCode.BadValue, 'big integer has redundant sign padding', body, tag);
      }
    }
    const unsigned = BigInt('0x' + Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex'));
    return (bytes[0] & 0x80) !== 0 ? unsigned - (1n << BigInt(8 * length)) : unsigned;
  }
}

/** Value length each type requires; 0 means variable, -1 an unknown type. Indexed by type byte. */
const FIXED_LENGTH: readonly number[] = (() => {
  const fixed = new Array<number>(ItemType.DateTimeExtended + 1).fill(-1);
  fixed[ItemType.Structure] = 0;
  fixed[ItemType.Integer] = 4;
  fixed[ItemType.LongInteger] = 8;
  fixed[ItemType.BigInteger] = 0;
  fixed[ItemType.Enumeration] = 4;
  fixed[ItemType.Boolean] = 8;
  fixed[ItemType.TextString] = 0;
  fixed[ItemType.ByteString] = 0;
  fixed[ItemType.DateTime] = 8;
  fixed[ItemType.Interval] = 4;
  fixed[ItemType.DateTimeExtended] = 8;
  return fixed;
})();

/** Decodes exactly one TTLV item from `buf`; any violation is a TtlvError. */
export function decode(buf: Uint8Array, limits?: DecodeLimits): TtlvItem {
  return new Reader(buf, limits).readAll();
}

/**
 * Total frame length (header included) of the message whose first 8 bytes are `header`, for the
 * network layer to know how much to read. Refuses non-structures and sizes over the limit from the
 * header alone, before anything is allocated.
 */
export function decodeMessageLength(header: Uint8Array, limits?: Pick<DecodeLimits, 'maxBytes'>): number {
  if (header.length < HEADER_LENGTH)
    throw new TtlvError(TtlvErrorCode.Truncated, `${header.length} bytes where an 8-byte header is needed`, {
      offset: 0,
    });
  const tag = (header[0] << 16) | (header[1] << 8) | header[2];
  if (header[3] !== ItemType.Structure)
    throw new TtlvError(TtlvErrorCode.BadType, `message type 0x${header[3].toString(16)} is not a structure`, {
      offset: 0,
      tag,
    });
  const length = ((header[4] << 24) | (header[5] << 16) | (header[6] << 8) | header[7]) >>> 0;
  const maxBytes = limits?.maxBytes ?? DEFAULT_MAX_BYTES;
  if (length % 8 !== 0)
    throw new TtlvError(TtlvErrorCode.BadLength, 'structure length not a multiple of 8', { offset: 0, tag });
  if (HEADER_LENGTH + length > maxBytes)
    throw new TtlvError(TtlvErrorCode.TooLarge, `message of ${HEADER_LENGTH + length} bytes exceeds ${maxBytes}`, {
      offset: 0,
      tag,
    });
  return HEADER_LENGTH + length;
}
