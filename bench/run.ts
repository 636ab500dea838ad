/**
 * `npm run bench`: runs every part in bench/parts (each exports `run(options): Promise<BenchReport>`),
 * prints each figure against a baseline measured in the same run, and writes bench/results.json and
 * the chart bench/results.svg (bench/chart.ts). Never used as a test assertion on timing.
 *
 *   node dist/bench/run.js [--quick] [--out DIR] [part-prefix]
 *
 * `--quick` runs every part bounded (small counts, short windows) and writes to --out (default: a
 * temp directory, so the committed results are only ever a full run's).
 */
import { mkdirSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
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

async function main(): Promise<void> {
  const here = dirname(fileURLToPath(import.meta.url));
  const args = process.argv.slice(2);
  const quick = args.includes('--quick');
  const outAt = args.indexOf('--out');
  const out =
    outAt >= 0
      ? args[outAt + 1]!
      : quick
        ? mkdtempSync(join(tmpdir(), 'kmip-agent-bench-'))
        : join(here, '..', '..', 'bench');
  const only = args.find((a, i) => !a.startsWith('--') && args[i - 1] !== '--out');
  const dir = join(here, 'parts');
  const files = readdirSync(dir)
    .filter((f) => f.endsWith('.js'))
    .filter((f) => only === undefined || f.startsWith(only))
    .sort();
  let failed = 0;
  const results: BenchResult[] = [];
  const notes: Record<string, string[]> = {};
  for (const file of files) {
    try {
      const part = (await import(pathToFileURL(join(dir, file)).href)) as BenchPart;
      const report = await part.run({ quick });
      console.log(format(report));
      results.push(...report.lines.map((l) => toResult(report.part, l)));
      notes[report.part] = report.notes ?? [];
    } catch (error) {
      failed++;
      console.log(`## ${file}: failed: ${(error as Error).stack ?? String(error)}`);
    }
  }
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
