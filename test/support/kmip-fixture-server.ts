/**
 * TEST FIXTURE, not a KMIP server: a TLS listener that answers with scripted frames, so the client can
 * be tested against what a real server will not do on demand (truncated frames, lying lengths, stalls,
 * resets, idle drops, wrong batch IDs) and against operations PyKMIP lacks (Add Attribute, ReKey). Its
 * default handler is a small in-memory KMIP responder; tests replace it per request.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Socket } from 'node:net';
import { createServer, type Server, type TLSSocket } from 'node:tls';
import { randomBytes } from 'node:crypto';
import { decode, encode } from '../../src/kmip/ttlv/binary.js';
import {
  ItemType,
  byteString,
  childOf,
  childrenOf,
  enumeration,
  integer,
  structure,
  textString,
  dateTime,
  type TtlvItem,
} from '../../src/kmip/ttlv/types.js';
import { T, Operation, ResultReason, ResultStatus, ObjectType, KeyFormatType, State } from '../../src/kmip/spec.js';
import { makeTestPki, type TestPki } from './certs.js';
import { recordSecrets } from './test-run.js';

export interface FixtureRequest {
  raw: Buffer;
  message: TtlvItem;
  version: { major: number; minor: number };
  items: { operation: number; batchId?: Buffer; payload: TtlvItem }[];
  connection: number;
}

export type FixtureAction =
  /** Write these bytes as the answer (and `later` 20 ms after, unasked). */
  | { kind: 'bytes'; bytes: Buffer; later?: Buffer }
  /** Write these bytes, then reset the TCP connection. */
  | { kind: 'reset'; bytes?: Buffer }
  /** Close the connection gracefully without answering. */
  | { kind: 'close' }
  /** Never answer (the client must time out). */
  | { kind: 'stall' };

export type FixtureHandler = (
  request: FixtureRequest,
  fixture: KmipFixtureServer,
) => FixtureAction | Promise<FixtureAction>;

export interface ResponseItemSpec {
  operation: number;
  batchId?: Buffer | undefined;
  status?: number;
  reason?: number;
  message?: string;
  payload?: TtlvItem[];
}

/** Encodes a Response Message (header: version, time stamp, batch count). */
export function responseBytes(
  items: ResponseItemSpec[],
  version = { major: 1, minor: 2 },
  batchCount = items.length,
): Buffer {
  const header = structure(T.ResponseHeader, [
    structure(T.ProtocolVersion, [
      integer(T.ProtocolVersionMajor, version.major),
      integer(T.ProtocolVersionMinor, version.minor),
    ]),
    dateTime(T.TimeStamp, new Date()),
    integer(T.BatchCount, batchCount),
  ]);
  const batch = items.map((item) => {
    const children: TtlvItem[] = [enumeration(T.Operation, item.operation)];
    if (item.batchId) children.push(byteString(T.UniqueBatchItemID, item.batchId));
    children.push(enumeration(T.ResultStatus, item.status ?? ResultStatus.Success));
    if (item.reason !== undefined) children.push(enumeration(T.ResultReason, item.reason));
    if (item.message !== undefined) children.push(textString(T.ResultMessage, item.message));
    if (item.payload) children.push(structure(T.ResponsePayload, item.payload));
    return structure(T.BatchItem, children);
  });
  return encode(structure(T.ResponseMessage, [header, ...batch]));
}

interface StoredObject {
  type: number;
  value: Buffer;
  attributes: Map<string, TtlvItem[]>;
  state: number;
}

export interface FixtureOptions {
  pki?: TestPki;
  /** Versions Discover Versions advertises, preferred first (default 1.4 down to 1.0). */
  versions?: { major: number; minor: number }[];
  minVersion?: 'TLSv1.2' | 'TLSv1.3';
  maxVersion?: 'TLSv1.2' | 'TLSv1.3';
  /** Refuse (Unsupported Protocol Version) any request whose header version is not in `versions`. */
  strictVersions?: boolean;
}

export class KmipFixtureServer {
  readonly host = '127.0.0.1';
  port = 0;
  readonly pki: TestPki;
  readonly requests: FixtureRequest[] = [];
  connections = 0;
  /** Per-request handler; the default is the in-memory responder. */
  handler: FixtureHandler;
  readonly objects = new Map<string, StoredObject>();
  private server: Server;
  private readonly sockets = new Set<TLSSocket>();
  /** Connections closed so far, either side having closed them. */
  closedConnections = 0;
  private readonly closeWaiters: (() => void)[] = [];
  private readonly rawSockets = new Map<number, Socket>();
  private readonly dir: string | undefined;
  private nextId = 1;
  private readonly versions: { major: number; minor: number }[];
  private readonly strictVersions: boolean;

