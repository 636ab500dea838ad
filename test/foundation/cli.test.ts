import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { packageRoot } from '../../src/native/addon.js';
import { runCliCaptured } from '../support/cli.js';
import { exitCodeFor } from '../../src/cli/framework.js';
import { KmipAgentError } from '../../src/errors.js';

const root = packageRoot();
const version = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string }).version;

describe('kmip-agent command', () => {
  it('the installed bin prints its version (compiled dist, as npm links it)', () => {
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { bin: Record<string, string> };
    const run = spawnSync(process.execPath, [join(root, pkg.bin['kmip-agent'])], {
      encoding: 'utf8',
      env: { ...process.env },
      input: '',
    });
    // No arguments: help on stdout and exit 2 (usage).
    expect(run.status).toBe(2);
    expect(run.stdout).toContain('Usage: kmip-agent');
    const v = spawnSync(process.execPath, [join(root, pkg.bin['kmip-agent']), '--version'], { encoding: 'utf8' });
    expect(v.status).toBe(0);
    expect(v.stdout.trim()).toBe(`kmip-agent ${version}`);
  });

  it('--help lists the commands and exits 0', async () => {
    const run = await runCliCaptured(['--help']);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/Commands:\n/);
    expect(run.stdout).toContain('addon');
  });

  it('--json --version is one JSON document', async () => {
    const run = await runCliCaptured(['--json', '--version']);
    expect(run.code).toBe(0);
    expect(run.json()).toEqual({ version });
  });

  it('an unknown command is a usage error (exit 2) with a stable code in --json', async () => {
    const run = await runCliCaptured(['--json', 'frobnicate']);
    expect(run.code).toBe(2);
    expect(run.json()).toEqual({ error: { code: 'USAGE', message: expect.stringContaining('frobnicate') } });
  });

  it('addon reports the native version', async () => {
    const run = await runCliCaptured(['--json', 'addon']);
    expect(run.code).toBe(0);
    expect(run.json<{ version: string }>().version).toBe(version);
  });
});

describe('exit codes follow the error code', () => {
  it.each([
    ['USAGE', 2],
    ['CONFIG_BAD_SERVER', 2],
    ['KOPAL_NOT_SUPPORTED', 3],
    ['LUKS_DM_NOT_AVAILABLE', 3],
    ['KMIP_TIMEOUT', 1],
  ])('%s exits %i', (code, exit) => {
    expect(exitCodeFor(new KmipAgentError('x', code))).toBe(exit);
  });

  it('anything that is not a KmipAgentError exits 1', () => {
    expect(exitCodeFor(new Error('boom'))).toBe(1);
  });
});
