/** Every top-level command group, in the order `kmip-agent --help` lists them. */
import type { CommandGroup } from '../framework.js';
import { addonCommand } from './addon.js';
import { kmipCommand } from './kmip.js';
import { ttlvCommand } from './ttlv.js';

export const commandGroups: CommandGroup[] = [addonCommand, kmipCommand, ttlvCommand];
