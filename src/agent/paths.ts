/**
 * Where the agent keeps its files: configuration (/etc/kmip-agent), state (/var/lib/kmip-agent) and
 * runtime files such as the API socket (/run/kmip-agent). Each can be moved by a command-line option,
 * by KMIP_AGENT_*_DIR, or by the variable systemd sets for ConfigurationDirectory=, StateDirectory= and
 * RuntimeDirectory=, in that order of precedence.
 */
import { isAbsolute, resolve } from 'node:path';

export interface AgentDirs {
  config: string;
  state: string;
  runtime: string;
}

export const DEFAULT_DIRS: AgentDirs = {
  config: '/etc/kmip-agent',
  state: '/var/lib/kmip-agent',
  runtime: '/run/kmip-agent',
};

const SOURCES: Record<keyof AgentDirs, { ours: string; systemd: string }> = {
  config: { ours: 'KMIP_AGENT_CONFIG_DIR', systemd: 'CONFIGURATION_DIRECTORY' },
  state: { ours: 'KMIP_AGENT_STATE_DIR', systemd: 'STATE_DIRECTORY' },
  runtime: { ours: 'KMIP_AGENT_RUNTIME_DIR', systemd: 'RUNTIME_DIRECTORY' },
};

/** Where a directory came from, for `--verbose` output and error messages. */
export interface DirSource {
  dir: string;
  from: 'option' | 'environment' | 'systemd' | 'default';
  variable?: string;
}

/**
 * Resolves the three directories. `options` are the command-line values (undefined when not given).
 * systemd joins several directories of one kind with ':'; the agent uses the first.
 */
export function resolveDirs(
  options: Partial<AgentDirs> = {},
  env: NodeJS.ProcessEnv = process.env,
): AgentDirs & { sources: Record<keyof AgentDirs, DirSource> } {
  const pick = (kind: keyof AgentDirs): DirSource => {
    const given = options[kind];
    if (given !== undefined && given !== '') return { dir: resolve(given), from: 'option' };
    const { ours, systemd } = SOURCES[kind];
    const own = env[ours];
    if (own) return { dir: resolve(own), from: 'environment', variable: ours };
    const fromSystemd = env[systemd]?.split(':')[0];
    // systemd always sets absolute paths; anything else is not its doing and is ignored.
    if (fromSystemd && isAbsolute(fromSystemd)) return { dir: fromSystemd, from: 'systemd', variable: systemd };
    return { dir: DEFAULT_DIRS[kind], from: 'default' };
  };
  const sources = { config: pick('config'), state: pick('state'), runtime: pick('runtime') };
  return { config: sources.config.dir, state: sources.state.dir, runtime: sources.runtime.dir, sources };
}
