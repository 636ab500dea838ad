/**
 * The agent's local API: JSON-RPC 2.0 over HTTP on a Unix socket (POST /json-rpc/1.0), as snapd and
 * podman serve theirs, so `curl --unix-socket /run/kmip-agent/api.sock` works and a web console can sit on
 * the same methods later. GET /metrics serves Prometheus text. The socket is 0600 (0660 with an API
 * group) and every connection's peer is checked with SO_PEERCRED: root, or a member of the API group.
 * The API knows nothing of drives or KMIP: it calls the methods it is given, which return JSON values.
 */
import { chmodSync, chownSync, lstatSync, mkdirSync, readFileSync, unlinkSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createConnection, type Socket } from 'node:net';
import { dirname } from 'node:path';
import { KmipAgentError } from '../errors.js';
import { peerInfo, type PeerInfo } from '../agent/keysocket/peer.js';

export const API_PATH = '/json-rpc/1.0';
export const API_SOCKET_NAME = 'api.sock';
/** Requests are small JSON documents; anything bigger is refused unread. */
const MAX_BODY_BYTES = 1 << 20;

/** JSON-RPC 2.0 error codes; application errors carry the agent's stable code in `data.code`. */
export const RpcErrorCode = {
  ParseError: -32700,
  InvalidRequest: -32600,
  MethodNotFound: -32601,
  InvalidParams: -32602,
  InternalError: -32603,
  ApplicationError: -32000,
} as const;

/** Who called, for methods that record it (audit). */
export interface Caller {
  pid: number;
  uid: number;
  gid: number;
}

export type RpcMethod = (params: Record<string, unknown>, caller: Caller) => Promise<unknown> | unknown;

export interface ApiServerOptions {
  socketPath: string;
  methods: Record<string, RpcMethod>;
  /** Group id whose members may call besides root. */
  groupId?: number;
  /** Prometheus exposition text for GET /metrics. */
  metrics?: () => Promise<string>;
  /** Reads the peer of a connection (SO_PEERCRED); replaceable only to test refusals without a second user. */
  peerOf?: (socket: Socket) => Pick<PeerInfo, 'pid' | 'uid' | 'gid'>;
  onRequest?: (entry: { method: string; caller: Caller; ok: boolean; code?: string }) => void;
}

interface RpcRequest {
  jsonrpc: '2.0';
  method: string;
  params?: unknown;
  id?: string | number | null;
}

type RpcResponse =
  | { jsonrpc: '2.0'; id: string | number | null; result: unknown }
  | { jsonrpc: '2.0'; id: string | number | null; error: { code: number; message: string; data?: unknown } };

/** The supplementary groups of a process, from /proc (SO_PEERCRED gives only the primary gid). */
function supplementaryGroups(pid: number): number[] {
  try {
    const line = readFileSync(`/proc/${pid}/status`, 'utf8')
      .split('\n')
      .find((l) => l.startsWith('Groups:'));
    return line ? line.slice(7).trim().split(/\s+/).filter(Boolean).map(Number) : [];
  } catch {
    return [];
  }
}

export class ApiServer {
  private server: Server | undefined;
  private readonly callers = new WeakMap<Socket, Caller | null>();

  constructor(private readonly options: ApiServerOptions) {}

  get socketPath(): string {
    return this.options.socketPath;
  }

