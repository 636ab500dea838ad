/**
 * One mutual-TLS connection to a KMIP server, carrying one message at a time. Framing uses the 8-byte
 * TTLV header of the Response Message (tag 42007B, type Structure, 4-byte length): anything else, a
 * length beyond the limit, bytes nobody asked for, a stall or a drop fails the pending exchange with a
 * typed error and closes the connection, so the next request starts on a clean one.
 */
import { isIP } from 'node:net';
import { connect, type TLSSocket } from 'node:tls';
import { KmipError } from './errors.js';
import { T } from './spec.js';
import { DEFAULT_MAX_BYTES, decodeMessageLength, HEADER_LENGTH } from './ttlv/binary.js';
import { TtlvError, TtlvErrorCode } from './ttlv/errors.js';

export interface TlsEndpoint {
  host: string;
  port: number;
  /** Trusted CA certificates (PEM); the server chain must end in one of them. */
  ca?: string | Buffer | (string | Buffer)[];
  /** Client certificate (PEM), optionally followed by intermediates. */
  cert?: string | Buffer;
  /** Client private key (PEM). */
  key?: string | Buffer;
  passphrase?: string;
  /** Name to verify in the server certificate; defaults to `host`. */
  servername?: string;
  minVersion?: 'TLSv1.2' | 'TLSv1.3';
  maxVersion?: 'TLSv1.2' | 'TLSv1.3';
}

export interface ConnectionOptions {
  connectTimeoutMs?: number;
  /** Largest response accepted, in bytes (header included). */
  maxMessageBytes?: number;
}

/** Largest response accepted by default: the codec's own limit. */
export const DEFAULT_MAX_MESSAGE_BYTES = DEFAULT_MAX_BYTES;

const TLS_UNTRUSTED = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
  'INVALID_CA',
  'CERT_REJECTED',
]);

/** Maps a socket/TLS failure to a stable KMIP_* code and an actionable message. */
export function classifySocketError(error: unknown, where: string): KmipError {
  if (error instanceof KmipError) return error;
  const e = error as NodeJS.ErrnoException;
  const code = e?.code ?? '';
  const text = e?.message ?? String(error);
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID')
    return new KmipError(
      `${where}: the server certificate does not name this host (${text}); use the name in its certificate`,
      'KMIP_TLS_HOSTNAME_MISMATCH',
      { cause: error },
    );
  if (TLS_UNTRUSTED.has(code))
    return new KmipError(`${where}: server certificate not trusted (${code}); check --ca`, 'KMIP_TLS_UNTRUSTED', {
      cause: error,
    });
  if (code === 'CERT_HAS_EXPIRED' || code === 'CERT_NOT_YET_VALID')
    return new KmipError(`${where}: server certificate is not valid now (${code})`, 'KMIP_TLS_CERT_EXPIRED', {
      cause: error,
    });
  if (code.startsWith('ERR_SSL') || code.startsWith('ERR_TLS') || /alert|handshake|ssl/i.test(text))
    return new KmipError(`${where}: TLS handshake failed (${text})`, 'KMIP_TLS_HANDSHAKE_FAILED', { cause: error });
  if (code === 'ECONNREFUSED')
    return new KmipError(`${where}: connection refused; is the KMIP server running?`, 'KMIP_CONNECTION_REFUSED', {
      cause: error,
    });
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN')
    return new KmipError(`${where}: host name does not resolve`, 'KMIP_CONNECTION_DNS', { cause: error });
  if (code === 'ECONNRESET' || code === 'EPIPE')
    return new KmipError(`${where}: connection reset by the server`, 'KMIP_CONNECTION_RESET', { cause: error });
  if (code === 'EHOSTUNREACH' || code === 'ENETUNREACH' || code === 'ETIMEDOUT')
    return new KmipError(`${where}: server unreachable (${code})`, 'KMIP_CONNECTION_UNREACHABLE', { cause: error });
  return new KmipError(`${where}: ${text}`, 'KMIP_CONNECTION_FAILED', { cause: error });
}

