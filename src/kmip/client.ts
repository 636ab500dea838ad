/**
 * A KMIP client over one TLS connection: negotiates the protocol version with Discover Versions,
 * batches operations (per-item results), times requests out, reconnects transparently after the
 * server drops an idle connection and resends only idempotent operations. Concurrent callers are
 * queued: one message in flight per connection.
 */
import { encode, decode } from './ttlv/binary.js';
import { ItemType, type TtlvItem } from './ttlv/types.js';
import { CLIENT_AUTH_HINT, KmipConnection, clientAuthProblem, type TlsEndpoint } from './connection.js';
import { KmipError, KmipOperationError } from './errors.js';
import { buildRequest, parseResponse, type ResponseItem } from './message.js';
import { compareVersions, formatVersion, protocolError, type ProtocolVersion } from './fields.js';
import {
  BatchErrorContinuationOption,
  QueryFunction,
  ResultReason,
  ResultStatus,
  nameOf,
  Operation,
  T,
} from './spec.js';
import * as ops from './operations.js';
import type { BatchRequest } from './operations.js';
import { KmipOperationsApi, type CallOptions, type ItemResult, type Results } from './api.js';

export interface KmipClientOptions extends TlsEndpoint {
  /** Per-request timeout (connect + answer), default 15 s. */
  requestTimeoutMs?: number;
  connectTimeoutMs?: number;
  /** Versions this client may speak, most preferred first; default 2.1 down to 1.0. */
  versions?: ProtocolVersion[];
  /** Skip negotiation and speak this version. */
  version?: ProtocolVersion;
  /** Version of the Discover Versions request header itself (default 1.2, which every 1.1+ server reads). */
  discoveryVersion?: ProtocolVersion;
  /** Send a Time Stamp in each request header: only when the local clock is accurate (PyKMIP refuses > 60 s off). */
  sendTimeStamp?: boolean;
  /** Largest response accepted (bytes), default 16 MiB. */
  maxMessageBytes?: number;
  /** Resends of an idempotent request after the connection dropped under it (default 1). */
  idempotentRetries?: number;
  /**
   * Reconnect before a request when the connection has been idle this long (default 25 s): servers drop
   * idle clients after 30 s to 3 min, and a fresh connection avoids losing a Create to that race.
   */
  maxIdleMs?: number;
}

export const ALL_VERSIONS: ProtocolVersion[] = [
  { major: 2, minor: 1 },
  { major: 2, minor: 0 },
  { major: 1, minor: 4 },
  { major: 1, minor: 3 },
  { major: 1, minor: 2 },
  { major: 1, minor: 1 },
  { major: 1, minor: 0 },
];
const V1_2: ProtocolVersion = { major: 1, minor: 2 };

/** Drops that mean "the server closed a connection we reused": the request may never have been read. */
/** An item refused as an invalid message: maybe an operation the server does not support (flagUnsupported). */
const isSuspicious = (r: ItemResult<unknown>) =>
  !r.ok && r.error instanceof KmipOperationError && r.error.resultReason?.code === ResultReason.InvalidMessage;

const RETRYABLE_DROPS = new Set(['KMIP_CONNECTION_CLOSED', 'KMIP_CONNECTION_RESET']);

export class KmipClient extends KmipOperationsApi {
  // A true private field: it holds the client key, which must not leak through logging or JSON of the client.
  readonly #options: Readonly<KmipClientOptions>;
  private connection: KmipConnection | undefined;
  private opening: Promise<KmipConnection> | undefined;
  private version: ProtocolVersion | undefined;
  private batchCounter = 0;
  private operationsQuery: Promise<number[] | undefined> | undefined;

  constructor(options: KmipClientOptions) {
    super();
    this.#options = { ...options };
    if (options.version) this.version = options.version;
  }

  get endpoint(): string {
    return `${this.#options.host}:${this.#options.port}`;
  }

