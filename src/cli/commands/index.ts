/** Every top-level command, in the order `kmip-agent --help` lists them: the one table the CLI dispatches from. */
import { group } from '../framework.js';
import { addonCommand } from './addon.js';
import { auditCommand } from './audit.js';
import { daemonCommand, faultsCommand, healthCommand, setupCommand, statusCommand, unlockCommand } from './agent.js';
import { driveCommand } from './drive.js';
import { jobCommands } from './jobs.js';
import { kmipCommand } from './kmip.js';
import { recoverCommand } from './recover.js';
import { rekeyCommand } from './rekey.js';
import { ttlvCommand } from './ttlv.js';
import { volumeCommand } from './volume.js';

export const commandTree = group({
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
    kmipCommand,
    driveCommand,
    volumeCommand,
    ttlvCommand,
    addonCommand,
  ],
});
