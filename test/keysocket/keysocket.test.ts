import { randomBytes } from 'node:crypto';
import { chmodSync, closeSync, mkdirSync, mkdtempSync, openSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseCryptsetupAddress } from '../../src/agent/keysocket/peer.js';
import { KeySocketServer, type KeyLookup } from '../../src/agent/keysocket/server.js';
import { isKmipAgentError } from '../../src/errors.js';
import { addonModule } from '../../src/native/addon.js';
import { requestKey } from './cryptsetup-client.js';

interface AuditEvent {
  event: string;
  outcome?: string;
  reason?: string;
  volume?: string;
  peerPid?: number;
  peerUid?: number;
  peerGid?: number;
  keyBytes?: number;
}

/** A pino logger writing into memory, so tests read exactly what the audit log would hold. */
function memoryLogger() {
  const lines: string[] = [];
  const waiters = new Set<() => void>();
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(chunk.toString('utf8'));
      for (const wake of [...waiters]) wake();
      done();
    },
  });
  const logger = pino({ level: 'info' }, stream);
  return {
    logger,
    text: () => lines.join(''),
    /** Resolves once `ready()` holds after some line was written (checked at once, then per line). */
    until: (ready: () => boolean) =>
      new Promise<void>((resolve) => {
        const check = () => {
          if (!ready()) return;
          waiters.delete(check);
          resolve();
        };
        waiters.add(check);
        check();
      }),
    events: () => lines.flatMap((l) => l.split('\n').filter(Boolean)).map((l) => JSON.parse(l) as AuditEvent),
  };
}

/** Waits until the audit log holds `count` key events (the server logs after the client saw EOF). */
async function keyEvents(log: ReturnType<typeof memoryLogger>, count: number): Promise<AuditEvent[]> {
  const keyEventsNow = () => log.events().filter((e) => e.event === 'keysocket.key');
  await log.until(() => keyEventsNow().length >= count);
  return keyEventsNow();
}

/** Every form a key could take in a log line. */
function keyForms(key: Buffer): string[] {
  return [key.toString('hex'), key.toString('base64'), key.toString('latin1'), JSON.stringify([...key])];
}

