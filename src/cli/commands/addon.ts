/** `kmip-agent addon`: is the native addon built and loadable, and which version. */
import { addonPath, loadAddon } from '../../native/addon.js';
import { command, emit } from '../framework.js';

export const addonCommand = command({
  name: 'addon',
  usage: '',
  summary: 'show the native addon version and where it was loaded from',
  description: 'Loads the C++ addon and prints its version and path.',
  run(_invocation, ctx) {
    const addon = loadAddon();
    const info = { version: addon.version(), path: addonPath() };
    emit(ctx, info, `addon ${info.version} (${info.path})`);
  },
});
