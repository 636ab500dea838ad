/** Every top-level command (table.ts), loaded: the whole tree, for `kmip-agent --help` and names not in the table. */
import { group } from '../framework.js';
import { loadTopLevel, TOP_LEVEL_COMMANDS } from './table.js';

export const commandTree = group({
  name: 'kmip-agent',
  summary: 'Key-management agent for storage appliances: KMIP keys, TCG Opal drives, LUKS2 volumes',
  commands: await Promise.all(TOP_LEVEL_COMMANDS.map(loadTopLevel)),
});
