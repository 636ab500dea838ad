/**
 * Bench: boot unlock and the daemon's footprint, on one appliance of emulated drives enrolled
 * against a real PyKMIP server (the daemon-e2e harness: real CLI and daemon processes).
 * - daemon start to its last drive unlocked (DRIVES drives) vs the floor: a minimal script doing one
 *   TLS handshake, one batched Get and a plain unlock loop (bench/floor-unlock.ts `batched`), and vs
 *   the per-key pattern (a connection and a Get per key, drive after drive: `per-key`);
 * - the daemon's RSS with DRIVES drives unlocked vs an idle bare `node -e` process;
 * - start to READY with no drives vs `node -e ''` running to its exit.
 * Drives are power-cycled (locked again) before each measured run; setup and enrollment are not timed.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Appliance, exitOf, type DaemonProcess } from '../../test/support/daemon-harness.js';
import { ensureFreshBundle } from '../../test/support/fresh-bundle.js';
import { startPykmip } from '../../test/support/pykmip.js';
import type { BenchOptions, BenchReport } from '../run.js';
import { packageRoot } from '../../src/native/addon.js';

const FLOOR_SCRIPT = join(packageRoot(), 'dist', 'bench', 'floor-unlock.js');
const BOOT_TIMEOUT_MS = 600_000;
const GROUP = 8;

/** Locks every drive again (a power cycle), a group of CLI processes at a time. */
async function powerCycle(app: Appliance): Promise<void> {
  for (let i = 0; i < app.devices.length; i += GROUP) await app.powerCycle(app.devices.slice(i, i + GROUP));
}

function rssKiB(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8')
    .split('\n')
    .find((l) => l.startsWith('VmRSS:'));
  if (!line) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(line.split(/\s+/)[1]);
}

/**
 * The RSS of `pid` once `ms` of idle have passed: the daemon as it stays on an appliance (the reading an
 * operator gets a minute after boot, not the lowest dip). At READY it still holds the boot's garbage (a young
 * generation grown during the unlock burst, ~10 MiB with 64 drives), which V8's memory reducer returns some
 * 20-45 s into the idle daemon; the idle bare node has none to return.
 */
async function settledRssKiB(pid: number, ms: number): Promise<number> {
  await new Promise((resolve) => setTimeout(resolve, ms));
  return rssKiB(pid);
}

/** Runs a process to its exit; resolves to its wall time in seconds (start to exit), failing on exit != 0. */
function timedRun(args: string[]): Promise<number> {
  const started = performance.now();
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  return new Promise((resolve, reject) =>
    child.once('exit', (code) =>
      code === 0
        ? resolve((performance.now() - started) / 1000)
        : reject(new Error(`node ${args.join(' ')} exited ${code}: ${stderr}`)),
    ),
  );
}

