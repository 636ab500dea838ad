/**
 * Text that comes from a server reaches a terminal escaped: a hostile server (the test fixture, told
 * to lie) cannot move the cursor, ring the bell or forge lines through a Result Message, a name or an
 * attribute value. JSON output carries the text as it came (JSON escapes it).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { printable } from '../../src/cli/framework.js';
import { Operation, ResultReason, ResultStatus } from '../../src/kmip/spec.js';
import { runCliCaptured as cli } from '../support/cli.js';
import { KmipFixtureServer, responseBytes } from '../support/kmip-fixture-server.js';

const HOSTILE = '\x1b[2J\x1b]0;owned\x07done\r\nkmip-agent: all good [OK]\u202e\x9b';
// eslint-disable-next-line no-control-regex
const RAW_CONTROL = /[\x00-\x08\x0b-\x1f\x7f-\x9f\u202e]/;

let fixture: KmipFixtureServer;
let conn: string[];
beforeAll(async () => {
  fixture = await KmipFixtureServer.start();
  conn = [
    '--server',
    `${fixture.host}:${fixture.port}`,
    '--ca',
    fixture.pki.ca.cert,
    '--cert',
    fixture.pki.client.cert,
    '--key',
    fixture.pki.client.key,
  ];
});
afterAll(() => fixture.stop());

describe('printable', () => {
  it('escapes C0, DEL, C1 and bidirectional overrides, and leaves other text alone', () => {
    expect(printable('a\x1bb\x07c\rd\ne\tf\x7fg\x9bh\u202ei')).toBe('a\\x1bb\\x07c\\rd\\ne\\tf\\x7fg\\x9bh\\u202ei');
    expect(printable('Grüße, 鍵 ✓')).toBe('Grüße, 鍵 ✓');
  });
});

describe('text from a hostile server', () => {
  it('a Result Message is printed on one line, escaped; --json keeps it as sent', async () => {
    // Every Get is refused with the hostile text; everything else (version negotiation) is answered.
    fixture.handler = (request, f) =>
      request.items[0]?.operation === Operation.Get
        ? {
            kind: 'bytes',
            bytes: responseBytes(
              request.items.map((item) => ({
                operation: item.operation,
                batchId: item.batchId,
                status: ResultStatus.OperationFailed,
                reason: ResultReason.ItemNotFound,
                message: HOSTILE,
              })),
              request.version,
            ),
          }
        : f.respond(request);
    try {
      const human = await cli(['kmip', 'get', ...conn, '1']);
      expect(human.code).toBe(1);
      expect(human.stderr).not.toMatch(RAW_CONTROL);
      expect(human.stderr.split('\n').filter((l) => l.length > 0)).toHaveLength(1);
      expect(human.stderr).toContain('\\x1b[2J\\x1b]0;owned\\x07done\\r\\nkmip-agent: all good [OK]\\u202e\\x9b');
      const json = await cli(['--json', 'kmip', 'get', ...conn, '1']);
      expect(json.json<{ error: { message: string } }>().error.message).toContain(HOSTILE);
    } finally {
      fixture.handler = (request, f) => f.respond(request);
    }
  });

  it('names and attribute values are escaped in attrs and register output', async () => {
    const registered = await cli(
      ['kmip', 'register', ...conn, '--key-file', '-', '--name', HOSTILE],
      Buffer.from([1, 2, 3]),
    );
    expect(registered.code).toBe(0);
    expect(registered.stderr).toBe('');
    const uid = /^registered (\S+) /.exec(registered.stdout)![1]!;
    const attrs = await cli(['kmip', 'attrs', ...conn, uid]);
    expect(attrs.code).toBe(0);
    expect(attrs.stdout).not.toMatch(RAW_CONTROL);
    expect(attrs.stdout).toContain('\\x1b[2J');
    const again = await cli(
      ['kmip', 'register', ...conn, '--key-file', '-', '--name', HOSTILE],
      Buffer.from([4, 5, 6]),
    );
    expect(again.stderr).toContain('warning:');
    expect(again.stderr).not.toMatch(RAW_CONTROL);
  });
});
