/**
 * Interop with the real PyKMIP server (Debian python3-pykmip 0.10.0) and its own Python client:
 * every operation PyKMIP supports, under the negotiated version (2.0) and under KMIP 1.2; secrets
 * crossing between the two implementations byte-identical; PyKMIP's refusals as typed errors.
 */
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import { execFileSync } from 'node:child_process';
import { createDecipheriv, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { KmipClient } from '../../src/kmip/client.js';
import { KmipProvider } from '../../src/kmip/provider.js';
import { KmipOperationError } from '../../src/kmip/errors.js';
import * as ops from '../../src/kmip/operations.js';
import {
  BlockCipherMode,
  CryptographicAlgorithm,
  KeyFormatType,
  ObjectType,
  ResultReason,
  RevocationReasonCode,
  State,
  UsageMask,
} from '../../src/kmip/spec.js';
import { TestCa } from '../support/certs.js';
import { PYKMIP_PYTHON, pykmipClientOptions } from '../support/pykmip.js';
import { uniqueName } from './helpers.js';

const server = inject('pykmip');
const aes256 = { algorithm: CryptographicAlgorithm.AES, length: 256, usageMask: UsageMask.Encrypt | UsageMask.Decrypt };

/** Runs PyKMIP's own ProxyKmipClient with the fixture's client certificate; returns its stdout. */
function pythonClient(body: string, args: string[] = []): string {
  const script = [
    'import sys, binascii',
    'from kmip.pie.client import ProxyKmipClient',
    'from kmip.pie import objects',
    'from kmip import enums',
    `c = ProxyKmipClient(hostname=${JSON.stringify(server.host)}, port=${server.port}, cert=${JSON.stringify(server.clientCert)}, key=${JSON.stringify(server.clientKey)}, ca=${JSON.stringify(server.ca)}, config_file='/dev/null')`,
    'with c:',
    ...body.split('\n').map((line) => '    ' + line),
  ].join('\n');
  return execFileSync(PYKMIP_PYTHON, ['-c', script, ...args], { encoding: 'utf8', timeout: 60_000 }).trim();
}

const modes = [
  { label: 'negotiated (KMIP 2.0)', versions: undefined, expected: { major: 2, minor: 0 } },
  { label: 'KMIP 1.2', versions: [{ major: 1, minor: 2 }], expected: { major: 1, minor: 2 } },
] as const;

describe.each(modes)('PyKMIP operations, $label', ({ versions, expected }) => {
  let client: KmipClient;
  beforeAll(async () => {
    client = new KmipClient(pykmipClientOptions(server, versions ? { versions: [...versions] } : {}));
    expect(await client.connect()).toEqual(expected);
  });
  afterAll(() => client.close());

  test('Discover Versions and Query', async () => {
    const { versions: offered } = await client.discoverVersions();
    expect(offered).toContainEqual({ major: 1, minor: 2 });
    const query = await client.query([1, 3]);
    expect(query.vendorIdentification).toMatch(/PyKMIP/);
    expect(query.operations).toEqual(expect.arrayContaining([0x01, 0x03, 0x08, 0x0a, 0x12, 0x13, 0x14]));
    expect(query.operationNames).toEqual(
      expect.arrayContaining(['Create', 'Register', 'Get', 'Query', 'DiscoverVersions']),
    );
    expect(query.operationNames).toHaveLength(query.operations.length);
  });

  test('Create with Name and Object Group, then Get, Get Attributes, Get Attribute List', async () => {
    const name = uniqueName('create');
    const group = uniqueName('group');
    const created = await client.create({ ...aes256, name, objectGroup: group });
    expect(created).toMatchObject({ objectType: ObjectType.SymmetricKey, objectTypeName: 'SymmetricKey' });
    const key = await client.get(created.uniqueIdentifier);
    expect(key).toMatchObject({
      objectTypeName: 'SymmetricKey',
      cryptographicAlgorithm: CryptographicAlgorithm.AES,
      cryptographicAlgorithmName: 'AES',
      cryptographicLength: 256,
    });
    expect(key.value).toHaveLength(32);
    const raw = await client.get(created.uniqueIdentifier, { keyFormatType: KeyFormatType.Raw });
    expect(raw.value.equals(key.value)).toBe(true);
    const { attributes } = await client.getAttributes(created.uniqueIdentifier);
    // Multi-instance attributes carry an Attribute Index under 1.x.
    expect(attributes).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ name: 'Name', value: name }),
        expect.objectContaining({ name: 'Object Group', value: group }),
        {
          name: 'Cryptographic Usage Mask',
          value: UsageMask.Encrypt | UsageMask.Decrypt,
          valueName: 'Encrypt|Decrypt',
        },
        { name: 'State', value: State.PreActive, valueName: 'PreActive' },
      ]),
    );
    const some = await client.getAttributes(created.uniqueIdentifier, ['Cryptographic Length']);
    expect(some.attributes).toEqual([{ name: 'Cryptographic Length', value: 256 }]);
    const list = await client.getAttributeList(created.uniqueIdentifier);
    expect(list.names).toEqual(expect.arrayContaining(['Name', 'Object Group', 'State']));
  });

  test('Register a symmetric key and Secret Data (Password); Get returns them byte-identical', async () => {
    const key = randomBytes(32);
    const secret = randomBytes(32);
    const group = uniqueName('reg-group');
    const k = await client.register({
      kind: 'symmetric-key',
      key,
      algorithm: CryptographicAlgorithm.AES,
      usageMask: UsageMask.Encrypt,
      name: uniqueName('reg-key'),
    });
    const s = await client.register({ kind: 'secret-data', secret, name: uniqueName('reg-pin'), objectGroup: group });
    expect((await client.get(k.uniqueIdentifier)).value.equals(key)).toBe(true);
    const got = await client.get(s.uniqueIdentifier);
    expect(got).toMatchObject({
      objectType: ObjectType.SecretData,
      objectTypeName: 'SecretData',
      secretDataType: 1,
      secretDataTypeName: 'Password',
    });
    expect(got.value.equals(secret)).toBe(true);
    // No attributes at all: 1.x still sends the (required, empty) Template-Attribute.
    const bare = await client.register({ kind: 'secret-data', secret: Buffer.from('bare') });
    expect((await client.get(bare.uniqueIdentifier)).value.toString()).toBe('bare');
  });

  test('Locate by Name, Object Group, Object Type, State, with Maximum Items and Offset Items', async () => {
    const group = uniqueName('loc-group');
    const ids: string[] = [];
    for (let i = 0; i < 3; i++)
      ids.push((await client.create({ ...aes256, name: `${group}-${i}`, objectGroup: group })).uniqueIdentifier);
    const pin = await client.register({ kind: 'secret-data', secret: randomBytes(16), objectGroup: group });
    expect((await client.locate({ name: `${group}-1` })).uniqueIdentifiers).toEqual([ids[1]]);
    expect((await client.locate({ objectGroup: group })).uniqueIdentifiers.sort()).toEqual(
      [...ids, pin.uniqueIdentifier].sort(),
    );
    expect((await client.locate({ objectGroup: group, objectType: ObjectType.SecretData })).uniqueIdentifiers).toEqual([
      pin.uniqueIdentifier,
    ]);
    await client.activate(ids[2]!);
    expect((await client.locate({ objectGroup: group, state: State.Active })).uniqueIdentifiers).toEqual([ids[2]]);
    const page = await client.locate({ objectGroup: group, maximumItems: 2 });
    expect(page.uniqueIdentifiers).toHaveLength(2);
    const rest = await client.locate({ objectGroup: group, maximumItems: 10, offsetItems: 2 });
    expect(rest.uniqueIdentifiers).toHaveLength(2);
    // The two pages are the group's objects, each once: none repeated, none left out.
    expect([...page.uniqueIdentifiers, ...rest.uniqueIdentifiers].sort()).toEqual(
      [...ids, pin.uniqueIdentifier].sort(),
    );
  });

  test('Activate, Revoke with reason and message, Destroy; Destroy of an Active object is refused', async () => {
    const { uniqueIdentifier } = await client.create(aes256);
    await client.activate(uniqueIdentifier);
    const refused = await client.destroy(uniqueIdentifier).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(KmipOperationError);
    expect(refused).toMatchObject({ code: 'KMIP_OPERATION_FAILED', resultStatus: { name: 'OperationFailed' } });
    expect((refused as KmipOperationError).resultReason?.name).toBeDefined();
    await client.revoke({
      uniqueIdentifier,
      reason: RevocationReasonCode.CessationOfOperation,
      message: 'drive retired',
    });
    const { attributes } = await client.getAttributes(uniqueIdentifier, ['State']);
    expect(attributes).toEqual([{ name: 'State', value: State.Deactivated, valueName: 'Deactivated' }]);
    await client.destroy(uniqueIdentifier);
    await expect(client.get(uniqueIdentifier)).rejects.toMatchObject({ resultReason: { name: 'ItemNotFound' } });
  });

  test('Get with a Key Wrapping Specification returns the key wrapped (AES key wrap)', async () => {
    const kek = await client.create({ ...aes256, usageMask: UsageMask.WrapKey | UsageMask.UnwrapKey });
    await client.activate(kek.uniqueIdentifier);
    const dek = await client.create(aes256);
    const plain = await client.get(dek.uniqueIdentifier);
    const wrapped = await client.get(dek.uniqueIdentifier, {
      keyWrapping: { wrappingKeyId: kek.uniqueIdentifier, blockCipherMode: BlockCipherMode.NISTKeyWrap },
    });
    expect(wrapped.wrapped).toBe(true);
    expect(wrapped.value).toHaveLength(40);
    expect(wrapped.value.equals(plain.value)).toBe(false);
    // Unwrapped with the KEK (RFC 3394 AES key wrap, default IV), it is the key itself.
    const kekValue = (await client.get(kek.uniqueIdentifier)).value;
    const unwrap = createDecipheriv('id-aes256-wrap', kekValue, Buffer.from('A6A6A6A6A6A6A6A6', 'hex'));
    const unwrapped = Buffer.concat([unwrap.update(wrapped.value), unwrap.final()]);
    expect(unwrapped.equals(plain.value)).toBe(true);
    unwrapped.fill(0);
    kekValue.fill(0);
  });

  test('a Time Stamp in the header (accurate clock) is accepted', async () => {
    const stamped = new KmipClient(
      pykmipClientOptions(server, { sendTimeStamp: true, ...(versions ? { versions: [...versions] } : {}) }),
    );
    try {
      expect((await stamped.query([1, 3])).vendorIdentification).toMatch(/PyKMIP/);
    } finally {
      stamped.close();
    }
  });

  test('an unknown UID is Item Not Found', async () => {
    const error = await client.get('999999').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(KmipOperationError);
    expect(error).toMatchObject({ code: 'KMIP_OPERATION_FAILED', resultReason: { name: 'ItemNotFound', code: 1 } });
  });

  test('Add Attribute and ReKey, which PyKMIP lacks, come back as typed "operation not supported"', async () => {
    const { uniqueIdentifier } = await client.create(aes256);
    const attempts = [
      () => client.addAttribute(uniqueIdentifier, { name: 'Object Group', value: 'extra' }),
      () => client.reKey(uniqueIdentifier),
    ];
    for (const attempt of attempts) {
      const error = await attempt().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(KmipOperationError);
      expect(error).toMatchObject({ code: 'KMIP_OPERATION_NOT_SUPPORTED' });
      // PyKMIP says Operation Not Supported for ReKey but Invalid Message for Add Attribute (it cannot
      // parse it); the client checks Query's operation list before calling it "not supported".
      expect((error as KmipOperationError).resultReason?.name).toMatch(/^(OperationNotSupported|InvalidMessage)$/);
    }
  });

  test('concurrent callers on one client: every answer goes to its caller', async () => {
    const secrets = Array.from({ length: 8 }, () => randomBytes(32));
    const ids = await Promise.all(secrets.map((secret) => client.register({ kind: 'secret-data', secret })));
    const got = await Promise.all(ids.map(({ uniqueIdentifier }) => client.get(uniqueIdentifier)));
    got.forEach((object, i) => expect(object.value.equals(secrets[i]!)).toBe(true));
  });

  test('a batch of mixed operations: per-item results, the failing one does not hide the others', async () => {
    const { uniqueIdentifier } = await client.create(aes256);
    const [get, missing, attrs] = await client.batch([
      ops.get({ uniqueIdentifier }),
      ops.get({ uniqueIdentifier: '999998' }),
      ops.getAttributes({ uniqueIdentifier, names: ['State'] }),
    ]);
    expect(get.ok && get.value.value.length).toBe(32);
    expect(!missing.ok && missing.error).toMatchObject({ resultReason: { name: 'ItemNotFound' } });
    expect(attrs.ok && attrs.value.attributes).toEqual([
      { name: 'State', value: State.PreActive, valueName: 'PreActive' },
    ]);
  });
});

