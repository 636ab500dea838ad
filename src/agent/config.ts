/**
 * The agent's configuration: one JSON file (config.json in the configuration directory), validated by a
 * zod schema from which the TypeScript types are derived, so the file, its documentation
 * (`configJsonSchema()`) and the code cannot drift apart. Errors name the bad field.
 */
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { isAbsolute, join } from 'node:path';
import * as z from 'zod';
import { KmipAgentError } from '../errors.js';
import { writeDurably } from './durable-file.js';

export const CONFIG_FILE = 'config.json';
export const CONFIG_SCHEMA_VERSION = 2;

/** Names used inside KMIP object names (`kmip-agent/<applianceId>/<driveId>`): no slashes, no spaces. */
const identifier = z
  .string()
  .regex(
    /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/,
    'letters, digits, ".", "_" or "-" (at most 64, not starting with a sign)',
  );

/** A key server's address: a hostname (RFC 1123 labels) or an IPv4/IPv6 address, no spaces. */
const hostAddress = z
  .string()
  .min(1)
  .max(253)
  .refine(
    (h) => isIP(h) !== 0 || /^(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?$/.test(h),
    'a hostname or an IP address (letters, digits, "-" and "." only, no spaces)',
  );

/** SHA-256 fingerprint as openssl prints it: 32 hex pairs joined by ":". */
export const sha256Fingerprint = z
  .string()
  .regex(/^[0-9A-F]{2}(:[0-9A-F]{2}){31}$/, 'a SHA-256 fingerprint: 32 uppercase hex pairs joined by ":"');

const KeyServerSchema = z.strictObject({
  host: hostAddress,
  port: z.number().int().min(1).max(65535).default(5696),
  /** Name to verify in the server's certificate when it differs from `host`. */
  servername: hostAddress.optional(),
  label: z.string().max(50, 'at most 50 characters').default(''),
  /** PEM file of the CA certificates this server's chain must end in (relative: to the configuration directory). */
  ca: z.string().min(1),
  /** Trust on first use: the server's certificate must have this fingerprint; any other is refused. */
  pinnedSha256: sha256Fingerprint.optional(),
  connectTimeoutMs: z.number().int().min(100).max(600_000).default(10_000),
  requestTimeoutMs: z.number().int().min(100).max(600_000).default(15_000),
});

const ProviderSchema = z.strictObject({
  label: z.string().max(50, 'at most 50 characters').optional(),
  /** Key server names (see `servers`) in failover order. */
  servers: z
    .array(identifier)
    .min(1, 'a provider needs at least one key server')
    .refine((names) => new Set(names).size === names.length, 'a key server is listed twice'),
  /** Speak this KMIP version instead of negotiating (e.g. "1.2"). */
  kmipVersion: z
    .string()
    .regex(/^\d+\.\d+$/, 'a version such as "1.2" or "2.0"')
    .optional(),
  /** Set when the configuration was saved without a successful connection test (`setup --force`). */
  untested: z.boolean().optional(),
});

/** Days before expiry at which CertificateExpiring is raised. */
export const DEFAULT_EXPIRY_WARNING_DAYS = 30;

/** The appliance's KMIP client identity, one for every key server. */
const ClientSchema = z.strictObject({
  /** A disabled client contacts no key server (and may then be reset). */
  enabled: z.boolean().default(true),
  /** PEM files (relative: to the configuration directory). */
  cert: z.string().min(1).optional(),
  key: z.string().min(1).optional(),
  /** Intermediate CA certificates sent after the client certificate. */
  chain: z.string().min(1).optional(),
  expiryWarningDays: z.number().int().min(1).max(365).default(DEFAULT_EXPIRY_WARNING_DAYS),
});

/** A drive the agent manages: a device path or `emu:/path/to/image`. */
const DriveEntrySchema = z.strictObject({
  device: z.string().min(1),
  unlockAtBoot: z.boolean().default(true),
  /** Overrides rotation.everyDays for this drive (see rotation-policy.ts). */
  rotateEveryDays: z.number().int().min(1).max(36500).optional(),
});

const VolumeEntrySchema = z.strictObject({
  /** The LUKS2 block device or image file. */
  device: z.string().min(1),
  /** device-mapper name it is opened as (/dev/mapper/<name>). */
  name: identifier,
  unlockAtBoot: z.boolean().default(true),
  /** Serve its key to systemd-cryptsetup on the crypttab key socket instead of activating it here. */
  keySocket: z.boolean().default(false),
  /** Overrides rotation.everyDays for this volume (see rotation-policy.ts). */
  rotateEveryDays: z.number().int().min(1).max(36500).optional(),
});

/** Tries left on a drive's authority that the agent never spends (boot.triesReserve). */
export const DEFAULT_TRIES_RESERVE = 2;

const BootSchema = z.strictObject({
  /** READY=1 is sent at the latest this long after start, degraded if something is still locked. */
  deadlineSeconds: z.number().int().min(1).max(3600).default(120),
  /** Upper bound of the retry backoff for what is still locked. */
  retryCapSeconds: z.number().int().min(1).max(3600).default(60),
  /**
   * The bound instead while the key server refuses connections (nothing listens on its port: it is
   * restarting). A refusal costs the server nothing, so the agent keeps trying often and unlocks within
   * about this long of its return; timeouts, resets and TLS failures (a loaded server) back off to the cap.
   */
  refusedRetryCapSeconds: z.number().int().min(1).max(3600).default(1),
  /** How many drives are unlocked at once. */
  concurrency: z.number().int().min(1).max(256).default(16),
  /** Authentication tries the agent never spends (the drive locks out when they run out). */
  triesReserve: z.number().int().min(1).max(10).default(DEFAULT_TRIES_RESERVE),
});

/** The rotation policy (rotation-policy.ts): without everyDays, keys are rotated only when asked. */
const RotationSchema = z.strictObject({
  /** Every drive's and volume's key is rotated this many days after it was made. */
  everyDays: z.number().int().min(1).max(36500).optional(),
  /** RotationOverdue is raised once a rotation is this many days past due. */
  graceDays: z.number().int().min(0).max(365).default(7),
  /** Due rotations are spread: each target's due time is moved by a random part of this many hours. */
  spreadHours: z
    .number()
    .int()
    .min(0)
    .max(24 * 30)
    .default(6),
  /** At least this long between two scheduled rotations (one at a time, never all drives at once). */
  gapMinutes: z
    .number()
    .int()
    .min(0)
    .max(24 * 60)
    .default(10),
  /** After a failed rotation, it is tried again this much later (RotationFailed stands meanwhile). */
  retryHours: z
    .number()
    .int()
    .min(1)
    .max(24 * 30)
    .default(6),
});

const ApiSchema = z.strictObject({
  /** Group (name or gid) whose members may use the local API besides root. */
  group: z.union([z.string().min(1), z.number().int().min(0)]).optional(),
});

const MetricsSchema = z.strictObject({
  /** node_exporter textfile-collector directory to write kmip_agent.prom into. */
  textfileDir: z.string().min(1).optional(),
  /** The textfile is rewritten on every change and at least this often. */
  textfileIntervalSeconds: z.number().int().min(1).max(3600).default(15),
});

const AuditSchema = z.strictObject({
  /** <state>/audit.log is rotated before it grows past this. */
  maxBytes: z
    .number()
    .int()
    .min(4096)
    .max(1 << 30)
    .default(10 * 1024 * 1024),
  /** Rotated files kept (audit.log.1 newest .. audit.log.N); 0 keeps none. */
  keep: z.number().int().min(0).max(100).default(5),
});

export const ConfigSchema = z
  .strictObject({
    schemaVersion: z.literal(CONFIG_SCHEMA_VERSION),
    applianceId: identifier,
    /** direct: one key per drive on the server; envelope: one master key wraps per-drive keys kept in state. */
    keyMode: z.enum(['direct', 'envelope']).default('direct'),
    client: ClientSchema.default(ClientSchema.parse({})),
    /** Key servers by name. */
    servers: z.record(identifier, KeyServerSchema).default({}),
    /** Key providers (failover groups of key servers) by name; unlock uses "default". */
    providers: z.record(identifier, ProviderSchema).default({}),
    drives: z.array(DriveEntrySchema).default([]),
    volumes: z.array(VolumeEntrySchema).default([]),
    boot: BootSchema.default(BootSchema.parse({})),
    api: ApiSchema.default({}),
    metrics: MetricsSchema.default(MetricsSchema.parse({})),
    audit: AuditSchema.default(AuditSchema.parse({})),
    rotation: RotationSchema.default(RotationSchema.parse({})),
  })
  .superRefine((config, ctx) => {
    for (const [name, provider] of Object.entries(config.providers))
      provider.servers.forEach((server, index) => {
        if (!(server in config.servers))
          ctx.addIssue({
            code: 'custom',
            path: ['providers', name, 'servers', index],
            message: `no key server named "${server}" (servers: ${Object.keys(config.servers).join(', ') || 'none'})`,
          });
      });
    const endpoints = new Map<string, string>();
    for (const [name, server] of Object.entries(config.servers)) {
      const endpoint = `${server.host.toLowerCase()}:${server.port}`;
      const other = endpoints.get(endpoint);
      if (other !== undefined)
        ctx.addIssue({
          code: 'custom',
          path: ['servers', name],
          message: `the same server as "${other}" (${endpoint})`,
        });
      endpoints.set(endpoint, name);
    }
    if (!config.client.enabled) return;
    if (!('default' in config.providers))
      ctx.addIssue({ code: 'custom', path: ['providers'], message: 'a provider named "default" is required' });
    for (const file of ['cert', 'key'] as const)
      if (config.client[file] === undefined)
        ctx.addIssue({
          code: 'custom',
          path: ['client', file],
          message: 'required while the client is enabled',
        });
  });

export type AgentConfig = z.infer<typeof ConfigSchema>;
export type AgentConfigInput = z.input<typeof ConfigSchema>;
export type ProviderConfig = z.infer<typeof ProviderSchema>;
export type KeyServerConfig = z.infer<typeof KeyServerSchema>;
export type ClientConfig = z.infer<typeof ClientSchema>;
export type DriveEntry = z.infer<typeof DriveEntrySchema>;
export type VolumeEntry = z.infer<typeof VolumeEntrySchema>;

/** One bad field of a configuration, as `path: message` for people and as fields for machines. */
export interface ConfigIssue {
  path: string;
  message: string;
}

function issuePath(path: readonly PropertyKey[]): string {
  let text = '';
  for (const part of path)
    text += typeof part === 'number' ? `[${part}]` : text === '' ? String(part) : `.${String(part)}`;
  return text === '' ? '(top level)' : text;
}

/** A version-1 provider: its servers inline, with one CA and client certificate per provider. */
interface ProviderV1 {
  label?: string;
  servers?: { host?: string; port?: number; servername?: string }[];
  ca?: string;
  cert?: string;
  key?: string;
  timeoutMs?: number;
  kmipVersion?: string;
  untested?: boolean;
}

/** A server name made from its address: what an identifier allows, unique among `taken`. */
export function serverNameFor(host: string, port: number, taken: Iterable<string>): string {
  const used = new Set(taken);
  const base =
    host
      .replace(/[^A-Za-z0-9._-]+/g, '-')
      .replace(/^[^A-Za-z0-9]+/, '')
      .slice(0, 48) || 'server';
  for (const name of [base, `${base}-${port}`]) if (!used.has(name)) return name;
  for (let n = 2; ; n++) if (!used.has(`${base}-${port}-${n}`)) return `${base}-${port}-${n}`;
}

/**
 * Version 1 kept servers inside each provider and a client certificate per provider. Version 2 has named
 * key servers (each with its CA), providers listing them, and one client identity: the default provider's.
 */
function migrateV1(document: Record<string, unknown>, source: string): Record<string, unknown> {
  const { providers: v1 = {}, ...rest } = document as { providers?: Record<string, ProviderV1> };
  const servers: Record<string, Record<string, unknown>> = {};
  const providers: Record<string, Record<string, unknown>> = {};
  const identity = v1.default ?? Object.values(v1)[0];
  for (const [name, provider] of Object.entries(v1)) {
    if (provider.cert !== identity?.cert || provider.key !== identity?.key)
      throw new KmipAgentError(
        `${source}: provider "${name}" has a client certificate of its own; version 2 has one client certificate: ` +
          'give every provider the same cert and key, then upgrade again',
        'CONFIG_MIGRATION_FAILED',
      );
    const names: string[] = [];
    for (const server of provider.servers ?? []) {
      const port = server.port ?? 5696;
      const existing = Object.entries(servers).find(
        ([, s]) => s.host === server.host && s.port === port && s.ca === provider.ca,
      );
      const serverName = existing?.[0] ?? serverNameFor(String(server.host ?? ''), port, Object.keys(servers));
      if (!existing)
        servers[serverName] = {
          host: server.host,
          port,
          ...(server.servername ? { servername: server.servername } : {}),
          ca: provider.ca,
          ...(provider.timeoutMs !== undefined ? { requestTimeoutMs: provider.timeoutMs } : {}),
        };
      names.push(serverName);
    }
    providers[name] = {
      servers: names,
      ...(provider.label !== undefined ? { label: provider.label.slice(0, 50) } : {}),
      ...(provider.kmipVersion !== undefined ? { kmipVersion: provider.kmipVersion } : {}),
      ...(provider.untested !== undefined ? { untested: provider.untested } : {}),
    };
  }
  return {
    ...rest,
    schemaVersion: 2,
    client: { ...(identity?.cert ? { cert: identity.cert } : {}), ...(identity?.key ? { key: identity.key } : {}) },
    servers,
    providers,
  };
}

/** Migrations from each older schema version to the next. */
const MIGRATIONS: Record<number, (document: Record<string, unknown>, source: string) => Record<string, unknown>> = {
  1: migrateV1,
};

/**
 * Validates a parsed configuration document, migrating older schema versions in memory (the file is
 * rewritten in the current version on the next save); throws CONFIG_INVALID naming every bad field.
 */
export function parseConfig(document: unknown, source = CONFIG_FILE): AgentConfig {
  const version = (document as { schemaVersion?: unknown } | null)?.schemaVersion;
  if (typeof version === 'number' && version > CONFIG_SCHEMA_VERSION) {
    throw new KmipAgentError(
      `${source}: schemaVersion ${version} is newer than this kmip-agent understands (${CONFIG_SCHEMA_VERSION}): upgrade kmip-agent`,
      'CONFIG_VERSION_UNSUPPORTED',
    );
  }
  let current = document;
  if (typeof version === 'number' && Number.isInteger(version))
    for (let v = version; v < CONFIG_SCHEMA_VERSION && MIGRATIONS[v]; v++)
      current = MIGRATIONS[v]!(current as Record<string, unknown>, source);
  const result = ConfigSchema.safeParse(current);
  if (result.success) return result.data;
  const issues: ConfigIssue[] = result.error.issues.map((i) => ({ path: issuePath(i.path), message: i.message }));
  throw new KmipAgentError(`${source}: ${issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`, 'CONFIG_INVALID', {
    details: { issues },
  });
}

/** Reads and validates config.json from the configuration directory. */
export async function loadConfig(configDir: string): Promise<AgentConfig> {
  const path = join(configDir, CONFIG_FILE);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new KmipAgentError(
        `no configuration at ${path}: run \`kmip-agent setup\` first (or pass --config-dir)`,
        'CONFIG_MISSING',
      );
    }
    throw new KmipAgentError(`cannot read ${path}: ${(error as Error).message}`, 'CONFIG_UNREADABLE', { cause: error });
  }
  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch (error) {
    throw new KmipAgentError(`${path} is not valid JSON: ${(error as Error).message}`, 'CONFIG_INVALID_JSON');
  }
  return parseConfig(document, path);
}

