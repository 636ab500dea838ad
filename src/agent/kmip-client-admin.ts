/**
 * Enabling, disabling and resetting the appliance's KMIP client (what appliances call the "KMIP client"
 * or "external key management" switch). The rules keep the appliance from being cut off its keys:
 * - disable is refused while managed drives or volumes need the key server to unlock, naming them
 *   (`force` overrides: they then stay locked at the next boot until the client is enabled again);
 * - reset (forget key servers, providers and the client certificate) is allowed only when disabled, and
 *   says first what becomes unreachable;
 * - neither ever touches the state: its key UIDs and names are what lets `setup` with the same server,
 *   then unlock (or `recover`, if the state is lost too), restore access.
 */
import { rm } from 'node:fs/promises';
import { KmipAgentError } from '../errors.js';
import { configPath, loadConfig, saveConfig, type AgentConfig } from './config.js';
import type { StateBody } from './state.js';

/** A managed drive or volume whose key lives on a key server. */
export interface ClientDependent {
  kind: 'drive' | 'volume';
  id: string;
  device: string;
  keyName: string;
  keyUid: string;
  provider: string;
  unlockAtBoot: boolean;
}

/** Every managed drive and volume, with the key it needs from the key server. */
export function clientDependents(state: StateBody): ClientDependent[] {
  const entry = (kind: ClientDependent['kind']) => (t: StateBody['drives'][number] | StateBody['volumes'][number]) => ({
    kind,
    id: t.id,
    device: t.device,
    keyName: t.key.name,
    keyUid: t.key.uid,
    provider: t.key.provider,
    unlockAtBoot: t.unlockAtBoot,
  });
  return [...state.drives.map(entry('drive')), ...state.volumes.map(entry('volume'))];
}

const describe = (d: ClientDependent) => `${d.kind} ${d.id} (${d.device})`;

export interface ClientStatus {
  enabled: boolean;
  certificate: string | null;
  servers: string[];
  providers: string[];
  dependents: ClientDependent[];
  masterKeyUid?: string;
}

export function clientStatus(config: AgentConfig, state: StateBody): ClientStatus {
  return {
    enabled: config.client.enabled,
    certificate: config.client.cert ?? null,
    servers: Object.keys(config.servers),
    providers: Object.keys(config.providers),
    dependents: clientDependents(state),
    ...(state.masterKeyUid ? { masterKeyUid: state.masterKeyUid } : {}),
  };
}

/** Turns the client on; the schema refuses it without a certificate, a key and a default provider. */
export async function enableClient(configDir: string): Promise<AgentConfig> {
  const config = await loadConfig(configDir);
  if (config.client.enabled) return config;
  try {
    return await saveConfig(configDir, { ...config, client: { ...config.client, enabled: true } });
  } catch (error) {
    if (error instanceof KmipAgentError && error.code === 'CONFIG_INVALID')
      throw new KmipAgentError(
        `the client cannot be enabled: ${error.message}; run \`kmip-agent setup\` (after a reset) or import a certificate and define a default provider first`,
        'CLIENT_NOT_CONFIGURED',
        { details: error.details() },
      );
    throw error;
  }
}

export interface DisableResult {
  config: AgentConfig;
  /** Managed drives and volumes that will stay locked at boot until the client is enabled again. */
  stranded: ClientDependent[];
}

/** Turns the client off: refused (CLIENT_IN_USE, naming them) while drives or volumes need it, unless forced. */
export async function disableClient(
  configDir: string,
  state: StateBody,
  options: { force?: boolean } = {},
): Promise<DisableResult> {
  const config = await loadConfig(configDir);
  const stranded = clientDependents(state).filter((d) => d.unlockAtBoot);
  if (stranded.length > 0 && !options.force)
    throw new KmipAgentError(
      `the KMIP client cannot be disabled: ${stranded.length} managed drive(s)/volume(s) need the key server to unlock: ` +
        `${stranded.map(describe).join(', ')}. Disable encryption at rest for them (or remove them) first; ` +
        '--force disables anyway and they stay locked at the next boot until the client is enabled again',
      'CLIENT_IN_USE',
      { details: { dependents: stranded } },
    );
  if (!config.client.enabled) return { config, stranded };
  return { config: await saveConfig(configDir, { ...config, client: { ...config.client, enabled: false } }), stranded };
}

export interface ResetPlan {
  /** Keys recorded in the state that nothing here can reach once the connection settings are gone. */
  unreachable: ClientDependent[];
  masterKeyUid?: string;
  /** Key servers and providers that are forgotten. */
  servers: string[];
  providers: string[];
  /** Files removed from the configuration directory (client certificate and key, key servers' CA files). */
  files: string[];
}

/** What `resetClient` would do, for the warning shown before it is confirmed. Refused while enabled. */
export function planReset(config: AgentConfig, state: StateBody): ResetPlan {
  if (config.client.enabled)
    throw new KmipAgentError(
      'the KMIP client is enabled: connection settings can be reset only when it is disabled (`kmip-agent client disable`)',
      'CLIENT_ENABLED',
    );
  const files = new Set<string>();
  for (const f of [config.client.cert, config.client.key, config.client.chain]) if (f) files.add(f);
  for (const s of Object.values(config.servers)) files.add(s.ca);
  return {
    unreachable: clientDependents(state),
    ...(state.masterKeyUid ? { masterKeyUid: state.masterKeyUid } : {}),
    servers: Object.keys(config.servers),
    providers: Object.keys(config.providers),
    files: [...files],
  };
}

/**
 * Forgets every key server, provider and the client certificate (its files are deleted; config.json.prev
 * keeps the previous settings). The state, and with it every key UID and name, is left as it is.
 */
export async function resetClient(configDir: string, state: StateBody): Promise<ResetPlan> {
  const config = await loadConfig(configDir);
  const plan = planReset(config, state);
  const { cert: _cert, key: _key, chain: _chain, ...client } = config.client;
  await saveConfig(configDir, { ...config, client: { ...client, enabled: false }, servers: {}, providers: {} });
  // After the config no longer names them: a crash in between leaves stray files, never a config naming none.
  for (const file of plan.files) await rm(configPath(configDir, file), { force: true });
  return plan;
}

/** The warning printed before a reset is confirmed. */
export function resetWarning(plan: ResetPlan): string {
  const lines = [
    `Resetting forgets ${plan.servers.length} key server(s) (${plan.servers.join(', ') || 'none'}), ` +
      `${plan.providers.length} provider(s) and the client certificate.`,
  ];
  if (plan.unreachable.length > 0 || plan.masterKeyUid) {
    lines.push('Until the appliance is connected to the same key server again, these keys are unreachable:');
    for (const d of plan.unreachable) lines.push(`  ${describe(d)}: ${d.keyName} (UID ${d.keyUid})`);
    if (plan.masterKeyUid) lines.push(`  the envelope master key (UID ${plan.masterKeyUid})`);
    lines.push(
      'The state keeps their UIDs and names: `kmip-agent setup` with the same server, then `kmip-agent unlock` ' +
        '(or `kmip-agent recover` if the state is lost too) restores access.',
    );
  } else lines.push('No managed drive or volume depends on it.');
  return lines.join('\n');
}
