/**
 * Administration of key servers and key providers (the failover groups unlock uses): create, modify,
 * delete, get, list and test, and trusting a server's certificate on first use. Every change is validated
 * as a whole configuration (the schema names the bad field) before anything is written; a CA file given
 * for a server is copied into the configuration directory (servers/<name>.ca.pem). What enrolled drives
 * and volumes use (state.drives[].key.provider, state.volumes[].key.provider) cannot be taken away.
 *
 * One owner of the state: the daemon runs these when it runs (then reloads its configuration), else the
 * CLI does under the state lock.
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { KmipAgentError } from '../errors.js';
import { fetchServerChain, type PresentedChain } from '../kmip/index.js';
import {
  configPath,
  loadConfig,
  parseConfig,
  providerConnection,
  saveConfig,
  type AgentConfig,
  type KeyServerConfig,
  type ProviderConfig,
} from './config.js';
import { recordTests, testServers, type ServerTest } from './connection-test.js';
import { writeDurably } from './durable-file.js';
import { unfinishedRekey } from './envelope.js';
import { locationOf, type MasterKeyLocation } from './master-key.js';
import type { ConnectionResult, StateStore } from './state.js';

/** Where a server's CA file is kept, relative to the configuration directory. */
export const serverCaFile = (name: string) => `servers/${name}.ca.pem`;

/** Fields of a key server an operator sets (null clears an optional one). */
export interface KeyServerFields {
  host?: string;
  port?: number;
  label?: string;
  servername?: string | null;
  /** PEM text of the CA certificate(s) the server's chain must end in. */
  caPem?: string;
  connectTimeoutMs?: number;
  requestTimeoutMs?: number;
  /** Trust on first use: the server leaf's SHA-256 fingerprint (`trust` sets it). */
  pinnedSha256?: string | null;
}

export interface KeyServerView {
  name: string;
  host: string;
  port: number;
  endpoint: string;
  servername?: string;
  label: string;
  ca: string;
  pinnedSha256?: string;
  connectTimeoutMs: number;
  requestTimeoutMs: number;
  /** Providers listing it. */
  providers: string[];
  /** The last connection result for its endpoint (a test, or the daemon's own requests). */
  lastConnection?: ConnectionResult;
}

export interface KeyProviderView {
  name: string;
  label?: string;
  servers: { name: string; endpoint: string; lastConnection?: ConnectionResult }[];
  kmipVersion?: string;
  untested?: boolean;
  /** Enrolled drives and volumes whose keys live on it. */
  usedBy: ProviderUse;
}

/** What a provider holds keys for: drives, volumes, and envelope mode's master key (current or mid-rekey). */
export interface ProviderUse {
  drives: string[];
  volumes: string[];
  masterKeys: string[];
}

export interface KeyAdminOptions {
  configDir: string;
  state: StateStore;
  now: () => Date;
  /** Called after the configuration was saved (the daemon reloads it). */
  changed?: () => Promise<void>;
}

/** The certificates of a PEM text, validated: only certificates, at least one, each readable. */
export function caCertificates(pem: string, field: string): string {
  const invalid = (message: string) =>
    new KmipAgentError(`${field}: ${message}`, 'CONFIG_INVALID', { details: { issues: [{ path: field, message }] } });
  if (/PRIVATE KEY-----/.test(pem)) throw invalid('holds a private key: give only the CA certificate(s)');
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) throw invalid('no PEM certificate (-----BEGIN CERTIFICATE-----) found');
  blocks.forEach((block, i) => {
    try {
      new X509Certificate(block);
    } catch (error) {
      throw invalid(`certificate ${i + 1} is not a readable X.509 certificate (${(error as Error).message})`);
    }
  });
  return blocks.join('\n') + '\n';
}

const endpointOf = (s: Pick<KeyServerConfig, 'host' | 'port'>) => `${s.host}:${s.port}`;

export class KeyAdmin {
  constructor(private readonly options: KeyAdminOptions) {}

