/**
 * The fuzz targets: each takes a corpus of real inputs, mutates one per call (seeded: `inputRng(seed,
 * index)` names it) and feeds it to one layer. A call returns 'valid' when the layer accepted the
 * input, and throws what the layer threw otherwise; the runner (test/fuzz/runner.ts) counts a
 * KmipAgentError as a typed refusal and anything else as a failure.
 *
 * - ttlv-decode: mutated PyKMIP response frames through the TTLV decoder.
 * - kmip-client-response: the same frames through KmipClient's response handling (decode, Response
 *   Message checks, batch matching, each operation's payload decoder), with the request that was sent.
 * - tcg-parsers: ComPacket, token, method response and Level 0 discovery parsers of the addon.
 * - emulator-compacket: mutated host ComPackets sent to the emulated drive (IF-SEND, then IF-RECV).
 * - tcg-host-stack: the host session layer over a TPer answering mutated responses and discovery.
 * - sed-opal-structs: mutated structs and return values from the kernel's sed-opal ioctls.
 * - luks2-header: mutated LUKS2 header areas (JSON edited with checksums recomputed, or raw bytes).
 */
import { randomBytes } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tcgNative } from '../../src/drives/backend.js';
import { createEmulatedDrive, openEmulatedDrive } from '../../src/drives/emulator.js';
import { checkKey, luksInfo } from '../../src/drives/luks.js';
import { OpalDrive } from '../../src/drives/opal.js';
import { KmipClient } from '../../src/kmip/client.js';
import type { KmipConnection } from '../../src/kmip/connection.js';
import type { ProtocolVersion } from '../../src/kmip/fields.js';
import * as ops from '../../src/kmip/operations.js';
import { decode } from '../../src/kmip/ttlv/binary.js';
import { packageRoot } from '../../src/native/addon.js';
import { testSeams, type ScriptedAnswer } from '../support/addon.js';
import { BINARY_HEADER, fixHeaderChecksum, HEADER_AREA, luksFormat } from '../luks/images.js';
import { discoveryFixtures } from '../support/shared.js';
import { closed, getResult, FIRST_HSN, propertiesOk, syncSession } from '../support/scripted-tper.js';
import { mutateBytes, mutateTree, mutateTtlv, type Rng } from './mutate.js';

export type Outcome = 'valid';

export interface PreparedTarget {
  /** Mutates one input with `rng` and runs it. */
  one(rng: Rng): Outcome | Promise<Outcome>;
  close(): Promise<void>;
}

export interface FuzzTarget {
  name: string;
  /** Reaches C++ (run again under the sanitizers by `npm run fuzz:native`). */
  native: boolean;
  /** Inputs in the full run (`npm run fuzz`). */
  fullCount: number;
  /** An input slower than this is counted as a hang. */
  timeBoundMs: number;
  prepare(): Promise<PreparedTarget>;
}

// ---------------------------------------------------------------- KMIP corpus (captured from PyKMIP)

type OperationName = {
  [K in keyof typeof ops]: (typeof ops)[K] extends { spec: ops.OperationSpec<never, unknown> } ? K : never;
}[keyof typeof ops];

export interface CorpusRequest {
  op: OperationName;
  request: unknown;
}

export interface KmipCorpusEntry {
  name: string;
  version: ProtocolVersion;
  /** The client's batch counter before the request (batch item IDs are numbered from it). */
  batchBase: number;
  requests: CorpusRequest[];
  /** The response frame as PyKMIP sent it, hex. */
  response: string;
}

export interface KmipCorpus {
  capturedFrom: string;
  entries: KmipCorpusEntry[];
}

/** The committed corpus, beside the sources (the compiled runner in dist/ reads it there too). */
export const CORPUS_DIR = join(packageRoot(), 'test', 'fuzz', 'corpus');

export function kmipCorpus(): KmipCorpus {
  return JSON.parse(readFileSync(join(CORPUS_DIR, 'kmip-responses.json'), 'utf8')) as KmipCorpus;
}

/** The operation a corpus entry names, with its JSON request. */
export function toBatchRequest(r: CorpusRequest): ops.BatchRequest {
  return (ops[r.op] as unknown as (request: unknown) => ops.BatchRequest)(r.request);
}

function kmipFrames(): Buffer[] {
  return kmipCorpus().entries.map((e) => Buffer.from(e.response, 'hex'));
}

const ttlvDecode: FuzzTarget = {
  name: 'ttlv-decode',
  native: false,
  fullCount: 1_000_000,
  timeBoundMs: 100,
  prepare() {
    const frames = kmipFrames();
    return Promise.resolve({
      one(rng) {
        decode(mutateTtlv(rng, rng.pick(frames)));
        return 'valid';
      },
      close: () => Promise.resolve(),
    });
  },
};

