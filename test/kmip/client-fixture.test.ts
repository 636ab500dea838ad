/**
 * The client against the scripted TEST FIXTURE server: every operation's wire form and parsing, batching,
 * version negotiation, concurrency, and hostile answers (each must end in a typed error, no hang, and a
 * clean new connection for the next request).
 */
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest';
import fc from 'fast-check';
import { readFileSync } from 'node:fs';
import { KmipFixtureServer, responseBytes } from '../support/kmip-fixture-server.js';
import { KmipClient, wipeTree, type KmipClientOptions } from '../../src/kmip/client.js';
import { KmipError, KmipOperationError } from '../../src/kmip/errors.js';
import * as ops from '../../src/kmip/operations.js';
import { decode, encode } from '../../src/kmip/ttlv/binary.js';
import {
  byteString,
  childOf,
  childrenOf,
  enumeration,
  integer,
  structure,
  textString,
  type TtlvItem,
} from '../../src/kmip/ttlv/types.js';
import {
  CryptographicAlgorithm,
  Operation,
  ResultReason,
  RevocationReasonCode,
  State,
  T,
  UsageMask,
} from '../../src/kmip/spec.js';

let fixture: KmipFixtureServer;

function options(extra: Partial<KmipClientOptions> = {}): KmipClientOptions {
  return {
    host: fixture.host,
    port: fixture.port,
    ca: readFileSync(fixture.pki.ca.cert),
    cert: fixture.pki.client.certPem,
    key: fixture.pki.client.keyPem,
    requestTimeoutMs: 2_000,
    ...extra,
  };
}

beforeAll(async () => {
  fixture = await KmipFixtureServer.start();
});
afterAll(async () => {
  await fixture.stop();
});

const aes = { algorithm: CryptographicAlgorithm.AES, length: 256, usageMask: UsageMask.Encrypt | UsageMask.Decrypt };