  private load(): Promise<AgentConfig> {
    return loadConfig(this.options.configDir);
  }

  private lastConnection(endpoint: string): ConnectionResult | undefined {
    return this.options.state.snapshot().connections.find((c) => c.endpoint === endpoint);
  }

  private serverView(config: AgentConfig, name: string): KeyServerView {
    const s = config.servers[name]!;
    const last = this.lastConnection(endpointOf(s));
    return {
      name,
      host: s.host,
      port: s.port,
      endpoint: endpointOf(s),
      ...(s.servername ? { servername: s.servername } : {}),
      label: s.label,
      ca: s.ca,
      ...(s.pinnedSha256 ? { pinnedSha256: s.pinnedSha256 } : {}),
      connectTimeoutMs: s.connectTimeoutMs,
      requestTimeoutMs: s.requestTimeoutMs,
      providers: Object.keys(config.providers).filter((p) => config.providers[p]!.servers.includes(name)),
      ...(last ? { lastConnection: last } : {}),
    };
  }

  /** Enrolled drives and volumes whose keys live on `provider`. */
  usedBy(provider: string): ProviderUse {
    const s = this.options.state.snapshot();
    // Without this, deleting the provider that holds the master key would leave nothing to unlock with.
    const holds = (at: MasterKeyLocation | undefined) =>
      at?.keyManagementType === 'external' && (at.keyProviderID ?? 'default') === provider;
    const masterKeys = new Set<string>();
    if (s.masterKeyUid !== undefined && holds(locationOf(s, s.masterKeyUid))) masterKeys.add(s.masterKeyUid);
    const rekey = unfinishedRekey(s);
    if (rekey && holds(rekey.target)) masterKeys.add(rekey.masterUid);
    if (rekey?.previous !== undefined && holds(rekey.previousLocation)) masterKeys.add(rekey.previous);
    return {
      drives: s.drives.filter((d) => d.key.provider === provider).map((d) => d.id),
      volumes: s.volumes.filter((v) => v.key.provider === provider).map((v) => v.id),
      masterKeys: [...masterKeys],
    };
  }

  private providerView(config: AgentConfig, name: string): KeyProviderView {
    const p = config.providers[name]!;
    return {
      name,
      ...(p.label !== undefined ? { label: p.label } : {}),
      servers: p.servers.map((server) => {
        const endpoint = endpointOf(config.servers[server]!);
        const last = this.lastConnection(endpoint);
        return { name: server, endpoint, ...(last ? { lastConnection: last } : {}) };
      }),
      ...(p.kmipVersion ? { kmipVersion: p.kmipVersion } : {}),
      ...(p.untested ? { untested: true } : {}),
      usedBy: this.usedBy(name),
    };
  }

  static server(config: AgentConfig, name: string): KeyServerConfig {
    const s = config.servers[name];
    if (!s)
      throw new KmipAgentError(
        `no key server "${name}" (servers: ${Object.keys(config.servers).join(', ') || 'none'})`,
        'CONFIG_KEY_SERVER_UNKNOWN',
      );
    return s;
  }

  private static provider(config: AgentConfig, name: string): ProviderConfig {
    const p = config.providers[name];
    if (!p)
      throw new KmipAgentError(
        `no key provider "${name}" (providers: ${Object.keys(config.providers).join(', ') || 'none'})`,
        'CONFIG_PROVIDER_UNKNOWN',
      );
    return p;
  }

  /** Validates `next` as a whole, writes the CA file (if any) and the configuration, and reports it. */
  private async save(next: AgentConfig, source: string, caFile?: { path: string; pem: string }): Promise<AgentConfig> {
    const valid = parseConfig(next, source);
    if (caFile) {
      const path = configPath(this.options.configDir, caFile.path);
      await mkdir(join(this.options.configDir, 'servers'), { recursive: true, mode: 0o755 });
      await writeDurably(path, caFile.pem, { mode: 0o644 });
    }
    await saveConfig(this.options.configDir, valid);
    try {
      await this.options.changed?.();
    } catch (error) {
      // Saved (config.json.prev keeps the one before), but the running daemon still uses its old configuration.
      throw new KmipAgentError(
        `${source}: saved, but the daemon could not take the new configuration and keeps the running one: ${(error as Error).message}`,
        'CONFIG_RELOAD_FAILED',
        { cause: error, details: { code: (error as { code?: string }).code } },
      );
    }
    return valid;
  }

