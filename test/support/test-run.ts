/**
 * The test run's secrets hygiene (issue 12 item 6), set up by scripts/test.sh: every temp file of the run
 * lives under one run directory (TMPDIR points into it) that is kept until the scan at the end
 * (test/hygiene), and every key or PIN the run made is recorded in a separate 0700 directory that the
 * scan reads and then wipes. Without scripts/test.sh (a plain `npx vitest run`) nothing here is active.
 */
import { spawnSync } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { basename, join, resolve, sep } from 'node:path';

/** The run directory: temp files in `tmp/`, what tests removed in `kept/`, captured output in `output/`. */
export const RUN_DIR_ENV = 'KMIP_AGENT_TEST_RUN_DIR';
/** The 0700 directory of recorded secrets (hex, one per line, in 0600 files); never inside the run dir. */
export const SECRETS_DIR_ENV = 'KMIP_AGENT_TEST_SECRETS_DIR';

export function testRunDir(): string | undefined {
  return process.env[RUN_DIR_ENV] || undefined;
}

export function secretsDir(): string | undefined {
  return process.env[SECRETS_DIR_ENV] || undefined;
}

let keptCount = 0;

/**
 * Where `path` goes instead of being removed: `<run>/kept/...` when it exists inside the run's temp
 * directory of a recorded run; undefined otherwise (remove it as asked).
 */
export function keptPlace(path: string): string | undefined {
  const run = testRunDir();
  if (!run) return undefined;
  const full = resolve(path);
  if (!full.startsWith(resolve(run, 'tmp') + sep) || !existsSync(full)) return undefined;
  const kept = join(run, 'kept');
  mkdirSync(kept, { recursive: true, mode: 0o700 });
  return join(kept, `${process.pid}-${++keptCount}-${basename(full)}`);
}

/** Removes a test's directory, or keeps it for the scan in a recorded run. */
export function removeTestDir(path: string): void {
  const place = keptPlace(path);
  if (place) renameSync(path, place);
  else rmSync(path, { recursive: true, force: true });
}

/** Adds secrets to the run's record (a no-op outside a recorded run). `source` names where they came from. */
export function recordSecrets(source: string, secrets: Iterable<Uint8Array>): void {
  const dir = secretsDir();
  if (!dir) return;
  const lines = [...secrets].map((s) => Buffer.from(s).toString('hex')).join('\n');
  if (!lines) return;
  const file = join(dir, `${source}-${process.pid}.hex`);
  appendFileSync(file, `${lines}\n`, { mode: 0o600 });
}

/**
 * Every key and secret a PyKMIP database holds (symmetric keys, secret data, private keys), read with
 * Debian's python (sqlite3) after the server has stopped; recorded under `pykmip`.
 */
export function recordPykmipDatabase(dbPath: string, python: string): void {
  if (!secretsDir() || !existsSync(dbPath)) return;
  const dump = spawnSync(
    python,
    [
      '-c',
      [
        'import sqlite3, sys',
        'db = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True)',
        // 2 SymmetricKey, 4 PrivateKey, 7 SecretData (KMIP Object Type); certificates and public keys are not secret.
        'for (v,) in db.execute("select value from managed_objects where object_type in (2, 4, 7)"):',
        '    sys.stdout.write(bytes(v).hex() + "\\n")',
      ].join('\n'),
      dbPath,
    ],
    { encoding: 'utf8' },
  );
  if (dump.status !== 0) throw new Error(`cannot read the secrets of ${dbPath}: ${dump.stderr}`);
  const secrets = dump.stdout
    .split('\n')
    .filter(Boolean)
    .map((hex) => Buffer.from(hex, 'hex'));
  recordSecrets('pykmip', secrets);
  for (const s of secrets) s.fill(0);
}