describe('operations against the fixture (KMIP 1.4)', () => {
  test('every operation round-trips through its builder and parser', async () => {
    const client = new KmipClient(options());
    try {
      expect(await client.connect()).toEqual({ major: 1, minor: 4 });
      const created = await client.create({ ...aes, name: 'fx-key', objectGroup: 'fx-group' });
      expect(created.objectType).toBe(2);
      const secret = Buffer.from('0123456789abcdef0123456789abcdef');
      const registered = await client.register({
        kind: 'secret-data',
        secret,
        name: 'fx-pin',
        objectGroup: 'fx-group',
      });
      const key = Buffer.alloc(32, 7);
      const registeredKey = await client.register({
        kind: 'symmetric-key',
        key,
        algorithm: CryptographicAlgorithm.AES,
        usageMask: UsageMask.Encrypt,
      });

      const pin = await client.get(registered.uniqueIdentifier);
      expect(pin.value.equals(secret)).toBe(true);
      expect(pin.secretDataType).toBe(1);
      expect((await client.get(registeredKey.uniqueIdentifier)).value.equals(key)).toBe(true);

      expect((await client.locate({ objectGroup: 'fx-group' })).uniqueIdentifiers.sort()).toEqual(
        [created.uniqueIdentifier, registered.uniqueIdentifier].sort(),
      );
      expect((await client.locate({ name: 'fx-pin' })).uniqueIdentifiers).toEqual([registered.uniqueIdentifier]);

      const attrs = await client.getAttributes(created.uniqueIdentifier);
      expect(attrs.attributes).toContainEqual({ name: 'Name', value: 'fx-key' });
      expect(attrs.attributes).toContainEqual({ name: 'Cryptographic Length', value: 256 });
      expect((await client.getAttributeList(created.uniqueIdentifier)).names).toContain('Object Group');

      const added = await client.addAttribute(created.uniqueIdentifier, { name: 'x-drive', value: 'wwn-1' });
      expect(added.attribute).toEqual({ name: 'x-drive', value: 'wwn-1' });
      const modified = await client.modifyAttribute(created.uniqueIdentifier, { name: 'x-drive', value: 'wwn-2' });
      expect(modified.attribute?.value).toBe('wwn-2');
      const deleted = await client.deleteAttribute(created.uniqueIdentifier, 'x-drive');
      expect(deleted.attribute?.value).toBe('wwn-2');

      await client.activate(created.uniqueIdentifier);
      const activeDestroy = await client.destroy(created.uniqueIdentifier).catch((e: unknown) => e);
      expect(activeDestroy).toBeInstanceOf(KmipOperationError);
      const rekeyed = await client.reKey(created.uniqueIdentifier);
      expect(rekeyed.uniqueIdentifier).not.toBe(created.uniqueIdentifier);
      await client.revoke({
        uniqueIdentifier: created.uniqueIdentifier,
        reason: RevocationReasonCode.CessationOfOperation,
        message: 'retired',
      });
      await client.destroy(created.uniqueIdentifier);
      const gone = await client.get(created.uniqueIdentifier).catch((e: unknown) => e);
      expect(gone).toMatchObject({ code: 'KMIP_OPERATION_FAILED', resultReason: { name: 'ItemNotFound', code: 1 } });
    } finally {
      client.close();
    }
  });

  test('a Get answer hands over the decoded key bytes: wiping the tree afterwards leaves the value intact', () => {
    const key = Buffer.alloc(32, 0x5a);
    const payload = decode(
      encode(
        structure(T.ResponsePayload, [
          enumeration(T.ObjectType, 2),
          textString(T.UniqueIdentifier, 'k1'),
          structure(T.SymmetricKey, [
            structure(T.KeyBlock, [
              enumeration(T.KeyFormatType, 1),
              structure(T.KeyValue, [byteString(T.KeyMaterial, key)]),
              enumeration(T.CryptographicAlgorithm, CryptographicAlgorithm.AES),
              integer(T.CryptographicLength, 256),
            ]),
          ]),
        ]),
      ),
    );
    const object = ops.get.spec.decode(payload, { major: 1, minor: 4 });
    wipeTree(payload);
    expect(object.value.equals(key)).toBe(true);
  });

  test('request header: 1.2 field order, no Time Stamp unless asked, batch IDs only for batches', async () => {
    const client = new KmipClient(options());
    try {
      await client.query([1]);
      const single = fixture.requests.at(-1)!;
      const header = childOf(single.message, T.RequestHeader)!;
      expect((header.value as TtlvItem[]).map((i) => i.tag)).toEqual([T.ProtocolVersion, T.BatchCount]);
      expect(single.items[0]!.batchId).toBeUndefined();

      await client.batch([ops.query({ functions: [1] }), ops.discoverVersions({ versions: [] })]);
      const batch = fixture.requests.at(-1)!;
      const batchHeader = childOf(batch.message, T.RequestHeader)!;
      expect((batchHeader.value as TtlvItem[]).map((i) => i.tag)).toEqual([
        T.ProtocolVersion,
        T.BatchErrorContinuationOption,
        T.BatchCount,
      ]);
      const ids = batch.items.map((i) => i.batchId?.toString('hex'));
      expect(ids.every((id) => id !== undefined)).toBe(true);
      expect(new Set(ids).size).toBe(2);
    } finally {
      client.close();
    }
    const stamped = new KmipClient(options({ sendTimeStamp: true }));
    try {
      await stamped.query([1]);
      const header = childOf(fixture.requests.at(-1)!.message, T.RequestHeader)!;
      expect((header.value as TtlvItem[]).map((i) => i.tag)).toEqual([T.ProtocolVersion, T.TimeStamp, T.BatchCount]);
    } finally {
      stamped.close();
    }
  });

  test('a batch returns per-item results; a failing item does not hide the others', async () => {
    const client = new KmipClient(options());
    try {
      const { uniqueIdentifier } = await client.create(aes);
      const [good, bad, again] = await client.batch([
        ops.get({ uniqueIdentifier }),
        ops.get({ uniqueIdentifier: 'no-such-object' }),
        ops.getAttributeList({ uniqueIdentifier }),
      ]);
      expect(good.ok && good.value.value.length).toBe(32);
      expect(bad.ok).toBe(false);
      if (!bad.ok) expect(bad.error).toMatchObject({ resultReason: { name: 'ItemNotFound' } });
      expect(again.ok && again.value.uniqueIdentifier).toBe(uniqueIdentifier);
    } finally {
      client.close();
    }
  });

  test('concurrent callers share one connection, one message at a time', async () => {
    const client = new KmipClient(options());
    try {
      const { uniqueIdentifier } = await client.create(aes);
      const before = fixture.connections;
      const results = await Promise.all(Array.from({ length: 20 }, () => client.get(uniqueIdentifier)));
      expect(new Set(results.map((r) => r.value.toString('hex'))).size).toBe(1);
      expect(fixture.connections).toBe(before);
    } finally {
      client.close();
    }
  });

  test('a message-level refusal applies to every item of the batch', async () => {
    const client = new KmipClient(options());
    try {
      await client.connect();
      fixture.once(() => ({
        kind: 'bytes',
        bytes: responseBytes([
          { operation: Operation.Get, status: 1, reason: ResultReason.AuthenticationNotSuccessful, message: 'no' },
        ]),
      }));
      const results = await client.batch([ops.get({ uniqueIdentifier: '1' }), ops.get({ uniqueIdentifier: '2' })]);
      for (const r of results) expect(!r.ok && r.error.code).toBe('KMIP_OPERATION_FAILED');
    } finally {
      client.close();
    }
  });
});