  // ------------------------------------------------------------------------------------ servers

  async listServers(): Promise<KeyServerView[]> {
    const config = await this.load();
    return Object.keys(config.servers).map((name) => this.serverView(config, name));
  }

  async getServer(name: string): Promise<KeyServerView> {
    const config = await this.load();
    KeyAdmin.server(config, name);
    return this.serverView(config, name);
  }

  /** A new key server (a CA is required); with `provider`, appended to that provider's servers. */
  async createServer(name: string, fields: KeyServerFields & { provider?: string }): Promise<KeyServerView> {
    const config = await this.load();
    if (name in config.servers)
      throw new KmipAgentError(`a key server named "${name}" exists already`, 'CONFIG_KEY_SERVER_EXISTS');
    if (fields.host === undefined) throw new KmipAgentError('a key server needs a host', 'CONFIG_INVALID');
    if (fields.caPem === undefined)
      throw new KmipAgentError(
        `servers.${name}.ca: a key server needs the CA certificate(s) its chain must end in (or \`kmip-agent server trust\` after creating it with one)`,
        'CONFIG_INVALID',
      );
    const pem = caCertificates(fields.caPem, `servers.${name}.ca`);
    const server = {
      host: fields.host,
      ...(fields.port !== undefined ? { port: fields.port } : {}),
      ...(fields.label !== undefined ? { label: fields.label } : {}),
      ...(typeof fields.servername === 'string' ? { servername: fields.servername } : {}),
      ca: serverCaFile(name),
      ...(fields.connectTimeoutMs !== undefined ? { connectTimeoutMs: fields.connectTimeoutMs } : {}),
      ...(fields.requestTimeoutMs !== undefined ? { requestTimeoutMs: fields.requestTimeoutMs } : {}),
      ...(typeof fields.pinnedSha256 === 'string' ? { pinnedSha256: fields.pinnedSha256 } : {}),
    } as KeyServerConfig;
    const providers = { ...config.providers };
    if (fields.provider !== undefined) {
      const p = KeyAdmin.provider(config, fields.provider);
      providers[fields.provider] = { ...p, servers: [...p.servers, name] };
    }
    const saved = await this.save(
      { ...config, servers: { ...config.servers, [name]: server }, providers },
      'server create',
      {
        path: serverCaFile(name),
        pem,
      },
    );
    return this.serverView(saved, name);
  }

  /** Changes any field; a new CA or host drops the pinned fingerprint (unless one is given with it). */
  async modifyServer(name: string, fields: KeyServerFields): Promise<KeyServerView> {
    const config = await this.load();
    const old = KeyAdmin.server(config, name);
    const next: KeyServerConfig = { ...old };
    if (fields.host !== undefined) next.host = fields.host;
    if (fields.port !== undefined) next.port = fields.port;
    if (fields.label !== undefined) next.label = fields.label;
    if (fields.servername === null) delete next.servername;
    else if (fields.servername !== undefined) next.servername = fields.servername;
    if (fields.connectTimeoutMs !== undefined) next.connectTimeoutMs = fields.connectTimeoutMs;
    if (fields.requestTimeoutMs !== undefined) next.requestTimeoutMs = fields.requestTimeoutMs;
    let caFile: { path: string; pem: string } | undefined;
    if (fields.caPem !== undefined) {
      caFile = { path: serverCaFile(name), pem: caCertificates(fields.caPem, `servers.${name}.ca`) };
      next.ca = caFile.path;
    }
    // A pin belongs to one server under one trust: another host or CA must be trusted again.
    const hostChanged = next.host.toLowerCase() !== old.host.toLowerCase();
    if ((hostChanged || caFile) && fields.pinnedSha256 === undefined) delete next.pinnedSha256;
    if (fields.pinnedSha256 === null) delete next.pinnedSha256;
    else if (fields.pinnedSha256 !== undefined) next.pinnedSha256 = fields.pinnedSha256.toUpperCase();
    const saved = await this.save({ ...config, servers: { ...config.servers, [name]: next } }, 'server modify', caFile);
    return this.serverView(saved, name);
  }

