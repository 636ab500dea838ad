/**
 * What `kmip ...` prints, against the real PyKMIP server: locate finding nothing, --one, register
 * warning about a name in use, and failover that is never silent (--verbose, `attempts` in --json).
 * The `attempts` assertions need KmipProviderOptions.onAttempt (src/kmip/provider.ts, kmiplib branch).
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, inject, it } from 'vitest';
import { runCliCaptured as cli } from '../support/cli.js';
import { freePort } from '../support/pykmip.js';
import { uniqueName } from '../kmip/helpers.js';

const server = inject('pykmip');
const tls = ['--ca', server.ca, '--cert', server.clientCert, '--key', server.clientKey];
const live = `${server.host}:${server.port}`;
const conn = ['--server', live, ...tls];

async function register(name: string): Promise<string> {
  const run = await cli(['--json', 'kmip', 'register', ...conn, '--key-file', '-', '--name', name], randomBytes(16));
  expect(run.code).toBe(0);
  return run.json<{ uniqueIdentifier: string }>().uniqueIdentifier;
}

describe('kmip locate', () => {
  it('finding nothing prints nothing on stdout, a note on stderr, an empty list with --json', async () => {
    const name = uniqueName('nothing');
    const human = await cli(['kmip', 'locate', ...conn, '--name', name]);
    expect(human).toMatchObject({ code: 0, stdout: '' });
    expect(human.stderr).toContain('no objects found');
    const json = await cli(['--json', 'kmip', 'locate', ...conn, '--name', name]);
    expect(json.code).toBe(0);
    expect(json.stderr).toBe('');
    expect(json.json()).toMatchObject({ uniqueIdentifiers: [] });
  });

  it('--one prints the one match, and fails clearly on none or several', async () => {
    const name = uniqueName('one');
    const none = await cli(['--json', 'kmip', 'locate', ...conn, '--name', name, '--one']);
    expect(none.code).toBe(1);
    expect(none.json()).toMatchObject({ error: { code: 'LOCATE_NO_MATCH' } });
    const first = await register(name);
    const one = await cli(['kmip', 'locate', ...conn, '--name', name, '--one']);
    expect(one).toMatchObject({ code: 0, stdout: `${first}\n` });
    const second = await register(name);
    const several = await cli(['kmip', 'locate', ...conn, '--name', name, '--one']);
    expect(several.code).toBe(1);
    expect(several.stdout).toBe('');
    expect(several.stderr).toMatch(/several objects match .*narrow the search \[LOCATE_SEVERAL_MATCHES\]/);
    expect(several.stderr).toContain(first);
    expect(several.stderr).toContain(second);
    expect((await cli(['kmip', 'locate', ...conn, '--name', name, '--one', '--max', '5'])).code).toBe(2);
  });
});

describe('kmip register', () => {
  it('warns on stderr when the name is taken already, and registers all the same', async () => {
    const name = uniqueName('twice');
    const first = await register(name);
    const quiet = await cli(
      ['kmip', 'register', ...conn, '--key-file', '-', '--name', uniqueName('fresh')],
      randomBytes(8),
    );
    expect(quiet.stderr).toBe('');
    const again = await cli(['--json', 'kmip', 'register', ...conn, '--key-file', '-', '--name', name], randomBytes(8));
    expect(again.code).toBe(0);
    expect(again.stderr).toMatch(new RegExp(`warning: 1 object\\(s\\) named '${name}' exist already \\(${first}\\)`));
    expect(again.json()).toMatchObject({ sameName: [first] });
    expect(again.json<{ uniqueIdentifier: string }>().uniqueIdentifier).not.toBe(first);
  });
});

describe('failover is never silent', () => {
  it('--verbose names each server tried and why one was passed over; --json carries attempts', async () => {
    const dead = `127.0.0.1:${await freePort()}`;
    const servers = ['--server', dead, '--server', live, ...tls];
    const verbose = await cli(['kmip', 'locate', ...servers, '--name', uniqueName('v'), '--verbose']);
    expect(verbose.code).toBe(0);
    expect(verbose.stderr).toMatch(new RegExp(`${dead}: passed over after \\d+ ms: .*\\[KMIP_CONNECTION_REFUSED\\]`));
    expect(verbose.stderr).toMatch(new RegExp(`${live}: answered in \\d+ ms`));

    const plain = await cli(['kmip', 'query', ...servers]);
    expect(plain.code).toBe(0);
    expect(plain.stderr).toContain(`${live} answered after ${dead} [KMIP_CONNECTION_REFUSED] failed`);

    const json = await cli(['--json', 'kmip', 'query', ...servers]);
    expect(json.json()).toMatchObject({
      attempts: [
        { endpoint: dead, outcome: 'failed', code: 'KMIP_CONNECTION_REFUSED', latencyMs: expect.any(Number) },
        { endpoint: live, outcome: 'answered', latencyMs: expect.any(Number) },
      ],
    });
  });

  it('when every server fails, the --json error lists the attempts', async () => {
    const deadA = `127.0.0.1:${await freePort()}`;
    const deadB = `127.0.0.1:${await freePort()}`;
    const run = await cli(['--json', 'kmip', 'query', '--server', deadA, '--server', deadB, ...tls]);
    expect(run.code).toBe(1);
    expect(run.json()).toMatchObject({
      error: {
        attempts: [
          { endpoint: deadA, outcome: 'failed' },
          { endpoint: deadB, outcome: 'failed' },
        ],
      },
    });
  });
});
