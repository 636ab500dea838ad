/**
 * Test harness: a Debian VM under QEMU (TCG; recipe in ../shared/DESIGN.md, "A real kernel for tests").
 * The image (test/vm/build-image.sh) is built once and cached under /var/cache/kmip-agent-vm/, keyed by a
 * hash of the recipe and of node's version. Each run gets a copy-on-write overlay of it (so boots of one
 * run share a disk and the cache stays pristine), data disks of its own, the checkout read-only over 9p
 * and a results directory over 9p. The guest runs the steps named on the kernel command line
 * (test/vm/guest/boot.sh), appends one JSON line per check to /results/checks.jsonl and powers off.
 * Every boot has a hard deadline: qemu is killed and the boot fails with the tail of the serial log.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { packageRoot } from '../../src/native/addon.js';
import { makeTestPki } from '../support/certs.js';
import { pykmipServerConf } from '../support/pykmip.js';

/** Where the guest sees the run's inputs, and PyKMIP's port on the guest's loopback. */
export const GUEST_INPUTS = '/vm-inputs';
export const GUEST_PYKMIP_PORT = 5696;

/** What a boot's deadline leaves the guest to report and power off after its steps are cut short. */
const GUEST_SHUTDOWN_S = 40;

const ANSI_ESCAPE = new RegExp(`${String.fromCharCode(27)}\\[[0-9;?]*[A-Za-z]`, 'g');

export const VM_CACHE_DIR = process.env.KMIP_AGENT_VM_CACHE ?? '/var/cache/kmip-agent-vm';
const RECIPE = join(packageRoot(), 'test', 'vm', 'build-image.sh');
const SETUP_HINT = 'run `sudo bash scripts/setup.sh` (it installs qemu-system-x86, qemu-utils and mmdebstrap)';

/** One check the guest reported. */
export interface GuestCheck {
  check: string;
  ok: boolean;
  /** What the guest saw (command output, states, timings). */
  evidence: string;
  /** Which boot step it came from. */
  step: string;
  /** How long the check took, and when it ended (seconds since the guest's kernel started). */
  ms: number;
  uptime: number;
}

export interface BootResult {
  checks: GuestCheck[];
  /** Wall time from qemu start to its exit. */
  wallMs: number;
  /** The guest's serial console (kernel, systemd, the scenario's own lines). */
  serial: string;
  /** Where the boot's time went (see bootBreakdown), for the test log. */
  breakdown: string;
}

/** Why the VM cannot run here, or undefined (no side effects). */
export function vmUnavailableReason(): string | undefined {
  if (process.getuid?.() !== 0) return 'building and booting the VM image needs root';
  for (const tool of ['qemu-system-x86_64', 'qemu-img', 'mmdebstrap', 'mkfs.ext4']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) return `${tool} is not installed: ${SETUP_HINT}`;
  }
  return undefined;
}

export interface VmImage {
  kernel: string;
  initrd: string;
  rootfs: string;
}

export function imageDir(): string {
  const tag = createHash('sha256').update(readFileSync(RECIPE)).update(process.version).digest('hex').slice(0, 12);
  return join(VM_CACHE_DIR, `bookworm-${tag}`);
}

/**
 * The cached image, built first when missing (~2-4 min from a Debian mirror on a quiet machine). Built
 * beside the cache entry and renamed into place by the recipe, so a partial image is never trusted;
 * under a lock, so a run that finds another's build going (scripts/test.sh starts one in the background,
 * test/vm/prepare.ts) waits for it instead of building again.
 */
export function ensureImage(): VmImage {
  const why = vmUnavailableReason();
  if (why) throw new Error(`the VM cannot run here: ${why}`);
  const dir = imageDir();
  if (!existsSync(join(dir, 'rootfs.img'))) {
    mkdirSync(VM_CACHE_DIR, { recursive: true, mode: 0o755 });
    const buildUnlessThere = 'test -e "$1/rootfs.img" || exec bash "$2" "$1"';
    const run = spawnSync(
      'flock',
      [join(VM_CACHE_DIR, '.build.lock'), 'sh', '-c', buildUnlessThere, 'build-image', dir, RECIPE],
      { encoding: 'utf8', timeout: 900_000 },
    );
    if (run.status !== 0 || !existsSync(join(dir, 'rootfs.img'))) {
      const tail = `${run.stdout}${run.stderr}${run.error ? String(run.error) : ''}`.trim().split('\n').slice(-12);
      throw new Error(`the VM image could not be built (${RECIPE}):\n${tail.join('\n')}`);
    }
  }
  return { kernel: join(dir, 'vmlinuz'), initrd: join(dir, 'initrd.img'), rootfs: join(dir, 'rootfs.img') };
}