/** Daemon start until its `ready` log line; the daemon is left running for the caller. */
async function bootToReady(app: Appliance): Promise<{ daemon: DaemonProcess; seconds: number }> {
  const started = performance.now();
  const daemon = app.daemon(undefined);
  await daemon.waitForLog((l) => l.event === 'ready', BOOT_TIMEOUT_MS);
  return { daemon, seconds: (performance.now() - started) / 1000 };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

export async function run(options: BenchOptions): Promise<BenchReport> {
  ensureFreshBundle(); // the daemon measured is the shipped bundle, as built from this dist/src
  const drives = options.quick ? 3 : 64;
  const rounds = options.quick ? 1 : 2;
  const settleS = options.quick ? 3 : 60;
  const root = mkdtempSync(join(tmpdir(), 'kmip-agent-bench-boot-'));
  const ramDir = process.env.KMIP_AGENT_EMU_RAM_DIR;
  process.env.KMIP_AGENT_EMU_RAM_DIR = root; // the emulated drives' volatile RAM files stay in this run's directory
  const kmip = await startPykmip();
  try {
    const app = new Appliance('bench', root);
    await app.setup(kmip, kmip);
    // In groups: 64 CLI processes at once overrun the harness's per-command timeout on 2 cores.
    for (let made = 0; made < drives; made += GROUP) await app.createDrives(Math.min(GROUP, drives - made));
    for (let i = 0; i < drives; i += GROUP) await app.enroll(app.devices.slice(i, i + GROUP));
    const info = join(root, 'pykmip.json');
    writeFileSync(info, JSON.stringify({ ...kmip, pki: undefined, stop: undefined }));
    const pairs = app.devices.map((d) => `${d}=${app.enrolled.get(d)!.keyUid}`);

    const daemonTimes: number[] = [];
    let rss = 0;
    let rssAtReady = 0;
    for (let i = 0; i < rounds; i++) {
      await powerCycle(app);
      const { daemon, seconds } = await bootToReady(app);
      const unlocked = daemon.events('unlock').filter((l) => l.result === 'unlocked').length;
      if (unlocked !== drives) throw new Error(`the daemon unlocked ${unlocked} of ${drives} drives`);
      daemonTimes.push(seconds);
      rssAtReady = Math.max(rssAtReady, rssKiB(daemon.pid));
      rss = Math.max(rss, await settledRssKiB(daemon.pid, settleS * 1000));
      await daemon.stop();
    }
    const floorTimes: number[] = [];
    const perKeyTimes: number[] = [];
    for (let i = 0; i < rounds; i++) {
      await powerCycle(app);
      floorTimes.push(await timedRun([FLOOR_SCRIPT, 'batched', info, ...pairs]));
      await powerCycle(app);
      perKeyTimes.push(await timedRun([FLOOR_SCRIPT, 'per-key', info, ...pairs]));
    }

    // Idle bare node: RSS once it has started and printed.
    const idle = spawn(process.execPath, ['-e', "console.log('up'); setInterval(() => {}, 1e9)"], {
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    await new Promise<void>((resolve) => idle.stdout.once('data', () => resolve()));
    const idleRss = rssKiB(idle.pid!);
    idle.kill();

    // Start to READY with no drives, vs node -e '' to its exit.
    const empty = new Appliance('bench-empty', root);
    await empty.setup(kmip, kmip);
    const readyTimes: number[] = [];
    const bareTimes: number[] = [];
    for (let i = 0; i < rounds + 2; i++) {
      const { daemon, seconds } = await bootToReady(empty);
      readyTimes.push(seconds);
      await daemon.stop();
      await exitOf(daemon);
      bareTimes.push(await timedRun(['-e', '']));
    }

    const daemonS = median(daemonTimes);
    return {
      part: 'boot-unlock',
      lines: [
        {
          name: `boot unlock of ${drives} emulated drives: daemon start to last drive unlocked (READY)`,
          value: daemonS,
          unit: 's',
          better: 'lower',
          baseline: {
            name: 'floor: one TLS handshake + one batched Get + a plain unlock loop',
            value: median(floorTimes),
          },
          target: 1 / 1.3,
        },
        {
          name: `boot unlock of ${drives} emulated drives vs the per-key pattern`,
          value: daemonS,
          unit: 's',
          better: 'lower',
          baseline: { name: 'a TLS connection and a Get per key, drive after drive', value: median(perKeyTimes) },
          target: 5,
        },
        {
          name: `daemon RSS with ${drives} drives unlocked, settled (${settleS} s after READY)`,
          value: rss / 1024,
          unit: 'MiB',
          better: 'lower',
          baseline: { name: 'idle bare node -e process', value: idleRss / 1024 },
          target: 1 / 1.6,
        },
        {
          name: 'daemon start to READY, no drives',
          value: median(readyTimes),
          unit: 's',
          better: 'lower',
          baseline: { name: "node -e '' start to exit", value: median(bareTimes) },
          target: 1 / 3,
        },
      ],
      notes: [
        `medians of ${rounds} rounds (${rounds + 2} for start to READY); PyKMIP 0.10 on loopback is the key server`,
        'the floor and per-key scripts are node processes too (their start and module load are in their times)',
        `daemon RSS at READY, before V8 returns the boot's garbage: ${(rssAtReady / 1024).toFixed(1)} MiB`,
      ],
    };
  } finally {
    await kmip.stop();
    rmSync(root, { recursive: true, force: true });
    if (ramDir === undefined) delete process.env.KMIP_AGENT_EMU_RAM_DIR;
    else process.env.KMIP_AGENT_EMU_RAM_DIR = ramDir;
  }
}