  /** The negotiated (or configured) protocol version; undefined before the first request. */
  get protocolVersion(): ProtocolVersion | undefined {
    return this.version;
  }

  /** The TLS version of the current connection, if open. */
  get tlsVersion(): string | null {
    return this.connection && !this.connection.closed ? this.connection.tlsVersion : null;
  }

  /** Opens the connection and negotiates the version now (otherwise the first request does). */
  async connect(): Promise<ProtocolVersion> {
    await this.ensureConnection();
    return this.version!;
  }

  close(): void {
    this.connection?.close();
    this.connection = undefined;
  }

  /** Runs several operations in one message; every item gets its own result. */
  override async batch<const R extends readonly BatchRequest[]>(
    requests: R,
    options?: CallOptions,
  ): Promise<Results<R>> {
    if (requests.length === 0) return [] as unknown as Results<R>;
    const idempotent = requests.every((r) => r.spec.idempotent);
    let dropRetries = idempotent ? (this.#options.idempotentRetries ?? 1) : 0;
    let unsentRetries = 1;
    for (;;) {
      const connection = await this.ensureConnection();
      const reused = connection.exchanges > 0;
      try {
        const results = await this.send(connection, requests, this.version!, options?.timeoutMs);
        return (results.some(isSuspicious) ? await this.flagUnsupported(requests, results) : results) as Results<R>;
      } catch (error) {
        if (!(error instanceof KmipError)) throw error;
        // Never written (queued behind a request that lost the connection): safe to send, whatever it is.
        if (error.requestSent === false && unsentRetries-- > 0) continue;
        // Written to a connection the server had dropped while idle: resend only what is idempotent.
        if (RETRYABLE_DROPS.has(error.code) && reused && dropRetries-- > 0) continue;
        throw error;
      }
    }
  }

  /**
   * Some servers refuse operations they lack with Invalid Message (PyKMIP does for Add Attribute): when
   * the server's Query does not list the operation, report it as not supported, keeping its reason.
   */
  private async flagUnsupported(
    requests: readonly BatchRequest[],
    results: ItemResult<unknown>[],
  ): Promise<ItemResult<unknown>[]> {
    const supported = await this.serverOperations();
    if (!supported) return results;
    return results.map((result, i) => {
      const code = requests[i]!.spec.code;
      if (!isSuspicious(result) || supported.includes(code) || result.ok) return result;
      const e = result.error as KmipOperationError;
      const error = new KmipOperationError(code, e.resultStatus.code, e.resultReason?.code, e.resultMessage, true);
      return { ok: false, error };
    });
  }

  /** The operations the server lists in Query (cached per client); undefined if it will not say. */
  private async serverOperations(): Promise<number[] | undefined> {
    this.operationsQuery ??= this.ensureConnection()
      .then((connection) =>
        this.send(connection, [ops.query({ functions: [QueryFunction.QueryOperations] })], this.version!),
      )
      .then(([result]) => (result?.ok ? (result.value as ops.QueryResult).operations : undefined))
      .catch(() => undefined);
    return this.operationsQuery;
  }

  private ensureConnection(): Promise<KmipConnection> {
    const current = this.connection;
    // Idle means nothing written or answered for maxIdleMs and nothing queued: closing a busy connection
    // would fail the request in flight on it (and a Create there is not resent).
    if (
      current &&
      !current.closed &&
      !current.busy &&
      current.idleMs >= (this.#options.maxIdleMs ?? 25_000) &&
      !this.opening
    ) {
      current.close();
    }
    if (current && !current.closed) return Promise.resolve(current);
    this.opening ??= this.open()
      .catch((error: unknown) => {
        // Connect, TLS and negotiation failures happen before any caller's request is written.
        if (error instanceof KmipError) error.requestSent = false;
        throw error;
      })
      .finally(() => (this.opening = undefined));
    return this.opening;
  }

  private async open(): Promise<KmipConnection> {
    const connection = await KmipConnection.open(this.#options, {
      connectTimeoutMs: this.#options.connectTimeoutMs ?? this.#options.requestTimeoutMs ?? 15_000,
      maxMessageBytes: this.#options.maxMessageBytes,
    });
    try {
      if (!this.version) this.version = await this.negotiate(connection);
    } catch (error) {
      connection.close();
      throw error;
    }
    this.connection = connection;
    return connection;
  }

  /** Discover Versions with our list; the highest version both sides speak wins. */
  private async negotiate(connection: KmipConnection): Promise<ProtocolVersion> {
    const ours = this.#options.versions ?? ALL_VERSIONS;
    const highest = [...ours].sort(compareVersions).at(-1)!;
    let header = this.#options.discoveryVersion ?? V1_2;
    let [result] = await this.send(connection, [ops.discoverVersions({ versions: ours })], header);
    // A server that speaks only newer versions may refuse a 1.2 header: ask again in our newest.
    if (
      !result.ok &&
      result.error instanceof KmipOperationError &&
      (result.error.resultReason?.code === ResultReason.UnsupportedProtocolVersion ||
        result.error.resultReason?.code === ResultReason.InvalidMessage) &&
      compareVersions(header, highest) !== 0 &&
      !connection.closed
    ) {
      header = highest;
      [result] = await this.send(connection, [ops.discoverVersions({ versions: ours })], header);
    }
    if (!result.ok) {
      // A 1.0 server does not know Discover Versions: speak the header version if we may. Any other
      // refusal (failed authentication...) is the server's answer and goes to the caller.
      if (
        result.error instanceof KmipOperationError &&
        result.error.resultReason?.code === ResultReason.OperationNotSupported &&
        ours.some((v) => compareVersions(v, header) === 0)
      )
        return header;
      throw result.error;
    }
    const offered = (result.value as { versions: ProtocolVersion[] }).versions;
    const common = offered.filter((v) => ours.some((o) => compareVersions(o, v) === 0));
    if (common.length === 0)
      throw new KmipError(
        `${this.endpoint}: no common KMIP version (server: ${offered.map(formatVersion).join(', ') || 'none'}; client: ${ours.map(formatVersion).join(', ')})`,
        'KMIP_PROTOCOL_NO_COMMON_VERSION',
      );
    return common.sort(compareVersions).at(-1)!;
  }

  private async send(
    connection: KmipConnection,
    requests: readonly BatchRequest[],
    version: ProtocolVersion,
    timeoutMs = this.#options.requestTimeoutMs ?? 15_000,
  ): Promise<ItemResult<unknown>[]> {
    const batchIds =
      requests.length > 1
        ? requests.map(() => {
            const id = Buffer.alloc(4);
            id.writeUInt32BE((this.batchCounter = (this.batchCounter + 1) >>> 0));
            return id;
          })
        : undefined;
    const message = buildRequest(
      requests.map((r) => ({
        operation: r.spec.code,
        payload: (r.spec.encode as (req: unknown, v: ProtocolVersion) => TtlvItem[])(r.request, version),
      })),
      {
        version,
        // Servers stop at the first failing item unless told to go on; each item gets its own result.
        ...(batchIds ? { batchIds, batchErrorContinuation: BatchErrorContinuationOption.Continue } : {}),
        ...(this.#options.sendTimeStamp ? { timeStamp: new Date() } : {}),
      },
    );
    // The request tree holds the caller's buffers (they own and wipe them); the encoded copy is ours.
    const bytes = encode(message);
    let raw: Buffer;
    try {
      raw = await connection.exchange(bytes, timeoutMs);
    } finally {
      bytes.fill(0);
    }
    let tree: TtlvItem | undefined;
    try {
      try {
        tree = decode(raw, { maxBytes: raw.length });
      } catch (error) {
        connection.close();
        throw protocolError(
          `${this.endpoint}: malformed response: ${(error as Error).message}`,
          'KMIP_PROTOCOL_MALFORMED',
        );
      }
      const response = parseResponse(tree);
      return this.matchItems(requests, response.items, batchIds, version);
    } catch (error) {
      if (error instanceof KmipError && error.code.startsWith('KMIP_PROTOCOL_')) connection.close();
      throw error;
    } finally {
      raw.fill(0);
      if (tree) wipeTree(tree);
    }
  }

  private matchItems(
    requests: readonly BatchRequest[],
    items: ResponseItem[],
    batchIds: Buffer[] | undefined,
    version: ProtocolVersion,
  ): ItemResult<unknown>[] {
    // A message-level refusal (bad header, failed authentication) comes back as one item without an ID.
    if (batchIds && items.length === 1 && !items[0]!.batchId && items[0]!.resultStatus !== ResultStatus.Success) {
      return requests.map((r) => ({ ok: false, error: this.operationError(r.spec.code, items[0]!) }));
    }
    if (items.length > requests.length || (!batchIds && items.length !== requests.length))
      throw protocolError(
        `${this.endpoint}: sent ${requests.length} batch items, got ${items.length} answers`,
        'KMIP_PROTOCOL_BATCH_MISMATCH',
      );
    for (const item of items)
      if (batchIds && !batchIds.some((id) => item.batchId?.equals(id)))
        throw protocolError(
          `${this.endpoint}: an answer carries batch item ID ${item.batchId?.toString('hex') ?? '(none)'}, which was not sent`,
          'KMIP_PROTOCOL_BATCH_MISMATCH',
        );
    // A server that stopped at a failing item answers fewer items: the rest were not processed.
    const ordered: (ResponseItem | undefined)[] = batchIds
      ? batchIds.map((id) => items.find((item) => item.batchId?.equals(id)))
      : items;
    return requests.map((request, i): ItemResult<unknown> => {
      const item = ordered[i];
      if (!item)
        return {
          ok: false,
          error: new KmipError(
            `${this.endpoint}: the server did not process ${request.spec.name} (an earlier batch item failed)`,
            'KMIP_BATCH_ITEM_NOT_PROCESSED',
          ),
        };
      if (item.operation !== undefined && item.operation !== request.spec.code)
        throw protocolError(
          `${this.endpoint}: answer for ${nameOf(Operation, item.operation)} where ${request.spec.name} was asked`,
          'KMIP_PROTOCOL_BATCH_MISMATCH',
        );
      if (item.resultStatus !== ResultStatus.Success)
        return { ok: false, error: this.operationError(request.spec.code, item) };
      const payload = item.payload ?? { tag: T.ResponsePayload, type: ItemType.Structure, value: [] };
      return {
        ok: true,
        value: (request.spec.decode as (p: TtlvItem, v: ProtocolVersion) => unknown)(payload, version),
      };
    });
  }

  /**
   * The server's refusal. Authentication Not Successful is what PyKMIP answers to every request when the
   * client certificate lacks extendedKeyUsage clientAuth: when ours does, the error says so.
   */
  private operationError(operation: number, item: ResponseItem): KmipOperationError {
    const error = new KmipOperationError(operation, item.resultStatus, item.resultReason, item.resultMessage);
    if (item.resultReason === ResultReason.AuthenticationNotSuccessful) {
      const problem = clientAuthProblem(this.#options.cert);
      if (problem) {
        error.message +=
          problem === 'absent'
            ? '; the client certificate has no extendedKeyUsage (the server requires clientAuth)'
            : '; the client certificate lacks extendedKeyUsage clientAuth';
        error.hint = CLIENT_AUTH_HINT;
      }
    }
    return error;
  }
}

/** Zeroes every byte string in a TTLV tree (key material must not linger in buffers we own). */
export function wipeTree(item: TtlvItem): void {
  if (item.type === ItemType.Structure) item.value.forEach(wipeTree);
  else if (item.type === ItemType.ByteString) item.value.fill(0);
}
