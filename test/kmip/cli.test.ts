/** `kmip-agent kmip ...` against the real PyKMIP server (and a dead port for failover), through runCli. */
import { describe, expect, inject, test } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCliCaptured as cli } from '../support/cli.js';
import { freePort } from '../support/pykmip.js';
import { uniqueName } from './helpers.js';

const server = inject('pykmip');

/** The client's TLS material, for connection options to any server address. */
const tls = ['--ca', server.ca, '--cert', server.clientCert, '--key', server.clientKey];
const conn = ['--server', `${server.host}:${server.port}`, ...tls];

describe('kmip-agent kmip', () => {
  test('register from a key file, locate, get prints the same bytes, attrs, revoke, destroy', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kmip-agent-cli-'));
    try {
      const secret = randomBytes(32);
      const file = join(dir, 'secret.bin');
      writeFileSync(file, secret, { mode: 0o600 });
      const name = uniqueName('cli');
      const registered = await cli([
        'kmip',
        'register',
        ...conn,
        '--key-file',
        file,
        '--name',
        name,
        '--group',
        'cli-group',
        '--json',
      ]);
      expect(registered.code).toBe(0);
      const { uniqueIdentifier } = JSON.parse(registered.stdout) as { uniqueIdentifier: string };

      const located = await cli(['kmip', 'locate', ...conn, '--name', name]);
      expect(located).toMatchObject({ code: 0, stdout: `${uniqueIdentifier}\n` });

      const got = await cli(['kmip', 'get', ...conn, uniqueIdentifier]);
      expect(got).toMatchObject({ code: 0, stdout: `${secret.toString('hex')}\n` });
      const gotJson = JSON.parse((await cli(['--json', 'kmip', 'get', ...conn, uniqueIdentifier])).stdout) as {
        value: string;
      };
      expect(gotJson.value).toBe(secret.toString('hex'));

      const attrs = await cli(['kmip', 'attrs', ...conn, uniqueIdentifier]);
      expect(attrs.code).toBe(0);
      expect(attrs.stdout).toMatch(/Object Type\s+SecretData/);
      expect(attrs.stdout).toMatch(/State\s+PreActive/);
      expect(attrs.stdout).not.toContain(secret.toString('hex'));

      expect((await cli(['kmip', 'activate', ...conn, uniqueIdentifier])).code).toBe(0);
      // Destroy needs --yes (checked before the server is asked); an Active object is then refused.
      const unconfirmed = await cli(['kmip', 'destroy', ...conn, uniqueIdentifier]);
      expect(unconfirmed.code).toBe(2);
      expect(unconfirmed.stderr).toMatch(/USAGE_CONFIRM/);
      const refused = await cli(['kmip', 'destroy', ...conn, uniqueIdentifier, '--yes']);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toMatch(/KMIP_OPERATION_FAILED/);
      const revoked = await cli([
        'kmip',
        'revoke',
        ...conn,
        uniqueIdentifier,
        '--reason',
        'superseded',
        '--message',
        'rotated',
      ]);
      expect(revoked).toMatchObject({ code: 0, stdout: `${uniqueIdentifier} revoked (Superseded)\n` });
      expect((await cli(['kmip', 'destroy', ...conn, uniqueIdentifier, '--yes'])).code).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('register reads stdin for -, create and query work, secrets never appear in argv', async () => {
    const secret = randomBytes(16);
    const hex = secret.toString('hex');
    const registered = await cli(['kmip', 'register', ...conn, '--type', 'key', '--key-file', '-', '--json'], secret);
    expect(registered.code).toBe(0);
    // The CLI wipes the secret it read once it is sent.
    expect(secret.equals(Buffer.alloc(16))).toBe(true);
    const { uniqueIdentifier } = JSON.parse(registered.stdout) as { uniqueIdentifier: string };
    expect((await cli(['kmip', 'get', ...conn, uniqueIdentifier])).stdout.trim()).toBe(hex);

    const created = await cli(['kmip', 'create', ...conn, '--length', '128', '--usage', 'encrypt,decrypt,wrap-key']);
    expect(created.code).toBe(0);
    expect(created.stdout).toMatch(/^created \S+ \(AES-128\)/);

    const query = JSON.parse((await cli(['--json', 'kmip', 'query', ...conn])).stdout) as {
      vendor: string;
      operations: string[];
    };
    expect(query.vendor).toMatch(/PyKMIP/);
    expect(query.operations).toContain('Locate');
    // No option takes a secret value on the command line.
    expect(await cli(['kmip', 'register', ...conn, '--key', 'deadbeef', '--value', '00'])).toMatchObject({ code: 2 });
  });

  test('get --format raw and --wrap-key (AES key wrap by a key-encryption key on the server)', async () => {
    const json = async (args: string[]) =>
      JSON.parse((await cli(['--json', 'kmip', ...args, ...conn])).stdout) as Record<string, unknown>;
    const kek = (await json(['create', '--usage', 'wrap-key,unwrap-key'])).uniqueIdentifier as string;
    expect((await cli(['kmip', 'activate', ...conn, kek])).code).toBe(0);
    const dek = (await json(['create'])).uniqueIdentifier as string;
    const raw = await json(['get', dek, '--format', 'raw']);
    expect(raw).toMatchObject({ wrapped: false, objectType: 'SymmetricKey' });
    expect(raw.value).toMatch(/^[0-9a-f]{64}$/);
    const wrapped = await json(['get', dek, '--wrap-key', kek]);
    expect(wrapped.wrapped).toBe(true);
    expect(wrapped.value).toMatch(/^[0-9a-f]{80}$/);
    expect(wrapped.value).not.toBe(raw.value);
  });

  test('discover with a dead first server: fails over, reports both', async () => {
    const dead = await freePort();
    const result = await cli(['kmip', 'discover', '--server', `127.0.0.1:${dead}`, ...conn]);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain(`127.0.0.1:${dead}: FAILED`);
    expect(result.stdout).toContain('KMIP_CONNECTION_REFUSED');
    expect(result.stdout).toMatch(new RegExp(`${server.port}: KMIP 2\\.0 over TLSv1\\.2`));
    const json = JSON.parse(
      (await cli(['--json', 'kmip', 'discover', '--server', `127.0.0.1:${dead}`, ...conn])).stdout,
    ) as {
      servers: { ok: boolean }[];
      offered: string[];
    };
    expect(json.servers.map((s) => s.ok)).toEqual([false, true]);
    expect(json.offered).toContain('1.2');
  });

  test('errors: JSON error document, exit codes 1/2/3, and a hint of what to do next', async () => {
    const missing = await cli(['--json', 'kmip', 'get', ...conn, '424242']);
    expect(missing.code).toBe(1);
    const error = (JSON.parse(missing.stdout) as { error: { code: string; message: string } }).error;
    expect(error.code).toBe('KMIP_OPERATION_FAILED');
    expect(error.message).toMatch(/ItemNotFound.*locate/);

    const created = JSON.parse((await cli(['--json', 'kmip', 'create', ...conn])).stdout) as {
      uniqueIdentifier: string;
    };
    const rekey = await cli(['kmip', 'rekey', ...conn, created.uniqueIdentifier]);
    expect(rekey.code).toBe(3);
    expect(rekey.stderr).toMatch(/KMIP_OPERATION_NOT_SUPPORTED/);

    expect((await cli(['kmip', 'get', created.uniqueIdentifier])).code).toBe(2);
    expect((await cli(['kmip', 'frobnicate', ...conn])).code).toBe(2);
    expect((await cli(['kmip', 'locate', ...conn, '--state', 'sleepy'])).code).toBe(2);

    const dead = await freePort();
    const down = await cli(['kmip', 'query', '--server', `127.0.0.1:${dead}`, ...tls]);
    expect(down.code).toBe(1);
    expect(down.stderr).toMatch(/KMIP_CONNECTION_REFUSED/);
    expect(down.stderr).toMatch(/check that the server runs and that host and port are right/);
  });

  test('help lists every command', async () => {
    const help = await cli(['kmip', '--help']);
    for (const sub of [
      'discover',
      'query',
      'create',
      'register',
      'get',
      'locate',
      'attrs',
      'activate',
      'revoke',
      'destroy',
      'rekey',
    ])
      expect(help.stdout).toContain(`  ${sub} `);
  });
});

describe('kmip-agent kmip: the --json contract and argument checks', () => {
  test('discover with every server down prints exactly one JSON document: the error, with per-server results', async () => {
    const dead = await freePort();
    const run = await cli(['kmip', 'discover', ...conn.slice(2), '--server', `127.0.0.1:${dead}`, '--json']);
    expect(run.code).toBe(1);
    const doc = JSON.parse(run.stdout) as { error: { code: string; servers: { ok: boolean }[] } };
    expect(doc.error.code).toMatch(/^KMIP_CONNECTION_/);
    expect(doc.error.servers).toEqual([expect.objectContaining({ ok: false })]);
  });

  test('query names every operation the server lists (from the registry), none as hex', async () => {
    const run = await cli(['kmip', 'query', ...conn, '--json']);
    expect(run.code).toBe(0);
    const { operations } = JSON.parse(run.stdout) as { operations: string[] };
    expect(operations).toEqual(expect.arrayContaining(['Create', 'Get', 'Locate', 'CreateKeyPair']));
    expect(operations.filter((o) => o.startsWith('0x'))).toEqual([]);
  });

  test.each([
    [['--kmip-version', '9.9'], /not a KMIP version/],
    [['--timeout', '0'], /--timeout must be between 1/],
  ])('%j is a usage error (exit 2)', async (extra, message) => {
    const run = await cli(['kmip', 'discover', ...conn, ...extra, '--json']);
    expect(run.code).toBe(2);
    expect((JSON.parse(run.stdout) as { error: { message: string } }).error.message).toMatch(message);
  });

  test('--max beyond a KMIP Integer is a usage error', async () => {
    const run = await cli(['kmip', 'locate', ...conn, '--max', '99999999999999999999', '--json']);
    expect(run.code).toBe(2);
    expect((JSON.parse(run.stdout) as { error: { code: string } }).error.code).toBe('USAGE');
  });
});
