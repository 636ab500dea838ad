/**
 * Test helpers for the emulated drive: temp images, and raw TCG sessions built with the shared
 * token codec and ComPacket framing of the `tcg` addon module (the same C++ code the host stack
 * uses), so tests can send exactly the bytes they want, malformed ones included.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tcgNative } from '../../src/drives/backend.js';
import { createEmulatedDrive, openEmulatedDrive, type EmulatedDriveHandle } from '../../src/drives/emulator.js';

/** JS form of TCG values accepted by the codec: see native/tcg/js_values.h. */
export type TcgJs =
  | number
  | bigint
  | Buffer
  | string
  | TcgJs[]
  | { name: TcgJs; value: TcgJs }
  | { token: 'CALL' | 'EOD' | 'EOS' | 'EMPTY' }
  | { uid: string };

/** The addon's `tcg` module: token codec and ComPacket framing. */
export const tcg = tcgNative;

export const UID = {
  smUid: '00000000000000ff',
  thisSp: '0000000000000001',
  adminSp: '0000020500000001',
  lockingSp: '0000020500000002',
  anybody: '0000000900000001',
  sid: '0000000900000006',
  psid: '000000090001ff01',
  admin1: '0000000900010001',
  user1: '0000000900030001',
  user2: '0000000900030002',
  cpinSid: '0000000b00000001',
  cpinMsid: '0000000b00008402',
  cpinAdmin1: '0000000b00010001',
  cpinUser1: '0000000b00030001',
  globalRange: '0000080200000001',
  range1: '0000080200030001',
  kAesGlobal: '0000080600000001',
  kAesRange1: '0000080600030001',
  aceRdLockedGlobal: '000000080003e000',
  aceWrLockedGlobal: '000000080003e800',
  mbrControl: '0000080300000001',
  lockingInfo: '0000080100000001',
  user1Authority: '0000000900030001',
  authorityTable: '0000000900000000',
} as const;

export const METHOD = {
  properties: '000000000000ff01',
  startSession: '000000000000ff02',
  get: '0000000600000016',
  set: '0000000600000017',
  next: '0000000600000008',
  authenticate: '000000060000001c',
  genKey: '0000000600000010',
  activate: '0000000600000203',
  revert: '0000000600000202',
  revertSp: '0000000600000011',
  erase: '0000000600000803',
} as const;

export const STATUS = {
  success: 0x00,
  notAuthorized: 0x01,
  spBusy: 0x03,
  invalidParameter: 0x0c,
  authorityLockedOut: 0x12,
  fail: 0x3f,
} as const;

export const BASE_COM_ID = 0x07fe;

export const uid = (hex: string): { uid: string } => ({ uid: hex });
export const named = (name: TcgJs, value: TcgJs): { name: TcgJs; value: TcgJs } => ({ name, value });

/**
 * A fresh directory with a created drive; `cleanup` removes it. The drive's volatile key cache
 * ("RAM", normally on /dev/shm) goes to a separate temp directory so tests leave nothing behind;
 * child processes inherit the setting.
 */
export async function makeDrive(sizeMiB = 16, serial = 'EMUTEST0001') {
  const dir = mkdtempSync(join(tmpdir(), 'kmip-agent-emu-'));
  const ramDir = mkdtempSync(join(tmpdir(), 'kmip-agent-emu-ram-'));
  process.env.KMIP_AGENT_EMU_RAM_DIR = ramDir;
  const path = join(dir, 'drive.img');
  const { psid } = await createEmulatedDrive(path, sizeMiB, serial);
  return {
    dir,
    ramDir,
    path,
    psid,
    cleanup: () => {
      rmSync(dir, { recursive: true, force: true });
      rmSync(ramDir, { recursive: true, force: true });
    },
  };
}

/** Method call tokens: Call <invoking> <method> [args] EndOfData [0 0 0]. */
export function methodCall(invoking: string, method: string, args: TcgJs[]): Buffer {
  return tcg().encodeTokens([{ token: 'CALL' }, uid(invoking), uid(method), args, { token: 'EOD' }, [0, 0, 0]]);
}

export interface MethodResponse {
  status: number;
  results: unknown[];
}

/** A method call inside an open session. */
export type SessionCall = (invoking: string, method: string, args: TcgJs[]) => Promise<MethodResponse>;

/** Raw IF-SEND / IF-RECV exchanges and sessions on an open emulated drive. */
export class RawTcg {
  private nextHsn = 100;
  constructor(readonly handle: EmulatedDriveHandle) {}

  static async open(path: string): Promise<RawTcg> {
    return new RawTcg(await openEmulatedDrive(path));
  }

