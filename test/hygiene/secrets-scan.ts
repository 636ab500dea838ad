/**
 * The secrets hygiene scan of a recorded test run (test/support/test-run.ts): every key and PIN the run
 * generated, searched raw, as hex and as base64 in everything the run left (temp and kept directories,
 * captured output, /dev/shm, the machine's agent directories), except the places that must hold them:
 * a key server's database and an emulated drive's volatile key cache. Also lists the files holding
 * secrets or state whose mode lets anyone but the owner in. Search by GNU grep -F (Aho-Corasick over
 * every pattern at once), with -z: NUL bytes end lines, so grep reads a file with holes (sparse drive images,
 * gigabytes each) by its data extents only (SEEK_DATA), and no pattern may hold a NUL (nor a newline: a
 * pattern file has one per line). With -a instead, grep read every hole's zeros: 160 s of one CI run.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { basename, dirname, join } from 'node:path';

export interface Secret {
  value: Buffer;
  source: string;
}

export interface Hit {
  file: string;
  source: string;
  encoding: string;
  /** First 12 hex digits of the secret's SHA-256: names it without showing it. */
  fingerprint: string;
}

/** Files that must hold secrets: PyKMIP's database, the emulator's RAM cache of unwrapped media keys. */
const isDriveRamCache = (name: string) => /^kmip-agent-emu-.*\.ram$/.test(name);
const isHolder = (name: string) => name === 'pykmip.db' || name === 'pykmip.db-journal' || isDriveRamCache(name);

/** Secrets or state the agent, the emulator or the audit log write: each must be 0600 (no group/other bits). */
export function holdsSecretsOrState(path: string): boolean {
  const name = basename(path);
  return (
    ['state.json', 'refused-keys.json', 'state.lock'].includes(name) ||
    /^audit\.log(\.\d+)?$/.test(name) ||
    /\.state$/.test(name) ||
    isDriveRamCache(name) ||
    (basename(dirname(path)) === 'pki' && name.endsWith('.key'))
  );
}

/** Recorded secrets: the hex lines of every file in the record directory. */
export function readRecord(dir: string): Secret[] {
  const out: Secret[] = [];
  for (const name of readdirSync(dir)) {
    const source = name.split('-')[0]!;
    for (const line of readFileSync(join(dir, name), 'utf8').split('\n'))
      if (line) out.push({ value: Buffer.from(line, 'hex'), source });
  }
  return out;
}

/** The unwrapped media keys in the emulator's RAM caches under `roots` (`key.N <hex>` lines). */
export function harvestMediaKeys(files: string[]): Secret[] {
  const out: Secret[] = [];
  for (const file of files.filter((f) => isDriveRamCache(basename(f)))) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue; // removed meanwhile (another run's drive powered off)
    }
    for (const m of text.matchAll(/^key\.\d ([0-9a-f]{64})$/gm))
      out.push({ value: Buffer.from(m[1]!, 'hex'), source: 'emulator-media-key' });
  }
  return out;
}

/**
 * Secrets worth searching for: at least 16 bytes and not a test constant (at least 8 distinct byte
 * values: Buffer.alloc(32, 7) would be "found" in every zero-filled or patterned block).
 */
export function searchable(secrets: Secret[]): { kept: Secret[]; skipped: number } {
  const seen = new Set<string>();
  const kept: Secret[] = [];
  let skipped = 0;
  for (const s of secrets) {
    const hex = s.value.toString('hex');
    if (seen.has(hex)) continue;
    seen.add(hex);
    if (s.value.length < 16 || new Set(s.value).size < 8) skipped++;
    else kept.push(s);
  }
  return { kept, skipped };
}

/**
 * The byte strings that betray `secret`: its longest run without a newline or NUL (see the top),
 * hex both cases, and base64 (standard and URL-safe) at each of the three alignments it can sit at inside
 * a longer encoded blob, keeping only the characters that depend on the secret's bytes alone.
 */
