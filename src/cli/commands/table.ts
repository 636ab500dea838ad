/**
 * The top-level commands, in the order `kmip-agent --help` lists them, each with the module that defines it.
 * index.ts builds the whole command tree from it; main.ts loads just the one a command line names, so a CLI
 * start evaluates that command's modules only (not the x509 and progress-bar libraries of the others, say).
 */
import { KmipAgentError } from '../../errors.js';
import type { CommandGroup, CommandNode, OptionSpecs } from '../framework.js';

export interface TopLevelCommand {
  name: string;
  load(): Promise<CommandNode>;
}

export const TOP_LEVEL_COMMANDS: readonly TopLevelCommand[] = [
  { name: 'setup', load: async () => (await import('./agent.js')).setupCommand },
  { name: 'daemon', load: async () => (await import('./agent.js')).daemonCommand },
  { name: 'status', load: async () => (await import('./agent.js')).statusCommand },
  { name: 'health', load: async () => (await import('./agent.js')).healthCommand },
  { name: 'faults', load: async () => (await import('./agent.js')).faultsCommand },
  { name: 'unlock', load: async () => (await import('./agent.js')).unlockCommand },
  { name: 'audit', load: async () => (await import('./audit.js')).auditCommand },
  { name: 'recover', load: async () => (await import('./recover.js')).recoverCommand },
  { name: 'jobs', load: async () => (await import('./jobs.js')).jobsCommand },
  { name: 'job', load: async () => (await import('./jobs.js')).jobCommand },
  { name: 'encryption-at-rest', load: async () => (await import('./jobs.js')).encryptionAtRestCommand },
  { name: 'rekey', load: async () => (await import('./rekey.js')).rekeyCommand },
  { name: 'cert', load: async () => (await import('./cert.js')).certCommand },
  { name: 'client', load: async () => (await import('./client.js')).clientCommand },
  { name: 'server', load: async () => (await import('./servers.js')).serverCommand },
  { name: 'provider', load: async () => (await import('./servers.js')).providerCommand },
  { name: 'kmip', load: async () => (await import('./kmip.js')).kmipCommand },
  { name: 'drive', load: async () => (await import('./drive.js')).driveCommand },
  { name: 'volume', load: async () => (await import('./volume.js')).volumeCommand },
  { name: 'ttlv', load: async () => (await import('./ttlv.js')).ttlvCommand },
  { name: 'addon', load: async () => (await import('./addon.js')).addonCommand },
];

/**
 * Every command takes --config-dir, --state-dir and --runtime-dir (one command line works everywhere); those
 * that have no use for the agent's directories accept them and say so in their help.
 */
function acceptDirOptions<N extends CommandNode>(node: N, accepted: OptionSpecs): N {
  if (node.kind === 'group')
    return { ...node, commands: (node as CommandGroup).commands.map((c) => acceptDirOptions(c, accepted)) };
  return 'config-dir' in node.options ? node : { ...node, options: { ...node.options, ...accepted } };
}

/** One top-level command, loaded, as the CLI dispatches it (the directory options on every command). */
export async function loadTopLevel(entry: TopLevelCommand): Promise<CommandNode> {
  // Every command module imports agent.js already: this costs nothing more.
  const [node, { ACCEPTED_DIR_OPTIONS }] = await Promise.all([entry.load(), import('./agent.js')]);
  if (node.name !== entry.name)
    throw new KmipAgentError(`the command table names '${entry.name}' but loaded '${node.name}'`, 'INTERNAL');
  return acceptDirOptions(node, ACCEPTED_DIR_OPTIONS);
}
