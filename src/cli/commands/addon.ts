/** `kmip-agent addon`: is the native addon built and loadable, and which version. */
import { addonPath, loadAddon } from '../../native/addon.js';
import { emit, type CommandGroup } from '../framework.js';

export const addonCommand: CommandGroup = {
  name: 'addon',
  summary: 'show the native addon version and where it was loaded from',
  help: 'Usage: kmip-agent addon [--json]\n\nLoads the C++ addon and prints its version and path.',
  run(_args, ctx) {
    const addon = loadAddon();
    const info = { version: addon.version(), path: addonPath() };
    emit(ctx, info, `addon ${info.version} (${info.path})`);
    return Promise.resolve(0);
  },
};
