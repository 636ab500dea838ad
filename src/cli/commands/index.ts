/** Every top-level command group, in the order `kmip-agent --help` lists them. */
import type { CommandGroup } from '../framework.js';
import { addonCommand } from './addon.js';
import { driveCommand } from './drive.js';
import { kmipCommand } from './kmip.js';
import { ttlvCommand } from './ttlv.js';
import { volumeCommand } from './volume.js';

export const commandGroups: CommandGroup[] = [kmipCommand, driveCommand, volumeCommand, ttlvCommand, addonCommand];
