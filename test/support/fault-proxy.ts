/**
 * TEST FIXTURE, not part of the agent: a fault-injecting TCP proxy between a client (the agent) and a
 * server (PyKMIP, a fixture server). It forwards bytes unchanged until told otherwise, then delays,
 * drops, resets or truncates in the middle of a frame, corrupts bytes, accepts and stalls, goes
 * half-open, limits bandwidth or refuses connections (nothing listening, as a server that is down).
 * Faults switch at run time, for every connection or one; counters say what reached each side, so a
 * test can assert "no KMIP request bytes left the agent".
 *
 * Frames: the proxy splits each direction into frames to place "mid-frame" faults. `ttlv` is the KMIP
 * TTLV header (8 bytes, big-endian length at 4..8); `tls` is the TLS record header (5 bytes, length
 * at 3..5), what the wire between the agent and a KMIP server carries.
 */
import { EventEmitter } from 'node:events';
import { createConnection, createServer, type Server, type Socket } from 'node:net';

export type Direction = 'toServer' | 'toClient';

/** Selects the frame a mid-frame fault hits: the `index`-th frame (0-based) whose first byte is `type`. */
export interface FrameTarget {
  direction?: Direction;
  /** Which frame, counting only frames that match `type` (default 0: the first). */
  index?: number;
  /** The frame's first byte (TLS content type, e.g. 23 for application data; 0x42 for TTLV). */
  type?: number;
}

export type FaultMode =
  /** Forward unchanged. */
  | { kind: 'pass' }
  /** Hold every chunk `ms` before forwarding it (order kept). */
  | { kind: 'delay'; ms: number }
  /** New connections are accepted and closed at once; chunks on open ones close them (FIN both ways). */
  | { kind: 'drop' }
  /** Forward `atByte` bytes of the target frame, then reset (RST) the client and close the server side. */
  | ({ kind: 'reset'; atByte?: number } & FrameTarget)
  /** Forward `atByte` bytes of the target frame, then end both sides cleanly (FIN): a short frame. */
  | ({ kind: 'truncate'; atByte?: number } & FrameTarget)
  /** XOR the bytes at `offsets` (within the target frame) with `xor` (default 0xff). */
  | ({ kind: 'corrupt'; offsets: number[]; xor?: number } & FrameTarget)
  /** Accept, never reach the server, never answer, never close: a server that hangs after accept. */
  | { kind: 'stall' }
  /**
   * The server side vanishes without a word (power loss, a NAT entry dropped): the server connection
   * closes, the client's stays open, its bytes are swallowed and nothing comes back.
   */
  | { kind: 'half-open' }
  /** At most `bytesPerSecond` each way per connection. */
  | { kind: 'bandwidth'; bytesPerSecond: number };

export type Framing = 'ttlv' | 'tls';

const FRAMINGS: Record<Framing, { header: number; lengthAt: number; lengthBytes: number }> = {
  ttlv: { header: 8, lengthAt: 4, lengthBytes: 4 },
  tls: { header: 5, lengthAt: 3, lengthBytes: 2 },
};

export interface FrameRecord {
  /** The frame's first byte: TLS content type, or the TTLV tag's first byte. */
  type: number;
  /** Whole frame, header included (as announced by its header). */
  length: number;
}

/** One direction of one proxied connection: what arrived, what was forwarded, its frames. */
export interface Flow {
  /** Bytes the proxy received from the sending side. */
  received: number;
  /** Bytes the proxy passed on to the other side. */
  forwarded: number;
  /** Frames whose header arrived, in order. */
  frames: FrameRecord[];
}

export interface ProxyOptions {
  /** Port to listen on (default: one the kernel picks, kept across stop/start). */
  port?: number;
  framing?: Framing;
  /** Clock for the attempts-per-second histogram (ms); real time by default. */
  now?: () => number;
}

/** One accepted connection. */
export class ProxiedConnection {
  readonly toServer: Flow = { received: 0, forwarded: 0, frames: [] };
  readonly toClient: Flow = { received: 0, forwarded: 0, frames: [] };
  /** The mode this connection follows instead of the proxy's, once set. */
  mode: FaultMode | undefined;
  closed = false;
  /** Faults this connection suffered, in order (kind names). */
  readonly faults: string[] = [];
  upstream: Socket | undefined;
  /** @internal the two directions' pumps. */
  pumps: { cancel(): void }[] = [];

