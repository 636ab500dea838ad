/** Every top-level command group, in the order `kmip-agent --help` lists them. */
import type { CommandGroup } from '../framework.js';
import { addonCommand } from './addon.js';
import { ttlvCommand } from './ttlv.js';
import { volumeCommand } from './volume.js';

export const commandGroups: CommandGroup[] = [volumeCommand, ttlvCommand, addonCommand];