/** Validates and writes config.json atomically (0600), keeping the previous version as config.json.prev. */
export async function saveConfig(configDir: string, config: AgentConfigInput): Promise<AgentConfig> {
  const valid = parseConfig(config);
  await writeDurably(join(configDir, CONFIG_FILE), JSON.stringify(valid, null, 2) + '\n', { keepPrevious: true });
  return valid;
}

/** A path from the configuration: relative ones are relative to the configuration directory. */
export function configPath(configDir: string, path: string): string {
  return isAbsolute(path) ? path : join(configDir, path);
}

/** The configuration file format as JSON Schema (for documentation and editors). */
export function configJsonSchema(): unknown {
  return z.toJSONSchema(ConfigSchema, { io: 'input' });
}

const versionOf = (text: string) => {
  const [major, minor] = text.split('.').map(Number) as [number, number];
  return { major, minor };
};

/** TLS material and servers of one provider, as KMIP provider options (secrets: zero `key` after use). */
export interface ProviderConnection {
  servers: {
    name: string;
    host: string;
    port: number;
    servername?: string;
    ca: Buffer;
    connectTimeoutMs: number;
    requestTimeoutMs: number;
    pinnedSha256?: string;
  }[];
  /** Client certificate followed by its intermediates. */
  cert: Buffer;
  key: Buffer;
  version?: { major: number; minor: number };
}

