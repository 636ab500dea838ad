/**
 * The local API on a real Unix socket: curl speaks JSON-RPC 2.0 to it (single calls, batches,
 * notifications, errors with stable codes), the socket is 0600, and a non-root peer is refused both by
 * the file mode and, when the mode is widened by mistake, by the SO_PEERCRED check (curl run as nobody).
 */
import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ApiClient } from '../../src/api/client.js';
import { API_PATH, ApiServer } from '../../src/api/server.js';
import { KmipAgentError } from '../../src/errors.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function startServer(extra: Partial<ConstructorParameters<typeof ApiServer>[0]> = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'kmip-agent-api-'));
  chmodSync(dir, 0o755);
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const calls: string[] = [];
  const server = new ApiServer({
    socketPath: join(dir, 'api.sock'),
    methods: {
      GetStatus: () => ({ ready: true, drives: [] }),
      Echo: (params) => params,
      Fail: () => {
        throw new KmipAgentError('the drive refused its recorded key', 'DRIVE_KEY_REFUSED', {
          details: { drive: 'EMU-1' },
        });
      },
      Note: (params) => {
        calls.push(String(params.text));
      },
    },
    metrics: async () => 'kmip_agent_up 1\n',
    ...extra,
  });
  await server.listen();
  cleanups.push(() => server.close());
  return { server, dir, calls };
}

/** curl in a child process (async: the server under test runs in this process's event loop). */
function curl(
  socket: string,
  args: string[],
  asUser?: string,
): Promise<{ status: number; stdout: string; stderr: string }> {
  const command = ['curl', '-sS', '--unix-socket', socket, ...args];
  const child = asUser
    ? spawn('setpriv', ['--reuid', asUser, '--regid', 'nogroup', '--clear-groups', ...command])
    : spawn(command[0]!, command.slice(1));
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout.on('data', (c: Buffer) => out.push(c));
  child.stderr.on('data', (c: Buffer) => err.push(c));
  return new Promise((resolve) =>
    child.on('close', (status) =>
      resolve({ status: status ?? -1, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() }),
    ),
  );
}

const rpc = (body: unknown) => [
  '-X',
  'POST',
  '-H',
  'content-type: application/json',
  '-d',
  JSON.stringify(body),
  `http://localhost${API_PATH}`,
];

