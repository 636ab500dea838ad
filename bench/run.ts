/**
 * `npm run bench`: runs every part in bench/parts (each exports `run(): Promise<BenchReport>`)
 * and prints ratios against a baseline measured in the same run. Never used as a test assertion.
 */
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export interface BenchLine {
  /** What was measured, e.g. "TTLV encode+decode of a Get response". */
  name: string;
  /** Operations per second (or another rate; `unit` says which). */
  value: number;
  unit: string;
  /** Baseline measured in the same run, and the ratio value/baseline. */
  baseline?: { name: string; value: number };
}

export interface BenchReport {
  part: string;
  lines: BenchLine[];
  notes?: string[];
}

export interface BenchPart {
  run(): Promise<BenchReport>;
}

function format(report: BenchReport): string {
  const out = [`## ${report.part}`];
  for (const line of report.lines) {
    let text = `  ${line.name}: ${line.value.toFixed(1)} ${line.unit}`;
    if (line.baseline) {
      const ratio = line.value / line.baseline.value;
      text += ` | baseline ${line.baseline.name}: ${line.baseline.value.toFixed(1)} ${line.unit} | ratio ${ratio.toFixed(2)}x`;
    }
    out.push(text);
  }
  for (const note of report.notes ?? []) out.push(`  note: ${note}`);
  return out.join('\n');
}

async function main(): Promise<void> {
  const dir = join(dirname(fileURLToPath(import.meta.url)), 'parts');
  const only = process.argv[2];
  const files = readdirSync(dir)
    .filter((f) => f.endsWith('.js'))
    .filter((f) => only === undefined || f.startsWith(only))
    .sort();
  let failed = 0;
  for (const file of files) {
    try {
      const part = (await import(pathToFileURL(join(dir, file)).href)) as BenchPart;
      console.log(format(await part.run()));
    } catch (error) {
      failed++;
      console.log(`## ${file}: failed: ${(error as Error).stack ?? String(error)}`);
    }
  }
  process.exitCode = failed > 0 ? 1 : 0;
}

await main();
