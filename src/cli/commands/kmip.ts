/**
 * `kmip-agent kmip ...`: talk to KMIP servers directly (admins checking a server, field engineers
 * finding a drive's key). Servers are a failover list (`--server` repeated); secrets to register come
 * from a file or stdin, never argv; only `get` prints key material.
 */
import { closeSync, fchmodSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { ALL_VERSIONS } from '../../kmip/client.js';
import { KmipProvider, type KmipProviderOptions, type ServerAttempt } from '../../kmip/provider.js';
import { KmipAgentError } from '../../errors.js';
import { loadConfig, providerConnection } from '../../agent/config.js';
import { DIR_OPTIONS, dirsFrom } from './agent.js';
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
import {
  addErrorDetails,
  command,
  emit,
  group,
  KEY_SECRET,
  note,
  printable,
  SECRET_READING_OPTIONS,
  secretReading,
  UsageError,
  withSecrets,
  type Command,
  type CommandContext,
  type OptionSpecs,
  type OptionValues,
} from '../framework.js';

const CONNECTION_OPTIONS = {
  server: {
    type: 'string',
    multiple: true,
    value: 'HOST:PORT',
    help: 'KMIP server (port 5696 if omitted); repeat for a failover list, tried in order',
  },
  ca: { type: 'string', value: 'FILE', help: 'CA certificate(s) the server chain must end in (PEM)' },
  cert: { type: 'string', value: 'FILE', help: 'client certificate (PEM, intermediates may follow)' },
  key: { type: 'string', value: 'FILE', help: 'client private key (PEM)' },
  servername: { type: 'string', value: 'NAME', help: 'name to verify in the server certificate (default: the host)' },
  timeout: { type: 'string', value: 'MS', help: 'per-request timeout (default 15000)' },
  'kmip-version': { type: 'string', value: 'X.Y', help: 'speak this version instead of negotiating' },
  verbose: { type: 'boolean', help: 'say on stderr each server tried, and why one was passed over' },
  provider: {
    type: 'string',
    value: 'NAME',
    help: "servers, CA, certificate and key of the agent's provider NAME (config.json), instead of the options",
  },
  ...DIR_OPTIONS,
} as const;

const GROUP_NOTE = `Every command takes the connection options: --server HOST:PORT (repeat it for a failover list,
tried in order), --ca FILE, --cert FILE, --key FILE, and --servername, --timeout, --kmip-version, --verbose;
or --provider NAME: the agent's configured provider (config.json in --config-dir) instead of the first five.
Failover is never silent: a server passed over is named on stderr (each attempt with --verbose), and
--json documents carry \`attempts\` (each server tried, its outcome and latency).
Only \`get\` prints key material: as hex text by default, raw bytes with --out FILE|- (what drive and
volume commands read); values to register are read from a file or stdin, never from the command line.`;

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
  'mac-generate': UsageMask.MACGenerate,
  'mac-verify': UsageMask.MACVerify,
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

/** Certificates and keys are small: a file much larger is not one (and is not read whole). */
const MAX_PEM_BYTES = 1024 * 1024;

function readPem(path: string | undefined, what: string): Buffer | undefined {
  if (path === undefined) return undefined;
  let data: Buffer;
  try {
    data = readFileSync(path);
  } catch (e) {
    throw new UsageError(`cannot read ${what} ${path}: ${(e as Error).message}`, 'USAGE_FILE');
  }
  if (data.length > MAX_PEM_BYTES) throw new UsageError(`${what} ${path} is larger than 1 MiB`, 'USAGE_FILE');
  return data;
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

type ConnectionValues = OptionValues<typeof CONNECTION_OPTIONS>;

/** The agent's configured provider `name` (servers in failover order, credentials from the config dir). */
async function configuredProvider(values: ConnectionValues, name: string): Promise<KmipProviderOptions> {
  for (const o of ['server', 'ca', 'cert', 'key', 'servername'] as const)
    if (values[o] !== undefined)
      throw new UsageError(`--provider takes the servers and credentials from the agent's configuration: drop --${o}`);
  const dir = dirsFrom(values).config;
  const config = await loadConfig(dir);
  if (!config.providers[name])
    throw new UsageError(
      `no provider '${name}' in the agent's configuration (${Object.keys(config.providers).join(', ')})`,
      'USAGE_PROVIDER_UNKNOWN',
    );
  const version = parseVersion(values['kmip-version']);
  const timeout = positiveInt(values.timeout, '--timeout', 1, 3_600_000);
  const connection = providerConnection(config, dir, name);
  return {
    ...connection,
    ...(version ? { version } : {}),
    ...(timeout !== undefined ? { servers: connection.servers.map((s) => ({ ...s, requestTimeoutMs: timeout })) } : {}),
  };
}

async function provider(values: ConnectionValues, onAttempt: (attempt: ServerAttempt) => void): Promise<KmipProvider> {
  if (values.provider !== undefined)
    return new KmipProvider({ ...(await configuredProvider(values, values.provider)), onAttempt });
  if (!values.server || values.server.length === 0) throw new UsageError('at least one --server HOST:PORT is required');
  if (!values.cert || !values.key)
    throw new UsageError('--cert and --key are required (the client certificate and its key)');
  const version = parseVersion(values['kmip-version']);
  const timeout = positiveInt(values.timeout, '--timeout', 1, 3_600_000);
  const options: KmipProviderOptions = {
    servers: values.server.map(parseServer),
    ca: readPem(values.ca, 'CA file'),
    cert: readPem(values.cert, 'certificate'),
    key: readPem(values.key, 'private key'),
    ...(values.servername ? { servername: values.servername } : {}),
    ...(version ? { version } : {}),
    ...(timeout !== undefined ? { requestTimeoutMs: timeout } : {}),
  };
  return new KmipProvider({ ...options, onAttempt });
}

/** One attempt as --verbose prints it. */
function describeServerAttempt(a: ServerAttempt): string {
  const took = `${a.latencyMs.toFixed(0)} ms`;
  const demoted = a.demoted ? ' (tried late: it failed recently)' : '';
  return a.outcome === 'answered'
    ? `${a.endpoint}: answered in ${took}${demoted}`
    : `${a.endpoint}: passed over after ${took}${demoted}: ${printable(a.message ?? 'failed')} [${a.code ?? 'FAILED'}]`;
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

/** The CLI's own hint (naming its options) only where the library gave none (KmipError.hint is printed after). */
function withHint(error: unknown): unknown {
  if (!(error instanceof KmipError) || error.hint) return error;
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

/** What a kmip command prints: its JSON document (attempts are added) and its human text. */
interface KmipOutput {
  json: Record<string, unknown>;
  human?: string;
}

/**
 * A kmip command: its options plus the connection options; `body` runs with a provider (closed
 * after) and returns what to print. Attempts on servers are reported on stderr (every one with
 * --verbose, else those passed over) and travel in the JSON document as `attempts`.
 */
function serverCommand<const O extends OptionSpecs>(spec: {
  name: string;
  usage: string;
  summary: string;
  description?: string;
  options?: O;
  positionals?: number;
  /** Checks done before any server is contacted (confirmation, option combinations). */
  check?: (values: OptionValues<O & typeof CONNECTION_OPTIONS>, positionals: string[], ctx: CommandContext) => void;
  body: (
    kmip: KmipProvider,
    values: OptionValues<O & typeof CONNECTION_OPTIONS>,
    positionals: string[],
    ctx: CommandContext,
  ) => Promise<KmipOutput>;
}): Command {
  return command({
    name: spec.name,
    usage: spec.usage,
    summary: spec.summary,
    ...(spec.description !== undefined ? { description: spec.description } : {}),
    options: { ...(spec.options ?? ({} as O)), ...CONNECTION_OPTIONS },
    positionals: spec.positionals ?? 0,
    async run({ values, positionals }, ctx) {
      const all = values as OptionValues<O & typeof CONNECTION_OPTIONS>;
      spec.check?.(all, positionals, ctx);
      const attempts: ServerAttempt[] = [];
      const kmip = await provider(values as ConnectionValues, (attempt) => {
        attempts.push(attempt);
        if (values.verbose && !ctx.json) ctx.io.stderr(`kmip-agent: ${describeServerAttempt(attempt)}\n`);
      });
      try {
        const output = await spec.body(kmip, all, positionals, ctx);
        const passedOver = attempts.filter((a) => a.outcome === 'failed');
        if (passedOver.length > 0 && !values.verbose)
          note(
            ctx,
            `${kmip.activeEndpoint} answered after ${passedOver.map((a) => `${a.endpoint} [${a.code ?? 'FAILED'}]`).join(', ')} ` +
              'failed (--verbose says why)',
          );
        emit(ctx, { ...output.json, attempts }, output.human);
        return 0;
      } catch (error) {
        throw addErrorDetails(withHint(error), { attempts });
      } finally {
        kmip.close();
      }
    },
  });
}

const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

/** Creates `path` for a secret: 0600, never over an existing file unless `force` (then it is replaced). */
function createSecretFile(path: string, force: boolean): number {
  if (force) rmSync(path, { force: true });
  try {
    const fd = openSync(path, 'wx', 0o600);
    fchmodSync(fd, 0o600);
    return fd;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EEXIST')
      throw new UsageError(
        `--out ${path} exists: it is not overwritten (give --force to replace it)`,
        'USAGE_FILE_EXISTS',
      );
    throw new UsageError(`cannot create --out ${path}: ${(e as Error).message}`, 'USAGE_FILE');
  }
}

const commands: Command[] = [
  serverCommand({
    name: 'discover',
    usage: '--server HOST:PORT ... [connection options]',
    summary: 'protocol versions each server speaks, TLS version, latency',
    async body(kmip, _values, _args, ctx) {
      const tests = await kmip.testConnection();
      // What the (first healthy) server offers beyond the version negotiated.
      const offered = tests.some((t) => t.ok) ? await kmip.discoverVersions().catch(() => undefined) : undefined;
      const lines = tests.map((t) =>
        t.ok
          ? `${t.endpoint}: KMIP ${t.protocolVersion} over ${t.tlsVersion ?? 'TLS'} in ${t.latencyMs.toFixed(0)} ms`
          : `${t.endpoint}: FAILED ${printable(t.error!.message)} [${t.error!.code}]`,
      );
      if (offered) lines.push(`server offers: ${offered.versions.map(formatVersion).join(', ')}`);
      if (!tests.some((t) => t.ok)) {
        // One document either way: with --json the per-server results travel inside the error.
        if (!ctx.json) ctx.io.stderr(lines.join('\n') + '\n');
        const first = tests[0]!.error!;
        throw new KmipError(`no server answered: ${first.message}`, first.code, { details: { servers: tests } });
      }
      return { json: { servers: tests, offered: offered?.versions.map(formatVersion) }, human: lines.join('\n') };
    },
  }),

  serverCommand({
    name: 'query',
    usage: '[connection options]',
    summary: 'operations and object types the server supports',
    async body(kmip) {
      const result = await kmip.query([1, 2, 3]);
      // The registry names everything the server may list, not only what this library builds.
      const registryName = (tag: number, value: number) => enumName(tag, value) ?? `0x${value.toString(16)}`;
      const operations = result.operations.map((op) => registryName(Tag.Operation, op));
      const objectTypes = result.objectTypes.map((t) => registryName(Tag.ObjectType, t));
      return {
        json: { vendor: result.vendorIdentification, operations, objectTypes },
        human: [
          `vendor: ${result.vendorIdentification === undefined ? '(not given)' : printable(result.vendorIdentification)}`,
          `operations: ${operations.join(', ')}`,
          `object types: ${objectTypes.join(', ') || '(not listed)'}`,
        ].join('\n'),
      };
    },
  }),

  serverCommand({
    name: 'create',
    usage: '[--name N] [--group G] [--algorithm AES] [--length 256] [--usage encrypt,decrypt]',
    summary: 'create a symmetric key on the server',
    options: {
      name: { type: 'string', value: 'N', help: 'the Name attribute' },
      group: { type: 'string', value: 'G', help: 'the Object Group attribute' },
      algorithm: { type: 'string', value: 'ALG', help: 'cryptographic algorithm (default AES)' },
      length: { type: 'string', value: 'BITS', help: 'key length in bits (default 256)' },
      usage: { type: 'string', value: 'LIST', help: `usage mask, comma-separated: ${Object.keys(USAGE).join(', ')}` },
    },
    async body(kmip, values) {
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
      return {
        json: { uniqueIdentifier: result.uniqueIdentifier, server: kmip.activeEndpoint },
        human: `created ${printable(result.uniqueIdentifier)} (${nameOf(CryptographicAlgorithm, algorithm)}-${length}) on ${kmip.activeEndpoint}`,
      };
    },
  }),

  serverCommand({
    name: 'register',
    usage: '--key-file FILE|- [--type secret|key] [--name N] [--group G] [--algorithm AES] [--hex|--raw]',
    summary: 'store a secret (Secret Data) or a symmetric key',
    description: `The value is raw bytes from a file, or stdin for - (at most ${KEY_SECRET.maxBytes} bytes). A file that looks
like hex or base64 text, or text ending in a newline, is refused before any server is contacted: --hex
decodes hex, --raw stores the bytes as they are. With --name, an object that already has the name is
reported on stderr (the new one is registered all the same).`,
    options: {
      'key-file': { type: 'string', value: 'FILE|-', help: 'the value to register (- for stdin)' },
      type: { type: 'string', value: 'secret|key', help: 'Secret Data (default) or a symmetric key' },
      name: { type: 'string', value: 'N', help: 'the Name attribute' },
      group: { type: 'string', value: 'G', help: 'the Object Group attribute' },
      algorithm: { type: 'string', value: 'ALG', help: 'for --type key: the algorithm (default AES)' },
      ...SECRET_READING_OPTIONS,
    },
    check(values) {
      pick(OBJECT_TYPES, str(values.type) ?? 'secret', 'type');
      secretReading(values);
    },
    async body(kmip, values, _args, ctx) {
      const type = str(values.type) ?? 'secret';
      const source = {
        path: str(values['key-file']),
        option: '--key-file',
        what: 'the value to register',
        kind: KEY_SECRET,
      };
      return withSecrets(ctx, [source], secretReading(values), async ([secret]) => {
        const name = str(values.name);
        const group = str(values.group);
        const naming = {
          ...(name !== undefined ? { name } : {}),
          ...(group !== undefined ? { objectGroup: group } : {}),
        };
        const algorithm =
          type === 'key'
            ? pick(CryptographicAlgorithm as Record<string, number>, str(values.algorithm) ?? 'AES', 'algorithm')
            : undefined;
        // The same name twice makes `locate --name` ambiguous: say so (registering still goes ahead).
        const existing = name === undefined ? [] : await namedAlready(kmip, name);
        if (existing.length > 0)
          ctx.io.stderr(
            `kmip-agent: warning: ${existing.length} object(s) named '${printable(name!)}' exist already ` +
              `(${existing.slice(0, 5).map(printable).join(', ')}${existing.length > 5 ? ', ...' : ''}); registering another\n`,
          );
        const result =
          algorithm !== undefined
            ? await kmip.register({
                kind: 'symmetric-key',
                key: secret!,
                algorithm,
                usageMask: UsageMask.Encrypt | UsageMask.Decrypt,
                ...naming,
              })
            : await kmip.register({ kind: 'secret-data', secret: secret!, ...naming });
        return {
          json: {
            uniqueIdentifier: result.uniqueIdentifier,
            server: kmip.activeEndpoint,
            ...(existing.length > 0 ? { sameName: existing } : {}),
          },
          human: `registered ${printable(result.uniqueIdentifier)} (${type === 'key' ? 'symmetric key' : 'secret data'}, ${secret!.length} bytes) on ${kmip.activeEndpoint}`,
        };
      });
    },
  }),

  serverCommand({
    name: 'get',
    usage: 'UID [--format raw] [--wrap-key UID] [--out FILE|- [--force]]',
    summary: "print the object's value (hex), or write it raw with --out; the only command that prints secrets",
    description: `By default the value is printed as hex text (one line). --out FILE writes the raw bytes to FILE,
created with mode 0600 and never over an existing file unless --force; --out - writes the raw bytes to
stdout, for a pipe into \`drive unlock --pin-file -\` or \`volume luks open --key-file -\` (which refuse
the hex text unless given --hex).`,
    options: {
      format: { type: 'string', value: 'raw', help: 'ask for the Raw key format' },
      'wrap-key': {
        type: 'string',
        value: 'UID',
        help: 'have the server wrap the value with this key (NIST key wrap)',
      },
      out: { type: 'string', value: 'FILE|-', help: 'write the raw value to FILE (0600, new) or stdout (-)' },
      force: { type: 'boolean', help: 'with --out FILE: replace an existing file' },
    },
    positionals: 1,
    check(values, _args, ctx) {
      const format = str(values.format);
      if (format !== undefined && format !== 'raw')
        throw new UsageError(`--format '${format}': only 'raw' is supported`);
      if (values.force && values.out === undefined) throw new UsageError('--force applies to --out FILE only');
      if (values.out === '-' && ctx.json)
        throw new UsageError('--out - writes raw bytes to stdout, where --json writes its document: pick one');
    },
    async body(kmip, values, [uid], ctx) {
      const format = str(values.format);
      const wrapKey = str(values['wrap-key']);
      const out = str(values.out);
      // The file is made before the server is asked: an existing one stops the command with nothing fetched.
      const fd = out !== undefined && out !== '-' ? createSecretFile(out, values.force === true) : undefined;
      let written = false;
      try {
        const object = await kmip.get(uid!, {
          ...(format ? { keyFormatType: KeyFormatType.Raw } : {}),
          ...(wrapKey ? { keyWrapping: { wrappingKeyId: wrapKey, blockCipherMode: BlockCipherMode.NISTKeyWrap } } : {}),
        });
        try {
          const about = {
            uniqueIdentifier: object.uniqueIdentifier,
            objectType: nameOf(ObjectType, object.objectType),
            wrapped: object.wrapped,
          };
          if (out === undefined) {
            const hex = object.value.toString('hex');
            return { json: { ...about, value: hex }, human: hex };
          }
          if (fd === undefined) {
            ctx.io.stdoutBytes(object.value);
            return { json: about };
          }
          for (let offset = 0; offset < object.value.length;)
            offset += writeSync(fd, object.value, offset, object.value.length - offset);
          written = true;
          return {
            json: { ...about, out, bytes: object.value.length },
            human: `wrote ${object.value.length} bytes of ${printable(object.uniqueIdentifier)} to ${out} (mode 0600)`,
          };
        } finally {
          object.value.fill(0);
        }
      } finally {
        if (fd !== undefined) {
          closeSync(fd);
          if (!written) rmSync(out!, { force: true });
        }
      }
    },
  }),

  serverCommand({
    name: 'locate',
    usage: '[--name N] [--group G] [--type secret|key] [--state STATE] [--max N] [--offset N] [--one]',
    summary: 'find objects; prints their UIDs (nothing when none matches)',
    description: `Prints one UID per line; when nothing matches, stdout stays empty (a note goes to stderr) and
--json gives "uniqueIdentifiers": []. --one insists on exactly one match and prints it: zero matches
fail with LOCATE_NO_MATCH, several with LOCATE_SEVERAL_MATCHES (exit 1).`,
    options: {
      name: { type: 'string', value: 'N', help: 'objects with this Name' },
      group: { type: 'string', value: 'G', help: 'objects in this Object Group' },
      type: { type: 'string', value: 'secret|key', help: 'objects of this type' },
      state: { type: 'string', value: 'STATE', help: `objects in this state: ${Object.keys(STATES).join(', ')}` },
      max: { type: 'string', value: 'N', help: 'at most N UIDs' },
      offset: { type: 'string', value: 'N', help: 'skip the first N matches' },
      one: { type: 'boolean', help: 'exactly one object must match (else exit 1)' },
    },
    check(values) {
      if (values.one && values.max !== undefined) throw new UsageError('--one and --max exclude each other');
    },
    async body(kmip, values, _args, ctx) {
      const name = str(values.name);
      const group = str(values.group);
      const type = str(values.type);
      const state = str(values.state);
      // --one asks for two: enough to tell one match from several.
      const max = values.one ? 2 : positiveInt(str(values.max), '--max');
      const offset = positiveInt(str(values.offset), '--offset');
      const result = await kmip.locate({
        ...(name !== undefined ? { name } : {}),
        ...(group !== undefined ? { objectGroup: group } : {}),
        ...(type !== undefined ? { objectType: pick(OBJECT_TYPES, type, 'type') } : {}),
        ...(state !== undefined ? { state: pick(STATES, state, 'state') } : {}),
        ...(max !== undefined ? { maximumItems: max } : {}),
        ...(offset !== undefined ? { offsetItems: offset } : {}),
      });
      const uids = result.uniqueIdentifiers;
      if (values.one && uids.length !== 1)
        throw new KmipAgentError(
          uids.length === 0
            ? '--one: no object matches'
            : `--one: several objects match (${uids.map(printable).join(', ')}${uids.length === max ? ', ...' : ''}); narrow the search`,
          uids.length === 0 ? 'LOCATE_NO_MATCH' : 'LOCATE_SEVERAL_MATCHES',
          { details: { uniqueIdentifiers: uids } },
        );
      if (uids.length === 0) note(ctx, 'no objects found');
      return {
        json: { ...result, uniqueIdentifiers: uids },
        ...(uids.length > 0 ? { human: uids.map(printable).join('\n') } : {}),
      };
    },
  }),

  serverCommand({
    name: 'attrs',
    usage: 'UID [--attr NAME ...]',
    summary: "list an object's attributes",
    options: { attr: { type: 'string', multiple: true, value: 'NAME', help: 'only this attribute (repeatable)' } },
    positionals: 1,
    async body(kmip, values, [uid]) {
      const result = await kmip.getAttributes(uid!, values.attr);
      const json = result.attributes.map((a) => ({
        name: a.name,
        value: attributeText(a),
        ...(a.index ? { index: a.index } : {}),
      }));
      return {
        json: { uniqueIdentifier: result.uniqueIdentifier, attributes: json },
        human: result.attributes.length
          ? table(result.attributes.map((a) => [printable(a.name), printable(attributeText(a))]))
          : '(no attributes)',
      };
    },
  }),

  serverCommand({
    name: 'activate',
    usage: 'UID',
    summary: 'make an object Active',
    positionals: 1,
    async body(kmip, _values, [uid]) {
      await kmip.activate(uid!);
      return { json: { uniqueIdentifier: uid, state: 'Active' }, human: `${printable(uid!)} is Active` };
    },
  }),

  serverCommand({
    name: 'revoke',
    usage: `UID [--reason ${Object.keys(REVOCATION_REASONS).slice(0, 3).join('|')}|...] [--message TEXT]`,
    summary: 'revoke an object (it can no longer be used to protect data)',
    options: {
      reason: { type: 'string', value: 'REASON', help: `one of: ${Object.keys(REVOCATION_REASONS).join(', ')}` },
      message: { type: 'string', value: 'TEXT', help: 'the Revocation Message' },
    },
    positionals: 1,
    check(values) {
      pick(REVOCATION_REASONS, str(values.reason) ?? 'unspecified', 'revocation reason');
    },
    async body(kmip, values, [uid]) {
      const reason = pick(REVOCATION_REASONS, str(values.reason) ?? 'unspecified', 'revocation reason');
      const message = str(values.message);
      await kmip.revoke({ uniqueIdentifier: uid!, reason, ...(message !== undefined ? { message } : {}) });
      return {
        json: { uniqueIdentifier: uid, revoked: true },
        human: `${printable(uid!)} revoked (${nameOf(RevocationReasonCode, reason)})`,
      };
    },
  }),

  serverCommand({
    name: 'destroy',
    usage: 'UID --yes',
    summary: 'destroy an object (revoke an Active object first; needs --yes)',
    options: { yes: { type: 'boolean', help: 'confirm: the value is gone for good' } },
    positionals: 1,
    check(values, [uid]) {
      if (values.yes !== true)
        throw new UsageError(
          `destroying ${uid} deletes its value on the server; this cannot be undone. Add --yes to confirm.`,
          'USAGE_CONFIRM',
        );
    },
    async body(kmip, _values, [uid]) {
      await kmip.destroy(uid!);
      return { json: { uniqueIdentifier: uid, destroyed: true }, human: `${printable(uid!)} destroyed` };
    },
  }),

  serverCommand({
    name: 'rekey',
    usage: 'UID [--offset SECONDS]',
    summary: 'replace a key with a new one (not every server supports it)',
    options: { offset: { type: 'string', value: 'SECONDS', help: 'the new key becomes active this much later' } },
    positionals: 1,
    async body(kmip, values, [uid]) {
      const offset = positiveInt(str(values.offset), '--offset');
      const result = await kmip.reKey(uid!, offset);
      return {
        json: { replaced: uid, uniqueIdentifier: result.uniqueIdentifier },
        human: `${printable(uid!)} replaced by ${printable(result.uniqueIdentifier)}`,
      };
    },
  }),
];

/** UIDs of the objects named `name` (none when the server cannot Locate by name). */
async function namedAlready(kmip: KmipProvider, name: string): Promise<string[]> {
  try {
    return (await kmip.locate({ name, maximumItems: 16 })).uniqueIdentifiers;
  } catch (error) {
    if (error instanceof KmipOperationError) return [];
    throw error;
  }
}

export const kmipCommand = group({
  name: 'kmip',
  summary: 'talk to KMIP servers: discover, query, create, register, get, locate, attrs, revoke, destroy...',
  description: GROUP_NOTE,
  commands,
});