describe('crypttab key socket', () => {
  let dir: string;
  let socketPath: string;
  let server: KeySocketServer | undefined;
  const keys = new Map<string, Buffer>();
  const handedOut: Buffer[] = [];
  const lookups: string[] = [];
  const lookup: KeyLookup = (volume) => {
    lookups.push(volume);
    const key = keys.get(volume);
    if (!key) return Promise.resolve(undefined);
    const copy = Buffer.from(key);
    handedOut.push(copy);
    return Promise.resolve(copy);
  };

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'kmip-agent-keysocket-'));
    socketPath = join(dir, 'run', 'luks.sock');
    keys.clear();
    keys.set('data', randomBytes(32));
    keys.set('logs', randomBytes(32));
    handedOut.length = 0;
    lookups.length = 0;
  });

  afterEach(async () => {
    await server?.close();
    server = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  /** Lets other users reach the socket file, so only its own mode stands in their way. */
  function openDirectories() {
    chmodSync(dir, 0o755);
    chmodSync(join(dir, 'run'), 0o755);
  }

  async function start(log = memoryLogger(), lookupFn: KeyLookup = lookup) {
    server = new KeySocketServer({ path: socketPath, lookup: lookupFn, logger: log.logger, lookupTimeoutMs: 2000 });
    await server.start();
    return log;
  }

  it('listens on a root-only socket (mode 0600, directory 0700)', async () => {
    await start();
    const st = statSync(socketPath);
    expect(st.isSocket()).toBe(true);
    expect(st.mode & 0o777).toBe(0o600);
    expect(st.uid).toBe(0);
    expect(statSync(join(dir, 'run')).mode & 0o777).toBe(0o700);
  });

  it('hands the key to a root peer asking the way systemd-cryptsetup does, and audits it', async () => {
    const log = await start();
    const result = await requestKey(socketPath, 'data');
    expect(result.key).toEqual(keys.get('data'));
    const [event] = await keyEvents(log, 1);
    expect(event).toMatchObject({
      outcome: 'handed-out',
      volume: 'data',
      peerPid: result.pid,
      peerUid: 0,
      keyBytes: 32,
    });
    // The server zeroed the buffer it was given once written.
    expect(handedOut).toHaveLength(1);
    expect(handedOut[0].equals(Buffer.alloc(32))).toBe(true);
  });

  it('hands the key to a peer that shut down its sending side after connecting (systemd-cryptsetup does)', async () => {
    // The lookup answers only once the peer's half-close has reached the server (a KMIP fetch takes that long).
    let peerHalfClosed: () => void = () => undefined;
    const halfClosed = new Promise<void>((resolve) => (peerHalfClosed = resolve));
    const log = await start(memoryLogger(), async (volume, peer) => {
      await halfClosed;
      return lookup(volume, peer);
    });
    server!['server']!.on('connection', (socket: import('node:net').Socket) =>
      socket.once('end', () => peerHalfClosed()),
    );
    const result = await requestKey(socketPath, 'data', { halfClose: true });
    expect(result.key).toEqual(keys.get('data'));
    const [event] = await keyEvents(log, 1);
    expect(event).toMatchObject({ outcome: 'handed-out', volume: 'data', peerPid: result.pid });
  });

  it('serves several volumes from one socket, each its own key', async () => {
    const log = await start();
    const [a, b] = await Promise.all([requestKey(socketPath, 'logs'), requestKey(socketPath, 'data')]);
    expect(a.key).toEqual(keys.get('logs'));
    expect(b.key).toEqual(keys.get('data'));
    expect((await keyEvents(log, 2)).map((e) => e.volume).sort()).toEqual(['data', 'logs']);
  });

  it('gives an unknown volume nothing and audits the refusal', async () => {
    const log = await start();
    const result = await requestKey(socketPath, 'nosuchvolume');
    expect(result.key).toEqual(Buffer.alloc(0));
    const [event] = await keyEvents(log, 1);
    expect(event).toMatchObject({
      outcome: 'refused',
      reason: 'unknown-volume',
      volume: 'nosuchvolume',
      peerPid: result.pid,
      peerUid: 0,
    });
  });

  it('the native peer lookup is a typed error on something that is not a connected socket', () => {
    const fd = openSync(join(dir, 'plain-file'), 'w');
    try {
      const unixsocket = addonModule<{ peerInfo(fd: number): unknown }>('unixsocket');
      expect(() => unixsocket.peerInfo(fd)).toThrow(expect.objectContaining({ code: 'SOCKET_PEER_UNKNOWN' }));
      expect(() => unixsocket.peerInfo(-1)).toThrow(expect.objectContaining({ code: 'SOCKET_INVALID_ARGUMENT' }));
    } finally {
      closeSync(fd);
    }
  });

  it('refuses a peer without a cryptsetup address, and PKCS#11/FIDO2/TPM2-style requests', async () => {
    const log = await start();
    const anonymous = await requestKey(socketPath, 'data', { unnamed: true });
    const pkcs11 = await requestKey(socketPath, 'data', { requestType: 'cryptsetup-pkcs11' });
    const other = await requestKey(socketPath, 'data', { requestType: 'notcryptsetup' });
    // The right words in a filesystem path (not the abstract namespace) do not count.
    mkdirSync(join(dir, 'x', 'cryptsetup'), { recursive: true });
    const pathBound = await requestKey(socketPath, 'data', { bindPath: join(dir, 'x', 'cryptsetup', 'data') });
    for (const r of [anonymous, pkcs11, other, pathBound]) expect(r.key).toEqual(Buffer.alloc(0));
    const events = await keyEvents(log, 4);
    const byPid = new Map(events.map((e) => [e.peerPid, e]));
    expect(byPid.get(anonymous.pid)).toMatchObject({ outcome: 'refused', reason: 'not-a-cryptsetup-request' });
    expect(byPid.get(pkcs11.pid)).toMatchObject({ outcome: 'refused', reason: 'unsupported-request-type' });
    expect(byPid.get(other.pid)).toMatchObject({ outcome: 'refused', reason: 'not-a-cryptsetup-request' });
    expect(byPid.get(pathBound.pid)).toMatchObject({ outcome: 'refused', reason: 'not-a-cryptsetup-request' });
    expect(lookups).toEqual([]);
  });

  it('a non-root user cannot even connect (socket mode 0600)', async () => {
    await start();
    openDirectories();
    const result = await requestKey(socketPath, 'data', { uid: 65534 });
    expect(result.error).toBe(13); // EACCES
    expect(lookups).toEqual([]);
  });

  it('refuses a non-root peer by SO_PEERCRED when the mode is loosened', async () => {
    const log = await start();
    // Second barrier: even a world-writable socket gives non-root peers nothing.
    openDirectories();
    chmodSync(socketPath, 0o666);
    const result = await requestKey(socketPath, 'data', { uid: 65534 });
    expect(result.key).toEqual(Buffer.alloc(0));
    const [event] = await keyEvents(log, 1);
    expect(event).toMatchObject({ outcome: 'refused', reason: 'peer-not-root', volume: 'data', peerUid: 65534 });
    expect(lookups).toEqual([]);
  });

  it('refuses when the lookup fails or hangs, without leaking a late key', async () => {
    const late = randomBytes(32);
    // The slow lookup answers when the test says so: after the server has given up on it.
    let answerLate!: (key: Buffer) => void;
    const lateLookup = new Promise<Buffer>((resolve) => (answerLate = resolve));
    const log = memoryLogger();
    server = new KeySocketServer({
      path: socketPath,
      logger: log.logger,
      lookupTimeoutMs: 200,
      lookup: (volume) => (volume === 'broken' ? Promise.reject(new Error('key server unreachable')) : lateLookup),
    });
    await server.start();
    const broken = await requestKey(socketPath, 'broken');
    const slow = await requestKey(socketPath, 'slow');
    expect(broken.key).toEqual(Buffer.alloc(0));
    expect(slow.key).toEqual(Buffer.alloc(0));
    const events = await keyEvents(log, 2);
    expect(events.map((e) => e.reason).sort()).toEqual(['lookup-failed', 'lookup-timeout']);
    expect(late.equals(Buffer.alloc(32))).toBe(false);
    answerLate(late);
    // The server's handling of the late answer is a promise continuation: done before the next turn.
    await new Promise((r) => setImmediate(r));
    expect(late.equals(Buffer.alloc(32))).toBe(true);
  });

  it('the audit log records hand-outs and refusals but never a key byte', async () => {
    const log = await start();
    const data = Buffer.from(keys.get('data')!);
    const logs = Buffer.from(keys.get('logs')!);
    await requestKey(socketPath, 'data');
    await requestKey(socketPath, 'logs');
    await requestKey(socketPath, 'unknown');
    await keyEvents(log, 3);
    const text = log.text();
    expect(text).toContain('handed-out');
    expect(text).toContain('refused');
    for (const key of [data, logs]) for (const form of keyForms(key)) expect(text).not.toContain(form);
  });

  it('replaces a stale socket file but never a regular file or a live socket', async () => {
    // Stale: a socket file left behind by a process that bound it and died.
    socketPath = join(dir, 'stale.sock');
    execFileSync('/usr/bin/python3', [
      '-c',
      'import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])',
      socketPath,
    ]);
    expect(statSync(socketPath).isSocket()).toBe(true);
    await start();
    expect(statSync(socketPath).isSocket()).toBe(true);

    const second = new KeySocketServer({ path: socketPath, lookup, logger: memoryLogger().logger });
    await expect(second.start()).rejects.toSatisfy((e) => isKmipAgentError(e, 'KEYSOCKET_IN_USE'));

    const regular = join(dir, 'regular');
    writeFileSync(regular, 'not a socket');
    const third = new KeySocketServer({ path: regular, lookup, logger: memoryLogger().logger });
    await expect(third.start()).rejects.toSatisfy((e) => isKmipAgentError(e, 'KEYSOCKET_PATH_EXISTS'));
  });
});