  constructor(
    readonly index: number,
    readonly client: Socket,
    readonly acceptedAt: number,
  ) {}

  setMode(mode: FaultMode | undefined): void {
    this.mode = mode;
  }
}

/** Per-direction frame tracker and ordered, timed release queue. */
class Pump {
  private frameIndex = -1;
  private frameLength = 0;
  private offset = 0;
  private header = Buffer.alloc(8);
  private headerFill = 0;
  /** Counters of frames seen per first byte, to find "the n-th frame of type t". */
  private readonly seenOfType = new Map<number, number>();
  private readonly typeIndex: number[] = [];
  private releaseAt = 0;
  private readonly queue: { at: number; data: Buffer; end?: 'fin' | 'rst' }[] = [];
  private timer: NodeJS.Timeout | undefined;
  stopped = false;

  constructor(
    private readonly framing: (typeof FRAMINGS)[Framing],
    private readonly flow: Flow,
    private readonly write: (data: Buffer) => void,
    private readonly end: (how: 'fin' | 'rst') => void,
  ) {}

  /** Per byte of `chunk`: its frame (global index, type, index among its type) and offset in the frame. */
  private annotate(chunk: Buffer): { frame: number; type: number; typeIndex: number; offset: number }[] {
    const out: { frame: number; type: number; typeIndex: number; offset: number }[] = [];
    const { header, lengthAt, lengthBytes } = this.framing;
    for (const byte of chunk) {
      if (this.frameIndex < 0 || this.offset >= this.frameLength) {
        this.frameIndex += 1;
        this.offset = 0;
        this.headerFill = 0;
        this.frameLength = Number.MAX_SAFE_INTEGER; // unknown until the header is complete
        this.typeIndex[this.frameIndex] = this.seenOfType.get(byte) ?? 0;
        this.seenOfType.set(byte, (this.seenOfType.get(byte) ?? 0) + 1);
      }
      if (this.headerFill < header) {
        this.header[this.headerFill++] = byte;
        if (this.headerFill === header) {
          const length = this.header.readUIntBE(lengthAt, lengthBytes);
          this.frameLength = header + length;
          this.flow.frames.push({ type: this.header[0]!, length: this.frameLength });
        }
      }
      out.push({
        frame: this.frameIndex,
        type: this.header[0]!,
        typeIndex: this.typeIndex[this.frameIndex]!,
        offset: this.offset,
      });
      this.offset += 1;
    }
    return out;
  }

  /** Takes a chunk from the sending side and applies `mode` to it. */
  push(chunk: Buffer, mode: FaultMode, direction: Direction, onFault: (kind: string) => void): void {
    if (this.stopped) return;
    const marks = this.annotate(chunk);
    const hits = (target: FrameTarget, i: number) => {
      const m = marks[i]!;
      return (
        (target.direction ?? 'toClient') === direction &&
        (target.type === undefined
          ? m.frame === (target.index ?? 0)
          : m.type === target.type && m.typeIndex === (target.index ?? 0))
      );
    };
    let data = chunk;
    let cut: { at: number; how: 'fin' | 'rst' } | undefined;
    if (mode.kind === 'corrupt') {
      data = Buffer.from(chunk);
      for (let i = 0; i < data.length; i++)
        if (hits(mode, i) && mode.offsets.includes(marks[i]!.offset)) {
          data[i] = data[i]! ^ (mode.xor ?? 0xff);
          onFault('corrupt');
        }
    } else if (mode.kind === 'reset' || mode.kind === 'truncate') {
      const atByte = mode.atByte ?? this.framing.header;
      for (let i = 0; i < data.length; i++)
        if (hits(mode, i) && marks[i]!.offset === atByte) {
          cut = { at: i, how: mode.kind === 'reset' ? 'rst' : 'fin' };
          break;
        }
    }
    const now = Date.now();
    if (cut) {
      this.enqueue(data.subarray(0, cut.at), now, mode);
      this.queue.push({ at: Math.max(now, this.releaseAt), data: Buffer.alloc(0), end: cut.how });
      this.stopped = true;
      onFault(mode.kind);
      this.drain();
      return;
    }
    this.enqueue(data, now, mode);
    this.drain();
  }

