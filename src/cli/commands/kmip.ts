/**
 * `kmip-agent kmip ...`: talk to KMIP servers directly (admins checking a server, field engineers
 * finding a drive's key). Servers are a failover list (`--server` repeated); secrets to register come
 * from a file or stdin, never argv; only `get` prints key material.
 */
import { readFileSync } from 'node:fs';
import { ALL_VERSIONS } from '../../kmip/client.js';
import { KmipProvider } from '../../kmip/provider.js';
import { KmipError, KmipOperationError } from '../../kmip/errors.js';
import { formatVersion, type ProtocolVersion } from '../../kmip/fields.js';
import { enumName, Tag } from '../../kmip/ttlv/registry.js';
import type { Attribute, AttributeValue } from '../../kmip/attributes.js';
import {
  CryptographicAlgorithm,
  ObjectType,
  ResultReason,
  RevocationReasonCode,
  State,
  UsageMask,
  KeyFormatType,
  BlockCipherMode,
  nameOf,
} from '../../kmip/spec.js';
import { emit, parseOptions, readSecret, UsageError, type CommandContext, type CommandGroup } from '../framework.js';

const CONNECTION_OPTIONS = {
  server: { type: 'string', multiple: true },
  ca: { type: 'string' },
  cert: { type: 'string' },
  key: { type: 'string' },
  servername: { type: 'string' },
  timeout: { type: 'string' },
  'kmip-version': { type: 'string' },
} as const;

const HELP = `Usage: kmip-agent kmip <command> --server HOST:PORT [--server HOST:PORT ...] --ca FILE --cert FILE --key FILE [--json]

Talks to KMIP servers directly. Repeat --server for a failover list (tried in order).

Commands:
  discover                      protocol versions each server speaks, TLS version, latency
  query                         operations and object types the server supports
  create   [--name N] [--group G] [--algorithm AES] [--length 256] [--usage encrypt,decrypt]
                                create a symmetric key on the server
  register --key-file PATH|-   [--type secret|key] [--name N] [--group G] [--algorithm AES]
                                store a secret (Secret Data, Password) or a symmetric key
  get      UID [--format raw] [--wrap-key UID]
                                print the object's value (hex); the only command that prints secrets
  locate   [--name N] [--group G] [--type secret|key] [--state active|pre-active|deactivated]
           [--max N] [--offset N]
                                find objects; prints their UIDs
  attrs    UID [--attr NAME ...] list an object's attributes
  activate UID                  make an object Active
  revoke   UID [--reason superseded|key-compromise|cessation-of-operation|...] [--message TEXT]
  destroy  UID                  destroy an object (revoke an Active object first)
  rekey    UID [--offset SECONDS] replace a key with a new one (not every server supports it)

Connection options:
  --server HOST:PORT   KMIP server (port 5696 if omitted); repeat for failover order
  --ca FILE            CA certificate(s) the server chain must end in (PEM)
  --cert FILE          client certificate (PEM, intermediates may follow)
  --key FILE           client private key (PEM)
  --servername NAME    name to verify in the server certificate (default: the --server host)
  --timeout MS         per-request timeout (default 15000)
  --kmip-version X.Y   speak this version instead of negotiating
`;

const REVOCATION_REASONS: Record<string, number> = {
  unspecified: RevocationReasonCode.Unspecified,
  'key-compromise': RevocationReasonCode.KeyCompromise,
  'ca-compromise': RevocationReasonCode.CACompromise,
  'affiliation-changed': RevocationReasonCode.AffiliationChanged,
  superseded: RevocationReasonCode.Superseded,
  'cessation-of-operation': RevocationReasonCode.CessationOfOperation,
  'privilege-withdrawn': RevocationReasonCode.PrivilegeWithdrawn,
};
const STATES: Record<string, number> = {
  'pre-active': State.PreActive,
  active: State.Active,
  deactivated: State.Deactivated,
  compromised: State.Compromised,
  destroyed: State.Destroyed,
};
const OBJECT_TYPES: Record<string, number> = { secret: ObjectType.SecretData, key: ObjectType.SymmetricKey };
const USAGE: Record<string, number> = {
  encrypt: UsageMask.Encrypt,
  decrypt: UsageMask.Decrypt,
  'wrap-key': UsageMask.WrapKey,
  'unwrap-key': UsageMask.UnwrapKey,
  export: UsageMask.Export,
  sign: UsageMask.Sign,
  verify: UsageMask.Verify,
  'mac-generate': UsageMask.MacGenerate,
  'mac-verify': UsageMask.MacVerify,
  'derive-key': UsageMask.DeriveKey,
};

