import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { isKmipAgentError, NativeError } from '../../src/errors.js';
import { addonPath, loadAddon, packageRoot } from '../../src/native/addon.js';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

describe('native addon', () => {
  it('version() matches package.json', () => {
    const pkg = JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version: string };
    expect(loadAddon().version()).toBe(pkg.version);
  });

  it('loads from the build output', () => {
    expect(addonPath()).toMatch(/build\/Release\/kmip_agent_native\.node$/);
  });

  it('a missing addon is a typed error that says what to run', () => {
    // A fresh process so the cached addon of this one is not reused.
    const script = `
      process.env.KMIP_AGENT_ADDON = '/nonexistent/kmip_agent_native.node';
      const { loadAddon } = await import(${JSON.stringify(join(packageRoot(), 'dist/src/native/addon.js'))});
      try { loadAddon(); console.log('loaded'); } catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })); }
    `;
    const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
    const result = JSON.parse(run.stdout.trim()) as { code: string; message: string };
    expect(result.code).toBe('ADDON_NOT_BUILT');
    expect(result.message).toContain('npm run build:addon');
  });

  it('native failures arrive as NativeError with a code', () => {
    const addon = loadAddon();
    let caught: unknown;
    try {
      addon.setErrorClass('not a class' as never);
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(NativeError);
    expect(isKmipAgentError(caught, 'NATIVE_INVALID_ARGUMENT')).toBe(true);
  });
});