/** A VM of one test file: an overlay disk and data disks that persist across its boots. */
export class VmRun {
  readonly dir: string;
  private readonly inputs: string;
  private readonly overlay: string;
  private readonly disks: string[] = [];
  private boots = 0;

  constructor(
    private readonly image: VmImage,
    /** Sizes in MiB of extra raw virtio disks: /dev/vdb, /dev/vdc, ... */
    diskSizesMiB: number[] = [],
  ) {
    this.dir = mkdtempSync(join(process.env.KMIP_AGENT_VM_TMP ?? tmpdir(), 'kmip-agent-vm-'));
    this.inputs = join(this.dir, 'inputs');
    writePykmipInputs(this.inputs);
    this.overlay = join(this.dir, 'root.qcow2');
    const made = spawnSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'raw', '-b', image.rootfs, this.overlay], {
      encoding: 'utf8',
    });
    if (made.status !== 0) throw new Error(`qemu-img could not make the overlay disk: ${made.stderr}`);
    diskSizesMiB.forEach((size, i) => {
      const disk = join(this.dir, `disk${i}.raw`);
      const made2 = spawnSync('truncate', ['-s', `${size}M`, disk]);
      if (made2.status !== 0) throw new Error(`cannot make data disk ${disk}`);
      this.disks.push(disk);
    });
  }

  /**
   * Boots the VM once: the guest runs `steps` in order (test/vm/guest/main.ts), reports and powers off.
   * Rejects with the serial log's tail when qemu fails or the deadline passes (qemu is killed first).
   */
  async boot(steps: string[], timeoutMs: number, extraArgs: string[] = []): Promise<BootResult> {
    this.boots += 1;
    const results = join(this.dir, `results-${this.boots}`);
    mkdirSync(results);
    const serialPath = join(this.dir, `serial-${this.boots}.log`);
    const args = [
      '-accel',
      'tcg,thread=multi',
      '-cpu',
      'max',
      '-m',
      '1536',
      '-smp',
      '2',
      '-nographic',
      '-no-reboot',
      '-nodefaults',
      '-serial',
      `file:${serialPath}`,
      '-monitor',
      'none',
      '-nic',
      'none',
      '-kernel',
      this.image.kernel,
      '-initrd',
      this.image.initrd,
      '-append',
      `root=/dev/vda rw console=ttyS0 panic=-1 quiet systemd.show_status=1 systemd.log_color=0 kmip_vm.steps=${steps.join(',')} kmip_vm.deadline=${Math.floor(timeoutMs / 1000) - GUEST_SHUTDOWN_S}`,
      '-drive',
      `file=${this.overlay},format=qcow2,if=virtio,cache=unsafe`,
      ...this.disks.flatMap((d) => ['-drive', `file=${d},format=raw,if=virtio,cache=unsafe`]),
      '-virtfs',
      `local,path=${packageRoot()},mount_tag=proj,security_model=none,readonly=on`,
      '-virtfs',
      `local,path=${this.inputs},mount_tag=inputs,security_model=none,readonly=on`,
      '-virtfs',
      `local,path=${results},mount_tag=results,security_model=none`,
      ...extraArgs,
    ];
    const started = Date.now();
    // setpriv: qemu dies with the test process, so none is ever left behind.
    const qemu = spawn('setpriv', ['--pdeathsig', 'SIGKILL', 'qemu-system-x86_64', ...args], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    qemu.stderr.on('data', (c: Buffer) => (stderr = (stderr + c.toString()).slice(-4000)));
    let timer: NodeJS.Timeout | undefined;
    const outcome = await new Promise<'exited' | 'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), timeoutMs);
      qemu.once('exit', () => resolve('exited'));
    });
    clearTimeout(timer);
    if (outcome === 'timeout') {
      const gone = new Promise((resolve) => qemu.once('exit', resolve));
      qemu.kill('SIGKILL');
      await gone;
    }
    const wallMs = Date.now() - started;
    // Colour and cursor escapes of systemd's status lines would only garble failure messages.
    const serial = existsSync(serialPath) ? readFileSync(serialPath, 'utf8').replace(ANSI_ESCAPE, '') : '';
    const tail = () => serial.trim().split('\n').slice(-40).join('\n');
    const reported = () =>
      this.readChecks(results)
        .map((c) => `${c.ok ? 'PASS' : 'FAIL'} ${c.check}${c.ok ? '' : `: ${c.evidence}`}`)
        .join('\n');
    if (outcome === 'timeout')
      throw new Error(
        `the VM did not power off within ${timeoutMs} ms (qemu killed); the guest reported:\n${reported()}\nserial log tail:\n${tail()}`,
      );
    if (qemu.exitCode !== 0)
      throw new Error(`qemu exited with ${qemu.exitCode}: ${stderr.trim()}\nserial log tail:\n${tail()}`);
    const checks = this.readChecks(results);
    return { checks, wallMs, serial, breakdown: bootBreakdown(results, checks, serial, wallMs) };
  }

  private readChecks(results: string): GuestCheck[] {
    const checksPath = join(results, 'checks.jsonl');
    return existsSync(checksPath)
      ? readFileSync(checksPath, 'utf8')
          .split('\n')
          .filter((l) => l.trim())
          .map((l) => JSON.parse(l) as GuestCheck)
      : [];
  }

  /** A file the guest left in a boot's results directory (journal, timings), or '' when absent. */
  resultFile(boot: number, name: string): string {
    const path = join(this.dir, `results-${boot}`, name);
    return existsSync(path) ? readFileSync(path, 'utf8') : '';
  }

  cleanup(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Seconds since the guest kernel started of the first journal line matching `pattern`, or '?'. */
function journalMark(journal: string, pattern: RegExp): string {
  const line = journal.split('\n').find((l) => pattern.test(l));
  return line?.match(/^\[\s*(\d+\.\d+)\]/)?.[1]?.replace(/(\.\d)\d+$/, '$1') ?? '?';
}

/**
 * Where a boot's time went, from what the guest left in its results directory: journal marks (kernel,
 * initramfs, systemd, the key server), the slowest units, each check's duration and each CLI run's.
 */
function bootBreakdown(results: string, checks: GuestCheck[], serial: string, wallMs: number): string {
  const read = (name: string) => (existsSync(join(results, name)) ? readFileSync(join(results, name), 'utf8') : '');
  const journal = read('journal.txt');
  const at = (pattern: RegExp) => journalMark(journal, pattern);
  const done = serial.match(/kmip-vm: done at (\d+\.\d+)s/)?.[1] ?? '?';
  const scenario = serial.match(/kmip-vm: steps \S+ at (\d+)s/)?.[1] ?? '?';
  const lines = [
    `qemu wall ${(wallMs / 1000).toFixed(1)} s; guest uptime at power-off ${done} s`,
    `s since kernel start: initramfs ${at(/Run \/init as init process/)}, systemd ${at(/systemd\[1\]: systemd \S+ running in system mode/)}, ` +
      `udev triggered ${at(/Finished systemd-udev-trigger/)}, local-fs ${at(/Reached target local-fs\.target/)}, ` +
      `pykmip started ${at(/Started kmip-vm-pykmip/)}, multi-user ${at(/Reached target multi-user/)}, scenario ${scenario}`,
    `slowest units: ${slowestUnits(journal).join(', ')}`,
    ...checks.map((c) => `  ${String(c.ms).padStart(7)} ms, ends at ${c.uptime.toFixed(1)} s: ${c.step}: ${c.check}`),
  ];
  const cli = read('cli-times.jsonl')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { cli: string; ms: number });
  if (cli.length > 0) {
    const total = cli.reduce((sum, c) => sum + c.ms, 0);
    lines.push(
      `${cli.length} CLI runs, ${(total / 1000).toFixed(1)} s: ${cli.map((c) => `${c.cli} ${c.ms}`).join(', ')}`,
    );
  }
  return lines.join('\n');
}