describe('local API (JSON-RPC 2.0 over HTTP on a Unix socket)', () => {
  it('answers curl, with the socket 0600', async () => {
    const { server } = await startServer();
    expect(statSync(server.socketPath).mode & 0o777).toBe(0o600);
    const out = await curl(server.socketPath, rpc({ jsonrpc: '2.0', method: 'GetStatus', id: 1 }));
    expect(out.status).toBe(0);
    expect(JSON.parse(out.stdout)).toEqual({ jsonrpc: '2.0', id: 1, result: { ready: true, drives: [] } });
  });

  it('gives errors stable codes, answers batches and stays silent on notifications', async () => {
    const { server, calls } = await startServer();
    const batch = [
      { jsonrpc: '2.0', method: 'Echo', params: { a: 1 }, id: 'x' },
      { jsonrpc: '2.0', method: 'Fail', id: 2 },
      { jsonrpc: '2.0', method: 'NoSuch', id: 3 },
      { jsonrpc: '2.0', method: 'Note', params: { text: 'hi' } },
      { jsonrpc: '2.0', method: 'Echo', params: [1], id: 4 },
      { nonsense: true },
    ];
    const answers = JSON.parse((await curl(server.socketPath, rpc(batch))).stdout) as {
      id: unknown;
      result?: unknown;
      error?: { code: number; data: { code: string; drive?: string } };
    }[];
    expect(answers).toHaveLength(5);
    expect(answers[0]).toMatchObject({ id: 'x', result: { a: 1 } });
    expect(answers[1]!.error).toMatchObject({ code: -32000, data: { code: 'DRIVE_KEY_REFUSED', drive: 'EMU-1' } });
    expect(answers[2]!.error).toMatchObject({ code: -32601, data: { code: 'API_METHOD_NOT_FOUND' } });
    expect(answers[3]!.error).toMatchObject({ code: -32602, data: { code: 'API_INVALID_PARAMS' } });
    expect(answers[4]!.error).toMatchObject({ code: -32600, data: { code: 'API_INVALID_REQUEST' } });
    expect(calls).toEqual(['hi']);
    const bad = JSON.parse(
      (await curl(server.socketPath, ['-X', 'POST', '-d', '{"jsonrpc":', `http://localhost${API_PATH}`])).stdout,
    ) as { error: { code: number } };
    expect(bad.error.code).toBe(-32700);
  });

  it('serves metrics text and refuses other paths and verbs', async () => {
    const { server } = await startServer();
    expect((await curl(server.socketPath, ['http://localhost/metrics'])).stdout).toBe('kmip_agent_up 1\n');
    expect(
      (await curl(server.socketPath, ['-o', '/dev/null', '-w', '%{http_code}', 'http://localhost/other'])).stdout,
    ).toBe('404');
    expect(
      (await curl(server.socketPath, ['-o', '/dev/null', '-w', '%{http_code}', `http://localhost${API_PATH}`])).stdout,
    ).toBe('405');
  });

  it('refuses a non-root peer: by file mode, and by SO_PEERCRED when the mode is widened', async () => {
    const { server } = await startServer();
    const denied = await curl(server.socketPath, rpc({ jsonrpc: '2.0', method: 'GetStatus', id: 1 }), 'nobody');
    expect(denied.status).not.toBe(0);
    expect(denied.stderr).toMatch(/Permission denied|Couldn't connect/i);
    chmodSync(server.socketPath, 0o666);
    const refused = await curl(
      server.socketPath,
      ['-w', '\n%{http_code}', ...rpc({ jsonrpc: '2.0', method: 'GetStatus', id: 1 })],
      'nobody',
    );
    const [body, code] = refused.stdout.split('\n');
    expect(code).toBe('403');
    expect(JSON.parse(body!)).toMatchObject({ error: { data: { code: 'API_PERMISSION_DENIED' } } });
  });

  it('lets members of the API group in', async () => {
    const { server } = await startServer({ groupId: 65534 });
    expect(statSync(server.socketPath).mode & 0o777).toBe(0o660);
    expect(statSync(server.socketPath).gid).toBe(65534);
    const out = await curl(server.socketPath, rpc({ jsonrpc: '2.0', method: 'GetStatus', id: 7 }), 'nobody');
    expect(JSON.parse(out.stdout)).toMatchObject({ id: 7, result: { ready: true } });
  });

  it('refuses to take over a live socket or a path that is not a socket, and replaces a stale one', async () => {
    const { server, dir } = await startServer();
    const second = new ApiServer({ socketPath: server.socketPath, methods: {} });
    await expect(second.listen()).rejects.toMatchObject({ code: 'API_SOCKET_IN_USE' });
    const file = join(dir, 'not-a-socket');
    writeFileSync(file, 'x');
    await expect(new ApiServer({ socketPath: file, methods: {} }).listen()).rejects.toMatchObject({
      code: 'API_SOCKET_PATH_TAKEN',
    });
  });

  it('the client maps answers and a missing daemon to stable codes', async () => {
    const { server, dir } = await startServer();
    const client = new ApiClient(server.socketPath);
    expect(await client.call('Echo', { b: 2 })).toEqual({ b: 2 });
    await expect(client.call('Fail')).rejects.toMatchObject({ code: 'DRIVE_KEY_REFUSED' });
    await expect(new ApiClient(join(dir, 'none.sock')).call('GetStatus')).rejects.toMatchObject({
      code: 'API_NOT_RUNNING',
    });
  });
});