export function patternsOf(secret: Buffer): { encoding: string; pattern: Buffer }[] {
  const out: { encoding: string; pattern: Buffer }[] = [];
  let best: Buffer = Buffer.alloc(0);
  let start = 0;
  for (let i = 0; i <= secret.length; i++)
    if (i === secret.length || secret[i] === 0x0a || secret[i] === 0x00) {
      if (i - start > best.length) best = secret.subarray(start, i);
      start = i + 1;
    }
  if (best.length >= 12) out.push({ encoding: 'raw', pattern: Buffer.from(best) });
  const hex = secret.toString('hex');
  out.push(
    { encoding: 'hex', pattern: Buffer.from(hex) },
    { encoding: 'HEX', pattern: Buffer.from(hex.toUpperCase()) },
  );
  for (let offset = 0; offset < 3; offset++) {
    const encoded = Buffer.concat([Buffer.alloc(offset), secret]).toString('base64');
    // Whole 3-byte groups made of secret bytes only: groups from ceil(offset / 3) to the last full one.
    const first = Math.ceil(offset / 3);
    const last = Math.floor((offset + secret.length) / 3);
    const middle = encoded.slice(first * 4, last * 4);
    if (middle.length < 16) continue;
    out.push({ encoding: `base64@${offset}`, pattern: Buffer.from(middle) });
    const url = middle.replace(/\+/g, '-').replace(/\//g, '_');
    if (url !== middle) out.push({ encoding: `base64url@${offset}`, pattern: Buffer.from(url) });
  }
  return out;
}

/** Regular files under `roots`, not following symbolic links; vanished entries are passed over. */
export function walk(roots: string[]): string[] {
  const files: string[] = [];
  const visit = (path: string) => {
    let st;
    try {
      st = lstatSync(path);
    } catch {
      return;
    }
    if (st.isDirectory()) {
      let names: string[];
      try {
        names = readdirSync(path);
      } catch {
        return;
      }
      for (const name of names) visit(join(path, name));
    } else if (st.isFile()) files.push(path);
  };
  for (const root of roots) if (existsSync(root)) visit(root);
  return files;
}

export interface ScanResult {
  secrets: number;
  skipped: number;
  filesScanned: number;
  hits: Hit[];
  /** Files holding secrets or state that group or others may read or write. */
  looseModes: { file: string; mode: string }[];
  /** Files checked for their mode. */
  modesChecked: number;
  /** Files that are nothing but a key (see isKeyFile): not hits, but mode-checked. */
  keyFiles: number;
  /** The scanned files' sizes, and what of them is on disk (the rest is holes, which grep passes over). */
  bytes: { apparent: number; allocated: number };
}

/** The output of one grep, checked: 0 found, 1 nothing found, 2 with only vanished files is fine too. */
function grepOutput(status: number | null, stdout: Buffer, stderr: string): Buffer {
  // Vanished files: another process's /dev/shm entries, a drive image removed while the scan ran.
  const errors = stderr.split('\n').filter((l) => l && !/No such file or directory/.test(l));
  if (status === null || status > 2 || (status === 2 && errors.length > 0))
    throw new Error(`grep failed (${status}): ${errors.join('; ')}`);
  return stdout;
}

function grep(args: string[]): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn('grep', args, { env: { ...process.env, LC_ALL: 'C' }, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let err = '';
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('close', (status) => {
      try {
        resolve(grepOutput(status, Buffer.concat(out), err));
      } catch (error) {
        reject(error as Error);
      }
    });
  });
}

/** `files` in `parts` groups of about the same bytes on disk (what grep reads of them), largest first. */
export function splitByBytes(files: { file: string; onDisk: number }[], parts: number): string[][] {
  const groups = Array.from({ length: parts }, () => ({ files: [] as string[], onDisk: 0 }));
  for (const { file, onDisk } of [...files].sort((x, y) => y.onDisk - x.onDisk)) {
    const lightest = groups.reduce((x, y) => (y.onDisk < x.onDisk ? y : x));
    lightest.files.push(file);
    lightest.onDisk += onDisk;
  }
  return groups.map((g) => g.files).filter((g) => g.length > 0);
}

/** GNU grep -F -z over every pattern of `secrets` at once (the pattern file lives in the 0700 `workDir`). */
function grepper(workDir: string) {
  const patternFile = join(workDir, 'patterns');
  /** Runs each argument list's grep at once, with the pattern file there only while they run. */
  const run = async (secrets: Secret[], argLists: string[][]) => {
    const byPattern = new Map<string, { secret: Secret; encoding: string }>();
    const lines: Buffer[] = [];
    for (const secret of secrets)
      for (const { encoding, pattern } of patternsOf(secret.value)) {
        byPattern.set(pattern.toString('latin1'), { secret, encoding });
        lines.push(pattern, Buffer.from('\n'));
      }
    if (lines.length === 0) return { stdout: Buffer.alloc(0), byPattern };
    const patterns = Buffer.concat(lines);
    writeFileSync(patternFile, patterns, { mode: 0o600 });
    try {
      const outputs = await Promise.all(argLists.map((args) => grep(['-F', '-z', '-f', patternFile, ...args])));
      return { stdout: Buffer.concat(outputs), byPattern };
    } finally {
      // The secrets' encodings, overwritten and gone: not left for the record's own reading (readRecord).
      writeFileSync(patternFile, Buffer.alloc(patterns.length));
      rmSync(patternFile);
      patterns.fill(0);
    }
  };
  return {
    /** Files (grep -l --null) with any pattern: one grep per argument list, all at once. */
    files: async (secrets: Secret[], argLists: string[][]) =>
      (await run(secrets, argLists)).stdout.toString('latin1').split('\0').filter(Boolean),
    /** The secrets (and encodings) whose patterns grep -o printed (NUL-terminated, by -z), each once. */
    matches: async (secrets: Secret[], args: string[]) => {
      const { stdout, byPattern } = await run(secrets, [args]);
      const seen = new Set(stdout.toString('latin1').split('\0').filter(Boolean));
      return [...seen].flatMap((m) => {
        const what = byPattern.get(m);
        return what ? [what] : [];
      });
    },
  };
}

