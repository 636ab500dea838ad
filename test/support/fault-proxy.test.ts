/**
 * The fault proxy fixture proves each of its modes against a small TTLV echo server: what the client
 * receives, what the server sees, and what the counters say.
 */
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect as netConnect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect, createServer as createTlsServer } from 'node:tls';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FaultProxy } from './fault-proxy.js';
import { makeTestPki } from './certs.js';

/** A TTLV frame: 8-byte header (tag 42007B, type Structure 01, length) and `body` bytes of value. */
function frame(bodyLength: number, fill = 0x11): Buffer {
  const header = Buffer.from([0x42, 0x00, 0x7b, 0x01, 0, 0, 0, 0]);
  header.writeUInt32BE(bodyLength, 4);
  return Buffer.concat([header, Buffer.alloc(bodyLength, fill)]);
}

const REQUEST = frame(24, 0x22);
const RESPONSE = frame(40, 0x33);

/** Answers every complete request frame with RESPONSE; counts its connections and requests. */
class EchoServer {
  server: Server = createServer((s) => this.onSocket(s));
  connections = 0;
  requests = 0;
  readonly sockets: Socket[] = [];
  async start(): Promise<{ host: string; port: number }> {
    this.server.listen(0, '127.0.0.1');
    await once(this.server, 'listening');
    return { host: '127.0.0.1', port: (this.server.address() as { port: number }).port };
  }
  private onSocket(s: Socket): void {
    this.connections += 1;
    this.sockets.push(s);
    s.on('error', () => undefined);
    let buffered = Buffer.alloc(0);
    s.on('data', (d: Buffer) => {
      buffered = Buffer.concat([buffered, d]);
      while (buffered.length >= 8 && buffered.length >= 8 + buffered.readUInt32BE(4)) {
        buffered = buffered.subarray(8 + buffered.readUInt32BE(4));
        this.requests += 1;
        s.write(RESPONSE);
      }
    });
  }
  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise((r) => this.server.close(r));
  }
}

/** A client connection collecting what it receives and how it ended. */
class Client {
  readonly socket: Socket;
  received = Buffer.alloc(0);
  error: NodeJS.ErrnoException | undefined;
  ended = false;
  readonly done: Promise<void>;
  private waiters: { bytes: number; resolve: () => void }[] = [];
  constructor(port: number) {
    this.socket = netConnect(port, '127.0.0.1');
    this.socket.on('data', (d: Buffer) => {
      this.received = Buffer.concat([this.received, d]);
      this.waiters = this.waiters.filter((w) => (this.received.length >= w.bytes ? (w.resolve(), false) : true));
    });
    this.socket.on('end', () => (this.ended = true));
    this.done = new Promise((resolve) => {
      this.socket.on('error', (e) => (this.error = e));
      this.socket.on('close', () => resolve());
    });
  }
  connected(): Promise<void> {
    return once(this.socket, 'connect').then(() => undefined);
  }
  /** Resolves once `bytes` bytes have arrived. */
  receive(bytes: number): Promise<void> {
    if (this.received.length >= bytes) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ bytes, resolve }));
  }
}

