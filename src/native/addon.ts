/**
 * The one loader of the C++ addon. Everything native is reached through `loadAddon()`, which
 * finds the build output, registers NativeError so C++ failures arrive typed, and explains what
 * to run when the addon is missing.
 */
import { createRequire } from 'node:module';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { KmipAgentError, NativeError } from '../errors.js';

/** Native subsystems add their typed surfaces here as they register modules in C++. */
export interface NativeAddon {
  version(): string;
  setErrorClass(cls: new (message: string, code: string) => Error): void;
  // Subsystem modules (tcg, emulator, luks, ...) are declared by their TS wrappers.
  [module: string]: unknown;
}

const ADDON_FILE = 'kmip_agent_native.node';
let cached: NativeAddon | undefined;

/** The package root: the nearest folder above this file holding kmip-agent's package.json. */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest)) {
      try {
        if ((JSON.parse(readFileSync(manifest, 'utf8')) as { name?: string }).name === 'kmip-agent') return dir;
      } catch {
        // not ours; keep walking up
      }
    }
    const parent = dirname(dir);
    if (parent === dir) throw new KmipAgentError('cannot find the kmip-agent package root', 'PACKAGE_ROOT_NOT_FOUND');
    dir = parent;
  }
}

/** kmip-agent's version, from its package.json (`--version`, the metrics' build info). */
export function packageVersion(): string {
  return (JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version: string }).version;
}

export function addonPath(): string {
  return process.env.KMIP_AGENT_ADDON ?? join(packageRoot(), 'build', 'Release', ADDON_FILE);
}

export function loadAddon(): NativeAddon {
  if (cached) return cached;
  const path = addonPath();
  if (!existsSync(path)) {
    throw new KmipAgentError(
      `the native addon is not built (${path} is missing): run \`npm run build:addon\` ` +
        '(or `sudo bash scripts/setup.sh` on a fresh machine)',
      'ADDON_NOT_BUILT',
    );
  }
  const require = createRequire(import.meta.url);
  let addon: NativeAddon;
  try {
    addon = require(path) as NativeAddon;
  } catch (cause) {
    throw new KmipAgentError(
      `the native addon at ${path} failed to load (${(cause as Error).message}): rebuild it with \`npm run build:addon\``,
      'ADDON_LOAD_FAILED',
      { cause },
    );
  }
  addon.setErrorClass(NativeError);
  cached = addon;
  return addon;
}

/** Typed access to one registered native module, e.g. `addonModule<TcgNative>('tcg')`. */
export function addonModule<T>(name: string): T {
  const module = loadAddon()[name];
  if (module === undefined || module === null) {
    throw new KmipAgentError(`the native addon has no '${name}' module: rebuild it with \`npm run build:addon\``, 'ADDON_MODULE_MISSING');
  }
  return module as T;
}