  /**
   * Refused (KEY_SERVER_IN_USE, naming them) while a provider listing it holds the keys of enrolled drives
   * or volumes: a server of theirs is never taken away by one command. A provider nobody uses loses it,
   * unless it is that provider's last server (KEY_SERVER_LAST_IN_PROVIDER: delete the provider first, so an
   * empty group is never left behind by accident).
   */
  async deleteServer(name: string): Promise<{ name: string; removedFrom: string[] }> {
    const config = await this.load();
    KeyAdmin.server(config, name);
    const listing = Object.keys(config.providers).filter((p) => config.providers[p]!.servers.includes(name));
    for (const p of listing) {
      const used = this.usedBy(p);
      if (inUse(used))
        throw new KmipAgentError(
          `key server "${name}" is in provider "${p}", which holds the keys of ${describeUse(used)}: remove it from the provider only once another server holds those keys`,
          'KEY_SERVER_IN_USE',
          { details: { server: name, provider: p, ...used } },
        );
      if (config.providers[p]!.servers.length === 1)
        throw new KmipAgentError(
          `key server "${name}" is the only server of provider "${p}": delete the provider first (\`kmip-agent provider delete ${p}\`) or add another server to it`,
          'KEY_SERVER_LAST_IN_PROVIDER',
          { details: { server: name, provider: p } },
        );
    }
    const { [name]: removed, ...servers } = config.servers;
    const providers = Object.fromEntries(
      Object.entries(config.providers).map(([p, v]) => [p, { ...v, servers: v.servers.filter((s) => s !== name) }]),
    );
    await this.save({ ...config, servers, providers }, 'server delete');
    // Its own CA copy goes with it; a CA file shared with others (setup's ca.pem) stays.
    if (removed!.ca === serverCaFile(name) && !Object.values(servers).some((s) => s.ca === removed!.ca))
      await unlink(configPath(this.options.configDir, removed!.ca)).catch(() => undefined);
    return { name, removedFrom: listing };
  }

  /** TLS + Discover Versions + Query against each named server; kept as its last connection result. */
  private async test(config: AgentConfig, names: string[]): Promise<ServerTest[]> {
    // One server at a time is a provider of its own here (its CA, timeouts and pin, the client identity).
    const probe = ' test';
    const connection = providerConnection(
      { ...config, providers: { ...config.providers, [probe]: { servers: names } } },
      this.options.configDir,
      probe,
    );
    let tests: ServerTest[];
    try {
      tests = await testServers(connection);
    } finally {
      connection.key.fill(0);
    }
    tests = tests.map((t) =>
      t.error?.code === 'KMIP_TLS_SERVER_CERT_CHANGED'
        ? { ...t, error: { ...t.error, hint: `if the change is expected: \`kmip-agent server trust ${t.server}\`` } }
        : t,
    );
    await recordTests(this.options.state, tests, this.options.now());
    return tests;
  }

  async testServer(name: string): Promise<ServerTest> {
    const config = await this.load();
    KeyAdmin.server(config, name);
    return (await this.test(config, [name]))[0]!;
  }

  // ---------------------------------------------------------------------------------- providers

  async listProviders(): Promise<KeyProviderView[]> {
    const config = await this.load();
    return Object.keys(config.providers).map((name) => this.providerView(config, name));
  }

