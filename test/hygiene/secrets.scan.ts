/**
 * The last test of a recorded run (scripts/test.sh runs it after the whole suite, with
 * test/hygiene/vitest.config.ts): no key or PIN the run generated is anywhere it left files or output,
 * except a key server's database and the emulator's volatile key cache; files holding secrets or state
 * are 0600. The figures are printed as `PROOF hygiene ...`.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { secretsDir, testRunDir } from '../support/test-run.js';
import { readRecord, scan } from './secrets-scan.js';

const run = testRunDir();
const record = secretsDir();

describe.skipIf(!run || !record)(
  'secrets hygiene (runs only as the last step of scripts/test.sh, which records the run)',
  () => {
    it('no generated key or PIN outside the places that must hold them; secret and state files 0600', async () => {
      const secrets = readRecord(record!);
      // PyKMIP servers ran in the whole suite and recorded their keys: an empty record means the recording
      // broke. A filtered run (test.sh with vitest filters) may start none.
      if (process.env.KMIP_AGENT_RUN_FILTERED !== '1')
        expect(readdirSync(record!).some((f) => f.startsWith('pykmip-'))).toBe(true);
      const roots = [
        join(run!, 'tmp'),
        join(run!, 'kept'),
        join(run!, 'output'),
        '/dev/shm',
        ...['/etc/kmip-agent', '/var/lib/kmip-agent', '/run/kmip-agent'].filter(existsSync),
      ];
      // Values written in the project's source are test constants, not keys the run generated.
      const repo = fileURLToPath(new URL('../..', import.meta.url));
      const sourceRoots = ['src', 'test', 'bench', 'scripts', 'native'].map((d) => join(repo, d)).filter(existsSync);
      const started = Date.now();
      const result = await scan(roots, secrets, record!, { sourceRoots });
      const mib = (n: number) => `${(n / 2 ** 20).toFixed(0)}MiB`;
      console.log(
        `PROOF hygiene secrets=${result.secrets} files-scanned=${result.filesScanned} ` +
          `bytes=${mib(result.bytes.apparent)} on-disk=${mib(result.bytes.allocated)} ` +
          `scan-s=${((Date.now() - started) / 1000).toFixed(1)} hits=${result.hits.length} ` +
          `skipped-constants=${result.skipped} key-files=${result.keyFiles} mode-checked=${result.modesChecked} ` +
          `loose-modes=${result.looseModes.length}`,
      );
      for (const h of result.hits)
        console.log(`PROOF hygiene hit ${h.file} source=${h.source} encoding=${h.encoding} sha256=${h.fingerprint}…`);
      for (const m of result.looseModes) console.log(`PROOF hygiene loose-mode ${m.mode} ${m.file}`);
      expect(result.secrets).toBeGreaterThan(0);
      expect(result.filesScanned).toBeGreaterThan(0);
      expect(result.hits).toEqual([]);
      expect(result.looseModes).toEqual([]);
    });
  },
);
