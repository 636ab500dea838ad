/**
 * TTLV encode+decode of a realistic Get response (Symmetric Key, 32-byte AES key with attributes)
 * by our codec versus PyKMIP's own codec (kmip.core.messages + BytearrayStream) on the same bytes,
 * measured in the same run. PyKMIP parses into its typed message objects, we parse into generic
 * items: that is what each library does for a caller, so the comparison is of the real work.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import type { BenchOptions, BenchReport } from '../run.js';
import {
  Enum,
  ItemType,
  Tag,
  byteString,
  dateTime,
  decode,
  encode,
  enumeration,
  integer,
  structure,
  textString,
  type TtlvItem,
} from '../../src/kmip/ttlv/index.js';

const PYTHON = process.env.PYKMIP_PYTHON ?? '/usr/bin/python3';

function attribute(name: string, value: TtlvItem): TtlvItem {
  return structure(Tag.Attribute, [textString(Tag.AttributeName, name), { ...value, tag: Tag.AttributeValue }]);
}

const BENCH_UID = '1f165d65-1b4d-4f7d-8e9c-0b8f0a2e5c11';
const BENCH_TIME = new Date('2026-11-24T00:00:00Z');

/** A KMIP 1.2 Get response for a 256-bit AES key whose Key Value holds `keyValue`. */
function getResponseWith(keyValue: TtlvItem[]): TtlvItem {
  return structure(Tag.ResponseMessage, [
    structure(Tag.ResponseHeader, [
      structure(Tag.ProtocolVersion, [integer(Tag.ProtocolVersionMajor, 1), integer(Tag.ProtocolVersionMinor, 2)]),
      dateTime(Tag.TimeStamp, BENCH_TIME),
      integer(Tag.BatchCount, 1),
    ]),
    structure(Tag.BatchItem, [
      enumeration(Tag.Operation, Enum.Operation.Get),
      enumeration(Tag.ResultStatus, Enum.ResultStatus.Success),
      structure(Tag.ResponsePayload, [
        enumeration(Tag.ObjectType, Enum.ObjectType.SymmetricKey),
        textString(Tag.UniqueIdentifier, BENCH_UID),
        structure(Tag.SymmetricKey, [
          structure(Tag.KeyBlock, [
            enumeration(Tag.KeyFormatType, Enum.KeyFormatType.Raw),
            structure(Tag.KeyValue, keyValue),
            enumeration(Tag.CryptographicAlgorithm, Enum.CryptographicAlgorithm.AES),
            integer(Tag.CryptographicLength, 256),
          ]),
        ]),
      ]),
    ]),
  ]);
}

/** A Get response carrying the key's attributes in the key value (~768 bytes). */
export function getResponse(): TtlvItem {
  return getResponseWith([
    byteString(Tag.KeyMaterial, randomBytes(32)),
    attribute('Unique Identifier', textString(0, BENCH_UID)),
    attribute(
      'Name',
      structure(0, [
        textString(Tag.NameValue, 'kmip-agent/appliance-0001/5000c500a1b2c3d4'),
        enumeration(Tag.NameType, Enum.NameType.UninterpretedTextString),
      ]),
    ),
    attribute('Object Group', textString(0, 'kmip-agent/appliance-0001')),
    attribute(
      'Cryptographic Usage Mask',
      integer(0, Enum.CryptographicUsageMask.Encrypt | Enum.CryptographicUsageMask.Decrypt),
    ),
    attribute('State', enumeration(0, Enum.State.Active)),
    attribute('Initial Date', dateTime(0, BENCH_TIME)),
    attribute('Activation Date', dateTime(0, BENCH_TIME)),
  ]);
}

/** A ~300-byte Get response: a 256-bit AES key, no attributes (what a boot unlock fetches per drive). */
export function smallGetResponse(): TtlvItem {
  return getResponseWith([byteString(Tag.KeyMaterial, randomBytes(32))]);
}

