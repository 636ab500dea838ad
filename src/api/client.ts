/**
 * Calling a running daemon: JSON-RPC 2.0 over HTTP on its Unix socket. The CLI uses it when a daemon
 * runs (so there is one owner of the state) and falls back to doing the work itself when none does.
 */
import { request } from 'node:http';
import { KmipAgentError } from '../errors.js';
import { API_PATH } from './server.js';

export class ApiError extends KmipAgentError {}

/** No daemon listens at the socket (absent, or a stale file): the caller may work directly instead. */
export function isDaemonAbsent(error: unknown): boolean {
  return error instanceof KmipAgentError && error.code === 'API_NOT_RUNNING';
}

export class ApiClient {
  private nextId = 1;

  constructor(
    readonly socketPath: string,
    private readonly timeoutMs = 60_000,
  ) {}

  /** Calls `method`; an error answer throws ApiError with the daemon's stable code. */
  async call<T = unknown>(method: string, params: Record<string, unknown> = {}): Promise<T> {
    const id = this.nextId++;
    const body = JSON.stringify({ jsonrpc: '2.0', method, params, id });
    const { status, text } = await this.post(body);
    let answer: { result?: unknown; error?: { message: string; data?: { code?: string } & Record<string, unknown> } };
    try {
      answer = JSON.parse(text) as typeof answer;
    } catch {
      throw new ApiError(`the daemon answered HTTP ${status} without JSON`, 'API_BAD_ANSWER');
    }
    if (answer.error) {
      const { code, message: _m, ...details } = answer.error.data ?? {};
      throw new ApiError(answer.error.message, code ?? 'API_ERROR', { details });
    }
    return answer.result as T;
  }

  /** GET /metrics. */
  metrics(): Promise<string> {
    return this.send('GET', '/metrics').then((r) => r.text);
  }

  private post(body: string): Promise<{ status: number; text: string }> {
    return this.send('POST', API_PATH, body);
  }

  private send(method: string, path: string, body?: string): Promise<{ status: number; text: string }> {
    return new Promise((resolve, reject) => {
      const req = request(
        {
          socketPath: this.socketPath,
          method,
          path,
          headers:
            body === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
          timeout: this.timeoutMs,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
          res.on('error', reject);
        },
      );
      req.on('timeout', () =>
        req.destroy(new ApiError(`the daemon did not answer within ${this.timeoutMs} ms`, 'API_TIMEOUT')),
      );
      req.on('error', (error: NodeJS.ErrnoException) => {
        if (error instanceof ApiError) return reject(error);
        if (error.code === 'ENOENT' || error.code === 'ECONNREFUSED') {
          return reject(
            new ApiError(`no kmip-agent daemon is running (nothing answers on ${this.socketPath})`, 'API_NOT_RUNNING'),
          );
        }
        if (error.code === 'EACCES') {
          return reject(
            new ApiError(`${this.socketPath}: permission denied (the API answers root only)`, 'API_PERMISSION_DENIED'),
          );
        }
        reject(
          new ApiError(`cannot reach the daemon at ${this.socketPath}: ${error.message}`, 'API_UNREACHABLE', {
            cause: error,
          }),
        );
      });
      req.end(body);
    });
  }
}