  private enqueue(data: Buffer, now: number, mode: FaultMode): void {
    if (data.length === 0) return;
    if (mode.kind === 'bandwidth') {
      const slice = Math.max(1, Math.floor(mode.bytesPerSecond / 20));
      for (let i = 0; i < data.length; i += slice) {
        const part = data.subarray(i, i + slice);
        this.releaseAt = Math.max(now, this.releaseAt) + (part.length * 1000) / mode.bytesPerSecond;
        this.queue.push({ at: this.releaseAt, data: part });
      }
      return;
    }
    const at = Math.max(now + (mode.kind === 'delay' ? mode.ms : 0), this.releaseAt);
    this.releaseAt = at;
    this.queue.push({ at, data });
  }

  private drain(): void {
    if (this.timer) return;
    const now = Date.now();
    while (this.queue.length > 0 && this.queue[0]!.at <= now) {
      const item = this.queue.shift()!;
      if (item.data.length > 0) {
        this.flow.forwarded += item.data.length;
        this.write(item.data);
      }
      if (item.end) {
        this.queue.length = 0;
        this.end(item.end);
        return;
      }
    }
    if (this.queue.length > 0) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.drain();
      }, this.queue[0]!.at - now);
    }
  }

  cancel(): void {
    this.stopped = true;
    this.queue.length = 0;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }
}

/**
 * The proxy. Events: `connection` (ProxiedConnection) on accept, `close` (ProxiedConnection) when
 * both sides are gone, `fault` (ProxiedConnection, kind) when a fault fires.
 */
export class FaultProxy extends EventEmitter {
  /** The mode every connection follows unless it has its own. */
  mode: FaultMode = { kind: 'pass' };
  readonly connections: ProxiedConnection[] = [];
  /** Highest number of connections open at once. */
  peakConcurrent = 0;
  private openCount = 0;
  private readonly attempts = new Map<number, number>();
  private readonly modesByIndex = new Map<number, FaultMode>();
  private server: Server | undefined;
  private portValue: number;
  private readonly framing: (typeof FRAMINGS)[Framing];
  private readonly now: () => number;
  private readonly startedAt: number;

  constructor(
    private readonly target: { host: string; port: number },
    options: ProxyOptions = {},
  ) {
    super();
    this.portValue = options.port ?? 0;
    this.framing = FRAMINGS[options.framing ?? 'tls'];
    this.now = options.now ?? Date.now;
    this.startedAt = this.now();
  }

  /** Port clients connect to (known after the first start). */
  get port(): number {
    return this.portValue;
  }

  get host(): string {
    return '127.0.0.1';
  }

  get listening(): boolean {
    return this.server !== undefined;
  }

  /** Connections accepted so far. */
  get accepted(): number {
    return this.connections.length;
  }

  /** Connections open now. */
  get open(): number {
    return this.openCount;
  }

  /** Connection attempts (accepts) per second since the proxy was made: [second, count], in order. */
  attemptsPerSecond(): [number, number][] {
    return [...this.attempts.entries()].sort((a, b) => a[0] - b[0]);
  }

  /** Bytes that reached the proxy from clients (left the agent), over every connection. */
  get bytesFromClients(): number {
    return this.connections.reduce((n, c) => n + c.toServer.received, 0);
  }

  /** Sets the proxy-wide mode (applies to open connections from their next chunk, and to new ones). */
  setMode(mode: FaultMode): void {
    this.mode = mode;
  }

  /** Gives the `index`-th connection (0-based, accept order; may be in the future) its own mode. */
  setModeFor(index: number, mode: FaultMode): void {
    this.modesByIndex.set(index, mode);
    const c = this.connections[index];
    if (c) c.setMode(mode);
  }

