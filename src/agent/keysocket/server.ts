/**
 * The crypttab key socket: an AF_UNIX stream socket that /etc/crypttab can name as a volume's key
 * file, e.g. `data UUID=... /run/kmip-agent/luks.sock luks`. systemd-cryptsetup connects from the
 * abstract address "\0<random>/cryptsetup/<volume>" and reads the key until EOF.
 *
 * A key goes out only to a root peer asking (by that address) for a volume the agent's lookup knows.
 * Everything else gets EOF and no byte. Every hand-out and refusal is an audit event (volume, peer
 * pid/uid/gid, outcome); keys are never logged and the server zeroes each key buffer once written.
 */
import { chmodSync, lstatSync, mkdirSync, unlinkSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import { KmipAgentError } from '../../errors.js';
import { parseCryptsetupAddress, peerInfo, type PeerInfo } from './peer.js';

/** Who asked, as the audit log records it. */
export interface KeyRequestPeer {
  pid: number;
  uid: number;
  gid: number;
}

/**
 * Returns the volume's key, or undefined when the agent does not serve this volume. The server owns
 * the returned Buffer and zeroes it after writing (hand out a copy if you keep the key).
 */
export type KeyLookup = (volume: string, peer: KeyRequestPeer) => Promise<Buffer | undefined>;

export interface KeySocketOptions {
  /** Filesystem path of the socket (its directory is created 0700 when missing). */
  path: string;
  lookup: KeyLookup;
  /** Audit events go here. */
  logger: Logger;
  /** How long a lookup may take before the request is refused (default 30 s). */
  lookupTimeoutMs?: number;
}

/** The only peer uid that may receive a key: systemd-cryptsetup runs as root. */
const AUTHORIZED_UID = 0;
const MAX_CONNECTIONS = 64;

export type RefusalReason =
  | 'peer-unknown'
  | 'peer-not-root'
  | 'not-a-cryptsetup-request'
  | 'unsupported-request-type'
  | 'unknown-volume'
  | 'lookup-failed'
  | 'lookup-timeout'
  | 'peer-gone';

export class KeySocketServer {
  private server: Server | undefined;
  private readonly lookupTimeoutMs: number;

  constructor(private readonly options: KeySocketOptions) {
    this.lookupTimeoutMs = options.lookupTimeoutMs ?? 30_000;
  }

  get path(): string {
    return this.options.path;
  }

  /** Binds and listens; the socket file is mode 0600 from the moment it exists. */
  async start(): Promise<void> {
    if (this.server) throw new KmipAgentError('the key socket is already listening', 'KEYSOCKET_ALREADY_STARTED');
    const { path } = this.options;
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    await removeStaleSocket(path);
    // Half-open: systemd-cryptsetup shuts down its sending side right after connecting (it only reads);
    // without this Node would end our side too and every request would look like a vanished peer.
    const server = createServer({ allowHalfOpen: true }, (socket) => void this.serve(socket));
    server.maxConnections = MAX_CONNECTIONS;
    await new Promise<void>((resolve, reject) => {
      server.once('error', (e: NodeJS.ErrnoException) =>
        reject(new KmipAgentError(`cannot listen on ${path}: ${e.message}`, 'KEYSOCKET_LISTEN_FAILED', { cause: e })),
      );
      // bind() runs synchronously inside listen(): the umask covers exactly the socket's creation.
      const previous = process.umask(0o177);
      try {
        server.listen(path, () => resolve());
      } finally {
        process.umask(previous);
      }
    });
    chmodSync(path, 0o600);
    server.on('error', (e) => this.options.logger.error({ event: 'keysocket.error', err: e.message }));
    this.server = server;
    this.options.logger.info({ event: 'keysocket.listening', path });
  }

  /** Stops accepting, waits for open requests to finish, removes the socket file. */
  async close(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private async serve(socket: Socket): Promise<void> {
    // A peer that resets mid-way must not crash the agent; the outcome is logged below.
    socket.on('error', () => undefined);
    let peer: PeerInfo;
    try {
      peer = peerInfo(socket);
    } catch (e) {
      this.refuse(socket, undefined, undefined, 'peer-unknown', (e as Error).message);
      return;
    }
    const who: KeyRequestPeer = { pid: peer.pid, uid: peer.uid, gid: peer.gid };
    const request = parseCryptsetupAddress(peer);
    const volume = request.kind === 'invalid' ? undefined : request.volume;
    if (peer.uid !== AUTHORIZED_UID) return this.refuse(socket, who, volume, 'peer-not-root');
    if (request.kind === 'invalid') return this.refuse(socket, who, undefined, 'not-a-cryptsetup-request');
    if (request.kind === 'unsupported')
      return this.refuse(socket, who, volume, 'unsupported-request-type', request.requestType);

    let key: Buffer | undefined;
    try {
      key = await this.lookupWithTimeout(request.volume, who);
    } catch (e) {
      const timedOut = e instanceof KmipAgentError && e.code === 'KEYSOCKET_LOOKUP_TIMEOUT';
      const detail = e instanceof KmipAgentError ? e.code : 'lookup threw';
      return this.refuse(socket, who, volume, timedOut ? 'lookup-timeout' : 'lookup-failed', detail);
    }
    if (key === undefined || key.length === 0) {
      key?.fill(0);
      return this.refuse(socket, who, volume, 'unknown-volume');
    }
    if (socket.destroyed || !socket.writable) {
      key.fill(0);
      return this.refuse(socket, who, volume, 'peer-gone');
    }
    const handed = key;
    const keyBytes = key.length;
    socket.write(handed, (error) => {
      handed.fill(0);
      socket.end();
      if (error) {
        this.audit('refused', who, volume, { reason: 'peer-gone', detail: error.message });
        return;
      }
      this.audit('handed-out', who, volume, { keyBytes });
    });
  }

  private lookupWithTimeout(volume: string, peer: KeyRequestPeer): Promise<Buffer | undefined> {
    let timer: NodeJS.Timeout | undefined;
    let timedOut = false;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        timedOut = true;
        reject(new KmipAgentError(`key lookup for ${volume} timed out`, 'KEYSOCKET_LOOKUP_TIMEOUT'));
      }, this.lookupTimeoutMs);
    });
    const lookup = this.options.lookup(volume, peer);
    // A key that arrives after the timeout is never written, but still zeroed.
    lookup.then(
      (late) => {
        if (timedOut) late?.fill(0);
      },
      () => undefined,
    );
    return Promise.race([lookup, timeout]).finally(() => clearTimeout(timer));
  }

  private refuse(
    socket: Socket,
    peer: KeyRequestPeer | undefined,
    volume: string | undefined,
    reason: RefusalReason,
    detail?: string,
  ): void {
    socket.end();
    this.audit('refused', peer, volume, detail === undefined ? { reason } : { reason, detail });
  }

  /** One audit event per request: who asked for which volume, and what they got (never the key). */
  private audit(
    outcome: 'handed-out' | 'refused',
    peer: KeyRequestPeer | undefined,
    volume: string | undefined,
    extra: { reason?: RefusalReason; detail?: string; keyBytes?: number },
  ): void {
    const event = {
      event: 'keysocket.key',
      outcome,
      volume,
      peerPid: peer?.pid,
      peerUid: peer?.uid,
      peerGid: peer?.gid,
      ...extra,
    };
    if (outcome === 'handed-out') this.options.logger.info(event);
    else this.options.logger.warn(event);
  }
}

/** A leftover socket file from a previous run is removed; a live one, or any other file, is an error. */
async function removeStaleSocket(path: string): Promise<void> {
  let isSocket: boolean;
  try {
    isSocket = lstatSync(path).isSocket();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw e;
  }
  if (!isSocket)
    throw new KmipAgentError(`${path} exists and is not a socket: not replacing it`, 'KEYSOCKET_PATH_EXISTS');
  const live = await new Promise<boolean>((resolve) => {
    const probe = createConnection(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (live) throw new KmipAgentError(`another process is serving keys on ${path}`, 'KEYSOCKET_IN_USE');
  unlinkSync(path);
}