function pick(table: Record<string, number>, value: string, what: string): number {
  const key = Object.keys(table).find((k) => k.toLowerCase() === value.toLowerCase());
  const found = key === undefined ? undefined : table[key];
  if (found === undefined)
    throw new UsageError(`unknown ${what} '${value}' (one of: ${Object.keys(table).join(', ')})`);
  return found;
}

/** A whole number within [min, max] (KMIP Integers are 32-bit), or a usage error. */
function positiveInt(value: string | undefined, what: string, min = 0, max = 0x7fffffff): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value)) throw new UsageError(`${what} must be a non-negative integer, not '${value}'`);
  const n = Number(value);
  if (n < min || n > max) throw new UsageError(`${what} must be between ${min} and ${max}, not ${value}`);
  return n;
}

function readPem(path: string | undefined, what: string): Buffer | undefined {
  if (path === undefined) return undefined;
  try {
    return readFileSync(path);
  } catch (e) {
    throw new UsageError(`cannot read ${what} ${path}: ${(e as Error).message}`, 'USAGE_FILE');
  }
}

function parseServer(text: string): { host: string; port: number } {
  const match = /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(text);
  if (!match) throw new UsageError(`--server '${text}' is not HOST:PORT`);
  const port = match[2] === undefined ? 5696 : Number(match[2]);
  if (port < 1 || port > 65535) throw new UsageError(`--server '${text}': port out of range`);
  return { host: match[1]!.replace(/^\[|\]$/g, ''), port };
}

function parseVersion(text: string | undefined): ProtocolVersion | undefined {
  if (text === undefined) return undefined;
  const match = /^(\d+)\.(\d+)$/.exec(text);
  if (!match) throw new UsageError(`--kmip-version '${text}' is not MAJOR.MINOR (e.g. 1.2)`);
  const version = { major: Number(match[1]), minor: Number(match[2]) };
  if (!ALL_VERSIONS.some((v) => v.major === version.major && v.minor === version.minor)) {
    throw new UsageError(
      `--kmip-version ${text} is not a KMIP version (${ALL_VERSIONS.map(formatVersion).join(', ')})`,
    );
  }
  return version;
}

type ConnectionValues = {
  server?: string[];
  ca?: string;
  cert?: string;
  key?: string;
  servername?: string;
  timeout?: string;
  'kmip-version'?: string;
};

function provider(values: ConnectionValues): KmipProvider {
  if (!values.server || values.server.length === 0) throw new UsageError('at least one --server HOST:PORT is required');
  if (!values.cert || !values.key)
    throw new UsageError('--cert and --key are required (the client certificate and its key)');
  const version = parseVersion(values['kmip-version']);
  const timeout = positiveInt(values.timeout, '--timeout', 1, 3_600_000);
  return new KmipProvider({
    servers: values.server.map(parseServer),
    ca: readPem(values.ca, 'CA file'),
    cert: readPem(values.cert, 'certificate'),
    key: readPem(values.key, 'private key'),
    ...(values.servername ? { servername: values.servername } : {}),
    ...(version ? { version } : {}),
    ...(timeout !== undefined ? { requestTimeoutMs: timeout } : {}),
  });
}

