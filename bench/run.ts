/**
 * `npm run bench`: runs every part in bench/parts (each exports `run(options): Promise<BenchReport>`),
 * prints each figure against a baseline measured in the same run, and writes bench/results.json and
 * the chart bench/results.svg (bench/chart.ts). Never used as a test assertion on timing.
 *
 *   node dist/bench/run.js [--quick] [--out DIR] [part-prefix]
 *
 * `--quick` runs every part bounded (small counts, short windows); it and a run of some parts only write
 * to --out (default: a temp directory, so the committed results are only ever a full run's).
 *
 * Each part runs in a process of its own (this script with `--part FILE --report PATH`): a part's figures
 * then do not depend on the parts before it (the TTLV codec measured after the client part, in the same
 * heap and with the JIT's state that left, came out at 70-88k messages/s instead of 120k+ alone).
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { renderChart } from './chart.js';

export interface BenchOptions {
  /** Bounded run (the suite's): small counts, short windows; figures are not meaningful. */
  quick: boolean;
}

export interface BenchLine {
  /** What was measured, e.g. "TTLV encode+decode of a Get response". */
  name: string;
  value: number;
  unit: string;
  /** Rates are better higher, times and memory lower: the ratio is turned so that it reads higher-is-better. */
  better: 'higher' | 'lower';
  /** Baseline measured in the same run (or, where the issue names an absolute aim, that aim, said in its name). */
  baseline: { name: string; value: number };
  /** The ratio the issue asks for (higher-is-better, like `ratio`). */
  target?: number;
}

export interface BenchReport {
  part: string;
  lines: BenchLine[];
  notes?: string[];
}

export interface BenchPart {
  run(options: BenchOptions): Promise<BenchReport>;
}

/** One row of bench/results.json. */
export interface BenchResult {
  part: string;
  name: string;
  value: number;
  unit: string;
  baselineName: string;
  baselineValue: number;
  /** ours/baseline for rates, baseline/ours for times and memory: 0.77 means "within 1.3x of the baseline". */
  ratio: number;
  target: number | null;
  met: boolean | null;
}

export function ratioOf(line: BenchLine): number {
  return line.better === 'higher' ? line.value / line.baseline.value : line.baseline.value / line.value;
}

function toResult(part: string, line: BenchLine): BenchResult {
  const ratio = ratioOf(line);
  return {
    part,
    name: line.name,
    value: line.value,
    unit: line.unit,
    baselineName: line.baseline.name,
    baselineValue: line.baseline.value,
    ratio,
    target: line.target ?? null,
    met: line.target === undefined ? null : ratio >= line.target,
  };
}

const figure = (v: number) => (Math.abs(v) >= 100 ? v.toFixed(0) : v.toPrecision(3));

function format(report: BenchReport): string {
  const out = [`## ${report.part}`];
  for (const line of report.lines) {
    const r = toResult(report.part, line);
    const target = r.target === null ? '' : ` (target ${r.target.toFixed(2)}: ${r.met ? 'met' : 'MISSED'})`;
    out.push(
      `  ${line.name}: ${figure(line.value)} ${line.unit} | ${line.baseline.name}: ${figure(line.baseline.value)} ${line.unit} | ratio ${r.ratio.toFixed(2)}${target}`,
    );
  }
  for (const note of report.notes ?? []) out.push(`  note: ${note}`);
  return out.join('\n');
}

/** `--part FILE --report PATH`: runs that one part here and writes its report to PATH as JSON. */
async function runOnePart(file: string, reportPath: string, quick: boolean): Promise<void> {
  const part = (await import(pathToFileURL(file).href)) as BenchPart;
  writeFileSync(reportPath, JSON.stringify(await part.run({ quick })));
}

/** Runs one part in a child process (see the top); rejects with its exit when it fails. */
async function partInChild(file: string, quick: boolean, scratch: string): Promise<BenchReport> {
  const reportPath = join(scratch, `${file.split('/').at(-1)}.json`);
  const args = [fileURLToPath(import.meta.url), '--part', file, '--report', reportPath, ...(quick ? ['--quick'] : [])];
  const code = await new Promise<number | null>((resolve, reject) => {
    const child = spawn(process.execPath, args, { stdio: 'inherit' });
    child.on('error', reject);
    child.on('exit', (c, signal) => resolve(signal ? null : c));
  });
  if (code !== 0) throw new Error(`the part's process ended with ${code === null ? 'a signal' : `exit ${code}`}`);
  return JSON.parse(readFileSync(reportPath, 'utf8')) as BenchReport;
}

async function main(): Promise<void> {
  const here = dirname(fileURLToPath(import.meta.url));
  const args = process.argv.slice(2);
  const quick = args.includes('--quick');
  const partAt = args.indexOf('--part');
  if (partAt >= 0) return runOnePart(args[partAt + 1]!, args[args.indexOf('--report') + 1]!, quick);
  const outAt = args.indexOf('--out');
  const only = args.find((a, i) => !a.startsWith('--') && args[i - 1] !== '--out');
  // Only a full run of every part replaces the committed results; a quick or a filtered one goes elsewhere.
  const out =
    outAt >= 0
      ? args[outAt + 1]!
      : quick || only !== undefined
        ? mkdtempSync(join(tmpdir(), 'kmip-agent-bench-'))
        : join(here, '..', '..', 'bench');
  const dir = join(here, 'parts');
  const files = readdirSync(dir)
    .filter((f) => f.endsWith('.js'))
    .filter((f) => only === undefined || f.startsWith(only))
    .sort();
  let failed = 0;
  const results: BenchResult[] = [];
  const notes: Record<string, string[]> = {};
  const scratch = mkdtempSync(join(tmpdir(), 'kmip-agent-bench-parts-'));
  for (const file of files) {
    try {
      const report = await partInChild(join(dir, file), quick, scratch);
      console.log(format(report));
      results.push(...report.lines.map((l) => toResult(report.part, l)));
      notes[report.part] = report.notes ?? [];
    } catch (error) {
      failed++;
      console.log(`## ${file}: failed: ${(error as Error).stack ?? String(error)}`);
    }
  }
  rmSync(scratch, { recursive: true, force: true });
  mkdirSync(out, { recursive: true });
  const document = { quick, date: new Date().toISOString(), node: process.version, results, notes };
  writeFileSync(join(out, 'results.json'), JSON.stringify(document, null, 2) + '\n');
  writeFileSync(join(out, 'results.svg'), renderChart(results));
  console.log(
    `bench: ${results.length} figures from ${files.length - failed}/${files.length} parts -> ${join(out, 'results.json')}`,
  );
  process.exitCode = failed > 0 ? 1 : 0;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await main();