/** What the fuzzer reaches inside KmipClient: one request/response exchange on a given connection. */
interface ClientInternals {
  batchCounter: number;
  send(connection: KmipConnection, requests: ops.BatchRequest[], version: ProtocolVersion): Promise<unknown>;
}

const kmipClientResponse: FuzzTarget = {
  name: 'kmip-client-response',
  native: false,
  fullCount: 1_000_000,
  timeBoundMs: 100,
  prepare() {
    const entries = kmipCorpus().entries.map((e) => ({
      ...e,
      frame: Buffer.from(e.response, 'hex'),
      batch: e.requests.map(toBatchRequest),
    }));
    // No socket: the connection hands back the mutated frame as the server's answer.
    let answer: Buffer = Buffer.alloc(0);
    const connection = {
      closed: false,
      exchanges: 1,
      exchange: () => Promise.resolve(answer),
      close() {},
    } as unknown as KmipConnection;
    const client = new KmipClient({ host: 'fuzz.invalid', port: 5696, ca: '', cert: '', key: '' });
    const internals = client as unknown as ClientInternals;
    return Promise.resolve({
      async one(rng) {
        const entry = rng.pick(entries);
        // Half well-formed TTLV with a wrong message inside, half damaged bytes.
        // A copy: the client zeroes every frame it received, and a mutation may share the corpus bytes.
        answer = Buffer.from(rng.int(2) === 0 ? mutateTree(rng, entry.frame) : mutateTtlv(rng, entry.frame));
        internals.batchCounter = entry.batchBase;
        await internals.send(connection, entry.batch, entry.version);
        return 'valid' as const;
      },
      close: () => Promise.resolve(),
    });
  },
};

// ---------------------------------------------------------------- TCG

const tcg = tcgNative();

/** ComPackets a TPer sends (scripted answers built with the addon's own framing and codec). */
function tperResponses(): Buffer[] {
  return [
    propertiesOk,
    syncSession(FIRST_HSN),
    getResult(FIRST_HSN, [{ name: 3, value: Buffer.from('MSID-FUZZ-0001') }]),
    getResult(FIRST_HSN, [
      { name: 3, value: 0 },
      { name: 5, value: 1 },
      { name: 7, value: 1 },
    ]),
    closed(FIRST_HSN),
  ];
}

/** A host ComPacket holding one method call (or CloseSession), as the emulator's tests build them. */
function hostPacket(tsn: number, hsn: number, values: unknown[]): Buffer {
  return tcg.buildComPacket({ comId: 0x07fe, tperSession: tsn, hostSession: hsn, payload: tcg.encodeTokens(values) });
}
const CALL = { token: 'CALL' };
const EOD = { token: 'EOD' };
const uid = (hex: string) => ({ uid: hex });
const SMUID = uid('00000000000000ff');

function hostPackets(): Buffer[] {
  return [
    // Properties
    hostPacket(0, 0, [CALL, SMUID, uid('000000000000ff01'), [], EOD, [0, 0, 0]]),
    // StartSession to the Admin SP as Anybody, read-only and read-write
    hostPacket(0, 0, [CALL, SMUID, uid('000000000000ff02'), [100, uid('0000020500000001'), 0], EOD, [0, 0, 0]]),
    hostPacket(0, 0, [CALL, SMUID, uid('000000000000ff02'), [101, uid('0000020500000002'), 1], EOD, [0, 0, 0]]),
    // Get C_PIN_MSID's PIN column inside session 1/100
    hostPacket(1, 100, [
      CALL,
      uid('0000000b00008402'),
      uid('0000000600000016'),
      [
        [
          { name: 3, value: 3 },
          { name: 4, value: 3 },
        ],
      ],
      EOD,
      [0, 0, 0],
    ]),
    // CloseSession
    hostPacket(1, 100, [{ token: 'EOS' }]),
  ];
}

const tcgParsers: FuzzTarget = {
  name: 'tcg-parsers',
  native: true,
  fullCount: 300_000,
  timeBoundMs: 100,
  prepare() {
    const packets = [...tperResponses(), ...hostPackets()];
    const payloads = packets.map((p) => tcg.parseComPacket(p).packets[0]!.subpackets[0]!.payload);
    const discoveries = discoveryFixtures().map((f) => f.data);
    const parsers: [Buffer[], (b: Buffer) => unknown][] = [
      [packets, (b) => tcg.parseComPacket(b)],
      [payloads, (b) => tcg.decodeTokens(b)],
      [payloads, (b) => tcg.decodeValues(b)],
      [payloads, (b) => tcg.parseMethodResponse(b)],
      [discoveries, (b) => tcg.parseDiscovery(b)],
    ];
    return Promise.resolve({
      one(rng) {
        const [inputs, parse] = rng.pick(parsers);
        parse(mutateBytes(rng, rng.pick(inputs)));
        return 'valid';
      },
      close: () => Promise.resolve(),
    });
  },
};