/** The codec's header refusals as this layer's codes: not a Response Message, or an unusable length. */
function framingError(endpoint: string, error: unknown): KmipError {
  if (!(error instanceof TtlvError)) throw error;
  return error.code === TtlvErrorCode.BadType
    ? new KmipError(
        `${endpoint}: the answer does not start with a Response Message (${error.reason})`,
        'KMIP_PROTOCOL_UNEXPECTED_MESSAGE',
        { cause: error },
      )
    : new KmipError(`${endpoint}: unusable response length (${error.reason})`, 'KMIP_PROTOCOL_BAD_LENGTH', {
        cause: error,
      });
}

interface Pending {
  resolve: (message: Buffer) => void;
  reject: (error: KmipError) => void;
  timer: NodeJS.Timeout;
}

export class KmipConnection {
  readonly endpoint: string;
  private readonly socket: TLSSocket;
  private readonly maxMessageBytes: number;
  private chunks: Buffer[] = [];
  private buffered = 0;
  private expected = -1;
  private pending: Pending | undefined;
  /** Completed exchanges: a reused connection may have been dropped by the server while idle. */
  exchanges = 0;
  /** When a request was last written or answered (or the connection opened), for idle-age checks. */
  lastActivity = performance.now();
  /** Exchanges queued or in flight: a connection carrying one is not idle, whatever its age. */
  private outstanding = 0;
  private closedWith: KmipError | undefined;
  /** Serializes exchanges: one message in flight per connection. */
  private tail: Promise<unknown> = Promise.resolve();