/** What to do next, by error: appended to the message (the code stays the server's or ours). */
function hint(error: KmipError): string | undefined {
  if (error instanceof KmipOperationError) {
    switch (error.resultReason?.code) {
      case ResultReason.AuthenticationNotSuccessful:
        return 'the server does not accept this client certificate: it needs extendedKeyUsage clientAuth and a CN the server knows';
      case ResultReason.ItemNotFound:
        return 'check the UID (`kmip-agent kmip locate --name ...`)';
      case ResultReason.PermissionDenied:
        return 'the object belongs to another client identity, or its state forbids this (Destroy needs Revoke first)';
      case ResultReason.OperationNotSupported:
        return 'this server does not implement the operation';
    }
    if (error.code === 'KMIP_OPERATION_NOT_SUPPORTED') return 'this server does not implement the operation';
    return undefined;
  }
  if (error.code === 'KMIP_TLS_UNTRUSTED') return 'pass the CA that issued the server certificate with --ca';
  if (error.code === 'KMIP_TLS_HOSTNAME_MISMATCH')
    return 'use the host name in the server certificate, or --servername';
  if (error.code === 'KMIP_TLS_HANDSHAKE_FAILED') return 'check --cert/--key and that the server trusts their CA';
  if (error.code === 'KMIP_CONNECTION_REFUSED') return 'is the server running, and is --server HOST:PORT right?';
  if (error.code === 'KMIP_TIMEOUT' || error.code === 'KMIP_CONNECTION_TIMEOUT')
    return 'the server did not answer in time; check the network or raise --timeout';
  return undefined;
}

function withHint(error: unknown): unknown {
  if (!(error instanceof KmipError)) return error;
  const next = hint(error);
  if (next && !error.message.includes(next)) error.message = `${error.message}; ${next}`;
  return error;
}

const describeValue = (value: AttributeValue): string => {
  if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint')
    return String(value);
  if (value instanceof Date) return value.toISOString();
  if (value instanceof Uint8Array) return Buffer.from(value).toString('hex');
  return '(structure)';
};

function attributeText(attribute: Attribute): string {
  const v = attribute.value;
  if (typeof v === 'number') {
    if (attribute.name === 'Object Type') return nameOf(ObjectType, v);
    if (attribute.name === 'Cryptographic Algorithm') return nameOf(CryptographicAlgorithm, v);
    if (attribute.name === 'State') return nameOf(State, v);
    if (attribute.name === 'Cryptographic Usage Mask')
      return Object.entries(UsageMask)
        .filter(([, bit]) => (v & bit) !== 0)
        .map(([name]) => name)
        .join('|');
  }
  return describeValue(v);
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n');
}

type Handler = (args: string[], ctx: CommandContext) => Promise<number>;

/** Parses the subcommand's options plus the connection options, runs `body` with a provider, closes it. */
function command<const O extends Record<string, { type: 'string' | 'boolean'; multiple?: boolean }>>(
  options: O,
  positionals: number,
  body: (
    kmip: KmipProvider,
    values: Record<string, string | string[] | boolean | undefined>,
    args: string[],
    ctx: CommandContext,
  ) => Promise<void>,
): Handler {
  return async (argv, ctx) => {
    const { values, positionals: args } = parseOptions(argv, { ...CONNECTION_OPTIONS, ...options });
    if (args.length !== positionals)
      throw new UsageError(positionals === 1 ? 'expected one UID argument' : `unexpected argument '${args[0]}'`);
    const kmip = provider(values as ConnectionValues);
    try {
      await body(kmip, values as Record<string, string | string[] | boolean | undefined>, args, ctx);
      return 0;
    } catch (error) {
      throw withHint(error);
    } finally {
      kmip.close();
    }
  };
}

const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