describe('parseCryptsetupAddress', () => {
  const parse = (name: string, abstract = true) =>
    parseCryptsetupAddress({ address: Buffer.from((abstract ? '\0' : '') + name, 'utf8'), abstract });

  it('reads the volume of a systemd-cryptsetup address', () => {
    expect(parse('d7067f78d9827418/cryptsetup/myvol')).toEqual({ kind: 'key', volume: 'myvol' });
  });

  it('recognizes the PKCS#11/FIDO2/TPM2 forms as unsupported', () => {
    expect(parse('abc/cryptsetup-fido2/myvol')).toEqual({
      kind: 'unsupported',
      requestType: 'cryptsetup-fido2',
      volume: 'myvol',
    });
  });

  it.each([
    ['a filesystem path', '/run/x/cryptsetup/myvol', false],
    ['no random part', '/cryptsetup/myvol', true],
    ['a non-alphanumeric random part', 'ab-c/cryptsetup/myvol', true],
    ['an empty volume', 'abc/cryptsetup/', true],
    ['a volume with a slash', 'abc/cryptsetup/a/b', true],
    ['a NUL in the volume', 'abc/cryptsetup/a\0b', true],
  ])('rejects %s', (_what, name, abstract) => {
    expect(parse(name, abstract)).toEqual({ kind: 'invalid' });
  });
});