  async getProvider(name: string): Promise<KeyProviderView> {
    const config = await this.load();
    KeyAdmin.provider(config, name);
    return this.providerView(config, name);
  }

  async createProvider(name: string, fields: { label?: string; servers: string[] }): Promise<KeyProviderView> {
    const config = await this.load();
    if (name in config.providers)
      throw new KmipAgentError(`a key provider named "${name}" exists already`, 'CONFIG_PROVIDER_EXISTS');
    const provider = { servers: fields.servers, ...(fields.label !== undefined ? { label: fields.label } : {}) };
    const saved = await this.save(
      { ...config, providers: { ...config.providers, [name]: provider } },
      'provider create',
    );
    return this.providerView(saved, name);
  }

  /** Refused while enrolled drives or volumes use it (naming them), and for "default" while the client is enabled. */
  async deleteProvider(name: string): Promise<{ name: string }> {
    const config = await this.load();
    KeyAdmin.provider(config, name);
    const used = this.usedBy(name);
    if (inUse(used))
      throw new KmipAgentError(
        `key provider "${name}" holds the keys of ${describeUse(used)}: not deleted`,
        'KEY_PROVIDER_IN_USE',
        { details: { provider: name, ...used } },
      );
    if (name === 'default' && config.client.enabled)
      throw new KmipAgentError(
        'the provider "default" is the one unlock uses: it cannot be deleted while the KMIP client is enabled (`kmip-agent client disable` first)',
        'KEY_PROVIDER_REQUIRED',
      );
    const { [name]: _gone, ...providers } = config.providers;
    await this.save({ ...config, providers }, 'provider delete');
    return { name };
  }

  /** Adds `server` at `position` (0-based; default last) of the provider's failover order. */
  async addServerToProvider(provider: string, server: string, position?: number): Promise<KeyProviderView> {
    const config = await this.load();
    const p = KeyAdmin.provider(config, provider);
    KeyAdmin.server(config, server);
    if (p.servers.includes(server))
      throw new KmipAgentError(`key server "${server}" is in provider "${provider}" already`, 'CONFIG_INVALID');
    const at = position ?? p.servers.length;
    if (!Number.isInteger(at) || at < 0 || at > p.servers.length)
      throw new KmipAgentError(
        `position: from 0 to ${p.servers.length} (provider "${provider}" has ${p.servers.length} servers), not ${at}`,
        'CONFIG_INVALID',
      );
    const servers = [...p.servers.slice(0, at), server, ...p.servers.slice(at)];
    const saved = await this.save(
      { ...config, providers: { ...config.providers, [provider]: { ...p, servers } } },
      'provider add-server',
    );
    return this.providerView(saved, provider);
  }

  /** Refused when it would leave a provider in use without servers (the schema refuses any empty one). */
  async removeServerFromProvider(provider: string, server: string): Promise<KeyProviderView> {
    const config = await this.load();
    const p = KeyAdmin.provider(config, provider);
    if (!p.servers.includes(server))
      throw new KmipAgentError(`key server "${server}" is not in provider "${provider}"`, 'CONFIG_KEY_SERVER_UNKNOWN');
    const used = this.usedBy(provider);
    if (p.servers.length === 1 && inUse(used))
      throw new KmipAgentError(
        `"${server}" is the last server of provider "${provider}", which holds the keys of ${describeUse(used)}: not removed`,
        'KEY_SERVER_IN_USE',
        { details: { server, provider, ...used } },
      );
    const servers = p.servers.filter((s) => s !== server);
    const saved = await this.save(
      { ...config, providers: { ...config.providers, [provider]: { ...p, servers } } },
      'provider remove-server',
    );
    return this.providerView(saved, provider);
  }

  /** Tests every server of the provider, each on its own connection; every result is reported and kept. */
  async testProvider(name: string): Promise<{ name: string; servers: ServerTest[] }> {
    const config = await this.load();
    const p = KeyAdmin.provider(config, name);
    return { name, servers: await this.test(config, p.servers) };
  }
}