/** The units that took longest from "Starting" to "Started"/"Finished" in a journal, slowest first. */
function slowestUnits(journal: string, count = 8): string[] {
  const starting = new Map<string, number>();
  const took: [string, number][] = [];
  for (const line of journal.split('\n')) {
    const m = line.match(/^\[\s*(\d+\.\d+)\] \S+ systemd\[1\]: (Starting|Started|Finished) (\S+)/);
    if (!m) continue;
    const [, time, verb, unit] = m as unknown as [string, string, string, string];
    if (verb === 'Starting') starting.set(unit, Number(time));
    else if (starting.has(unit)) took.push([unit, Number(time) - starting.get(unit)!]);
  }
  return took
    .sort((a, b) => b[1] - a[1])
    .slice(0, count)
    .map(([unit, s]) => `${unit} ${s.toFixed(1)} s`);
}

/**
 * The guest's key server inputs: a throwaway PKI (made here, where openssl is fast) and pykmip-server's
 * config, with paths as the guest sees them; PyKMIP's database lives on the guest's disk.
 */
function writePykmipInputs(inputs: string): void {
  const pki = makeTestPki(join(inputs, 'pki'));
  const guest = (path: string) => path.replace(inputs, GUEST_INPUTS);
  mkdirSync(join(inputs, 'pykmip', 'policies'), { recursive: true });
  writeFileSync(
    join(inputs, 'pykmip', 'server.conf'),
    pykmipServerConf({
      port: GUEST_PYKMIP_PORT,
      cert: guest(pki.server.cert),
      key: guest(pki.server.key),
      ca: guest(pki.ca.cert),
      policyDir: `${GUEST_INPUTS}/pykmip/policies`,
      database: '/var/lib/kmip-vm/pykmip.db',
    }),
  );
}