  private constructor(options: FixtureOptions) {
    if (options.pki) this.pki = options.pki;
    else {
      this.dir = mkdtempSync(join(tmpdir(), 'kmip-agent-fixture-'));
      this.pki = makeTestPki(this.dir);
    }
    this.versions =
      options.versions ??
      [1, 2, 3, 4]
        .reverse()
        .map((minor) => ({ major: 1, minor }))
        .concat([{ major: 1, minor: 0 }]);
    this.strictVersions = options.strictVersions ?? false;
    this.handler = (request) => this.respond(request);
    this.server = createServer(
      {
        cert: this.pki.server.certPem,
        key: this.pki.server.keyPem,
        ca: readFileSync(this.pki.ca.cert, 'utf8'),
        requestCert: true,
        rejectUnauthorized: true,
        minVersion: options.minVersion ?? 'TLSv1.2',
        maxVersion: options.maxVersion ?? 'TLSv1.3',
      },
      (socket) => this.onConnection(socket),
    );
    this.server.on('connection', (raw: Socket) => {
      const port = raw.remotePort ?? -1;
      this.rawSockets.set(port, raw);
      raw.on('close', () => this.rawSockets.delete(port));
    });
  }

  static async start(options: FixtureOptions = {}): Promise<KmipFixtureServer> {
    const fixture = new KmipFixtureServer(options);
    await new Promise<void>((resolve) => fixture.server.listen(0, '127.0.0.1', resolve));
    const address = fixture.server.address();
    if (typeof address === 'object' && address) fixture.port = address.port;
    return fixture;
  }

  /** Handle the next request with `once`, then go back to the current handler. */
  once(handler: FixtureHandler): void {
    const previous = this.handler;
    this.handler = (request, fixture) => {
      this.handler = previous;
      return handler(request, fixture);
    };
  }

  /**
   * Closes every open connection (what a server does to idle clients); resolves once each has closed on
   * both sides, so the client has seen the end of its connection.
   */
  async dropConnections(): Promise<void> {
    const closing = [...this.sockets].map(
      (socket) => new Promise<void>((resolve) => socket.once('close', () => resolve())),
    );
    for (const socket of this.sockets) socket.end();
    await Promise.all(closing);
  }

  /** Resolves once `count` connections in all have closed (the client closing its own included). */
  async closed(count: number): Promise<void> {
    while (this.closedConnections < count) await new Promise<void>((resolve) => this.closeWaiters.push(resolve));
  }

  get openConnections(): number {
    return this.sockets.size;
  }

  async stop(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
  }

  private reset(socket: TLSSocket): void {
    const raw = this.rawSockets.get(socket.remotePort ?? -1);
    if (raw) raw.resetAndDestroy();
    else socket.destroy();
  }

  private onConnection(socket: TLSSocket): void {
    const connection = ++this.connections;
    this.sockets.add(socket);
    socket.on('close', () => {
      this.sockets.delete(socket);
      this.closedConnections += 1;
      for (const waiter of this.closeWaiters.splice(0)) waiter();
    });
    socket.on('error', () => socket.destroy());
    let buffer = Buffer.alloc(0);
    let busy = Promise.resolve();
    socket.on('data', (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      while (buffer.length >= 8) {
        const total = 8 + buffer.readUInt32BE(4);
        if (buffer.length < total) break;
        const raw = buffer.subarray(0, total);
        buffer = buffer.subarray(total);
        busy = busy
          .then(() => this.handle(socket, raw, connection))
          .catch(() => {
            socket.destroy();
          });
      }
    });
  }

  private async handle(socket: TLSSocket, raw: Buffer, connection: number): Promise<void> {
    const message = decode(raw);
    const header = childOf(message, T.RequestHeader)!;
    const version = childOf(header, T.ProtocolVersion)!;
    const request: FixtureRequest = {
      raw: Buffer.from(raw),
      message,
      connection,
      version: {
        major: (childOf(version, T.ProtocolVersionMajor)?.value as number) ?? 0,
        minor: (childOf(version, T.ProtocolVersionMinor)?.value as number) ?? 0,
      },
      items: childrenOf(message, T.BatchItem).map((b) => {
        const id = childOf(b, T.UniqueBatchItemID);
        return {
          operation: childOf(b, T.Operation)!.value as number,
          ...(id?.type === ItemType.ByteString ? { batchId: Buffer.from(id.value) } : {}),
          payload: childOf(b, T.RequestPayload) ?? structure(T.RequestPayload, []),
        };
      }),
    };
    this.requests.push(request);
    const action = await this.handler(request, this);
    if (socket.destroyed) return;
    switch (action.kind) {
      case 'bytes': {
        socket.write(action.bytes);
        const later = action.later;
        if (later) setTimeout(() => socket.destroyed || socket.write(later), 20);
        break;
      }
      case 'reset':
        // A TCP reset needs the plain socket under TLS (TLSSocket cannot reset itself).
        if (action.bytes) socket.write(action.bytes, () => this.reset(socket));
        else this.reset(socket);
        break;
      case 'close':
        socket.end();
        break;
      case 'stall':
        break;
    }
  }