const inUse = (used: ProviderUse) => used.drives.length + used.volumes.length + used.masterKeys.length > 0;

function describeUse(used: ProviderUse): string {
  return [
    ...(used.drives.length ? [`drives ${used.drives.join(', ')}`] : []),
    ...(used.volumes.length ? [`volumes ${used.volumes.join(', ')}`] : []),
    ...(used.masterKeys.length ? [`the master key ${used.masterKeys.join(', ')}`] : []),
  ].join(' and ');
}

/** True when a certificate of `caPem` issued (and signed) the last certificate of the presented chain, or is in it. */
function issuedBy(chain: PresentedChain, caPem: string): boolean {
  const anchors = (caPem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map(
    (pem) => new X509Certificate(pem),
  );
  const certs = chain.certificates.map((c) => new X509Certificate(c.pem));
  // Each certificate must be signed by the next; the chain must end at (or under) one of the anchors.
  for (let i = 0; i + 1 < certs.length; i++)
    if (!certs[i]!.checkIssued(certs[i + 1]!) || !certs[i]!.verify(certs[i + 1]!.publicKey)) return false;
  const last = certs.at(-1)!;
  return anchors.some(
    (a) => a.fingerprint256 === last.fingerprint256 || (last.checkIssued(a) && last.verify(a.publicKey)),
  );
}

/**
 * The chain `name` presents (nothing verified, nothing sent but the handshake) and what trusting it
 * would write: its self-signed root (or `caPem`, which must have issued the chain) as the server's CA,
 * and the leaf's fingerprint as the pin. Refused when the leaf does not name the host (TRUST_NAME_MISMATCH)
 * or no root is there to trust (TRUST_NO_ROOT).
 */
export async function inspectServer(
  configDir: string,
  name: string,
  caPem?: string,
): Promise<{ chain: PresentedChain; caPem: string; pinnedSha256: string }> {
  const config = await loadConfig(configDir);
  const s = KeyAdmin.server(config, name);
  const { cert, key } = clientIdentity(config, configDir);
  let chain: PresentedChain;
  try {
    chain = await fetchServerChain(
      { host: s.host, port: s.port, ...(s.servername ? { servername: s.servername } : {}), cert, key },
      { connectTimeoutMs: s.connectTimeoutMs },
    );
  } finally {
    key?.fill(0);
  }
  const leaf = chain.certificates[0]!;
  if (chain.nameProblem)
    throw new KmipAgentError(
      `${chain.endpoint}: the server certificate does not name ${s.servername ?? s.host}: not trusted (${chain.nameProblem})`,
      'TRUST_NAME_MISMATCH',
      { details: { chain } },
    );
  let anchor: string;
  if (caPem !== undefined) {
    anchor = caCertificates(caPem, `servers.${name}.ca`);
    if (!issuedBy(chain, anchor))
      throw new KmipAgentError(
        `${chain.endpoint}: the given CA did not issue the chain the server presents: not trusted`,
        'TRUST_CA_MISMATCH',
        { details: { chain } },
      );
  } else {
    const root = chain.certificates.at(-1)!;
    if (!root.selfSigned)
      throw new KmipAgentError(
        `${chain.endpoint}: the server does not send the root CA of its chain (it ends at "${root.issuer}"): give that CA with --ca FILE`,
        'TRUST_NO_ROOT',
        { details: { chain } },
      );
    anchor = root.pem;
  }
  return { chain, caPem: anchor, pinnedSha256: leaf.sha256 };
}

/** The client certificate and key, when configured and readable (servers that require one end the handshake without). */
function clientIdentity(config: AgentConfig, dir: string): { cert?: Buffer; key?: Buffer } {
  const { cert, key } = config.client;
  if (cert === undefined || key === undefined) return {};
  try {
    return { cert: readFileSync(configPath(dir, cert)), key: readFileSync(configPath(dir, key)) };
  } catch {
    return {};
  }
}
