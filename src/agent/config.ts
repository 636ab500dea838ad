/**
 * The agent's configuration: one JSON file (config.json in the configuration directory), validated by a
 * zod schema from which the TypeScript types are derived, so the file, its documentation
 * (`configJsonSchema()`) and the code cannot drift apart. Errors name the bad field.
 */
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import { z } from 'zod';
import { KmipAgentError } from '../errors.js';
import { writeDurably } from './durable-file.js';

export const CONFIG_FILE = 'config.json';
export const CONFIG_SCHEMA_VERSION = 1;

/** Names used inside KMIP object names (`kmip-agent/<applianceId>/<driveId>`): no slashes, no spaces. */
const identifier = z
  .string()
  .regex(
    /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/,
    'letters, digits, ".", "_" or "-" (at most 64, not starting with a sign)',
  );

const ServerSchema = z.strictObject({
  host: z.string().min(1),
  port: z.number().int().min(1).max(65535).default(5696),
  /** Name to verify in the server's certificate when it differs from `host`. */
  servername: z.string().min(1).optional(),
});

const ProviderSchema = z.strictObject({
  label: z.string().max(200).optional(),
  /** Servers in failover order. */
  servers: z.array(ServerSchema).min(1),
  /** PEM files; relative paths are relative to the configuration directory. */
  ca: z.string().min(1),
  cert: z.string().min(1),
  key: z.string().min(1),
  timeoutMs: z.number().int().min(100).max(600_000).default(15_000),
  /** Speak this KMIP version instead of negotiating (e.g. "1.2"). */
  kmipVersion: z
    .string()
    .regex(/^\d+\.\d+$/, 'a version such as "1.2" or "2.0"')
    .optional(),
  /** Set when the configuration was saved without a successful connection test (`setup --force`). */
  untested: z.boolean().optional(),
});

/** A drive the agent manages: a device path or `emu:/path/to/image`. */
const DriveEntrySchema = z.strictObject({
  device: z.string().min(1),
  unlockAtBoot: z.boolean().default(true),
});

const VolumeEntrySchema = z.strictObject({
  /** The LUKS2 block device or image file. */
  device: z.string().min(1),
  /** device-mapper name it is opened as (/dev/mapper/<name>). */
  name: identifier,
  unlockAtBoot: z.boolean().default(true),
  /** Serve its key to systemd-cryptsetup on the crypttab key socket instead of activating it here. */
  keySocket: z.boolean().default(false),
});

/** Tries left on a drive's authority that the agent never spends (boot.triesReserve). */
export const DEFAULT_TRIES_RESERVE = 2;

const BootSchema = z.strictObject({
  /** READY=1 is sent at the latest this long after start, degraded if something is still locked. */
  deadlineSeconds: z.number().int().min(1).max(3600).default(120),
  /** Upper bound of the retry backoff for what is still locked. */
  retryCapSeconds: z.number().int().min(1).max(3600).default(60),
  /** How many drives are unlocked at once. */
  concurrency: z.number().int().min(1).max(256).default(16),
  /** Authentication tries the agent never spends (the drive locks out when they run out). */
  triesReserve: z.number().int().min(1).max(10).default(DEFAULT_TRIES_RESERVE),
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

export const ConfigSchema = z.strictObject({
  schemaVersion: z.literal(CONFIG_SCHEMA_VERSION),
  applianceId: identifier,
  /** direct: one key per drive on the server; envelope: one master key wraps per-drive keys kept in state. */
  keyMode: z.enum(['direct', 'envelope']).default('direct'),
  providers: z
    .record(identifier, ProviderSchema)
    .refine((p) => 'default' in p, 'a provider named "default" is required'),
  drives: z.array(DriveEntrySchema).default([]),
  volumes: z.array(VolumeEntrySchema).default([]),
  boot: BootSchema.default(BootSchema.parse({})),
  api: ApiSchema.default({}),
  metrics: MetricsSchema.default(MetricsSchema.parse({})),
  audit: AuditSchema.default(AuditSchema.parse({})),
});

export type AgentConfig = z.infer<typeof ConfigSchema>;
export type AgentConfigInput = z.input<typeof ConfigSchema>;
export type ProviderConfig = z.infer<typeof ProviderSchema>;
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

/** Validates a parsed configuration document; throws CONFIG_INVALID naming every bad field. */
export function parseConfig(document: unknown, source = CONFIG_FILE): AgentConfig {
  const version = (document as { schemaVersion?: unknown } | null)?.schemaVersion;
  if (typeof version === 'number' && version > CONFIG_SCHEMA_VERSION) {
    throw new KmipAgentError(
      `${source}: schemaVersion ${version} is newer than this kmip-agent understands (${CONFIG_SCHEMA_VERSION}): upgrade kmip-agent`,
      'CONFIG_VERSION_UNSUPPORTED',
    );
  }
  const result = ConfigSchema.safeParse(document);
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

/**
 * A configured provider as KMIP client options: servers in failover order and the PEM files read from the
 * configuration directory (one mapping for the daemon and `kmip --provider`). CONFIG_FILE_UNREADABLE names
 * a file that cannot be read.
 */
export function providerConnection(
  provider: ProviderConfig,
  configDir: string,
): {
  servers: { host: string; port: number; servername?: string }[];
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
  requestTimeoutMs: number;
} {
  const read = (what: string, path: string) => {
    try {
      return readFileSync(configPath(configDir, path));
    } catch (error) {
      throw new KmipAgentError(
        `cannot read the provider's ${what} ${path}: ${(error as Error).message}`,
        'CONFIG_FILE_UNREADABLE',
      );
    }
  };
  return {
    servers: provider.servers.map((s) => ({
      host: s.host,
      port: s.port,
      ...(s.servername ? { servername: s.servername } : {}),
    })),
    ca: read('CA', provider.ca),
    cert: read('certificate', provider.cert),
    key: read('key', provider.key),
    requestTimeoutMs: provider.timeoutMs,
  };
}