  /** Opens the drive at `path`, runs `body`, and closes the handle whatever happens. */
  static async using<T>(path: string, body: (raw: RawTcg) => Promise<T>): Promise<T> {
    const raw = await RawTcg.open(path);
    try {
      return await body(raw);
    } finally {
      await raw.close();
    }
  }

  close(): Promise<void> {
    return this.handle.close();
  }

  /** Sends one ComPacket and returns the response's SubPacket payload. */
  async exchange(tsn: number, hsn: number, payload: Buffer): Promise<Buffer> {
    await this.handle.ifSend(
      1,
      BASE_COM_ID,
      tcg().buildComPacket({ comId: BASE_COM_ID, tperSession: tsn, hostSession: hsn, payload }),
    );
    const raw = await this.handle.ifRecv(1, BASE_COM_ID, 65536);
    const packet = tcg().parseComPacket(raw);
    const first = packet.packets[0];
    if (!first) throw new Error('empty response ComPacket');
    return first.subpackets[0]!.payload;
  }

  async call(tsn: number, hsn: number, invoking: string, method: string, args: TcgJs[]): Promise<MethodResponse> {
    const r = tcg().parseMethodResponse(await this.exchange(tsn, hsn, methodCall(invoking, method, args)));
    return { status: r.status, results: r.results as unknown[] };
  }

  /** StartSession; returns the session numbers on success, else the failing status. */
  async startSession(
    sp: string,
    authority?: string,
    pin?: Buffer,
    write = true,
  ): Promise<{ status: number; tsn: number; hsn: number }> {
    const hsn = this.nextHsn++;
    const args: TcgJs[] = [hsn, uid(sp), write ? 1 : 0];
    if (pin !== undefined) args.push(named(0, pin));
    if (authority !== undefined) args.push(named(3, uid(authority)));
    const r = await this.call(0, 0, UID.smUid, METHOD.startSession, args);
    if (r.status !== 0) return { status: r.status, tsn: 0, hsn };
    const items = r.results as number[];
    return { status: 0, tsn: items[1]!, hsn };
  }

  async endSession(tsn: number, hsn: number): Promise<void> {
    const reply = await this.exchange(tsn, hsn, tcg().encodeTokens([{ token: 'EOS' }]));
    const values = tcg().decodeValues(reply) as { token?: string }[];
    if (values[0]?.token !== 'EOS') throw new Error('CloseSession not acknowledged');
  }

  /** Opens a session, runs `body`, closes it (if the TPer has not). */
  async withSession<T>(
    sp: string,
    authority: string | undefined,
    pin: Buffer | undefined,
    body: (call: SessionCall) => Promise<T>,
  ): Promise<T> {
    const s = await this.startSession(sp, authority, pin);
    if (s.status !== 0) throw new Error(`StartSession failed with status 0x${s.status.toString(16)}`);
    let open = true;
    try {
      return await body(async (invoking, method, args) => {
        const r = await this.call(s.tsn, s.hsn, invoking, method, args);
        if (method === METHOD.revert || method === METHOD.revertSp) open = r.status !== 0;
        return r;
      });
    } finally {
      if (open) await this.endSession(s.tsn, s.hsn);
    }
  }
}

/** Set [Values [ col=value ... ]] arguments. */
export function setArgs(columns: [number, TcgJs][]): TcgJs[] {
  return [
    named(
      1,
      columns.map(([c, v]) => named(c, v)),
    ),
  ];
}

/** Get [CellBlock startColumn..endColumn] arguments. */
export function getArgs(first: number, last: number): TcgJs[] {
  return [[named(3, first), named(4, last)]];
}

/** The value of column `c` in a Get result ([[{name, value}...]]). */
export function column(results: unknown[], c: number): unknown {
  const cells = results[0] as { name: number; value: unknown }[];
  return cells.find((cell) => cell.name === c)?.value;
}

/** Sets two columns of a row to the same value; resolves to the method status. */
async function setPair(call: SessionCall, row: string, columns: [number, number], value: number): Promise<number> {
  return (
    await call(
      row,
      METHOD.set,
      setArgs([
        [columns[0], value],
        [columns[1], value],
      ]),
    )
  ).status;
}

/** Sets a Locking range's ReadLocked and WriteLocked columns (7, 8) to `locked` (0 or 1); resolves to the status. */
export const setLocked = (call: SessionCall, range: string, locked: number): Promise<number> =>
  setPair(call, range, [7, 8], locked);

/** Sets a Locking range's ReadLockEnabled and WriteLockEnabled columns (5, 6) to `enabled` (0 or 1); resolves to the status. */
export const setLockEnabled = (call: SessionCall, range: string, enabled: number): Promise<number> =>
  setPair(call, range, [5, 6], enabled);