describe('version negotiation', () => {
  test('picks the highest common version; KMIP 2.x encodes Attributes with their own tags', async () => {
    const v2 = await KmipFixtureServer.start({
      pki: fixture.pki,
      versions: [
        { major: 2, minor: 0 },
        { major: 1, minor: 4 },
      ],
    });
    const client = new KmipClient({ ...options(), port: v2.port });
    try {
      expect(await client.connect()).toEqual({ major: 2, minor: 0 });
      await client.create({ ...aes, name: 'v2' }).catch(() => undefined);
      const create = v2.requests.at(-1)!;
      expect(create.version).toEqual({ major: 2, minor: 0 });
      const attributes = childOf(create.items[0]!.payload, T.Attributes)!;
      expect(childrenOf(attributes, T.CryptographicAlgorithm)).toHaveLength(1);
      expect(childOf(childOf(attributes, T.Name)!, T.NameValue)?.value).toBe('v2');
      expect(childOf(create.items[0]!.payload, T.TemplateAttribute)).toBeUndefined();
    } finally {
      client.close();
      await v2.stop();
    }
  });

  test('a server that speaks only 2.x and refuses a 1.2 header is asked again in 2.1', async () => {
    const modern = await KmipFixtureServer.start({
      pki: fixture.pki,
      versions: [{ major: 2, minor: 1 }],
      strictVersions: true,
    });
    const client = new KmipClient({ ...options(), port: modern.port });
    try {
      expect(await client.connect()).toEqual({ major: 2, minor: 1 });
      expect(modern.requests.map((r) => `${r.version.major}.${r.version.minor}`)).toEqual(['1.2', '2.1']);
      expect((await client.query([1])).vendorIdentification).toBe('kmip-agent test fixture');
    } finally {
      client.close();
      await modern.stop();
    }
  });

  test('falls back to 1.2 when the server has nothing newer, and refuses when nothing is common', async () => {
    const old = await KmipFixtureServer.start({ pki: fixture.pki, versions: [{ major: 1, minor: 2 }] });
    const client = new KmipClient({ ...options(), port: old.port });
    try {
      expect(await client.connect()).toEqual({ major: 1, minor: 2 });
    } finally {
      client.close();
      await old.stop();
    }
    const alien = await KmipFixtureServer.start({ pki: fixture.pki, versions: [{ major: 9, minor: 9 }] });
    const refused = new KmipClient({ ...options(), port: alien.port });
    try {
      await expect(refused.connect()).rejects.toMatchObject({ code: 'KMIP_PROTOCOL_NO_COMMON_VERSION' });
    } finally {
      refused.close();
      await alien.stop();
    }
  });
});

