/**
 * The daemon end-to-end harness (shared by daemon-e2e and jobs): the real CLI and daemon processes
 * (dist/kmip-agent.mjs, as shipped) in temp config/state/runtime directories, a daemon's JSON log lines with bounded
 * waits on them, an appliance with emulated drives, and block reads/writes through `drive read/write`.
 * Those drive operations (and creating and power-cycling the drives) run in this process, through the
 * library calls the `drive emulate` and `drive read/write` commands wrap (test/emulator/cli.test.ts tests
 * the commands): a CLI process for each would cost a node start per drive and call, most of some suites' time.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, expect } from 'vitest';
import { packageRoot } from '../../src/native/addon.js';
import type { NotifyReceiver } from './notify-receiver.js';
import { pykmipCliArgs, startPykmip, type PykmipServer } from './pykmip.js';
import {
  createEmulatedDrive,
  emulatedImagePath,
  powerCycleEmulatedDrive,
  readEmulatedDrive,
  writeEmulatedDrive,
} from '../../src/drives/emulator.js';

/** Every daemon started through an Appliance (the suite kills what is left after each test). */
export const running = new Set<DaemonProcess>();

export const CLI = join(packageRoot(), 'dist', 'kmip-agent.mjs');
export const COMMAND_TIMEOUT_MS = 60_000;

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the CLI in a child process (the daemon under test is another process) and waits for it. */
export function cli(args: string[]): Promise<Run> {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`kmip-agent ${args.join(' ')} did not finish within ${COMMAND_TIMEOUT_MS} ms\n${stderr}`));
    }, COMMAND_TIMEOUT_MS);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout, stderr });
    });
  });
}

/** Runs the CLI and insists on exit 0. */
export async function ok(args: string[]): Promise<Run> {
  const run = await cli(args);
  if (run.code !== 0) throw new Error(`kmip-agent ${args.join(' ')} exited ${run.code}\n${run.stderr}\n${run.stdout}`);
  return run;
}

export type LogLine = Record<string, unknown> & { event?: string; msg?: string };

/** A `kmip-agent daemon` process: its JSON log lines, its exit, and a bounded wait on either. */
export class DaemonProcess {
  readonly lines: LogLine[] = [];
  stderr = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private readonly waiters = new Set<() => void>();
  private exitedAlready = false;