const PY_SCRIPT = `
import sys, time, json
from kmip.core.messages import messages
from kmip.core.utils import BytearrayStream
data = bytes.fromhex(sys.argv[1]); n = int(sys.argv[2])
def once():
    m = messages.ResponseMessage()
    m.read(BytearrayStream(data))
    out = BytearrayStream()
    m.write(out)
    return out.buffer
out = bytes(once())
same = out == data
t = time.process_time()
for _ in range(n): once()
dt = time.process_time() - t
print(json.dumps({"rate": n / dt, "identical": same, "extra": len(out) - len(data)}))
`;

function countAlignedTexts(item: TtlvItem): number {
  if (item.type === ItemType.Structure) return item.value.reduce((n, c) => n + countAlignedTexts(c), 0);
  return item.type === ItemType.TextString && Buffer.byteLength(item.value) % 8 === 0 ? 1 : 0;
}

/**
 * Messages per CPU-second of this process: the machine is shared (2 cores, other work on them), and
 * wall-clock rates there measure the neighbours; PyKMIP's side is timed the same way (process_time).
 */
function measureOurs(bytes: Buffer, seconds: number): number {
  let n = 0;
  const start = process.cpuUsage();
  const limit = seconds * 1e6;
  let used = 0;
  while (used < limit) {
    for (let i = 0; i < 500; i++) encode(decode(bytes));
    n += 500;
    const c = process.cpuUsage(start);
    used = c.user + c.system;
  }
  return n / (used / 1e6);
}

export async function run(options: BenchOptions): Promise<BenchReport> {
  const seconds = options.quick ? 0.2 : 2;
  const bytes = encode(getResponse());
  const small = encode(smallGetResponse());
  for (const b of [bytes, small])
    if (!encode(decode(b)).equals(b)) throw new Error('our codec does not round-trip the bench message');
  measureOurs(bytes, seconds / 4); // warm-up
  const ours = measureOurs(bytes, seconds);
  measureOurs(small, seconds / 4);
  const oursSmall = measureOurs(small, seconds);
  const py = spawnSync(PYTHON, ['-c', PY_SCRIPT, bytes.toString('hex'), options.quick ? '200' : '3000'], {
    encoding: 'utf8',
  });
  if (py.status !== 0) throw new Error(`PyKMIP baseline failed: ${py.stderr}`);
  const baseline = JSON.parse(py.stdout) as { rate: number; identical: boolean; extra: number };
  // PyKMIP's TextString.read_value leaves padding_length = 8 for lengths that are multiples of 8, so a
  // message it read and writes back grows by 8 zero bytes per such string (our decoder refuses those).
  const aligned = countAlignedTexts(decode(bytes));
  return {
    part: 'kmip-ttlv',
    lines: [
      {
        name: `TTLV decode+encode of a ${bytes.length}-byte Get response (Symmetric Key + 7 attributes)`,
        value: ours,
        unit: 'messages/CPU-s',
        better: 'higher',
        baseline: { name: 'PyKMIP 0.10 ResponseMessage read+write, same bytes', value: baseline.rate },
        target: 100,
      },
      {
        name: `TTLV decode+encode of a ${small.length}-byte Get response (Symmetric Key, no attributes)`,
        value: oursSmall,
        unit: 'messages/CPU-s',
        better: 'higher',
        // An absolute aim, not a measured baseline: the 250k messages/s on this 2-core machine.
        baseline: { name: 'aim of issue 12: 250k messages/s', value: 250_000 },
        target: 1,
      },
    ],
    notes: [
      baseline.identical
        ? 'PyKMIP re-encodes the same bytes identically'
        : `PyKMIP re-encodes ${baseline.extra} bytes longer (its read-then-write bug adds 8 zero bytes after each of the ${aligned} text strings whose length is a multiple of 8: expected ${8 * aligned})`,
      'ours: generic item tree with strict validation; PyKMIP: typed message objects',
      'rates per CPU-second of the measuring process on both sides (the machine is shared; wall-clock rates track its load)',
    ],
  };
}
