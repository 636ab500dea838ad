/**
 * `npm run fuzz`: every target at its full count (over a million mutated PyKMIP frames through the
 * TTLV decoder and again through the client's response handling), or with `--quick` the bounded
 * counts of the suite. Prints the counts per target and a total; exits 1 on any crash or hang.
 *
 *   node dist/test/fuzz/run.js [--quick] [--seed N] [--scale F] [--native] [target...]
 *
 * `--native` keeps the targets that reach C++ (what `npm run fuzz:native` runs under ASan+UBSan);
 * `--scale` multiplies every count. A failing input is replayed with the same seed (its index is printed).
 */
import { writeSync } from 'node:fs';
import { testAddonPath } from '../support/addon.js';
import { formatCounts, runTarget, type TargetCounts } from './runner.js';
import { QUICK_COUNTS } from './quick.js';

// The targets that reach the host stack through scripted TPers need the test addon's seams.
process.env.KMIP_AGENT_ADDON ??= testAddonPath();
const { TARGETS } = await import('./targets.js');

const args = process.argv.slice(2);
const flag = (name: string) => args.includes(name);
const option = (name: string) => {
  const at = args.indexOf(name);
  return at >= 0 ? args[at + 1] : undefined;
};
const seed = Number(option('--seed') ?? Math.floor(Math.random() * 2 ** 31));
const scale = Number(option('--scale') ?? 1);
const named = args.filter((a, i) => !a.startsWith('--') && !['--seed', '--scale'].includes(args[i - 1] ?? ''));
const targets = TARGETS.filter(
  (t) => (named.length === 0 || named.includes(t.name)) && (!flag('--native') || t.native),
);

console.log(`fuzz: seed ${seed}${flag('--quick') ? ' (quick)' : ''}; replay with --seed ${seed}`);
const all: TargetCounts[] = [];
for (const target of targets) {
  const count = Math.max(1, Math.round((flag('--quick') ? QUICK_COUNTS[target.name]! : target.fullCount) * scale));
  const counts = await runTarget(
    target,
    seed,
    count,
    (done) => {
      if (!flag('--quick') && done % 100_000 === 0) console.log(`  ${target.name}: ${done}/${count}`);
    },
    (index, ms) => {
      // A stuck input is a hang that will not end: say which, and fail the run instead of waiting forever.
      // Written synchronously, then SIGKILL: exit() would wait for the stuck native worker thread.
      writeSync(
        1,
        `fuzz: ${target.name} input #${index} still running after ${(ms / 1000).toFixed(0)} s: a hang; ` +
          `replay with --seed ${seed} (it is input #${index} of every run with that seed)\n`,
      );
      process.kill(process.pid, 'SIGKILL');
    },
  );
  console.log(formatCounts(counts));
  all.push(counts);
}
const sum = (key: 'inputs' | 'valid' | 'typed' | 'crashes' | 'hangs') => all.reduce((n, c) => n + c[key], 0);
const slowest = all.reduce((a, c) => (c.slowest.ms > a.slowest.ms ? c : a), all[0]!);
console.log(
  `fuzz total: ${sum('inputs')} inputs, ${sum('valid')} valid, ${sum('typed')} typed errors, ${sum('crashes')} crashes, ` +
    `${sum('hangs')} hangs; slowest input: ${slowest.target} #${slowest.slowest.index} ${slowest.slowest.ms.toFixed(2)} ms`,
);
const kmipFrames = all
  .filter((c) => c.target.startsWith('ttlv') || c.target.startsWith('kmip'))
  .reduce((n, c) => n + c.inputs, 0);
if (kmipFrames > 0)
  console.log(`fuzz: ${kmipFrames} mutated PyKMIP frames through the TTLV decoder and the client's response handling`);
process.exitCode = sum('crashes') + sum('hangs') === 0 && sum('inputs') === sum('valid') + sum('typed') ? 0 : 1;