const handlers: Record<string, Handler> = {
  discover: command({}, 0, async (kmip, _values, _args, ctx) => {
    const tests = await kmip.testConnection();
    // What the (first healthy) server offers beyond the version negotiated.
    const offered = tests.some((t) => t.ok) ? await kmip.discoverVersions().catch(() => undefined) : undefined;
    const json = { servers: tests, offered: offered?.versions.map(formatVersion) };
    const lines = tests.map((t) =>
      t.ok
        ? `${t.endpoint}: KMIP ${t.protocolVersion} over ${t.tlsVersion ?? 'TLS'} in ${t.latencyMs.toFixed(0)} ms`
        : `${t.endpoint}: FAILED ${t.error!.message} [${t.error!.code}]`,
    );
    if (offered) lines.push(`server offers: ${offered.versions.map(formatVersion).join(', ')}`);
    if (!tests.some((t) => t.ok)) {
      // One document either way: with --json the per-server results travel inside the error.
      if (!ctx.json) ctx.io.stderr(lines.join('\n') + '\n');
      const first = tests[0]!.error!;
      throw new KmipError(`no server answered: ${first.message}`, first.code, { details: { servers: tests } });
    }
    emit(ctx, json, lines.join('\n'));
  }),

  query: command({}, 0, async (kmip, _values, _args, ctx) => {
    const result = await kmip.query([1, 2, 3]);
    // The registry names everything the server may list, not only what this library builds.
    const registryName = (tag: number, value: number) => enumName(tag, value) ?? `0x${value.toString(16)}`;
    const operations = result.operations.map((op) => registryName(Tag.Operation, op));
    const objectTypes = result.objectTypes.map((t) => registryName(Tag.ObjectType, t));
    emit(
      ctx,
      { vendor: result.vendorIdentification, operations, objectTypes },
      [
        `vendor: ${result.vendorIdentification ?? '(not given)'}`,
        `operations: ${operations.join(', ')}`,
        `object types: ${objectTypes.join(', ') || '(not listed)'}`,
      ].join('\n'),
    );
  }),

  create: command(
    {
      name: { type: 'string' },
      group: { type: 'string' },
      algorithm: { type: 'string' },
      length: { type: 'string' },
      usage: { type: 'string' },
    },
    0,
    async (kmip, values, _args, ctx) => {
      const algorithm = pick(
        CryptographicAlgorithm as Record<string, number>,
        str(values.algorithm) ?? 'AES',
        'algorithm',
      );
      const length = positiveInt(str(values.length), '--length') ?? 256;
      const usageMask = (str(values.usage) ?? 'encrypt,decrypt')
        .split(',')
        .reduce((mask, u) => mask | pick(USAGE, u.trim(), 'usage'), 0);
      const name = str(values.name);
      const group = str(values.group);
      const result = await kmip.create({
        algorithm,
        length,
        usageMask,
        ...(name !== undefined ? { name } : {}),
        ...(group !== undefined ? { objectGroup: group } : {}),
      });
      emit(
        ctx,
        { uniqueIdentifier: result.uniqueIdentifier, server: kmip.activeEndpoint },
        `created ${result.uniqueIdentifier} (${nameOf(CryptographicAlgorithm, algorithm)}-${length}) on ${kmip.activeEndpoint}`,
      );
    },
  ),

  register: command(
    {
      'key-file': { type: 'string' },
      type: { type: 'string' },
      name: { type: 'string' },
      group: { type: 'string' },
      algorithm: { type: 'string' },
    },
    0,
    async (kmip, values, _args, ctx) => {
      const type = str(values.type) ?? 'secret';
      pick(OBJECT_TYPES, type, 'type');
      const secret = readSecret(ctx, str(values['key-file']), 'the value to register (--key-file PATH or -)');
      try {
        if (secret.length === 0) throw new UsageError('the value to register is empty');
        const name = str(values.name);
        const group = str(values.group);
        const naming = {
          ...(name !== undefined ? { name } : {}),
          ...(group !== undefined ? { objectGroup: group } : {}),
        };
        const result =
          type === 'key'
            ? await kmip.register({
                kind: 'symmetric-key',
                key: secret,
                algorithm: pick(
                  CryptographicAlgorithm as Record<string, number>,
                  str(values.algorithm) ?? 'AES',
                  'algorithm',
                ),
                usageMask: UsageMask.Encrypt | UsageMask.Decrypt,
                ...naming,
              })
            : await kmip.register({ kind: 'secret-data', secret, ...naming });
        emit(
          ctx,
          { uniqueIdentifier: result.uniqueIdentifier, server: kmip.activeEndpoint },
          `registered ${result.uniqueIdentifier} (${type === 'key' ? 'symmetric key' : 'secret data'}, ${secret.length} bytes) on ${kmip.activeEndpoint}`,
        );
      } finally {
        secret.fill(0);
      }
    },
  ),

  get: command({ format: { type: 'string' }, 'wrap-key': { type: 'string' } }, 1, async (kmip, values, [uid], ctx) => {
    const format = str(values.format);
    if (format !== undefined && format !== 'raw') throw new UsageError(`--format '${format}': only 'raw' is supported`);
    const wrapKey = str(values['wrap-key']);
    const object = await kmip.get(uid!, {
      ...(format ? { keyFormatType: KeyFormatType.Raw } : {}),
      ...(wrapKey ? { keyWrapping: { wrappingKeyId: wrapKey, blockCipherMode: BlockCipherMode.NISTKeyWrap } } : {}),
    });
    try {
      const hex = object.value.toString('hex');
      emit(
        ctx,
        {
          uniqueIdentifier: object.uniqueIdentifier,
          objectType: nameOf(ObjectType, object.objectType),
          wrapped: object.wrapped,
          value: hex,
        },
        hex,
      );
    } finally {
      object.value.fill(0);
    }
  }),

  locate: command(
    {
      name: { type: 'string' },
      group: { type: 'string' },
      type: { type: 'string' },
      state: { type: 'string' },
      max: { type: 'string' },
      offset: { type: 'string' },
    },
    0,
    async (kmip, values, _args, ctx) => {
      const name = str(values.name);
      const group = str(values.group);
      const type = str(values.type);
      const state = str(values.state);
      const max = positiveInt(str(values.max), '--max');
      const offset = positiveInt(str(values.offset), '--offset');
      const result = await kmip.locate({
        ...(name !== undefined ? { name } : {}),
        ...(group !== undefined ? { objectGroup: group } : {}),
        ...(type !== undefined ? { objectType: pick(OBJECT_TYPES, type, 'type') } : {}),
        ...(state !== undefined ? { state: pick(STATES, state, 'state') } : {}),
        ...(max !== undefined ? { maximumItems: max } : {}),
        ...(offset !== undefined ? { offsetItems: offset } : {}),
      });
      emit(ctx, result, result.uniqueIdentifiers.length ? result.uniqueIdentifiers.join('\n') : '(no objects found)');
    },
  ),

  attrs: command({ attr: { type: 'string', multiple: true } }, 1, async (kmip, values, [uid], ctx) => {
    const names = Array.isArray(values.attr) ? values.attr : undefined;
    const result = await kmip.getAttributes(uid!, names);
    const json = result.attributes.map((a) => ({
      name: a.name,
      value: attributeText(a),
      ...(a.index ? { index: a.index } : {}),
    }));
    emit(
      ctx,
      { uniqueIdentifier: result.uniqueIdentifier, attributes: json },
      result.attributes.length ? table(result.attributes.map((a) => [a.name, attributeText(a)])) : '(no attributes)',
    );
  }),

  activate: command({}, 1, async (kmip, _values, [uid], ctx) => {
    await kmip.activate(uid!);
    emit(ctx, { uniqueIdentifier: uid, state: 'Active' }, `${uid} is Active`);
  }),

  revoke: command({ reason: { type: 'string' }, message: { type: 'string' } }, 1, async (kmip, values, [uid], ctx) => {
    const reason = pick(REVOCATION_REASONS, str(values.reason) ?? 'unspecified', 'revocation reason');
    const message = str(values.message);
    await kmip.revoke({ uniqueIdentifier: uid!, reason, ...(message !== undefined ? { message } : {}) });
    emit(ctx, { uniqueIdentifier: uid, revoked: true }, `${uid} revoked (${nameOf(RevocationReasonCode, reason)})`);
  }),

  destroy: command({}, 1, async (kmip, _values, [uid], ctx) => {
    await kmip.destroy(uid!);
    emit(ctx, { uniqueIdentifier: uid, destroyed: true }, `${uid} destroyed`);
  }),

  rekey: command({ offset: { type: 'string' } }, 1, async (kmip, values, [uid], ctx) => {
    const offset = positiveInt(str(values.offset), '--offset');
    const result = await kmip.reKey(uid!, offset);
    emit(
      ctx,
      { replaced: uid, uniqueIdentifier: result.uniqueIdentifier },
      `${uid} replaced by ${result.uniqueIdentifier}`,
    );
  }),
};

export const kmipCommand: CommandGroup = {
  name: 'kmip',
  summary: 'talk to KMIP servers: discover, query, create, register, get, locate, attrs, revoke, destroy...',
  help: HELP,
  async run(args, ctx) {
    const [sub, ...rest] = args;
    if (sub === undefined) throw new UsageError('kmip needs a command: see `kmip-agent kmip --help`');
    const handler = Object.hasOwn(handlers, sub) ? handlers[sub] : undefined;
    if (!handler) throw new UsageError(`unknown kmip command '${sub}': see \`kmip-agent kmip --help\``);
    if (rest.includes('--help') || rest.includes('-h')) {
      ctx.io.stdout(HELP);
      return 0;
    }
    return handler(rest, ctx);
  },
};
