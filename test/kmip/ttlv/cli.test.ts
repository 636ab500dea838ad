import { describe, expect, test } from 'vitest';
import { runCliCaptured } from '../../support/cli.js';
import { TESTCASE_VECTORS } from './vectors.js';

async function run(argv: string[], stdin = ''): Promise<{ code: number; out: string; err: string }> {
  const r = await runCliCaptured(argv, () => Buffer.from(stdin, 'latin1'));
  return { code: r.code, out: r.stdout, err: r.stderr };
}

const createRequest = TESTCASE_VECTORS[0].hex;

describe('kmip-agent ttlv decode', () => {
  test('prints the text dump of a hex message', async () => {
    const r = await run(['ttlv', 'decode', createRequest]);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^RequestMessage \(Structure\)\n {2}RequestHeader \(Structure\)/);
    expect(r.out).toContain('    Operation (Enumeration): Create');
  });

  test('--json prints exactly one JSON document, the KMIP JSON form', async () => {
    const r = await run(['--json', 'ttlv', 'decode', createRequest]);
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.out) as { tag: string; type: string; value: unknown[] };
    expect(doc.tag).toBe('RequestMessage');
    expect(doc.type).toBe('Structure');
    expect(JSON.stringify(doc)).toContain('{"tag":"Operation","type":"Enumeration","value":"Create"}');
  });

  test('reads hex from stdin with -, raw bytes with --raw, prints XML with --xml', async () => {
    expect((await run(['ttlv', 'decode', '-'], createRequest.replace(/(.{32})/g, '$1\n'))).code).toBe(0);
    const raw = Buffer.from(createRequest, 'hex').toString('latin1');
    const r = await run(['ttlv', 'decode', '--raw', '--xml', '-'], raw);
    expect(r.code).toBe(0);
    expect(r.out).toContain('<Operation type="Enumeration" value="Create"/>');
  });

  test('--redact hides the key in the dump', async () => {
    const getResponse = TESTCASE_VECTORS[7].hex;
    const r = await run(['ttlv', 'decode', '--redact', getResponse]);
    expect(r.code).toBe(0);
    expect(r.out).toContain('KeyMaterial (ByteString): <redacted>');
    expect(r.out).not.toContain('7367578051012a6d');
  });

  test('bad hex and bad TTLV fail with typed errors and exit 1', async () => {
    const badHex = await run(['--json', 'ttlv', 'decode', 'xyz']);
    expect(badHex.code).toBe(1);
    expect(JSON.parse(badHex.out)).toEqual({ error: { code: 'KMIP_TTLV_BAD_SYNTAX', message: expect.any(String) } });
    const padding = await run(['ttlv', 'decode', '42002002000000040000000800000100']);
    expect(padding.code).toBe(1);
    expect(padding.err).toContain('[KMIP_TTLV_BAD_PADDING]');
    expect(padding.err).toContain('offset 14');
  });

  test('missing argument or unknown subcommand is a usage error (exit 2)', async () => {
    expect((await run(['ttlv', 'decode'])).code).toBe(2);
    expect((await run(['ttlv', 'frobnicate'])).code).toBe(2);
    expect((await run(['ttlv', 'decode', '--bogus', '00'])).code).toBe(2);
  });
});

describe('kmip-agent ttlv encode', () => {
  test('JSON form to hex, and back through decode', async () => {
    const decoded = await run(['--json', 'ttlv', 'decode', createRequest]);
    const encoded = await run(['ttlv', 'encode', decoded.out]);
    expect(encoded.code).toBe(0);
    expect(encoded.out.trim()).toBe(createRequest);
    const json = await run(['--json', 'ttlv', 'encode', '-'], decoded.out);
    expect(JSON.parse(json.out)).toEqual({ hex: createRequest });
  });

  test('XML messages to one hex line each', async () => {
    const xml = `<KMIP><RequestMessage><RequestHeader><ProtocolVersion>
      <ProtocolVersionMajor type="Integer" value="1"/><ProtocolVersionMinor type="Integer" value="1"/>
      </ProtocolVersion><BatchCount type="Integer" value="1"/></RequestHeader></RequestMessage>
      <TTLV tag="0x540001" type="TextString" value="na"/></KMIP>`;
    const r = await run(['--json', 'ttlv', 'encode', '--xml', xml]);
    expect(r.code).toBe(0);
    const { hex } = JSON.parse(r.out) as { hex: string[] };
    expect(hex).toHaveLength(2);
    expect(hex[1]).toBe('54000107000000026e61000000000000');
  });

  test('bad JSON, unknown names and wrong value types fail with typed errors', async () => {
    const cases: [string, string][] = [
      ['{not json', 'KMIP_TTLV_BAD_SYNTAX'],
      ['{"tag":"NoSuchTag","type":"Integer","value":1}', 'KMIP_TTLV_UNKNOWN_NAME'],
      ['{"tag":"Operation","type":"Enumeration","value":"Frobnicate"}', 'KMIP_TTLV_UNKNOWN_NAME'],
      ['{"tag":"BatchCount","type":"Integer","value":"x"}', 'KMIP_TTLV_UNKNOWN_NAME'],
      ['{"tag":"BatchCount","type":"Integer","value":4294967296}', 'KMIP_TTLV_BAD_VALUE'],
      ['{"tag":"BatchCount","type":"Float","value":1}', 'KMIP_TTLV_BAD_TYPE'],
    ];
    for (const [input, code] of cases) {
      const r = await run(['--json', 'ttlv', 'encode', input]);
      expect(r.code, input).toBe(1);
      expect((JSON.parse(r.out) as { error: { code: string } }).error.code, input).toBe(code);
    }
  });
});