describe('PyKMIP attribute edits', () => {
  test('KMIP 2.0: Set, Modify (single- and multi-valued) and Delete Attribute round-trip', async () => {
    const client = new KmipClient(pykmipClientOptions(server));
    try {
      const { uniqueIdentifier } = await client.create({ ...aes256, objectGroup: 'group-a' });
      const read = async (name: string) => (await client.getAttributes(uniqueIdentifier, [name])).attributes;
      // Sensitive may go from false to true, never back (KMIP rule PyKMIP enforces).
      await client.setAttribute(uniqueIdentifier, { name: 'Sensitive', value: false });
      expect(await read('Sensitive')).toEqual([{ name: 'Sensitive', value: false }]);
      await client.modifyAttribute(uniqueIdentifier, { name: 'Sensitive', value: true });
      expect(await read('Sensitive')).toEqual([{ name: 'Sensitive', value: true }]);
      await expect(client.modifyAttribute(uniqueIdentifier, { name: 'Sensitive', value: false })).rejects.toMatchObject(
        {
          code: 'KMIP_OPERATION_FAILED',
          resultReason: { name: 'InvalidField' },
        },
      );
      await client.call(
        ops.modifyAttribute({
          uniqueIdentifier,
          current: { name: 'Object Group', value: 'group-a' },
          attribute: { name: 'Object Group', value: 'group-b' },
        }),
      );
      expect(await read('Object Group')).toEqual([{ name: 'Object Group', value: 'group-b' }]);
      await client.call(
        ops.deleteAttribute({
          uniqueIdentifier,
          name: 'Object Group',
          current: { name: 'Object Group', value: 'group-b' },
        }),
      );
      expect((await client.getAttributeList(uniqueIdentifier)).names).not.toContain('Object Group');
    } finally {
      client.close();
    }
  });

  test('PyKMIP 2.0 hangs a session asked for an attribute the object lacks: KMIP_TIMEOUT, then a clean reconnect', async () => {
    // PyKMIP 0.10 fails to encode an empty 2.0 Get Attributes response and leaves the connection open, silent.
    const client = new KmipClient(pykmipClientOptions(server, { requestTimeoutMs: 1_500 }));
    try {
      const { uniqueIdentifier } = await client.create(aes256);
      await expect(client.getAttributes(uniqueIdentifier, ['Object Group'])).rejects.toMatchObject({
        code: 'KMIP_TIMEOUT',
      });
      expect((await client.get(uniqueIdentifier)).value).toHaveLength(32);
    } finally {
      client.close();
    }
  });

  test('KMIP 1.2: Set Attribute (a 2.x operation) is refused as not supported; Delete Attribute works', async () => {
    const client = new KmipClient(pykmipClientOptions(server, { versions: [{ major: 1, minor: 2 }] }));
    try {
      const { uniqueIdentifier } = await client.create({ ...aes256, objectGroup: 'group-c' });
      await expect(client.setAttribute(uniqueIdentifier, { name: 'Sensitive', value: true })).rejects.toMatchObject({
        code: 'KMIP_OPERATION_NOT_SUPPORTED',
      });
      const deleted = await client.deleteAttribute(uniqueIdentifier, 'Object Group');
      expect(deleted.uniqueIdentifier).toBe(uniqueIdentifier);
      expect((await client.getAttributes(uniqueIdentifier, ['Object Group'])).attributes).toEqual([]);
    } finally {
      client.close();
    }
  });
});

