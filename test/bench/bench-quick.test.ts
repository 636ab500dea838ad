/**
 * `npm run bench -- --quick` as the suite runs it: every benchmark part runs (bounded: few drives,
 * short windows) and results.json has the documented shape, one row per figure of every benchmark
 * the issue names, each ratio computed the higher-is-better way. Timing is never asserted here.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { packageRoot } from '../../src/native/addon.js';
import type { BenchResult } from '../../bench/run.js';

const RUNNER = join(packageRoot(), 'dist', 'bench', 'run.js');
const out = mkdtempSync(join(tmpdir(), 'kmip-agent-bench-test-'));
afterAll(() => rmSync(out, { recursive: true, force: true }));

function runQuick(): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [RUNNER, '--quick', '--out', out], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  return new Promise((resolve) => child.once('close', (code) => resolve({ code, stdout, stderr })));
}

describe('npm run bench -- --quick', () => {
  it(
    'runs every benchmark and writes results.json and results.svg of the documented shape',
    { timeout: 600_000 },
    async () => {
      const run = await runQuick();
      expect(run.stdout).not.toMatch(/failed:/);
      expect(run.code, run.stdout + run.stderr).toBe(0);
      const doc = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')) as {
        quick: boolean;
        results: BenchResult[];
      };
      expect(doc.quick).toBe(true);
      const parts = new Set(doc.results.map((r) => r.part));
      expect([...parts].sort()).toEqual(['boot-unlock', 'kmip-client', 'kmip-ttlv', 'opal-unlock']);
      // The four benchmarks of issue 12, item 8, each with its target.
      const named = (part: string, pattern: RegExp) =>
        doc.results.filter((r) => r.part === part && pattern.test(r.baselineName));
      expect(named('boot-unlock', /^floor/)).toHaveLength(1);
      expect(named('boot-unlock', /per key/)).toHaveLength(1);
      expect(named('boot-unlock', /idle bare node/)).toHaveLength(1);
      expect(named('boot-unlock', /node -e ''/)).toHaveLength(1);
      expect(named('kmip-client', /raw TLS/)).toHaveLength(1);
      expect(named('kmip-client', /PyKMIP/)).toHaveLength(1);
      expect(named('kmip-ttlv', /PyKMIP/)).toHaveLength(1);
      expect(named('kmip-ttlv', /250k/)).toHaveLength(1);
      for (const r of doc.results) {
        expect(r).toEqual({
          part: expect.any(String),
          name: expect.any(String),
          value: expect.any(Number),
          unit: expect.any(String),
          baselineName: expect.any(String),
          baselineValue: expect.any(Number),
          ratio: expect.any(Number),
          target: r.target === null ? null : expect.any(Number),
          met: r.target === null ? null : r.ratio >= r.target!,
        });
        expect(r.value).toBeGreaterThan(0);
        expect(r.baselineValue).toBeGreaterThan(0);
        // Higher-is-better: times and memory are baseline/ours, rates ours/baseline.
        const lowerIsBetter = ['s', 'MiB'].includes(r.unit);
        expect(r.ratio).toBeCloseTo(lowerIsBetter ? r.baselineValue / r.value : r.value / r.baselineValue, 6);
      }
      const svg = readFileSync(join(out, 'results.svg'), 'utf8');
      expect(svg.startsWith('<svg')).toBe(true);
      expect(svg.match(/<rect x=/g)).toHaveLength(doc.results.length);
    },
  );
});
