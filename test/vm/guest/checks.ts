/**
 * Runs inside the VM: how a step reports. Each check appends one JSON line to /results/checks.jsonl
 * (the host turns each into a vitest test) and one line to the serial console, so a boot that dies
 * halfway still leaves what it had proven.
 */
import { spawnSync } from 'node:child_process';
import { appendFileSync, readFileSync } from 'node:fs';

const RESULTS = process.env.KMIP_VM_RESULTS ?? '/results/checks.jsonl';
const CONSOLE = '/dev/ttyS0';

export class CheckFailed extends Error {}

let currentStep = '';
export function setStep(step: string): void {
  currentStep = step;
}

function record(check: string, ok: boolean, evidence: string, ms: number): void {
  const uptime = Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]);
  appendFileSync(RESULTS, `${JSON.stringify({ check, ok, evidence, step: currentStep, ms, uptime })}\n`);
  try {
    appendFileSync(CONSOLE, `kmip-vm: ${ok ? 'PASS' : 'FAIL'} ${check} (${ms} ms, at ${uptime} s)\n`);
  } catch {
    // no serial console (the guest code run elsewhere): the results file is what counts
  }
}

/** Runs one check: `body` returns its evidence or throws (CheckFailed or anything else) with it. */
export async function check(name: string, body: () => string | Promise<string>): Promise<boolean> {
  const started = Date.now();
  try {
    record(name, true, await body(), Date.now() - started);
    return true;
  } catch (error) {
    record(name, false, error instanceof Error ? (error.stack ?? error.message) : String(error), Date.now() - started);
    return false;
  }
}

/** Fails the current check with `why` unless `condition` holds. */
export function expectThat(condition: boolean, why: string): void {
  if (!condition) throw new CheckFailed(why);
}

export interface Ran {
  status: number | null;
  stdout: string;
  stderr: string;
  /** `$ argv` and its output, for evidence. */
  shown: string;
}

const ENV = { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C.UTF-8' };

/** Runs a command (stdin from `input`) and returns what it did; never throws. */
export function run(argv: string[], input?: Buffer | string, timeoutMs = 120_000): Ran {
  const r = spawnSync(argv[0]!, argv.slice(1), {
    encoding: 'utf8',
    env: ENV,
    timeout: timeoutMs,
    ...(input === undefined ? {} : { input }),
  });
  const stdout = r.stdout ?? '';
  const stderr = `${r.stderr ?? ''}${r.error ? String(r.error) : ''}`;
  const shown = `$ ${argv.join(' ')} -> ${r.status}\n${stdout}${stderr}`.trim();
  return { status: r.status, stdout, stderr, shown };
}

/** Runs a command that must succeed, returning its output; throws CheckFailed with it otherwise. */
export function must(argv: string[], input?: Buffer | string, timeoutMs?: number): Ran {
  const r = run(argv, input, timeoutMs);
  if (r.status !== 0) throw new CheckFailed(r.shown);
  return r;
}

/** `systemctl show` properties of a unit. */
export function unitProps(unit: string, props: string[]): Record<string, string> {
  const r = run(['systemctl', 'show', unit, ...props.flatMap((p) => ['-p', p])]);
  return Object.fromEntries(
    r.stdout
      .split('\n')
      .filter((l) => l.includes('='))
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );
}