  private constructor(socket: TLSSocket, endpoint: string, maxMessageBytes: number) {
    this.socket = socket;
    this.endpoint = endpoint;
    this.maxMessageBytes = maxMessageBytes;
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (error) => this.fail(classifySocketError(error, this.endpoint)));
    socket.on('end', () =>
      this.fail(new KmipError(`${this.endpoint}: the server closed the connection`, 'KMIP_CONNECTION_CLOSED')),
    );
    socket.on('close', () =>
      this.fail(new KmipError(`${this.endpoint}: the connection is closed`, 'KMIP_CONNECTION_CLOSED')),
    );
  }

  /** Opens and verifies a TLS connection (chain and host name). */
  static open(target: TlsEndpoint, options: ConnectionOptions = {}): Promise<KmipConnection> {
    const endpoint = `${target.host}:${target.port}`;
    const servername = target.servername ?? target.host;
    return new Promise((resolve, reject) => {
      let socket: TLSSocket;
      try {
        socket = connect({
          host: target.host,
          port: target.port,
          ca: target.ca,
          cert: target.cert,
          key: target.key,
          passphrase: target.passphrase,
          // SNI cannot carry an IP address; verification still checks the IP SAN against `host`.
          servername: isIP(servername) ? undefined : servername,
          rejectUnauthorized: true,
          minVersion: target.minVersion ?? 'TLSv1.2',
          maxVersion: target.maxVersion ?? 'TLSv1.3',
        });
      } catch (error) {
        // Unreadable PEM, a key that does not match the certificate...: nothing was sent.
        reject(
          new KmipError(
            `${endpoint}: the TLS credentials cannot be used (${(error as Error).message}); check the CA, certificate and key files`,
            'KMIP_TLS_BAD_CREDENTIALS',
            { cause: error },
          ),
        );
        return;
      }
      const timer = setTimeout(() => {
        socket.destroy();
        reject(
          new KmipError(
            `${endpoint}: no TLS connection within ${options.connectTimeoutMs ?? 10_000} ms`,
            'KMIP_CONNECTION_TIMEOUT',
          ),
        );
      }, options.connectTimeoutMs ?? 10_000);
      const onError = (error: Error) => {
        clearTimeout(timer);
        socket.destroy();
        reject(classifySocketError(error, endpoint));
      };
      socket.once('error', onError);
      socket.once('secureConnect', () => {
        clearTimeout(timer);
        socket.removeListener('error', onError);
        // Node verifies against `servername` when set; for IP targets it checks `host` itself.
        if (!socket.authorized) {
          socket.destroy();
          reject(classifySocketError(socket.authorizationError, endpoint));
          return;
        }
        socket.setNoDelay(true);
        resolve(new KmipConnection(socket, endpoint, options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES));
      });
    });
  }

  get closed(): boolean {
    return this.closedWith !== undefined;
  }

  /** Milliseconds since a request was last written or answered (or since the connection opened). */
  get idleMs(): number {
    return performance.now() - this.lastActivity;
  }

  /** True while an exchange is queued or awaiting its answer. */
  get busy(): boolean {
    return this.outstanding > 0;
  }

  /** The negotiated TLS version, e.g. "TLSv1.3". */
  get tlsVersion(): string | null {
    return this.socket.getProtocol();
  }

  /** Sends one encoded request message and resolves with the raw response message. */
  exchange(request: Buffer, timeoutMs: number): Promise<Buffer> {
    const run = () => this.exchangeNow(request, timeoutMs);
    this.outstanding++;
    const result = this.tail.then(run, run).finally(() => this.outstanding--);
    this.tail = result.catch(() => undefined);
    return result;
  }

  close(): void {
    this.fail(new KmipError(`${this.endpoint}: connection closed by the client`, 'KMIP_CONNECTION_CLOSED'));
  }

  private exchangeNow(request: Buffer, timeoutMs: number): Promise<Buffer> {
    if (this.closedWith) {
      // Queued behind a request that lost the connection: this one was never written.
      const unsent = new KmipError(this.closedWith.message, this.closedWith.code, { cause: this.closedWith });
      unsent.requestSent = false;
      return Promise.reject(unsent);
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        // The answer may still arrive later and would be mistaken for the next one: drop the connection.
        this.fail(new KmipError(`${this.endpoint}: no answer within ${timeoutMs} ms`, 'KMIP_TIMEOUT'));
      }, timeoutMs);
      this.pending = { resolve, reject, timer };
      this.lastActivity = performance.now();
      this.socket.write(request);
    });
  }

  private onData(chunk: Buffer): void {
    if (this.closedWith) return;
    if (!this.pending) {
      this.fail(
        new KmipError(`${this.endpoint}: the server sent data nobody asked for`, 'KMIP_PROTOCOL_UNSOLICITED_DATA'),
      );
      return;
    }
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    if (this.expected < 0 && this.buffered >= HEADER_LENGTH) {
      // Only the 8 header bytes are read; a joined copy would also hold the start of the payload.
      const head = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.buffered);
      const tag = head.readUIntBE(0, 3);
      let failure: KmipError | undefined;
      if (tag !== T.ResponseMessage)
        failure = new KmipError(
          `${this.endpoint}: the answer does not start with a Response Message (tag 0x${tag.toString(16)})`,
          'KMIP_PROTOCOL_UNEXPECTED_MESSAGE',
        );
      else
        try {
          this.expected = decodeMessageLength(head, { maxBytes: this.maxMessageBytes });
        } catch (error) {
          failure = framingError(this.endpoint, error);
        }
      if (head !== this.chunks[0]) head.fill(0);
      if (failure) {
        this.fail(failure);
        return;
      }
    }
    if (this.expected >= 0 && this.buffered >= this.expected) {
      const all = Buffer.concat(this.chunks, this.buffered);
      // The pieces may hold key material; `all` is the one copy the client reads (and wipes).
      for (const piece of this.chunks) piece.fill(0);
      if (all.length > this.expected) {
        // A well-behaved server sends nothing beyond the answer to our one request.
        all.fill(0);
        this.fail(
          new KmipError(`${this.endpoint}: bytes after the end of the response`, 'KMIP_PROTOCOL_UNSOLICITED_DATA'),
        );
        return;
      }
      const pending = this.pending;
      this.pending = undefined;
      this.chunks = [];
      this.buffered = 0;
      this.expected = -1;
      clearTimeout(pending.timer);
      this.exchanges++;
      this.lastActivity = performance.now();
      pending.resolve(all);
    }
  }

  private fail(error: KmipError): void {
    if (!this.closedWith) this.closedWith = error;
    const pending = this.pending;
    this.pending = undefined;
    // A partial answer may already hold key material.
    for (const piece of this.chunks) piece.fill(0);
    this.chunks = [];
    this.buffered = 0;
    this.expected = -1;
    if (pending) {
      clearTimeout(pending.timer);
      pending.reject(error);
    }
    if (!this.socket.destroyed) this.socket.destroy();
  }
}