  /** The in-memory responder: enough KMIP for the client's operations, each item answered on its own. */
  respond(request: FixtureRequest): { kind: 'bytes'; bytes: Buffer } {
    const known = this.versions.some((v) => v.major === request.version.major && v.minor === request.version.minor);
    if (this.strictVersions && !known) {
      const reply = this.versions[0]!;
      const refusal: ResponseItemSpec = {
        operation: request.items[0]?.operation ?? Operation.DiscoverVersions,
        status: ResultStatus.OperationFailed,
        reason: ResultReason.UnsupportedProtocolVersion,
        message: `KMIP ${request.version.major}.${request.version.minor} is not spoken here`,
      };
      return { kind: 'bytes', bytes: responseBytes([refusal], reply) };
    }
    const items = request.items.map((item): ResponseItemSpec => {
      try {
        return {
          operation: item.operation,
          batchId: item.batchId,
          payload: this.operate(item.operation, item.payload),
        };
      } catch (error) {
        const e = error as { reason?: number; message: string };
        return {
          operation: item.operation,
          batchId: item.batchId,
          status: ResultStatus.OperationFailed,
          reason: e.reason ?? ResultReason.GeneralFailure,
          message: e.message,
        };
      }
    });
    return { kind: 'bytes', bytes: responseBytes(items, request.version) };
  }

