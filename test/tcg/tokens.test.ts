/**
 * Token codec, byte for byte against the encoding rules of the TCG Storage Architecture Core
 * Specification 2.01, 3.2.2.3 "Tokens" (Table 04 token types; 3.2.2.3.1.1-4 tiny/short/medium/long
 * atoms; 3.2.2.3.2 control tokens), and a StartSession invocation laid out per 3.2.4.1 (method
 * invocation syntax) and 5.2.3.1 (StartSession parameters).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { tcgNative } from '../../src/drives/backend.js';
import { codeOf } from './support.js';

const tcg = tcgNative();
const hex = (b: Buffer): string => b.toString('hex');
const enc = (...values: unknown[]): string => hex(tcg.encodeTokens(values));

describe('atoms (Core 3.2.2.3.1)', () => {
  it('tiny atoms hold 0..63 unsigned and -32..31 signed in one byte (3.2.2.3.1.1)', () => {
    expect(enc(0)).toBe('00');
    expect(enc(1)).toBe('01');
    expect(enc(63)).toBe('3f');
    expect(enc({ int: 0 })).toBe('40');
    expect(enc({ int: 31 })).toBe('5f');
    expect(enc({ int: -1 })).toBe('7f');
    expect(enc({ int: -32 })).toBe('60');
  });

  it('short atoms: 10 B S nnnn, shortest big-endian integer (3.2.2.3.1.2)', () => {
    expect(enc(64)).toBe('8140');
    expect(enc(0xff)).toBe('81ff');
    expect(enc(0x100)).toBe('820100');
    expect(enc(0x1004)).toBe('821004');
    expect(enc(0xffffffffffffffffn)).toBe('88ffffffffffffffff');
    expect(enc({ int: -33 })).toBe('91df');
    expect(enc({ int: 128 })).toBe('920080');
    expect(enc({ int: -129 })).toBe('92ff7f');
    expect(enc(Buffer.alloc(0))).toBe('a0');
    expect(enc(Buffer.from('abc'))).toBe('a3616263');
    expect(enc({ uid: '0000020500000001' })).toBe('a80000020500000001');
  });

  it('medium atoms: 110 B S + 11-bit length, for 16..2047 bytes (3.2.2.3.1.3)', () => {
    expect(enc(Buffer.alloc(16, 0xaa)).slice(0, 4)).toBe('d010');
    expect(enc(Buffer.alloc(2047)).slice(0, 4)).toBe('d7ff');
  });

  it('long atoms: 111000 B S + 24-bit length, for 2048+ bytes (3.2.2.3.1.4)', () => {
    expect(enc(Buffer.alloc(2048)).slice(0, 8)).toBe('e2000800');
    expect(enc(Buffer.alloc(70000)).slice(0, 8)).toBe('e2011170');
  });

  it('decodes every atom form, including integer atoms in medium/long form', () => {
    const tokens = tcg.decodeTokens(
      Buffer.from('05' + '7e' + '820102' + '9180' + 'a26869' + 'c00101' + 'e1000002ff00', 'hex'),
    );
    expect(tokens.map((t) => [t.kind, t.value])).toEqual([
      ['uint', 5],
      ['int', -2],
      ['uint', 0x102],
      ['int', -128],
      ['bytes', Buffer.from('hi')],
      ['uint', 1],
      ['int', -256],
    ]);
  });
});

describe('control tokens (Core 3.2.2.3.2, Table 04)', () => {
  it('encodes lists, names, call, end of data, end of session, transactions and empty', () => {
    expect(enc([], { name: 1, value: 2 })).toBe('f0f1f20102f3');
    expect(
      enc(
        { token: 'CALL' },
        { token: 'EOD' },
        { token: 'EOS' },
        { token: 'START_TRANSACTION' },
        { token: 'END_TRANSACTION' },
        { token: 'EMPTY' },
      ),
    ).toBe('f8f9fafbfcff');
  });

  it('decodes them into kinds with offsets', () => {
    const tokens = tcg.decodeTokens(Buffer.from('f0f1f2f3f8f9fafbfcff', 'hex'));
    expect(tokens.map((t) => t.kind)).toEqual([
      'StartList',
      'EndList',
      'StartName',
      'EndName',
      'Call',
      'EndOfData',
      'EndOfSession',
      'StartTransaction',
      'EndTransaction',
      'Empty',
    ]);
    expect(tokens[9].offset).toBe(9);
  });
});

describe('method invocation (Core 3.2.4.1, 5.2.3.1)', () => {
  it('lays out SMUID.StartSession[HostSessionID, SPID, Write, HostChallenge, HostSigningAuthority]', () => {
    const bytes = tcg.encodeTokens([
      { token: 'CALL' },
      { uid: '00000000000000ff' },
      { uid: '000000000000ff02' },
      [
        105,
        { uid: '0000020500000001' },
        1,
        { name: 0, value: Buffer.from('pin') },
        { name: 3, value: { uid: '0000000900000006' } },
      ],
      { token: 'EOD' },
      [0, 0, 0],
    ]);
    expect(hex(bytes)).toBe(
      'f8' +
        'a800000000000000ff' +
        'a8000000000000ff02' +
        'f0' +
        '8169' +
        'a80000020500000001' +
        '01' +
        'f200a370696ef3' +
        'f203a80000000900000006f3' +
        'f1' +
        'f9' +
        'f0000000f1',
    );
    const values = tcg.decodeValues(bytes);
    expect(values).toHaveLength(6);
    expect((values[3] as unknown[])[0]).toBe(105);
    expect((values[3] as unknown[])[3]).toEqual({ name: 0, value: Buffer.from('pin') });
  });

  it('parses a method response: results, then the status list after EndOfData (5.1.5)', () => {
    const ok = tcg.encodeTokens([[[{ name: 3, value: Buffer.from('MSID') }]], { token: 'EOD' }, [0, 0, 0]]);
    expect(tcg.parseMethodResponse(ok)).toEqual({
      status: 0,
      statusName: 'SUCCESS',
      results: [[{ name: 3, value: Buffer.from('MSID') }]],
    });
    const refused = tcg.encodeTokens([[], { token: 'EOD' }, [0x12, 0, 0]]);
    expect(tcg.parseMethodResponse(refused)).toMatchObject({ status: 0x12, statusName: 'AUTHORITY_LOCKED_OUT' });
    expect(codeOf(() => tcg.parseMethodResponse(Buffer.from('f0f1', 'hex')))).toBe('TCG_MALFORMED_RESPONSE');
    expect(codeOf(() => tcg.parseMethodResponse(Buffer.from('fa', 'hex')))).toBe('TCG_SESSION_CLOSED');
  });

  it('names every method status code of Core 5.1.5 as TCG_<NAME>', () => {
    const names: Record<number, string> = {
      0x00: 'SUCCESS',
      0x01: 'NOT_AUTHORIZED',
      0x03: 'SP_BUSY',
      0x04: 'SP_FAILED',
      0x05: 'SP_DISABLED',
      0x06: 'SP_FROZEN',
      0x07: 'NO_SESSIONS_AVAILABLE',
      0x08: 'UNIQUENESS_CONFLICT',
      0x09: 'INSUFFICIENT_SPACE',
      0x0a: 'INSUFFICIENT_ROWS',
      0x0c: 'INVALID_PARAMETER',
      0x0f: 'TPER_MALFUNCTION',
      0x10: 'TRANSACTION_FAILURE',
      0x11: 'RESPONSE_OVERFLOW',
      0x12: 'AUTHORITY_LOCKED_OUT',
      0x3f: 'FAIL',
    };
    for (const [status, name] of Object.entries(names)) {
      expect(tcg.statusName(Number(status))).toEqual({ name, code: `TCG_${name}` });
    }
    expect(tcg.statusName(0x20).code).toBe('TCG_UNKNOWN_STATUS_0x20');
  });
});

describe('malformed token streams give TCG_MALFORMED_TOKENS', () => {
  const bad: [string, string][] = [
    ['reserved token E4', 'e4'],
    ['reserved token F4', 'f0f4f1'],
    ['short atom past the end', 'a5616263'],
    ['medium header cut', 'd0'],
    ['long header cut', 'e200'],
    ['long atom past the end', 'e2000010aa'],
    ['integer wider than 8 bytes', '89010203040506070809'],
    ['continued bytes', 'b100'],
    ['unclosed list', 'f0f001f1'],
    ['EndList alone', 'f1'],
    ['EndName alone', '01f3'],
    ['name without value', 'f201f3'],
    ['name not closed', 'f2010203f3'],
    ['name with a list as key', 'f2f0f101f3'],
  ];
  for (const [what, bytes] of bad) {
    it(what, () => {
      expect(codeOf(() => tcg.decodeValues(Buffer.from(bytes, 'hex')))).toBe('TCG_MALFORMED_TOKENS');
    });
  }

  it('refuses lists nested deeper than the bound instead of exhausting the stack', () => {
    const deep = Buffer.concat([Buffer.alloc(100000, 0xf0), Buffer.alloc(100000, 0xf1)]);
    expect(codeOf(() => tcg.decodeValues(deep))).toBe('TCG_MALFORMED_TOKENS');
  });

  it('random bytes either decode or fail with a TCG_MALFORMED_ code, never crash', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        const code = codeOf(() => tcg.decodeValues(Buffer.from(bytes)));
        return code === undefined || code === 'TCG_MALFORMED_TOKENS';
      }),
      { numRuns: 400 },
    );
  });
});

describe('round trip', () => {
  const atom = fc.oneof(
    fc
      .bigInt({ min: 0n, max: 0xffffffffffffffffn })
      .map((v) => ({ enc: v as unknown, dec: v <= 2n ** 53n ? Number(v) : v })),
    fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }).map((v) => ({
      enc: { int: v } as unknown,
      dec: v <= 2n ** 53n && v >= -(2n ** 53n) ? Number(v) : v,
    })),
    fc.uint8Array({ maxLength: 40 }).map((b) => ({ enc: Buffer.from(b) as unknown, dec: Buffer.from(b) as unknown })),
  );
  type Pair = { enc: unknown; dec: unknown };
  const tree: fc.Arbitrary<Pair> = fc.letrec<{ node: Pair }>((tie) => ({
    node: fc.oneof(
      { depthSize: 'small' },
      atom,
      fc.array(tie('node'), { maxLength: 4 }).map((items) => ({
        enc: items.map((i) => i.enc),
        dec: items.map((i) => i.dec),
      })),
      fc
        .tuple(fc.nat(1000), tie('node'))
        .map(([n, v]) => ({ enc: { name: n, value: v.enc }, dec: { name: n, value: v.dec } })),
    ),
  })).node;

  it('encode then decode gives the same tree (integers signed or not as written)', () => {
    fc.assert(
      fc.property(fc.array(tree, { maxLength: 5 }), (values) => {
        const bytes = tcg.encodeTokens(values.map((v) => v.enc));
        expect(tcg.decodeValues(bytes)).toEqual(values.map((v) => v.dec));
      }),
      { numRuns: 300 },
    );
  });
});
