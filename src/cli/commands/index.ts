/** Every top-level command group, in the order `kmip-agent --help` lists them. */
import type { CommandGroup } from '../framework.js';
import { addonCommand } from './addon.js';
import { driveCommand } from './drive.js';
import { ttlvCommand } from './ttlv.js';
import { volumeCommand } from './volume.js';

export const commandGroups: CommandGroup[] = [driveCommand, volumeCommand, ttlvCommand, addonCommand];
