/**
 * One mutual-TLS connection to a KMIP server, carrying one message at a time. Framing uses the 8-byte
 * TTLV header of the Response Message (tag 42007B, type Structure, 4-byte length): anything else, a
 * length beyond the limit, bytes nobody asked for, a stall or a drop fails the pending exchange with a
 * typed error and closes the connection, so the next request starts on a clean one.
 */
import { X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';
import { checkServerIdentity, connect, type DetailedPeerCertificate, type TLSSocket } from 'node:tls';
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
  /**
   * Trust on first use: the SHA-256 fingerprint of the server's own (leaf) certificate, as openssl prints
   * it ("AB:CD:..."). Checked after the chain and name verified; any other certificate is refused.
   */
  pinnedSha256?: string;
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

/** What the server's side must change when its certificate chain is refused as weak. */
const WEAK_KEY_HINT =
  'the server certificate (and every CA certificate of its chain) needs an RSA key of at least 2048 bits or an EC key of at least 256 bits: have it reissued';
const WEAK_SIGNATURE_HINT =
  'the server certificate chain must be signed with SHA-256 or stronger (not SHA-1 or MD5): have it reissued';

/** OpenSSL's own refusals of weak chains (at its security level), as Node reports them. */
const OPENSSL_WEAK_KEY = /\b(EE|CA)_KEY_TOO_SMALL\b|key too (small|weak)/i;
const OPENSSL_WEAK_SIGNATURE = /\bCA_MD_TOO_WEAK\b|md too weak|digest algorithm too weak/i;
/** The server offers no TLS version we accept (1.2, 1.3): OpenSSL's alert and local refusal. */
const PROTOCOL_VERSION = /protocol version|unsupported protocol|UNSUPPORTED_PROTOCOL|no protocols available/i;

/** Maps a socket/TLS failure to a stable KMIP_* code, a message naming the cause and a hint. */
export function classifySocketError(error: unknown, where: string): KmipError {
  if (error instanceof KmipError) return error;
  const e = error as NodeJS.ErrnoException;
  const code = e?.code ?? '';
  const text = e?.message ?? String(error);
  const fail = (message: string, kmipCode: string, hint?: string) =>
    new KmipError(`${where}: ${message}`, kmipCode, { cause: error, ...(hint === undefined ? {} : { hint }) });
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID')
    return fail(
      `the server certificate does not name this host (${text})`,
      'KMIP_TLS_HOSTNAME_MISMATCH',
      'connect by a name the server certificate lists, or set the name to verify (servername)',
    );
  if (TLS_UNTRUSTED.has(code))
    return fail(
      `the server certificate is not trusted (${code})`,
      'KMIP_TLS_UNTRUSTED',
      'trust the CA that issued the server certificate (the ca option)',
    );
  if (code === 'CERT_HAS_EXPIRED')
    return fail(
      'the server certificate has expired',
      'KMIP_TLS_CERT_EXPIRED',
      "the server's certificate must be renewed (or this machine's clock is wrong)",
    );
  if (code === 'CERT_NOT_YET_VALID')
    return fail(
      'the server certificate is not valid yet (its start date is in the future)',
      'KMIP_TLS_CERT_NOT_YET_VALID',
      "check this machine's clock (and the server's, where the certificate was issued)",
    );
  if (OPENSSL_WEAK_SIGNATURE.test(code) || OPENSSL_WEAK_SIGNATURE.test(text))
    return fail(
      `the server certificate chain is signed with a weak digest such as SHA-1 (${text})`,
      'KMIP_TLS_WEAK_SIGNATURE',
      WEAK_SIGNATURE_HINT,
    );
  if (OPENSSL_WEAK_KEY.test(code) || OPENSSL_WEAK_KEY.test(text))
    return fail(`a certificate of the server chain has a weak key (${text})`, 'KMIP_TLS_WEAK_KEY', WEAK_KEY_HINT);
  if (PROTOCOL_VERSION.test(code) || PROTOCOL_VERSION.test(text))
    return fail(
      `no TLS version in common with the server: it offers none of TLS 1.2/1.3 this client allows (TLS 1.0 and 1.1 are refused) (${text})`,
      'KMIP_TLS_PROTOCOL_VERSION',
      'the server must enable TLS 1.2 or later; TLS 1.0 and 1.1 are refused',
    );
  if (code.startsWith('ERR_SSL') || code.startsWith('ERR_TLS') || /alert|handshake|ssl/i.test(text))
    return fail(
      `TLS handshake failed (${text})`,
      'KMIP_TLS_HANDSHAKE_FAILED',
      'check that the server trusts the CA of the client certificate, and that certificate and key belong together',
    );
  if (code === 'ECONNREFUSED')
    return fail(
      'connection refused; is the KMIP server running?',
      'KMIP_CONNECTION_REFUSED',
      'check that the server runs and that host and port are right',
    );
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN')
    return new KmipError(`${where}: host name does not resolve`, 'KMIP_CONNECTION_DNS', { cause: error });
  if (code === 'ECONNRESET' || code === 'EPIPE')
    return new KmipError(`${where}: connection reset by the server`, 'KMIP_CONNECTION_RESET', { cause: error });
  if (code === 'EHOSTUNREACH' || code === 'ENETUNREACH' || code === 'ETIMEDOUT')
    return new KmipError(`${where}: server unreachable (${code})`, 'KMIP_CONNECTION_UNREACHABLE', { cause: error });
  return new KmipError(`${where}: ${text}`, 'KMIP_CONNECTION_FAILED', { cause: error });
}

const ENCRYPTED_PEM = /-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type:\s*4,ENCRYPTED/;
const KEY_HINT = 'give the key passphrase (passphrase), or use an unencrypted copy of the key kept with mode 0600';

const NO_CLIENT_CERT_HINT =
  'give the client certificate and its private key (cert and key; kmip-agent: `kmip-agent cert generate`, or setup --cert/--key): KMIP servers authenticate clients by mutual TLS';

/**
 * Client credentials that cannot work, refused before connecting: no certificate or key (mutual TLS is
 * mandatory), or a certificate whose extendedKeyUsage lacks clientAuth (a TLS 1.3 server would refuse it
 * only after our handshake is done, when the first request may already be on its way).
 */
function clientCredentialsError(target: TlsEndpoint, endpoint: string): KmipError | undefined {
  if (target.cert === undefined || target.key === undefined)
    return new KmipError(
      `${endpoint}: no client ${target.cert === undefined ? 'certificate' : 'private key'} given`,
      'KMIP_TLS_NO_CLIENT_CERT',
      { hint: NO_CLIENT_CERT_HINT },
    );
  if (clientAuthProblem(target.cert) === 'lacking')
    return new KmipError(
      `${endpoint}: the client certificate lacks extendedKeyUsage clientAuth; the server would refuse it`,
      'KMIP_TLS_CLIENT_CERT_NOT_CLIENT_AUTH',
      { hint: CLIENT_AUTH_HINT },
    );
  return encryptedKeyError(target, endpoint);
}

/** An encrypted client key without a passphrase: refused by name (OpenSSL would say "bad decrypt"). */
function encryptedKeyError(target: TlsEndpoint, endpoint: string): KmipError | undefined {
  if (target.key === undefined || target.passphrase !== undefined) return undefined;
  const pem = typeof target.key === 'string' ? target.key : target.key.toString('latin1');
  if (!ENCRYPTED_PEM.test(pem)) return undefined;
  return new KmipError(
    `${endpoint}: the client private key is encrypted and no passphrase was given`,
    'KMIP_TLS_KEY_ENCRYPTED',
    { hint: KEY_HINT },
  );
}

/** Why Node could not build a TLS context from the credentials. */
function credentialsError(error: unknown, target: TlsEndpoint, endpoint: string): KmipError {
  const code = (error as NodeJS.ErrnoException)?.code ?? '';
  const text = (error as Error)?.message ?? String(error);
  if (code === 'ERR_OSSL_BAD_DECRYPT' || /bad decrypt/i.test(text))
    return new KmipError(
      target.passphrase === undefined
        ? `${endpoint}: the client private key is encrypted and no passphrase was given`
        : `${endpoint}: the passphrase does not decrypt the client private key`,
      'KMIP_TLS_KEY_ENCRYPTED',
      { cause: error, hint: KEY_HINT },
    );
  return new KmipError(`${endpoint}: the TLS credentials cannot be used (${text})`, 'KMIP_TLS_BAD_CREDENTIALS', {
    cause: error,
    hint: /KEY_VALUES_MISMATCH|key values mismatch/i.test(code + text)
      ? 'the private key does not belong to the client certificate'
      : 'check that the CA, certificate and key are readable PEM',
  });
}

/** Smallest keys accepted anywhere in the server's chain (112-bit security and up; EC from P-256). */
const MIN_RSA_BITS = 2048;
const MIN_EC_BITS = 256;

/**
 * Signature algorithms refused in the server's chain (DER of their OIDs). RSASSA-PSS is checked
 * separately: its hash is a parameter, SHA-1 when absent.
 */
const WEAK_SIGNATURES = new Map([
  ['2a864886f70d010105', 'sha1WithRSAEncryption'],
  ['2b0e03021d', 'sha1WithRSAEncryption (OIW)'],
  ['2a8648ce3d0401', 'ecdsa-with-SHA1'],
  ['2a8648ce380403', 'dsa-with-SHA1'],
  ['2a864886f70d010104', 'md5WithRSAEncryption'],
  ['2a864886f70d010102', 'md2WithRSAEncryption'],
]);
const RSASSA_PSS = '2a864886f70d01010a';
const SHA1 = '2b0e03021a';

/** One DER item: tag byte, where its content starts and where the item ends. */
function derItem(der: Buffer, offset: number): { tag: number; start: number; end: number } {
  const tag = der[offset]!;
  let length = der[offset + 1]!;
  let start = offset + 2;
  if (length & 0x80) {
    const bytes = length & 0x7f;
    if (bytes === 0 || bytes > 4) throw new RangeError('unsupported DER length');
    length = der.readUIntBE(start, bytes);
    start += bytes;
  }
  if (start + length > der.length) throw new RangeError('truncated DER');
  return { tag, start, end: start + length };
}

/** The weak signature algorithm a certificate is signed with, or undefined (also when unreadable). */
function weakSignature(der: Buffer): string | undefined {
  try {
    // Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm SEQUENCE { OID, params }, signature }
    const certificate = derItem(der, 0);
    const tbs = derItem(der, certificate.start);
    const algorithm = derItem(der, tbs.end);
    const oid = derItem(der, algorithm.start);
    if (oid.tag !== 0x06) return undefined;
    const hex = der.subarray(oid.start, oid.end).toString('hex');
    if (hex !== RSASSA_PSS) return WEAK_SIGNATURES.get(hex);
    const params = oid.end < algorithm.end ? der.subarray(oid.end, algorithm.end).toString('hex') : '';
    // RSASSA-PSS-params: hashAlgorithm [0] defaults to SHA-1.
    const sequence = params.startsWith('30') ? derItem(der, oid.end) : undefined;
    const explicitHash = sequence !== undefined && sequence.end > sequence.start && der[sequence.start] === 0xa0;
    return !explicitHash || params.includes('0605' + SHA1) ? 'RSASSA-PSS with SHA-1' : undefined;
  } catch {
    return undefined;
  }
}

/** The key of a certificate if it is below the minimum, as "1024-bit RSA". */
function weakKey(certificate: DetailedPeerCertificate): string | undefined {
  let type: string | undefined;
  try {
    type = new X509Certificate(certificate.raw).publicKey.asymmetricKeyType;
  } catch {
    return undefined;
  }
  const bits = certificate.bits;
  if (typeof bits !== 'number') return undefined;
  if ((type === 'rsa' || type === 'rsa-pss' || type === 'dsa') && bits < MIN_RSA_BITS)
    return `${bits}-bit ${type.toUpperCase()}`;
  if (type === 'ec' && bits < MIN_EC_BITS) return `${bits}-bit EC`;
  return undefined;
}

/**
 * The first weakness in the verified server chain, leaf first: a key below 2048-bit RSA/DSA or 256-bit
 * EC (in any certificate, the trust anchor included) or a SHA-1/MD5 signature (on any certificate
 * but a self-signed anchor, whose own signature nobody relies on).
 */
export function weakChainError(leaf: DetailedPeerCertificate, endpoint: string): KmipError | undefined {
  const seen = new Set<string>();
  for (let cert: DetailedPeerCertificate | undefined = leaf; cert && !seen.has(cert.fingerprint256);) {
    seen.add(cert.fingerprint256);
    const issuer: DetailedPeerCertificate | undefined = cert.issuerCertificate;
    const selfSigned: boolean =
      issuer === undefined || issuer === cert || issuer.fingerprint256 === cert.fingerprint256;
    const which = cert === leaf ? 'the server certificate' : 'a CA certificate of the server chain';
    const subject = cert.subject?.CN === undefined ? '' : ` (CN=${String(cert.subject.CN)})`;
    const key = weakKey(cert);
    if (key)
      return new KmipError(
        `${endpoint}: ${which}${subject} has a ${key} key; at least ${MIN_RSA_BITS}-bit RSA or ${MIN_EC_BITS}-bit EC is required`,
        'KMIP_TLS_WEAK_KEY',
        { hint: WEAK_KEY_HINT },
      );
    const signature = selfSigned && cert !== leaf ? undefined : weakSignature(cert.raw);
    if (signature)
      return new KmipError(`${endpoint}: ${which}${subject} is signed with ${signature}`, 'KMIP_TLS_WEAK_SIGNATURE', {
        hint: WEAK_SIGNATURE_HINT,
      });
    cert = selfSigned ? undefined : issuer;
  }
  return undefined;
}

/** What to do when a pinned server certificate changed. */
export const PINNED_CERT_HINT =
  "if the server's certificate was replaced on purpose, check the new fingerprint with the server's administrator and pin it again (kmip-agent: `kmip-agent server trust <server>`)";

/** A leaf that is not the pinned one (undefined when there is no pin or it matches). */
export function pinMismatchError(
  leaf: DetailedPeerCertificate,
  pinnedSha256: string | undefined,
  endpoint: string,
): KmipError | undefined {
  if (pinnedSha256 === undefined) return undefined;
  const seen = leaf.fingerprint256?.toUpperCase() ?? '';
  if (seen === pinnedSha256.toUpperCase()) return undefined;
  return new KmipError(
    `${endpoint}: the server certificate changed: it has SHA-256 fingerprint ${seen || '(none)'}, but ${pinnedSha256.toUpperCase()} is pinned`,
    'KMIP_TLS_SERVER_CERT_CHANGED',
    { hint: PINNED_CERT_HINT, details: { presentedSha256: seen, pinnedSha256: pinnedSha256.toUpperCase() } },
  );
}

const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
const ANY_EXTENDED_KEY_USAGE = '2.5.29.37.0';
export const CLIENT_AUTH_HINT = 'reissue the client certificate with extendedKeyUsage clientAuth';

/**
 * Why the client certificate (the first of the PEM) is not one for client authentication: `absent`
 * (no extendedKeyUsage: RFC 5280 allows any use, but PyKMIP and others require clientAuth), `lacking`
 * (extendedKeyUsage without clientAuth, which TLS servers refuse), or undefined when it is fine.
 */
export function clientAuthProblem(cert: TlsEndpoint['cert']): 'absent' | 'lacking' | undefined {
  if (cert === undefined) return undefined;
  let usages: string[] | undefined;
  try {
    usages = new X509Certificate(cert).keyUsage;
  } catch {
    return undefined;
  }
  if (usages === undefined) return 'absent';
  return usages.includes(CLIENT_AUTH) || usages.includes(ANY_EXTENDED_KEY_USAGE) ? undefined : 'lacking';
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
    socket.on('end', () => {
      this.fail(new KmipError(`${this.endpoint}: the server closed the connection`, 'KMIP_CONNECTION_CLOSED'));
    });
    socket.on('close', () =>
      this.fail(new KmipError(`${this.endpoint}: the connection is closed`, 'KMIP_CONNECTION_CLOSED')),
    );
  }

  /** Opens and verifies a TLS connection (chain and host name). */
  static open(target: TlsEndpoint, options: ConnectionOptions = {}): Promise<KmipConnection> {
    const endpoint = `${target.host}:${target.port}`;
    const servername = target.servername ?? target.host;
    return new Promise((resolve, reject) => {
      const unusable = clientCredentialsError(target, endpoint);
      if (unusable) {
        reject(unusable);
        return;
      }
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
        reject(credentialsError(error, target, endpoint));
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
        // The chain verified; refuse it still if it is weak, before any request is written.
        const leaf = socket.getPeerCertificate(true);
        const refused = weakChainError(leaf, endpoint) ?? pinMismatchError(leaf, target.pinnedSha256, endpoint);
        if (refused) {
          socket.destroy();
          reject(refused);
          return;
        }
        socket.setNoDelay(true);
        // Idle until the first exchange (which refs it again).
        socket.unref();
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
    // Only a connection with work keeps the process alive: a script that forgets close() still exits.
    if (this.outstanding++ === 0) this.socket.ref();
    const settled = () => {
      if (--this.outstanding === 0) this.socket.unref();
    };
    // Nothing before it (the previous exchange is answered): written now, not after a hop through the queue.
    const started = this.outstanding === 1 ? run() : this.tail.then(run, run);
    const result = started.then(
      (response) => {
        settled();
        return response;
      },
      (error: unknown) => {
        settled();
        throw error;
      },
    );
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

/** One certificate of a server's chain as the server sent it. */
export interface PresentedCertificate {
  subject: string;
  issuer: string;
  validFrom: string;
  validTo: string;
  /** openssl-style "AB:CD:..." */
  sha256: string;
  /** Issued by itself (a root, the end of a chain). */
  selfSigned: boolean;
  pem: string;
}

/** What `fetchServerChain` saw: the chain, leaf first, and whether the leaf names the host. */
export interface PresentedChain {
  endpoint: string;
  certificates: PresentedCertificate[];
  /** Why the leaf does not name the host (or servername); undefined when it does. */
  nameProblem?: string;
}

const pemOf = (der: Buffer) =>
  `-----BEGIN CERTIFICATE-----\n${der
    .toString('base64')
    .replace(/(.{64})/g, '$1\n')
    .replace(/\n$/, '')}\n-----END CERTIFICATE-----\n`;

/**
 * For trust on first use: the certificate chain a server presents, read from a handshake that does not
 * verify it (rejectUnauthorized false). The connection is closed as soon as the handshake is done: not one
 * KMIP byte is written on it, so nothing secret can go to a server nobody trusts yet. The client
 * certificate is offered when given (servers that require one end the handshake without it).
 */
export function fetchServerChain(
  target: Pick<TlsEndpoint, 'host' | 'port' | 'servername' | 'cert' | 'key' | 'passphrase'>,
  options: { connectTimeoutMs?: number } = {},
): Promise<PresentedChain> {
  const endpoint = `${target.host}:${target.port}`;
  const servername = target.servername ?? target.host;
  const timeoutMs = options.connectTimeoutMs ?? 10_000;
  return new Promise((resolve, reject) => {
    let socket: TLSSocket;
    try {
      socket = connect({
        host: target.host,
        port: target.port,
        cert: target.cert,
        key: target.key,
        passphrase: target.passphrase,
        servername: isIP(servername) ? undefined : servername,
        rejectUnauthorized: false,
        minVersion: 'TLSv1.2',
      });
    } catch (error) {
      reject(credentialsError(error, target, endpoint));
      return;
    }
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new KmipError(`${endpoint}: no TLS connection within ${timeoutMs} ms`, 'KMIP_CONNECTION_TIMEOUT'));
    }, timeoutMs);
    socket.once('error', (error) => {
      clearTimeout(timer);
      socket.destroy();
      reject(classifySocketError(error, endpoint));
    });
    socket.once('secureConnect', () => {
      clearTimeout(timer);
      const leaf = socket.getPeerCertificate(true);
      socket.destroy();
      const certificates: PresentedCertificate[] = [];
      const seen = new Set<string>();
      for (let cert: DetailedPeerCertificate | undefined = leaf; cert?.raw && !seen.has(cert.fingerprint256);) {
        seen.add(cert.fingerprint256);
        const x509: X509Certificate = new X509Certificate(cert.raw);
        const selfSigned: boolean = x509.checkIssued(x509) && x509.verify(x509.publicKey);
        certificates.push({
          subject: x509.subject.replace(/\n/g, ', '),
          issuer: x509.issuer.replace(/\n/g, ', '),
          validFrom: new Date(x509.validFrom).toISOString(),
          validTo: new Date(x509.validTo).toISOString(),
          sha256: x509.fingerprint256,
          selfSigned,
          pem: pemOf(cert.raw),
        });
        const issuer: DetailedPeerCertificate | undefined = cert.issuerCertificate;
        cert = selfSigned || issuer === cert ? undefined : issuer;
      }
      if (certificates.length === 0) {
        reject(new KmipError(`${endpoint}: the server presented no certificate`, 'KMIP_TLS_NO_SERVER_CERT'));
        return;
      }
      const mismatch = checkServerIdentity(servername, leaf);
      resolve({ endpoint, certificates, ...(mismatch ? { nameProblem: mismatch.message } : {}) });
    });
  });
}
