/**
 * `kmip-agent setup` against the real PyKMIP server: the first-run wizard writes a version-2 config (named
 * key servers, a default provider in failover order, one client identity), copies the credentials (key
 * 0600), tests every server and keeps the results in the state; a failed test saves nothing unless
 * --force, and bad input is refused before anything is tested or written.
 */
import { existsSync, mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { decodeState } from '../../src/agent/state.js';
import { makeTestPki } from '../support/certs.js';
import { freePort, pykmipCliArgs } from '../support/pykmip.js';
import { appliancesForEachTest, TestAppliance } from './appliance.js';

const newAppliance = appliancesForEachTest();
const appliance = () => newAppliance({ setup: false });

/** `--server` replaced by `servers`, the rest of the PyKMIP fixture's connection flags kept. */
function withServers(a: TestAppliance, servers: string[]): string[] {
  const args = pykmipCliArgs(a.server);
  const i = args.indexOf('--server');
  args.splice(i, 2);
  return [...servers.flatMap((s) => ['--server', s]), ...args];
}

describe('kmip-agent setup', () => {
  it('writes the config, copies the credentials, tests the server and records the result', () => {
    const a = appliance();
    const out = a.ok(['setup', '--appliance-id', a.id, ...pykmipCliArgs(a.server), '--label', 'primary KMS']);
    const endpoint = `${a.server.host}:${a.server.port}`;
    expect(out).toMatchObject({ applianceId: a.id, tested: true });
    const [test] = out.servers as Record<string, unknown>[];
    expect(test).toMatchObject({ endpoint, ok: true, protocolVersion: /^\d\.\d$/, vendor: expect.any(String) });
    expect(test!.kmipVersions).toEqual(expect.arrayContaining(['1.2']));

    const config = JSON.parse(readFileSync(join(a.dirs.config, 'config.json'), 'utf8'));
    expect(config).toMatchObject({
      schemaVersion: 2,
      client: { enabled: true, cert: 'client.pem', key: 'client.key' },
      servers: { [a.server.host]: { host: a.server.host, port: a.server.port, servername: 'localhost', ca: 'ca.pem' } },
      providers: { default: { label: 'primary KMS', servers: [a.server.host] } },
    });
    expect(config.providers.default.untested).toBeUndefined();
    expect(statSync(join(a.dirs.config, 'client.key')).mode & 0o777).toBe(0o600);
    expect(statSync(join(a.dirs.config, 'config.json')).mode & 0o777).toBe(0o600);

    const state = decodeState(readFileSync(a.statePath, 'utf8'), a.statePath);
    expect(state.body.connections).toEqual([
      expect.objectContaining({ endpoint, server: a.server.host, ok: true, vendor: test!.vendor }),
    ]);
  });

  it('saves nothing when a server fails the test, names it, and saves untested with --force', async () => {
    const a = appliance();
    const dead = `127.0.0.1:${await freePort()}`;
    const live = `${a.server.host}:${a.server.port}`;
    const failed = a.cli(['setup', '--appliance-id', a.id, ...withServers(a, [dead, live])]);
    expect(failed.code).not.toBe(0);
    expect(failed.json).toMatchObject({ error: { code: 'KMIP_CONNECTION_REFUSED' } });
    expect(JSON.stringify(failed.json)).toContain(dead);
    expect(existsSync(join(a.dirs.config, 'config.json'))).toBe(false);

    const forced = a.ok(['setup', '--appliance-id', a.id, ...withServers(a, [dead, live]), '--force']);
    expect(forced.tested).toBe(false);
    const config = JSON.parse(readFileSync(join(a.dirs.config, 'config.json'), 'utf8'));
    expect(config.providers.default).toMatchObject({
      untested: true,
      servers: ['127.0.0.1', `${a.server.host}-${a.server.port}`],
    });
    const state = decodeState(readFileSync(a.statePath, 'utf8'), a.statePath);
    expect(state.body.connections.map((c) => [c.endpoint, c.ok])).toEqual([
      [dead, false],
      [live, true],
    ]);
  });

  it('refuses a server whose chain does not end in the given CA, naming the TLS error', () => {
    const a = appliance();
    const other = makeTestPki(mkdtempSync(join(tmpdir(), 'kmip-agent-otherca-')));
    const args = pykmipCliArgs(a.server);
    args[args.indexOf('--ca') + 1] = other.ca.cert;
    const r = a.cli(['setup', '--appliance-id', a.id, ...args]);
    expect(r.code).not.toBe(0);
    expect(r.json).toMatchObject({ error: { code: 'KMIP_TLS_UNTRUSTED' } });
    expect(existsSync(join(a.dirs.config, 'config.json'))).toBe(false);
  });

  it('refuses bad input before testing or writing anything', () => {
    const a = appliance();
    const cases: [string[], RegExp][] = [
      [[...pykmipCliArgs(a.server), '--label', 'x'.repeat(51)], /label: at most 50 characters/],
      [withServers(a, ['kms one:5696']), /--server must be HOST or HOST:PORT|hostname/],
      [withServers(a, ['kms.example:0']), /--server must be HOST or HOST:PORT/],
      [withServers(a, ['kms.example:70000']), /--server must be HOST or HOST:PORT/],
      [withServers(a, ['kms.example', 'kms.example:5696']), /given twice/],
    ];
    for (const [args, message] of cases) {
      const r = a.cli(['setup', '--appliance-id', a.id, ...args]);
      expect(r.code, args.join(' ')).toBe(2);
      expect(JSON.stringify(r.json)).toMatch(message);
    }
    expect(existsSync(join(a.dirs.config, 'config.json'))).toBe(false);
    expect(existsSync(a.statePath)).toBe(false);
  });
});
