/** The package's library entry points resolve as a developer importing it from npm would see them. */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { packageRoot } from '../../src/native/addon.js';

function importInNode(specifier: string, expression: string): string {
  const script = `const m = await import(${JSON.stringify(specifier)}); console.log(${expression});`;
  const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    cwd: packageRoot(),
    encoding: 'utf8',
  });
  expect(run.stderr).toBe('');
  return run.stdout.trim();
}

describe('package exports', () => {
  it('kmip-agent exposes the KMIP client, provider, codec and error class', () => {
    expect(
      importInNode(
        'kmip-agent',
        '[typeof m.KmipClient, typeof m.KmipProvider, typeof m.ttlv.encode, typeof m.KmipAgentError].join()',
      ),
    ).toBe('function,function,function,function');
  });

  it('kmip-agent/kmip is the protocol library alone', () => {
    expect(importInNode('kmip-agent/kmip', 'typeof m.KmipClient')).toBe('function');
  });

  it('kmip-agent/drives exposes the Opal drive API', () => {
    expect(importInNode('kmip-agent/drives', 'typeof m.openOpalDrive')).toBe('function');
  });
});