describe('hostile answers end in typed errors and a clean reconnect', () => {
  async function expectRecovery(client: KmipClient) {
    const q = await client.query([1]);
    expect(q.vendorIdentification).toBe('kmip-agent test fixture');
  }

  function resultMessageResponse(text: string): Buffer {
    return responseBytes([{ operation: Operation.Query, status: 1, reason: 1, message: text }]);
  }

  const cases: [string, () => Buffer | 'stall', string | RegExp][] = [
    [
      'a truncated frame (then the server resets)',
      () => resultMessageResponse('abc').subarray(0, 40),
      /^KMIP_CONNECTION_(CLOSED|RESET)$/,
    ],
    [
      'an inner length that lies',
      () => {
        const bytes = resultMessageResponse('abc');
        const at = bytes.indexOf('abc');
        bytes.writeUInt32BE(4096, at - 4);
        return bytes;
      },
      'KMIP_PROTOCOL_MALFORMED',
    ],
    [
      'non-zero padding',
      () => {
        const bytes = resultMessageResponse('abc');
        bytes[bytes.indexOf('abc') + 4] = 0x5a;
        return bytes;
      },
      'KMIP_PROTOCOL_MALFORMED',
    ],
    [
      'runaway nesting',
      () => {
        let item: TtlvItem = integer(T.BatchCount, 1);
        for (let i = 0; i < 200; i++) item = structure(T.ResponseHeader, [item]);
        return encode(structure(T.ResponseMessage, [item]));
      },
      'KMIP_PROTOCOL_MALFORMED',
    ],
    ['a 2 GiB length', () => Buffer.from('42007b0180000000', 'hex'), 'KMIP_PROTOCOL_BAD_LENGTH'],
    ['a length not a multiple of 8', () => Buffer.from('42007b0100000011', 'hex'), 'KMIP_PROTOCOL_BAD_LENGTH'],
    [
      'a request message instead of a response',
      () => encode(structure(T.RequestMessage, [])),
      'KMIP_PROTOCOL_UNEXPECTED_MESSAGE',
    ],
    [
      'a different batch count',
      () => responseBytes([{ operation: Operation.Query, payload: [] }], undefined, 2),
      'KMIP_PROTOCOL_BATCH_MISMATCH',
    ],
    [
      'an answer for another operation',
      () => responseBytes([{ operation: Operation.Get, payload: [] }]),
      'KMIP_PROTOCOL_BATCH_MISMATCH',
    ],
    [
      'bytes after the response',
      () => Buffer.concat([responseBytes([{ operation: Operation.Query, payload: [] }]), Buffer.alloc(8)]),
      'KMIP_PROTOCOL_UNSOLICITED_DATA',
    ],
    ['a stall', () => 'stall', 'KMIP_TIMEOUT'],
  ];

  test.each(cases)('%s', async (_name, make, code) => {
    const client = new KmipClient(options({ requestTimeoutMs: 500, idempotentRetries: 0 }));
    try {
      await client.connect();
      const answer = make();
      fixture.once(() => {
        if (answer === 'stall') return { kind: 'stall' };
        if (code instanceof RegExp) return { kind: 'reset', bytes: answer };
        return { kind: 'bytes', bytes: answer };
      });
      const connections = fixture.connections;
      const error = await client.query([1]).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(KmipError);
      expect((error as KmipError).code).toMatch(code);
      // The poisoned connection is gone; the next request opens exactly one new one.
      await expectRecovery(client);
      expect(fixture.connections).toBe(connections + 1);
    } finally {
      client.close();
    }
  });

  test('random corruptions of a valid answer: a result or a typed error, never a crash or a hang', async () => {
    const client = new KmipClient(options({ requestTimeoutMs: 1_000, idempotentRetries: 0 }));
    try {
      await client.connect();
      const valid = fixture.respond({
        raw: Buffer.alloc(0),
        message: structure(T.RequestMessage, []),
        version: { major: 1, minor: 4 },
        items: [{ operation: Operation.Query, payload: structure(T.RequestPayload, []) }],
        connection: 0,
      }).bytes;
      await fc.assert(
        fc.asyncProperty(
          fc.array(fc.record({ at: fc.nat({ max: valid.length - 1 }), byte: fc.nat({ max: 255 }) }), {
            minLength: 1,
            maxLength: 4,
          }),
          fc.nat({ max: valid.length }),
          async (flips, cut) => {
            const bytes = Buffer.from(valid);
            for (const { at, byte } of flips) bytes[at] = byte;
            const answer = cut < 16 ? bytes : bytes.subarray(0, Math.max(cut, 8));
            fixture.once(() =>
              answer.length < valid.length ? { kind: 'reset', bytes: answer } : { kind: 'bytes', bytes: answer },
            );
            const outcome = await client.query([1]).then(
              () => 'ok',
              (e: unknown) => (e instanceof KmipError ? e.code : `untyped: ${String(e)}`),
            );
            expect(outcome).toMatch(/^(ok|KMIP_[A-Z_]+)$/);
            expect((await client.query([1])).operations.length).toBeGreaterThan(0);
          },
        ),
        { numRuns: 80 },
      );
    } finally {
      client.close();
    }
  });

  test('a per-call timeout overrides the client default', async () => {
    // The default (2 min) is beyond the test's own timeout: only the per-call value can end this call in time.
    const client = new KmipClient(options({ requestTimeoutMs: 120_000 }));
    try {
      await client.connect();
      fixture.once(() => ({ kind: 'stall' }));
      await expect(client.call(ops.query({ functions: [1] }), { timeoutMs: 200 })).rejects.toMatchObject({
        code: 'KMIP_TIMEOUT',
      });
      await expectRecovery(client);
    } finally {
      client.close();
    }
  });

  test('a batch answer with unknown batch item IDs', async () => {
    const client = new KmipClient(options({ idempotentRetries: 0 }));
    try {
      await client.connect();
      fixture.once((request) => ({
        kind: 'bytes',
        bytes: responseBytes(
          request.items.map((i) => ({ operation: i.operation, batchId: Buffer.from('ffffffff', 'hex'), payload: [] })),
        ),
      }));
      await expect(client.batch([ops.query({ functions: [1] }), ops.query({ functions: [2] })])).rejects.toMatchObject({
        code: 'KMIP_PROTOCOL_BATCH_MISMATCH',
      });
      await expectRecovery(client);
    } finally {
      client.close();
    }
  });

  test('a reset mid-response: an idempotent Get is resent on a new connection, a Create is not', async () => {
    const client = new KmipClient(options());
    try {
      const { uniqueIdentifier } = await client.create(aes);
      const partial = (request: { items: { operation: number }[] }) => ({
        kind: 'reset' as const,
        bytes: responseBytes([{ operation: request.items[0]!.operation, payload: [] }]).subarray(0, 20),
      });
      const connectionsBefore = fixture.connections;
      fixture.once(partial);
      expect((await client.get(uniqueIdentifier)).value).toHaveLength(32);
      expect(fixture.connections).toBe(connectionsBefore + 1);

      const creates = () => fixture.requests.filter((r) => r.items[0]!.operation === Operation.Create).length;
      const createsBefore = creates();
      fixture.once(partial);
      const error = await client.create(aes).catch((e: unknown) => e);
      expect((error as KmipError).code).toMatch(/^KMIP_CONNECTION_(RESET|CLOSED)$/);
      expect(creates()).toBe(createsBefore + 1);
      await expectRecovery(client);
    } finally {
      client.close();
    }
  });

  test('an idle drop is invisible: the next request reconnects (and an in-flight Get is retried)', async () => {
    const client = new KmipClient(options());
    try {
      const { uniqueIdentifier } = await client.create(aes);
      await fixture.dropConnections();
      expect((await client.get(uniqueIdentifier)).value).toHaveLength(32);
      // The server closes just as the request arrives (the drop races the request).
      fixture.once(() => ({ kind: 'close' }));
      expect((await client.get(uniqueIdentifier)).value).toHaveLength(32);
      fixture.once(() => ({ kind: 'close' }));
      await expect(client.activate(uniqueIdentifier)).rejects.toMatchObject({ code: 'KMIP_CONNECTION_CLOSED' });
      expect((await client.activate(uniqueIdentifier)).uniqueIdentifier).toBe(uniqueIdentifier);
      const attrs = await client.getAttributes(uniqueIdentifier, ['State']);
      expect(attrs.attributes).toContainEqual({ name: 'State', value: State.Active, valueName: 'Active' });
    } finally {
      client.close();
    }
  });

  test('a response missing a required field is a protocol error', async () => {
    const client = new KmipClient(options());
    try {
      await client.connect();
      fixture.once(() => ({
        kind: 'bytes',
        bytes: responseBytes([{ operation: Operation.Create, payload: [textString(T.UniqueIdentifier, '1')] }]),
      }));
      await expect(client.create(aes)).rejects.toMatchObject({ code: 'KMIP_PROTOCOL_MISSING_FIELD' });
      await expectRecovery(client);
    } finally {
      client.close();
    }
  });

  // Idle age is measured on performance.now(): faked alone (timers and sockets stay real), it is advanced
  // by the test instead of waited for.
  test('after maxIdleMs of silence the client reconnects before sending (no Create lost to an idle drop)', async () => {
    vi.useFakeTimers({ toFake: ['performance'] });
    const client = new KmipClient(options({ maxIdleMs: 100 }));
    try {
      await client.create(aes);
      const before = fixture.connections;
      vi.advanceTimersByTime(99);
      await client.create(aes);
      expect(fixture.connections).toBe(before);
      vi.advanceTimersByTime(100);
      await client.create(aes);
      expect(fixture.connections).toBe(before + 1);
    } finally {
      client.close();
      vi.useRealTimers();
    }
  });

  test('a caller arriving while a slow request is in flight does not idle-close the connection under it', async () => {
    vi.useFakeTimers({ toFake: ['performance'] });
    const client = new KmipClient(options({ maxIdleMs: 100 }));
    try {
      await client.connect();
      // Idle-aged: the first request reconnects before it is written (the intended proactive reconnect).
      vi.advanceTimersByTime(150);
      const before = fixture.connections;
      let arrived!: () => void;
      const inFlight = new Promise<void>((resolve) => (arrived = resolve));
      let release!: () => void;
      const released = new Promise<void>((resolve) => (release = resolve));
      fixture.once(async (request, fx) => {
        arrived();
        await released;
        return fx.respond(request);
      });
      const slow = client.create(aes);
      await inFlight;
      // Longer than maxIdleMs after the slow request was written, while its answer is still pending.
      vi.advanceTimersByTime(150);
      const second = client.create(aes);
      release();
      const [a, b] = await Promise.all([slow, second]);
      expect(a.uniqueIdentifier).not.toBe(b.uniqueIdentifier);
      expect(fixture.connections).toBe(before + 1);
    } finally {
      client.close();
      vi.useRealTimers();
    }
  });

  test('requests queued behind one that lost the connection were never sent: they go out on a new one', async () => {
    const client = new KmipClient(options());
    try {
      await client.connect();
      const creates = () => fixture.requests.filter((r) => r.items[0]!.operation === Operation.Create).length;
      const before = creates();
      fixture.once(() => ({ kind: 'close' }));
      const results = await Promise.allSettled(Array.from({ length: 5 }, () => client.create(aes)));
      // The first Create was written and its fate is unknown: not resent. The four queued ones were not.
      expect(results.map((r) => r.status)).toEqual(['rejected', 'fulfilled', 'fulfilled', 'fulfilled', 'fulfilled']);
      expect((results[0] as PromiseRejectedResult).reason).toMatchObject({ code: 'KMIP_CONNECTION_CLOSED' });
      expect(creates()).toBe(before + 5);
    } finally {
      client.close();
    }
  });

  test('unsolicited bytes between requests close the connection; the next request reconnects', async () => {
    const client = new KmipClient(options());
    try {
      await client.connect();
      fixture.once((request) => ({
        ...fixture.respond(request),
        later: responseBytes([{ operation: Operation.Query }]),
      }));
      const closedBefore = fixture.closedConnections;
      await client.query([1]);
      const before = fixture.connections;
      // The client closes the connection the unsolicited bytes arrived on.
      await fixture.closed(closedBefore + 1);
      await expectRecovery(client);
      expect(fixture.connections).toBe(before + 1);
    } finally {
      client.close();
    }
  });
});
