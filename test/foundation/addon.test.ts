import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { isKmipAgentError, NativeError } from '../../src/errors.js';
import { addonPath, loadAddon, packageRoot } from '../../src/native/addon.js';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { productionAddonPath, testAddonPath } from '../support/addon.js';

describe('native addon', () => {
  it('version() matches package.json', () => {
    const pkg = JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version: string };
    expect(loadAddon().version()).toBe(pkg.version);
  });

  it('loads from the build output: the shipped addon by default, the test addon under tests', () => {
    // Global setup points KMIP_AGENT_ADDON at the test addon.
    expect(addonPath()).toBe(testAddonPath());
    const script = `
      delete process.env.KMIP_AGENT_ADDON;
      const { addonPath } = await import(${JSON.stringify(join(packageRoot(), 'dist/src/native/addon.js'))});
      console.log(addonPath());
    `;
    const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
    expect(run.stdout.trim()).toBe(productionAddonPath());
  });

  it('the shipped addon carries no test seams', () => {
    const require = createRequire(import.meta.url);
    const shipped = require(productionAddonPath()) as Record<string, Record<string, unknown> | undefined>;
    // Loaded directly (not through KMIP_AGENT_ADDON): these are the seams that live in native/test/.
    expect(Object.keys(shipped)).toEqual(expect.arrayContaining(['tcg', 'kernelOpal', 'emulator', 'luks']));
    expect(shipped.testSeams).toBeUndefined();
    expect(shipped.passthrough).toBeUndefined();
    expect(shipped.tcg?.openScripted).toBeUndefined();
    expect(shipped.tcg?.openPassthroughFixture).toBeUndefined();
    expect(shipped.kernelOpal?.runScripted).toBeUndefined();
    expect(shipped.kernelOpal?.run).toBeUndefined();
    const seamNames = /scripted|fixture|crash/i;
    for (const [name, module] of Object.entries(shipped)) {
      expect(name).not.toMatch(seamNames);
      if (module && typeof module === 'object')
        expect(Object.keys(module).filter((k) => seamNames.test(k))).toEqual([]);
    }
    // The test addon is the same addon plus those seams.
    const test = require(testAddonPath()) as Record<string, Record<string, unknown>>;
    expect(Object.keys(test.testSeams!)).toEqual(
      expect.arrayContaining(['openScriptedDrive', 'openPassthroughFixture', 'openScriptedKernelOpal']),
    );
    expect(Object.keys(test.passthrough!)).toContain('scripted');
    expect(Object.keys(test.tcg!).sort()).toEqual(Object.keys(shipped.tcg!).sort());
  });

  it('the shipped binary has no seam code linked in', () => {
    const binary = readFileSync(productionAddonPath());
    for (const symbol of ['ScriptedIoctlPort', 'ScriptedTransport', 'TransportBackedDevicePort', 'openScriptedDrive']) {
      expect(binary.includes(symbol), symbol).toBe(false);
    }
    expect(readFileSync(testAddonPath()).includes('ScriptedIoctlPort')).toBe(true);
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