/** A temp directory for a target's images, with the emulator's volatile RAM file kept inside it. */
function scratch(prefix: string): { dir: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), `kmip-agent-fuzz-${prefix}-`));
  const previous = process.env.KMIP_AGENT_EMU_RAM_DIR;
  process.env.KMIP_AGENT_EMU_RAM_DIR = dir;
  return {
    dir,
    remove() {
      if (previous === undefined) delete process.env.KMIP_AGENT_EMU_RAM_DIR;
      else process.env.KMIP_AGENT_EMU_RAM_DIR = previous;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const emulatorComPacket: FuzzTarget = {
  name: 'emulator-compacket',
  native: true,
  fullCount: 50_000,
  timeBoundMs: 1000,
  async prepare() {
    const space = scratch('emu');
    const image = join(space.dir, 'drive.img');
    await createEmulatedDrive(image, 1, 'FUZZ-0001');
    const handle = await openEmulatedDrive(image);
    const packets = hostPackets();
    return {
      async one(rng) {
        const packet = mutateBytes(rng, rng.pick(packets));
        // Mostly the base ComID; sometimes another, which the TPer must refuse.
        const comId = rng.int(8) === 0 ? rng.int(0x10000) : 0x07fe;
        await handle.ifSend(1, comId, packet);
        await handle.ifRecv(1, comId, rng.int(8) === 0 ? rng.int(4096) : 65536);
        return 'valid' as const;
      },
      async close() {
        await handle.close();
        space.remove();
      },
    };
  },
};

const tcgHostStack: FuzzTarget = {
  name: 'tcg-host-stack',
  native: true,
  fullCount: 50_000,
  timeBoundMs: 1000,
  prepare() {
    const seams = testSeams();
    const discoveries = discoveryFixtures().map((f) => f.data);
    const [properties, sync, msid, , close] = tperResponses();
    const flows: [Buffer[], (d: OpalDrive) => Promise<unknown>][] = [
      [[properties!, sync!, msid!, close!], (d) => d.readMsid()],
      [[properties!, sync!, msid!, close!], (d) => d.status()],
      [[], (d) => d.discover()],
    ];
    return Promise.resolve({
      async one(rng) {
        const [answers, flow] = rng.pick(flows);
        const discovery = rng.int(2) === 0 ? mutateBytes(rng, rng.pick(discoveries)) : rng.pick(discoveries);
        // Mutate one or two of the answers, leave the rest as a real TPer would send them.
        const responses = answers.map((a) =>
          rng.int(Math.max(1, answers.length / 2)) === 0 ? mutateBytes(rng, a) : a,
        );
        const drive = OpalDrive.fromBackend('scripted:fuzz', seams.openScriptedDrive(discovery, responses));
        try {
          await flow(drive);
        } finally {
          await drive.close();
        }
        return 'valid' as const;
      },
      close: () => Promise.resolve(),
    });
  },
};

const sedOpalStructs: FuzzTarget = {
  name: 'sed-opal-structs',
  native: true,
  fullCount: 100_000,
  timeBoundMs: 1000,
  prepare() {
    const seams = testSeams();
    const key = Buffer.from('fuzz admin1 key');
    const discoveries = discoveryFixtures().map((f) => f.data);
    const rangeStatus = Buffer.alloc(304);
    rangeStatus.writeBigUInt64LE(2048n, 272);
    rangeStatus.writeBigUInt64LE(8192n, 280);
    const geometry = Buffer.alloc(32);
    geometry.writeUInt32LE(512, 4);
    geometry.writeBigUInt64LE(8n, 8);
    const status = Buffer.alloc(8);
    status.writeUInt32LE(0x7f, 0);
    const calls: [
      (rng: Rng) => ScriptedAnswer,
      (k: ReturnType<typeof seams.openScriptedKernelOpal>) => Promise<unknown>,
    ][] = [
      [(rng) => ({ ret: 0, structOut: mutateBytes(rng, status) }), (k) => k.status()],
      [(rng) => ({ ret: 0, structOut: mutateBytes(rng, geometry) }), (k) => k.geometry()],
      [(rng) => ({ ret: 0, structOut: mutateBytes(rng, rangeStatus) }), (k) => k.rangeStatus({ who: 0, key }, 1)],
      [
        (rng) => {
          const data = mutateBytes(rng, rng.pick(discoveries));
          return { ret: rng.int(4) === 0 ? rng.int(0x10000) - 0x100 : data.length, bufferOut: data };
        },
        (k) => k.discovery(4096),
      ],
      [(rng) => ({ ret: rng.int(0x100) - 0x80 }), (k) => k.lockUnlock({ who: 0, key }, 1, 'unlocked')],
    ];
    return Promise.resolve({
      async one(rng) {
        const [answer, call] = rng.pick(calls);
        await call(seams.openScriptedKernelOpal([answer(rng)]));
        return 'valid' as const;
      },
      close: () => Promise.resolve(),
    });
  },
};

// ---------------------------------------------------------------- LUKS2

const AREA = HEADER_AREA;
const BINARY = BINARY_HEADER;

/** Edits one value of the JSON metadata (a number, a string, a key removed or a subtree swapped). */
function mutateJson(rng: Rng, text: string): string {
  const json = JSON.parse(text) as Record<string, unknown>;
  const paths: { parent: Record<string, unknown> | unknown[]; key: string }[] = [];
  const walk = (node: unknown): void => {
    if (node === null || typeof node !== 'object') return;
    for (const key of Object.keys(node)) {
      paths.push({ parent: node as Record<string, unknown>, key });
      walk((node as Record<string, unknown>)[key]);
    }
  };
  walk(json);
  const { parent, key } = rng.pick(paths);
  const target = parent as Record<string, unknown>;
  const choices: (() => void)[] = [
    () => delete target[key],
    () => (target[key] = rng.pick([0, -1, 1, 2 ** 53, '0', '18446744073709551616', '-512', '', null, [], {}, true])),
    () => (target[key] = typeof target[key] === 'string' ? (target[key] as string) + 'x' : String(target[key])),
    () => (target[key] = JSON.parse(JSON.stringify(rng.pick(paths).parent)) as unknown),
    () => (target[`${key}${rng.int(10)}`] = target[key]),
  ];
  rng.pick(choices)();
  return JSON.stringify(json);
}

const luks2Header: FuzzTarget = {
  name: 'luks2-header',
  native: true,
  fullCount: 3000,
  timeBoundMs: 5000,
  async prepare() {
    const space = scratch('luks');
    const image = join(space.dir, 'volume.img');
    const key = randomBytes(32);
    luksFormat(image, key); // real `cryptsetup luksFormat` (the LUKS suite's helper), fast PBKDF
    const original = Buffer.alloc(2 * AREA);
    const fd = openSync(image, 'r+');
    readSync(fd, original, 0, original.length, 0);
    const jsonText = original.subarray(BINARY, AREA).toString('latin1').replace(/\0+$/, '');
    return {
      async one(rng) {
        let header: Buffer;
        if (rng.int(2) === 0) {
          // Structure-aware: valid checksums over edited JSON, so the checks behind the checksum run.
          header = Buffer.from(original);
          const edited = Buffer.from(mutateJson(rng, jsonText), 'latin1');
          header.fill(0, BINARY, AREA);
          edited.copy(header, BINARY, 0, Math.min(edited.length, AREA - BINARY - 1));
          if (rng.int(2) === 0) header.copyWithin(AREA + BINARY, BINARY, AREA);
          fixHeaderChecksum(header, 0);
          fixHeaderChecksum(header, AREA);
          // and sometimes a binary field too, checksum fixed after it
          if (rng.int(4) === 0) {
            const at = rng.pick([0, AREA]) + rng.int(512);
            if (at % AREA < 448 || at % AREA >= 512) {
              header[at] = rng.int(256);
              fixHeaderChecksum(header, at < AREA ? 0 : AREA);
            }
          }
        } else {
          header = mutateBytes(rng, original);
          if (header.length < original.length)
            header = Buffer.concat([header, Buffer.alloc(original.length - header.length)]);
          header = header.subarray(0, original.length);
        }
        writeSync(fd, header, 0, header.length, 0);
        await luksInfo(image);
        await checkKey(image, key);
        return 'valid' as const;
      },
      async close() {
        closeSync(fd);
        key.fill(0);
        space.remove();
      },
    };
  },
};

export const TARGETS: FuzzTarget[] = [
  ttlvDecode,
  kmipClientResponse,
  tcgParsers,
  emulatorComPacket,
  tcgHostStack,
  sedOpalStructs,
  luks2Header,
];