  private operate(operation: number, payload: TtlvItem): TtlvItem[] {
    const uidOf = () => {
      const id = childOf(payload, T.UniqueIdentifier)?.value as string | undefined;
      const object = id === undefined ? undefined : this.objects.get(id);
      if (!object || id === undefined) throw refusal(ResultReason.ItemNotFound, `no object ${id}`);
      return { id, object };
    };
    const uidItem = (id: string) => textString(T.UniqueIdentifier, id);
    switch (operation) {
      case Operation.DiscoverVersions: {
        const asked = childrenOf(payload, T.ProtocolVersion).map((v) => ({
          major: childOf(v, T.ProtocolVersionMajor)!.value as number,
          minor: childOf(v, T.ProtocolVersionMinor)!.value as number,
        }));
        const offered =
          asked.length === 0
            ? this.versions
            : this.versions.filter((v) => asked.some((a) => a.major === v.major && a.minor === v.minor));
        return offered.map((v) =>
          structure(T.ProtocolVersion, [
            integer(T.ProtocolVersionMajor, v.major),
            integer(T.ProtocolVersionMinor, v.minor),
          ]),
        );
      }
      case Operation.Query:
        return [
          ...Object.values(Operation).map((op) => enumeration(T.Operation, op)),
          enumeration(T.ObjectType, ObjectType.SymmetricKey),
          enumeration(T.ObjectType, ObjectType.SecretData),
          textString(T.VendorIdentification, 'kmip-agent test fixture'),
        ];
      case Operation.Create:
      case Operation.Register: {
        const id = String(this.nextId++);
        const type = childOf(payload, T.ObjectType)!.value as number;
        const attributes = new Map<string, TtlvItem[]>();
        for (const a of childrenOf(childOf(payload, T.TemplateAttribute) ?? payload, T.Attribute)) {
          const name = childOf(a, T.AttributeName)!.value as string;
          attributes.set(name, [...(attributes.get(name) ?? []), childOf(a, T.AttributeValue)!]);
        }
        let value: Buffer;
        if (operation === Operation.Create)
          value = randomBytes(((attributes.get('Cryptographic Length')?.[0]?.value as number) ?? 256) / 8);
        else {
          const object = childOf(payload, type === ObjectType.SecretData ? T.SecretData : T.SymmetricKey)!;
          const material = childOf(childOf(childOf(object, T.KeyBlock)!, T.KeyValue)!, T.KeyMaterial)!;
          value = Buffer.from(material.value as Uint8Array);
        }
        // The run's secrets hygiene scan looks for every key the fixture held, as for PyKMIP's (test-run.ts).
        recordSecrets('fixture', [value]);
        this.objects.set(id, { type, value, attributes, state: State.PreActive });
        return operation === Operation.Create ? [enumeration(T.ObjectType, type), uidItem(id)] : [uidItem(id)];
      }
      case Operation.Get: {
        const { id, object } = uidOf();
        const block = structure(T.KeyBlock, [
          enumeration(
            T.KeyFormatType,
            object.type === ObjectType.SecretData ? KeyFormatType.Opaque : KeyFormatType.Raw,
          ),
          structure(T.KeyValue, [byteString(T.KeyMaterial, object.value)]),
        ]);
        const body =
          object.type === ObjectType.SecretData
            ? structure(T.SecretData, [enumeration(T.SecretDataType, 1), block])
            : structure(T.SymmetricKey, [block]);
        return [enumeration(T.ObjectType, object.type), uidItem(id), body];
      }
      case Operation.Locate: {
        const wanted = childrenOf(payload, T.Attribute).map((a) => ({
          name: childOf(a, T.AttributeName)!.value as string,
          value: childOf(a, T.AttributeValue)!,
        }));
        const ids = [...this.objects].filter(([, o]) =>
          wanted.every((w) => (o.attributes.get(w.name) ?? []).some((v) => sameValue(v, w.value))),
        );
        return ids.map(([id]) => uidItem(id));
      }
      case Operation.GetAttributes: {
        const { id, object } = uidOf();
        const attrs = [...object.attributes].flatMap(([name, values]) =>
          values.map((v) =>
            structure(T.Attribute, [textString(T.AttributeName, name), { ...v, tag: T.AttributeValue }]),
          ),
        );
        attrs.push(
          structure(T.Attribute, [textString(T.AttributeName, 'State'), enumeration(T.AttributeValue, object.state)]),
        );
        return [uidItem(id), ...attrs];
      }
      case Operation.GetAttributeList: {
        const { id, object } = uidOf();
        return [uidItem(id), ...[...object.attributes.keys(), 'State'].map((n) => textString(T.AttributeName, n))];
      }
      case Operation.AddAttribute:
      case Operation.ModifyAttribute: {
        const { id, object } = uidOf();
        const attribute = childOf(payload, T.Attribute)!;
        const name = childOf(attribute, T.AttributeName)!.value as string;
        const value = childOf(attribute, T.AttributeValue)!;
        if (operation === Operation.AddAttribute)
          object.attributes.set(name, [...(object.attributes.get(name) ?? []), value]);
        else if (!object.attributes.has(name)) throw refusal(ResultReason.ItemNotFound, `no attribute ${name}`);
        else object.attributes.set(name, [value]);
        return [uidItem(id), attribute];
      }
      case Operation.DeleteAttribute: {
        const { id, object } = uidOf();
        const name = childOf(payload, T.AttributeName)!.value as string;
        const values = object.attributes.get(name);
        if (!values) throw refusal(ResultReason.ItemNotFound, `no attribute ${name}`);
        object.attributes.delete(name);
        return [
          uidItem(id),
          structure(T.Attribute, [textString(T.AttributeName, name), { ...values[0]!, tag: T.AttributeValue }]),
        ];
      }
      case Operation.Activate: {
        const { id, object } = uidOf();
        if (object.state !== State.PreActive) throw refusal(ResultReason.PermissionDenied, 'not pre-active');
        object.state = State.Active;
        return [uidItem(id)];
      }
      case Operation.Revoke: {
        const { id, object } = uidOf();
        object.state = State.Deactivated;
        return [uidItem(id)];
      }
      case Operation.Destroy: {
        const { id, object } = uidOf();
        if (object.state === State.Active) throw refusal(ResultReason.PermissionDenied, 'object is active');
        this.objects.delete(id);
        return [uidItem(id)];
      }
      case Operation.ReKey: {
        const { object } = uidOf();
        const id = String(this.nextId++);
        const value = randomBytes(object.value.length);
        recordSecrets('fixture', [value]);
        this.objects.set(id, {
          ...object,
          value,
          attributes: new Map(object.attributes),
          state: State.Active,
        });
        return [uidItem(id)];
      }
      default:
        throw refusal(ResultReason.OperationNotSupported, `operation ${operation} not supported`);
    }
  }
}

function refusal(reason: number, message: string): Error & { reason: number } {
  return Object.assign(new Error(message), { reason });
}

function sameValue(a: TtlvItem, b: TtlvItem): boolean {
  if (a.type !== b.type) return false;
  if (a.type === ItemType.Structure) {
    const an = childOf(a, T.NameValue);
    const bn = childOf(b, T.NameValue);
    return an !== undefined && bn !== undefined && an.value === bn.value;
  }
  if (a.value instanceof Uint8Array && b.value instanceof Uint8Array) return Buffer.from(a.value).equals(b.value);
  return a.value === b.value;
}