/**
 * A key file: nothing but one secret (raw, or hex with an optional newline), as an operator hands it to
 * `--key-file` and as tests do. Where a key is meant to be; it must be 0600 like any secret file.
 */
function isKeyFile(path: string, secrets: Set<string>): boolean {
  let st;
  try {
    st = statSync(path);
  } catch {
    return false;
  }
  if (st.size < 16 || st.size > 1025) return false;
  const content = readFileSync(path);
  const text = content.toString('latin1').trim();
  return secrets.has(content.toString('hex')) || (/^[0-9a-fA-F]+$/.test(text) && secrets.has(text.toLowerCase()));
}

/**
 * Scans `roots` for `secrets`; `workDir` (0700, the record's) holds the pattern file while grep runs. The
 * pass over every file runs one grep per core (`jobs`), the files split by their bytes on disk: with
 * thousands of random binary patterns grep reads ~30 MB/s, and a whole run leaves ~1 GB on disk.
 */
export async function scan(
  roots: string[],
  secrets: Secret[],
  workDir: string,
  options: { sourceRoots?: string[]; jobs?: number } = {},
): Promise<ScanResult> {
  const files = walk(roots);
  const searched = searchable([...secrets, ...harvestMediaKeys(files)]);
  const grep = grepper(workDir);
  // A value written in the project's own source is a test constant, not a key the run generated.
  const literal = new Set(
    (options.sourceRoots ?? []).length === 0
      ? []
      : (
          await grep.matches(searched.kept, [
            '-r',
            '-o',
            '-h',
            '--include=*.ts',
            '--include=*.cc',
            '--include=*.h',
            ...options.sourceRoots!,
          ])
        ).map((m) => m.secret.value.toString('hex')),
  );
  const kept = searched.kept.filter((s) => !literal.has(s.value.toString('hex')));
  const skipped = searched.skipped + literal.size;
  const hexes = new Set(kept.map((s) => s.value.toString('hex')));
  const keyFiles = new Set(files.filter((f) => !isHolder(basename(f)) && isKeyFile(f, hexes)));
  const scanned = files.filter((f) => !isHolder(basename(f)) && !keyFiles.has(f));
  // One stat per file: the figures, and the bytes on disk that split the files among the greps.
  const sized: { file: string; onDisk: number }[] = [];
  const bytes = { apparent: 0, allocated: 0 };
  for (const file of scanned) {
    try {
      const st = statSync(file);
      bytes.apparent += st.size;
      bytes.allocated += st.blocks * 512;
      sized.push({ file, onDisk: st.blocks * 512 });
    } catch {
      // removed meanwhile
    }
  }

  const looseModes: ScanResult['looseModes'] = [];
  const checked = new Set<string>();
  for (const file of [...files.filter(holdsSecretsOrState), ...keyFiles]) {
    checked.add(file);
    // An emulated drive's image sits next to its state file and is created 0600 too.
    if (file.endsWith('.state') && existsSync(file.slice(0, -'.state'.length))) checked.add(file.slice(0, -6));
  }
  for (const file of checked) {
    try {
      const mode = statSync(file).mode & 0o777;
      if (mode & 0o077) looseModes.push({ file, mode: mode.toString(8).padStart(4, '0') });
    } catch {
      // removed meanwhile
    }
  }

  const hits: Hit[] = [];
  if (kept.length > 0 && sized.length > 0) {
    const groups = splitByBytes(sized, options.jobs ?? availableParallelism());
    const withHits = await grep.files(
      kept,
      groups.map((files) => ['-l', '--null', '-D', 'skip', '--', ...files]),
    );
    for (const file of withHits)
      for (const { secret, encoding } of await grep.matches(kept, ['-o', '--', file]))
        hits.push({
          file,
          source: secret.source,
          encoding,
          fingerprint: createHash('sha256').update(secret.value).digest('hex').slice(0, 12),
        });
  }
  for (const s of kept) s.value.fill(0);
  for (const s of searched.kept) s.value.fill(0);
  return {
    secrets: kept.length,
    skipped,
    filesScanned: scanned.length,
    keyFiles: keyFiles.size,
    bytes,
    hits,
    looseModes,
    modesChecked: checked.size,
  };
}