  async listen(): Promise<void> {
    const path = this.options.socketPath;
    mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
    await removeStaleSocket(path);
    const server = createServer((req, res) => void this.handle(req, res));
    server.on('connection', (socket: Socket) => this.callers.set(socket, this.authorize(socket)));
    server.keepAliveTimeout = 5_000;
    server.headersTimeout = 10_000;
    server.requestTimeout = 30_000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      // Created 0600 from the start (no window with a wider mode), widened to 0660 only for an API group.
      const oldMask = process.umask(0o177);
      try {
        server.listen(path, () => resolve());
      } finally {
        process.umask(oldMask);
      }
    });
    if (this.options.groupId !== undefined) {
      chownSync(path, 0, this.options.groupId);
      chmodSync(path, 0o660);
    }
    this.server = server;
  }

  async close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    try {
      unlinkSync(this.options.socketPath);
    } catch {
      // already gone
    }
  }

  /** The caller when allowed, null when refused. */
  private authorize(socket: Socket): Caller | null {
    let peer: Pick<PeerInfo, 'pid' | 'uid' | 'gid'>;
    try {
      peer = (this.options.peerOf ?? peerInfo)(socket);
    } catch {
      return null;
    }
    const caller = { pid: peer.pid, uid: peer.uid, gid: peer.gid };
    if (peer.uid === 0) return caller;
    const group = this.options.groupId;
    if (group !== undefined && (peer.gid === group || supplementaryGroups(peer.pid).includes(group))) return caller;
    return null;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const caller = this.callers.get(req.socket);
    if (!caller) {
      // The refusal says what is needed without running anything.
      return send(res, 403, {
        jsonrpc: '2.0',
        id: null,
        error: {
          code: RpcErrorCode.ApplicationError,
          message: 'the kmip-agent API answers root (or the configured API group) only',
          data: { code: 'API_PERMISSION_DENIED' },
        },
      });
    }
    const url = (req.url ?? '/').split('?')[0];
    if (req.method === 'GET' && url === '/metrics' && this.options.metrics) {
      const text = await this.options.metrics();
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' });
      res.end(text);
      return;
    }
    if (url !== API_PATH) return sendText(res, 404, `not found: POST ${API_PATH} for JSON-RPC 2.0, GET /metrics\n`);
    if (req.method !== 'POST') return sendText(res, 405, `use POST ${API_PATH}\n`);
    let body: string;
    try {
      body = await readBody(req);
    } catch (error) {
      return send(
        res,
        413,
        rpcError(null, RpcErrorCode.InvalidRequest, (error as Error).message, 'API_REQUEST_TOO_LARGE'),
      );
    }
    let document: unknown;
    try {
      document = JSON.parse(body);
    } catch {
      return send(
        res,
        200,
        rpcError(null, RpcErrorCode.ParseError, 'the request is not valid JSON', 'API_PARSE_ERROR'),
      );
    }
    if (Array.isArray(document)) {
      if (document.length === 0)
        return send(res, 200, rpcError(null, RpcErrorCode.InvalidRequest, 'empty batch', 'API_INVALID_REQUEST'));
      const answers = (await Promise.all(document.map((r) => this.dispatch(r, caller)))).filter(
        (a): a is RpcResponse => a !== undefined,
      );
      return answers.length ? send(res, 200, answers) : sendNoContent(res);
    }
    const answer = await this.dispatch(document, caller);
    return answer ? send(res, 200, answer) : sendNoContent(res);
  }

  /** One request; undefined for a notification (no id). */
  private async dispatch(request: unknown, caller: Caller): Promise<RpcResponse | undefined> {
    const r = request as Partial<RpcRequest> | null;
    if (r === null || typeof r !== 'object' || r.jsonrpc !== '2.0' || typeof r.method !== 'string') {
      return rpcError(null, RpcErrorCode.InvalidRequest, 'not a JSON-RPC 2.0 request', 'API_INVALID_REQUEST');
    }
    const id = r.id === undefined ? undefined : r.id;
    const answer = (response: RpcResponse) => (id === undefined ? undefined : response);
    const method = Object.hasOwn(this.options.methods, r.method) ? this.options.methods[r.method] : undefined;
    if (!method) {
      const known = Object.keys(this.options.methods).sort().join(', ');
      return answer(
        rpcError(
          id ?? null,
          RpcErrorCode.MethodNotFound,
          `no method ${r.method} (methods: ${known})`,
          'API_METHOD_NOT_FOUND',
        ),
      );
    }
    const params = r.params ?? {};
    if (params === null || typeof params !== 'object' || Array.isArray(params)) {
      return answer(rpcError(id ?? null, RpcErrorCode.InvalidParams, 'params must be an object', 'API_INVALID_PARAMS'));
    }
    try {
      const result = await method(params as Record<string, unknown>, caller);
      this.options.onRequest?.({ method: r.method, caller, ok: true });
      return answer({ jsonrpc: '2.0', id: id ?? null, result: result ?? null });
    } catch (error) {
      const code = error instanceof KmipAgentError ? error.code : 'INTERNAL';
      this.options.onRequest?.({ method: r.method, caller, ok: false, code });
      const rpcCode =
        code.startsWith('API_INVALID_PARAMS') || code.startsWith('USAGE')
          ? RpcErrorCode.InvalidParams
          : RpcErrorCode.ApplicationError;
      const data = error instanceof KmipAgentError ? error.toJSON() : { code };
      return answer(rpcError(id ?? null, rpcCode, error instanceof Error ? error.message : String(error), code, data));
    }
  }
}

function rpcError(
  id: string | number | null,
  code: number,
  message: string,
  stable: string,
  data?: Record<string, unknown>,
): RpcResponse {
  return { jsonrpc: '2.0', id, error: { code, message, data: { ...data, code: stable } } };
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function sendText(res: ServerResponse, status: number, text: string): void {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8' });
  res.end(text);
}

function sendNoContent(res: ServerResponse): void {
  res.writeHead(204);
  res.end();
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        reject(new Error(`request larger than ${MAX_BODY_BYTES} bytes`));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

/** A socket file left by a crashed daemon is removed; a live one, or anything else at the path, is refused. */
async function removeStaleSocket(path: string): Promise<void> {
  let stat;
  try {
    stat = lstatSync(path);
  } catch {
    return;
  }
  if (!stat.isSocket()) {
    throw new KmipAgentError(`${path} exists and is not a socket: refusing to replace it`, 'API_SOCKET_PATH_TAKEN');
  }
  const live = await new Promise<boolean>((resolve) => {
    const probe = createConnection(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (live) {
    throw new KmipAgentError(`another kmip-agent daemon answers on ${path}`, 'API_SOCKET_IN_USE');
  }
  unlinkSync(path);
}
