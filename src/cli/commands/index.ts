/** Every top-level command, in the order `kmip-agent --help` lists them: the one table the CLI dispatches from. */
import { group, type CommandGroup, type CommandNode } from '../framework.js';
import { addonCommand } from './addon.js';
import { auditCommand } from './audit.js';
import { certCommand } from './cert.js';
import {
  ACCEPTED_DIR_OPTIONS,
  daemonCommand,
  faultsCommand,
  healthCommand,
  setupCommand,
  statusCommand,
  unlockCommand,
} from './agent.js';
import { clientCommand } from './client.js';
import { driveCommand } from './drive.js';
import { jobCommands } from './jobs.js';
import { kmipCommand } from './kmip.js';
import { recoverCommand } from './recover.js';
import { rekeyCommand } from './rekey.js';
import { providerCommand, serverCommand } from './servers.js';
import { ttlvCommand } from './ttlv.js';
import { volumeCommand } from './volume.js';

/**
 * Every command takes --config-dir, --state-dir and --runtime-dir (one command line works everywhere); those
 * that have no use for the agent's directories accept them and say so in their help.
 */
function acceptDirOptions<N extends CommandNode>(node: N): N {
  if (node.kind === 'group') return { ...node, commands: (node as CommandGroup).commands.map(acceptDirOptions) };
  return 'config-dir' in node.options ? node : { ...node, options: { ...node.options, ...ACCEPTED_DIR_OPTIONS } };
}

const tree = group({
  name: 'kmip-agent',
  summary: 'Key-management agent for storage appliances: KMIP keys, TCG Opal drives, LUKS2 volumes',
  commands: [
    setupCommand,
    daemonCommand,
    statusCommand,
    healthCommand,
    faultsCommand,
    unlockCommand,
    auditCommand,
    recoverCommand,
    ...jobCommands,
    rekeyCommand,
    certCommand,
    clientCommand,
    serverCommand,
    providerCommand,
    kmipCommand,
    driveCommand,
    volumeCommand,
    ttlvCommand,
    addonCommand,
  ],
});

export const commandTree = acceptDirOptions(tree);