describe('FaultProxy (test fixture)', () => {
  let echo: EchoServer;
  let proxy: FaultProxy;
  const clients: Client[] = [];
  const client = async (): Promise<Client> => {
    const c = new Client(proxy.port);
    clients.push(c);
    await c.connected();
    return c;
  };

  beforeEach(async () => {
    echo = new EchoServer();
    proxy = await new FaultProxy(await echo.start(), { framing: 'ttlv' }).start();
  });
  afterEach(async () => {
    for (const c of clients.splice(0)) c.socket.destroy();
    await proxy.close();
    await echo.stop();
  });

  it('pass: forwards both ways and counts connections, peak concurrency, bytes and frames', async () => {
    const [a, b, c] = [await client(), await client(), await client()];
    for (const x of [a, b, c]) x.socket.write(REQUEST);
    await Promise.all([a, b, c].map((x) => x.receive(RESPONSE.length)));
    expect(a.received.equals(RESPONSE)).toBe(true);
    expect(proxy.accepted).toBe(3);
    expect(proxy.peakConcurrent).toBe(3);
    expect(echo.requests).toBe(3);
    const first = proxy.connections[0]!;
    expect(first.toServer).toMatchObject({ received: REQUEST.length, forwarded: REQUEST.length });
    expect(first.toServer.frames).toEqual([{ type: 0x42, length: REQUEST.length }]);
    expect(first.toClient).toMatchObject({ received: RESPONSE.length, forwarded: RESPONSE.length });
    expect(proxy.bytesFromClients).toBe(3 * REQUEST.length);
    a.socket.destroy();
    await proxy.closed(first);
    expect(proxy.open).toBe(2);
  });

  it('stop/start: refused while stopped (nothing listens), the same port serves again after start', async () => {
    const port = proxy.port;
    await proxy.stop();
    const refused = new Client(port);
    await refused.done;
    expect(refused.error?.code).toBe('ECONNREFUSED');
    await proxy.start();
    expect(proxy.port).toBe(port);
    const c = await client();
    c.socket.write(REQUEST);
    await c.receive(RESPONSE.length);
    expect(c.received.equals(RESPONSE)).toBe(true);
  });

  it('delay: every chunk is held at least the given time', async () => {
    proxy.setMode({ kind: 'delay', ms: 150 });
    const c = await client();
    const started = performance.now();
    c.socket.write(REQUEST);
    await c.receive(RESPONSE.length);
    // Two hops (request and response) each held 150 ms: a lower bound no scheduler can beat.
    expect(performance.now() - started).toBeGreaterThanOrEqual(290);
    expect(c.received.equals(RESPONSE)).toBe(true);
  });

  it('drop: a new connection is closed at once and the server never sees it', async () => {
    proxy.setMode({ kind: 'drop' });
    const c = await client();
    await c.done;
    expect(c.received.length).toBe(0);
    expect(echo.connections).toBe(0);
    expect(proxy.connections[0]!.faults).toEqual(['drop']);
  });

  it('drop on an open connection and dropAll: both sides closed', async () => {
    const a = await client();
    a.socket.write(REQUEST);
    await a.receive(RESPONSE.length);
    proxy.setMode({ kind: 'drop' });
    a.socket.write(REQUEST);
    await a.done;
    expect(a.received.length).toBe(RESPONSE.length);
    proxy.setMode({ kind: 'pass' });
    const b = await client();
    b.socket.write(REQUEST);
    await b.receive(RESPONSE.length);
    proxy.dropAll();
    await b.done;
    expect(b.ended).toBe(true);
    expect(proxy.open).toBe(0);
  });

  it('reset mid-frame: the client gets the first bytes of the response frame, then ECONNRESET', async () => {
    proxy.setMode({ kind: 'reset', direction: 'toClient', atByte: 12 });
    const c = await client();
    c.socket.write(REQUEST);
    await c.done;
    // Linux reports data and an RST that arrive together as end of stream, and may discard unread bytes:
    // the client sees a prefix of those 12 bytes and then ECONNRESET or EOF; the proxy forwarded exactly 12.
    expect(c.error?.code === 'ECONNRESET' || c.ended).toBe(true);
    expect(c.received.length).toBeLessThanOrEqual(12);
    expect(c.received.equals(RESPONSE.subarray(0, c.received.length))).toBe(true);
    expect(proxy.connections[0]!.toClient.forwarded).toBe(12);
    expect(proxy.connections[0]!.faults).toEqual(['reset']);
  });

  it('reset mid-frame toward the server: the server gets a partial request and never answers', async () => {
    proxy.setMode({ kind: 'reset', direction: 'toServer', atByte: 5 });
    const c = await client();
    c.socket.write(REQUEST);
    await c.done;
    expect(c.error?.code).toBe('ECONNRESET');
    expect(proxy.connections[0]!.toServer.forwarded).toBe(5);
    expect(echo.requests).toBe(0);
  });

  it('truncate: the client gets part of the frame and a clean end of stream', async () => {
    proxy.setMode({ kind: 'truncate', atByte: 20 });
    const c = await client();
    c.socket.write(REQUEST);
    await c.done;
    expect(c.error).toBeUndefined();
    expect(c.ended).toBe(true);
    expect(c.received.equals(RESPONSE.subarray(0, 20))).toBe(true);
  });

  it('corrupt: exactly the named offsets of the named frame are flipped', async () => {
    proxy.setMode({ kind: 'corrupt', offsets: [5, 30], index: 1 });
    const c = await client();
    c.socket.write(REQUEST);
    await c.receive(RESPONSE.length);
    expect(c.received.equals(RESPONSE)).toBe(true); // frame 0 untouched
    c.socket.write(REQUEST);
    await c.receive(2 * RESPONSE.length);
    const second = c.received.subarray(RESPONSE.length);
    const differing = [...second.keys()].filter((i) => second[i] !== RESPONSE[i]);
    expect(differing).toEqual([5, 30]);
    expect(second[30]).toBe(RESPONSE[30]! ^ 0xff);
  });

  it('corrupt by frame type: a TTLV frame is matched by its first byte', async () => {
    proxy.setMode({ kind: 'corrupt', offsets: [0], type: 0x42, index: 0, xor: 0x01 });
    const c = await client();
    c.socket.write(REQUEST);
    await c.receive(RESPONSE.length);
    expect(c.received[0]).toBe(0x43);
  });

  it('stall: accepted, the server is never reached, nothing comes back, the connection stays open', async () => {
    proxy.setModeFor(0, { kind: 'stall' });
    const stalled = await client();
    stalled.socket.write(REQUEST);
    // A later connection completes a full round trip while the stalled one still has nothing.
    const ok = await client();
    ok.socket.write(REQUEST);
    await ok.receive(RESPONSE.length);
    expect(echo.connections).toBe(1);
    expect(stalled.received.length).toBe(0);
    expect(proxy.connections[0]!).toMatchObject({ closed: false, faults: ['stall'] });
    expect(proxy.connections[0]!.toServer).toMatchObject({ received: REQUEST.length, forwarded: 0 });
  });

  it('half-open: the server side vanishes, the client is told nothing and its bytes are swallowed', async () => {
    const c = await client();
    c.socket.write(REQUEST);
    await c.receive(RESPONSE.length);
    const serverSide = echo.sockets[0]!;
    const serverClosed = once(serverSide, 'close');
    proxy.connections[0]!.setMode({ kind: 'half-open' });
    c.socket.write(REQUEST);
    await serverClosed;
    const ok = await client();
    ok.socket.write(REQUEST);
    await ok.receive(RESPONSE.length);
    expect(c.received.length).toBe(RESPONSE.length);
    expect(c.ended).toBe(false);
    expect(echo.requests).toBe(2); // the first connection's first request and ok's
    expect(proxy.connections[0]!.toServer).toMatchObject({ received: 2 * REQUEST.length, forwarded: REQUEST.length });
  });

  it('bandwidth: 6000 bytes at 20000 B/s take at least 250 ms', async () => {
    const big = frame(6000 - 8);
    echo.server.removeAllListeners('connection');
    echo.server.on('connection', (s: Socket) => {
      echo.sockets.push(s);
      s.write(big);
    });
    proxy.setMode({ kind: 'bandwidth', bytesPerSecond: 20_000 });
    const started = performance.now();
    const c = await client();
    await c.receive(big.length);
    expect(performance.now() - started).toBeGreaterThanOrEqual(250);
    expect(c.received.equals(big)).toBe(true);
  });

  it('attempts per second: a histogram by the injected clock', async () => {
    let now = 10_000;
    const counted = await new FaultProxy({ host: '127.0.0.1', port: 1 }, { framing: 'ttlv', now: () => now }).start();
    try {
      const accept = async () => {
        const next = counted.nextConnection();
        const c = new Client(counted.port);
        clients.push(c);
        await next;
      };
      await accept();
      await accept();
      now += 2_500;
      await accept();
      expect(counted.attemptsPerSecond()).toEqual([
        [0, 2],
        [2, 1],
      ]);
    } finally {
      await counted.close();
    }
  });

  it('tls framing: records of a real handshake, handshake (22) out and application data (23) after', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fault-proxy-'));
    try {
      const pki = makeTestPki(dir);
      const server = createTlsServer(
        { cert: pki.server.certPem, key: pki.server.keyPem, minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2' },
        (s) => s.on('data', (d) => s.write(d)),
      );
      server.listen(0, '127.0.0.1');
      await once(server, 'listening');
      const tlsProxy = await new FaultProxy({
        host: '127.0.0.1',
        port: (server.address() as { port: number }).port,
      }).start();
      try {
        const s = tlsConnect({
          host: '127.0.0.1',
          port: tlsProxy.port,
          ca: readFileSync(pki.ca.cert),
          servername: 'localhost',
        });
        await once(s, 'secureConnect');
        s.write(REQUEST);
        await once(s, 'data');
        s.destroy();
        const c = tlsProxy.connections[0]!;
        expect(c.toServer.frames[0]!.type).toBe(22);
        expect(c.toServer.frames.at(-1)!.type).toBe(23);
        expect(c.toClient.frames[0]!.type).toBe(22);
        expect(c.toServer.frames.filter((f) => f.type === 23)).toHaveLength(1);
      } finally {
        await tlsProxy.close();
        server.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