describe('PyKMIP identities and refusals', () => {
  test('a client certificate without EKU clientAuth: TLS succeeds, requests fail with Authentication Not Successful', async () => {
    const ca = TestCa.open(join(server.dir, 'pki'));
    const noEku = ca.issue('no-eku', { cn: 'kmip-agent-no-eku' });
    const client = new KmipClient(
      pykmipClientOptions(server, { cert: noEku.certPem, key: noEku.keyPem, version: { major: 1, minor: 2 } }),
    );
    try {
      const error = await client.query([1]).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(KmipOperationError);
      expect(error).toMatchObject({
        code: 'KMIP_OPERATION_FAILED',
        resultReason: { name: 'AuthenticationNotSuccessful', code: ResultReason.AuthenticationNotSuccessful },
        hint: 'reissue the client certificate with extendedKeyUsage clientAuth',
      });
      // The library names the cause itself: every caller shows it.
      expect((error as Error).message).toMatch(/the client certificate has no extendedKeyUsage/);
      // Negotiation (Discover Versions) surfaces the same refusal rather than guessing a version.
      const negotiating = new KmipClient(pykmipClientOptions(server, { cert: noEku.certPem, key: noEku.keyPem }));
      await expect(negotiating.connect()).rejects.toMatchObject({
        resultReason: { name: 'AuthenticationNotSuccessful' },
        message: expect.stringMatching(/no extendedKeyUsage/),
        hint: expect.stringMatching(/clientAuth/),
      });
      negotiating.close();
    } finally {
      client.close();
    }
  });

  test('a client certificate for serverAuth only: the refused handshake says clientAuth is missing, testConnection too', async () => {
    const ca = TestCa.open(join(server.dir, 'pki'));
    const serverOnly = ca.issue('server-only-eku', { cn: 'kmip-agent-server-only', eku: ['serverAuth'] });
    const options = pykmipClientOptions(server, { cert: serverOnly.certPem, key: serverOnly.keyPem });
    const provider = new KmipProvider({ ...options, servers: [{ host: options.host, port: options.port }] });
    const expected = {
      code: 'KMIP_TLS_CLIENT_CERT_NOT_CLIENT_AUTH',
      message: expect.stringMatching(/lacks extendedKeyUsage clientAuth/),
      hint: 'reissue the client certificate with extendedKeyUsage clientAuth',
    };
    try {
      // Refused before connecting (PyKMIP's OpenSSL would refuse it in the handshake: unsupported certificate).
      const [test] = await provider.testConnection();
      expect(test).toMatchObject({ ok: false, error: expected });
      const error = await provider.discoverVersions().catch((e: unknown) => e);
      expect(JSON.parse(JSON.stringify(error))).toMatchObject(expected);
    } finally {
      provider.close();
    }
  });

  test("another client's object (other certificate CN) is refused", async () => {
    const owner = new KmipClient(pykmipClientOptions(server));
    const ca = TestCa.open(join(server.dir, 'pki'));
    const other = ca.issue('other-client', { cn: 'kmip-agent-other-client', eku: ['clientAuth'] });
    const stranger = new KmipClient(pykmipClientOptions(server, { cert: other.certPem, key: other.keyPem }));
    try {
      const { uniqueIdentifier } = await owner.register({ kind: 'secret-data', secret: randomBytes(32) });
      const error = await stranger.get(uniqueIdentifier).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(KmipOperationError);
      expect((error as KmipOperationError).resultReason).toEqual({
        name: 'PermissionDenied',
        code: ResultReason.PermissionDenied,
      });
      await expect(stranger.destroy(uniqueIdentifier)).rejects.toBeInstanceOf(KmipOperationError);
      expect((await owner.get(uniqueIdentifier)).value).toHaveLength(32);
    } finally {
      owner.close();
      stranger.close();
    }
  });
});