  constructor(private readonly child: ChildProcessWithoutNullStreams) {
    let buffered = '';
    child.stdout.on('data', (chunk: Buffer) => {
      buffered += chunk.toString();
      let newline: number;
      while ((newline = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        try {
          this.lines.push(JSON.parse(line) as LogLine);
        } catch {
          this.lines.push({ msg: line, event: 'not-json' });
        }
        for (const wake of [...this.waiters]) wake();
      }
    });
    child.stderr.on('data', (c: Buffer) => (this.stderr += c.toString()));
    this.exited = new Promise((resolve) =>
      child.once('exit', (code, signal) => {
        this.exitedAlready = true;
        for (const wake of [...this.waiters]) wake();
        resolve({ code, signal });
      }),
    );
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** The first log line (from index `from` on) that `match` accepts. */
  waitForLog(match: (line: LogLine) => boolean, timeoutMs = 30_000, from = 0): Promise<LogLine> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const found = this.lines.slice(from).find(match);
        if (found) {
          done();
          resolve(found);
        } else if (this.exitedAlready) {
          done();
          reject(new Error(`the daemon exited before the awaited log line\n${this.describe()}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`no awaited log line within ${timeoutMs} ms\n${this.describe()}`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
      check();
    });
  }

  events(name: string): LogLine[] {
    return this.lines.filter((l) => l.event === name);
  }

  /** SIGTERM and the exit it leads to (SIGKILL and a failure after the timeout). */
  async stop(timeoutMs = 20_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.exitedAlready) return this.exited;
    this.child.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        this.child.kill('SIGKILL');
        reject(new Error(`the daemon did not exit within ${timeoutMs} ms of SIGTERM\n${this.describe()}`));
      }, timeoutMs);
    });
    try {
      return await Promise.race([this.exited, late]);
    } finally {
      clearTimeout(timer);
    }
  }

  kill(): void {
    if (!this.exitedAlready) this.child.kill('SIGKILL');
  }

  private describe(): string {
    return `--- log ---\n${this.lines.map((l) => JSON.stringify(l)).join('\n')}\n--- stderr ---\n${this.stderr}`;
  }
}

/** Waits for a process exit, bounded. */
export async function exitOf(daemon: DaemonProcess, timeoutMs = 30_000) {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      daemon.exited,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no exit within ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** One appliance: its config, state and runtime directories and emulated drives, under one temp dir. */
export class Appliance {
  readonly base: string;
  readonly configDir: string;
  readonly stateDir: string;
  runtimeDir: string;
  readonly devices: string[] = [];
  /** Drive id and key UID per device, as `drive enroll --json` reported them. */
  readonly enrolled = new Map<string, { id: string; keyUid: string }>();

  constructor(
    readonly applianceId: string,
    root: string,
  ) {
    this.base = mkdtempSync(join(root, `${applianceId}-`));
    this.configDir = join(this.base, 'etc');
    this.stateDir = join(this.base, 'var');
    this.runtimeDir = join(this.base, 'run');
  }

  dirArgs(overrides: { state?: string; runtime?: string } = {}): string[] {
    return [
      '--config-dir',
      this.configDir,
      '--state-dir',
      overrides.state ?? this.stateDir,
      '--runtime-dir',
      overrides.runtime ?? this.runtimeDir,
    ];
  }

  async setup(server: { host: string; port: number }, kmip: PykmipServer): Promise<void> {
    await ok(['setup', '--appliance-id', this.applianceId, ...pykmipCliArgs(kmip, server), ...this.dirArgs()]);
  }

  /** Creates `count` factory-fresh emulated drives (16 MiB, serial `<APPLIANCE-ID>-<n>`). */
  async createDrives(count: number): Promise<string[]> {
    mkdirSync(join(this.base, 'drives'), { recursive: true });
    const first = this.devices.length;
    const fresh = Array.from({ length: count }, (_, i) => `emu:${join(this.base, 'drives', `d${first + i}.img`)}`);
    await Promise.all(
      fresh.map((device, i) =>
        createEmulatedDrive(imageOf(device), 16, `${this.applianceId.toUpperCase()}-${first + i}`),
      ),
    );
    this.devices.push(...fresh);
    return fresh;
  }

  async enroll(devices: string[] = this.devices): Promise<void> {
    const run = await ok(['drive', 'enroll', ...devices, ...this.dirArgs(), '--json']);
    const { enrolled } = JSON.parse(run.stdout) as { enrolled: { id: string; device: string; keyUid: string }[] };
    for (const e of enrolled) this.enrolled.set(e.device, { id: e.id, keyUid: e.keyUid });
    expect(enrolled.map((e) => e.device)).toEqual(devices);
  }

  /** Power loss and return: the drives' LockOnReset ranges relock. */
  async powerCycle(devices: string[] = this.devices): Promise<void> {
    await Promise.all(devices.map((d) => powerCycleEmulatedDrive(imageOf(d))));
  }

  /** `kmip-agent daemon` with NOTIFY_SOCKET pointing at `notify`. */
  daemon(
    notify: NotifyReceiver | undefined,
    extra: string[] = [],
    dirs: { state?: string; runtime?: string } = {},
    extraEnv: Record<string, string> = {},
  ) {
    const env = { ...process.env };
    delete env.NOTIFY_SOCKET;
    delete env.WATCHDOG_USEC;
    delete env.WATCHDOG_PID;
    if (notify) env.NOTIFY_SOCKET = notify.address;
    Object.assign(env, extraEnv);
    const child = spawn(process.execPath, [CLI, 'daemon', ...this.dirArgs(dirs), ...extra], { env });
    const daemon = new DaemonProcess(child);
    running.add(daemon);
    return daemon;
  }

  async status(): Promise<StatusJson> {
    return JSON.parse((await ok(['status', '--json', ...this.dirArgs()])).stdout) as StatusJson;
  }

  async health(): Promise<{ code: number; health: string; faults: string[] }> {
    const run = await cli(['health', '--json', ...this.dirArgs()]);
    return { code: run.code, ...(JSON.parse(run.stdout) as { health: string; faults: string[] }) };
  }

  idOf(device: string): string {
    const found = this.enrolled.get(device);
    if (!found) throw new Error(`${device} was not enrolled`);
    return found.id;
  }
}

export interface StatusJson {
  ready: boolean;
  mode: string;
  health: string;
  daemon: boolean;
  drives: { id: string; device: string; state: string; keyId: string; lastError?: { code: string } }[];
  faults: { code: string; severity: string; subject: string; affects: string[] }[];
}

function imageOf(device: string): string {
  const path = emulatedImagePath(device);
  if (path === undefined) throw new Error(`${device} is not an emulated drive (emu:<path>)`);
  return path;
}

/** Writes `data` at LBA 0 of a drive (it must be unlocked), zero-padded to whole blocks. */
export async function writeBlock(device: string, data: Buffer): Promise<void> {
  const blocks = Buffer.alloc(Math.ceil(data.length / 512) * 512);
  data.copy(blocks);
  await writeEmulatedDrive(imageOf(device), 0, blocks);
}

/**
 * Reads LBA 0 of a drive: its bytes, or the refusal of a read-locked range (EMU_DATA_PROTECT). Any other
 * failure throws: a drive that cannot be read at all is not a locked one.
 */
export async function readBlock(device: string): Promise<{ data?: Buffer; refused?: string }> {
  try {
    return { data: await readEmulatedDrive(imageOf(device), 0, 1) };
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if (code === 'EMU_DATA_PROTECT') return { refused: code };
    throw error;
  }
}

/**
 * The hooks of a daemon suite (call inside its describe): a PyKMIP server of its own and a temp root for
 * the suite, every daemon left running killed after each test, both cleaned up after the suite.
 */
export function daemonSuite(prefix: string): { kmip: () => PykmipServer; root: () => string } {
  let kmip: PykmipServer | undefined;
  let root: string | undefined;
  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), prefix));
    kmip = await startPykmip();
  });
  afterEach(async () => {
    for (const d of [...running]) d.kill();
    await Promise.all([...running].map((d) => exitOf(d).catch(() => undefined)));
    running.clear();
  });
  afterAll(async () => {
    await kmip?.stop();
    if (root) rmSync(root, { recursive: true, force: true });
  });
  return { kmip: () => kmip!, root: () => root! };
}