/**
 * A configured provider as KMIP client options: its key servers in failover order, each with its CA, and
 * the client identity, read from the configuration directory (one mapping for the daemon, `kmip
 * --provider` and connection tests). CONFIG_FILE_UNREADABLE names a file that cannot be read;
 * KMIP_CLIENT_DISABLED / CONFIG_PROVIDER_UNKNOWN say why there is nothing to connect with.
 */
export function providerConnection(
  config: AgentConfig,
  configDir: string,
  providerName = 'default',
  client: ClientConfig = config.client,
): ProviderConnection {
  if (!client.enabled)
    throw new KmipAgentError(
      'the KMIP client is disabled: no key server is contacted (`kmip-agent client enable`)',
      'KMIP_CLIENT_DISABLED',
    );
  const provider = config.providers[providerName];
  if (!provider)
    throw new KmipAgentError(
      `no key provider "${providerName}" (providers: ${Object.keys(config.providers).join(', ') || 'none'})`,
      'CONFIG_PROVIDER_UNKNOWN',
    );
  const read = (what: string, path: string | undefined) => {
    if (path === undefined)
      throw new KmipAgentError(
        `the client has no ${what} configured (\`kmip-agent cert import\`)`,
        'CLIENT_NO_CERTIFICATE',
      );
    try {
      return readFileSync(configPath(configDir, path));
    } catch (error) {
      throw new KmipAgentError(
        `cannot read the ${what} ${path}: ${(error as Error).message}`,
        'CONFIG_FILE_UNREADABLE',
      );
    }
  };
  const servers = provider.servers.map((name) => {
    const s = config.servers[name]!;
    return {
      name,
      host: s.host,
      port: s.port,
      ...(s.servername ? { servername: s.servername } : {}),
      ca: read(`CA of key server "${name}"`, s.ca),
      connectTimeoutMs: s.connectTimeoutMs,
      requestTimeoutMs: s.requestTimeoutMs,
      ...(s.pinnedSha256 ? { pinnedSha256: s.pinnedSha256 } : {}),
    };
  });
  const cert = read('client certificate', client.cert);
  const chain = client.chain === undefined ? undefined : read('client certificate chain', client.chain);
  return {
    servers,
    cert: chain ? Buffer.concat([cert, Buffer.from('\n'), chain]) : cert,
    key: read('client key', client.key),
    ...(provider.kmipVersion ? { version: versionOf(provider.kmipVersion) } : {}),
  };
}