describe("PyKMIP's own Python client", () => {
  test('a secret registered by kmip-agent is read back byte-identical by ProxyKmipClient', async () => {
    const client = new KmipClient(pykmipClientOptions(server));
    try {
      const secret = randomBytes(32);
      const { uniqueIdentifier } = await client.register({ kind: 'secret-data', secret, name: uniqueName('py-read') });
      const hex = pythonClient('print(binascii.hexlify(c.get(sys.argv[1]).value).decode())', [uniqueIdentifier]);
      expect(hex).toBe(secret.toString('hex'));
    } finally {
      client.close();
    }
  });

  test('a key created by ProxyKmipClient is read by kmip-agent', async () => {
    const name = uniqueName('py-created');
    const out = pythonClient(
      [
        'uid = c.create(enums.CryptographicAlgorithm.AES, 256, name=sys.argv[1])',
        'print(uid)',
        'print(binascii.hexlify(c.get(uid).value).decode())',
      ].join('\n'),
      [name],
    );
    const [uid, hex] = out.split('\n');
    const client = new KmipClient(pykmipClientOptions(server));
    try {
      expect((await client.locate({ name })).uniqueIdentifiers).toEqual([uid]);
      const key = await client.get(uid!);
      expect(key.value.toString('hex')).toBe(hex);
      expect(key.cryptographicAlgorithm).toBe(CryptographicAlgorithm.AES);
    } finally {
      client.close();
    }
  });
});