  /** Listens (again, on the same port): the server is up. */
  async start(): Promise<this> {
    if (this.server) return this;
    const server = createServer((client) => this.accept(client));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.portValue, '127.0.0.1', () => resolve());
    });
    this.portValue = (server.address() as { port: number }).port;
    this.server = server;
    return this;
  }

  /** Stops listening (connections are refused, as by a server that is down) and closes open ones. */
  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    this.dropAll();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** Closes every open connection at once, both sides (an idle-timeout sweep, a NAT flush). */
  dropAll(): void {
    for (const c of this.connections) if (!c.closed) this.finish(c, 'fin');
  }

  /** Resolves with the next connection accepted. */
  nextConnection(): Promise<ProxiedConnection> {
    return new Promise((resolve) => this.once('connection', resolve));
  }

  /** Resolves when `c` has closed on both sides. */
  closed(c: ProxiedConnection): Promise<void> {
    if (c.closed) return Promise.resolve();
    return new Promise((resolve) => {
      const onClose = (x: ProxiedConnection) => {
        if (x !== c) return;
        this.off('close', onClose);
        resolve();
      };
      this.on('close', onClose);
    });
  }

  private modeOf(c: ProxiedConnection): FaultMode {
    return c.mode ?? this.mode;
  }

  private accept(client: Socket): void {
    const c = new ProxiedConnection(this.connections.length, client, this.now());
    const own = this.modesByIndex.get(c.index);
    if (own) c.setMode(own);
    this.connections.push(c);
    const second = Math.floor((c.acceptedAt - this.startedAt) / 1000);
    this.attempts.set(second, (this.attempts.get(second) ?? 0) + 1);
    this.openCount += 1;
    this.peakConcurrent = Math.max(this.peakConcurrent, this.openCount);
    client.on('error', () => undefined);
    client.once('close', () => this.finish(c, 'fin'));
    this.emit('connection', c);

    const mode = this.modeOf(c);
    const fault = (kind: string) => {
      c.faults.push(kind);
      this.emit('fault', c, kind);
    };
    if (mode.kind === 'drop') {
      fault('drop');
      this.finish(c, 'fin');
      return;
    }
    let swallow = mode.kind === 'stall';
    if (swallow) fault('stall');

    const upstream = swallow ? undefined : createConnection(this.target);
    c.upstream = upstream;
    const toServer = new Pump(
      this.framing,
      c.toServer,
      (d) => upstream?.write(d),
      (how) => this.finish(c, how),
    );
    const toClient = new Pump(
      this.framing,
      c.toClient,
      (d) => client.write(d),
      (how) => this.finish(c, how),
    );
    c.pumps = [toServer, toClient];

    const onChunk = (flow: Flow, pump: Pump, direction: Direction) => (chunk: Buffer) => {
      flow.received += chunk.length;
      if (c.closed || swallow) return;
      const now = this.modeOf(c);
      if (now.kind === 'drop') {
        fault('drop');
        this.finish(c, 'fin');
        return;
      }
      if (now.kind === 'stall' || now.kind === 'half-open') {
        swallow = true;
        fault(now.kind);
        if (now.kind === 'half-open') {
          // The server side goes away; the client is told nothing.
          toClient.cancel();
          upstream?.destroy();
        }
        return;
      }
      pump.push(chunk, now, direction, fault);
    };
    client.on('data', onChunk(c.toServer, toServer, 'toServer'));
    if (upstream) {
      upstream.on('error', () => undefined);
      upstream.on('data', onChunk(c.toClient, toClient, 'toClient'));
      upstream.once('close', () => {
        if (!swallow) this.finish(c, 'fin');
      });
    }
  }

  private finish(c: ProxiedConnection, how: 'fin' | 'rst'): void {
    if (c.closed) return;
    c.closed = true;
    for (const p of c.pumps) p.cancel();
    // The write callback runs once earlier writes are flushed, so the partial frame arrives before the RST.
    if (how === 'rst') c.client.write(Buffer.alloc(0), () => c.client.resetAndDestroy());
    else c.client.destroySoon(); // FIN after what was written
    c.upstream?.destroy();
    this.openCount -= 1;
    this.emit('close', c);
  }

  /** Stops listening and closes everything; the proxy cannot be started again. */
  async close(): Promise<void> {
    await this.stop();
  }
}
