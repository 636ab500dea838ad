/**
 * Test fixture: a real systemd, booted as PID 1 of a systemd-nspawn container (recipe in
 * ../shared/DESIGN.md, "A real systemd for tests"). The container's root is a minimal Debian rootfs built
 * once with mmdebstrap and cached under /var/cache/kmip-agent-test/; it is booted with
 * --volatile=overlay, so every write of a run lands in a tmpfs overlay and the cache stays pristine
 * (and can be shared by runs). It shares the host's network (a key server on the host's loopback is
 * reachable) and kernel (flock, the emulated drives' files and modes are the same on both sides).
 * Commands run inside through nsenter: with --register=no there is no machined, so `systemctl -M` cannot.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';

export const TEST_CACHE_DIR = process.env.KMIP_AGENT_TEST_CACHE ?? '/var/cache/kmip-agent-test';
const SUITE = 'bookworm';
/** What the daemon needs beyond minbase: systemd itself, and the addon's libcryptsetup. */
const PACKAGES = ['systemd', 'systemd-sysv', 'dbus', 'libcryptsetup12'];
const HOST_SOURCES = '/etc/apt/sources.list.d/debian.sources';
const SETUP_HINT = 'run `sudo bash scripts/setup.sh` (it installs systemd-container and mmdebstrap)';

/** Why the container cannot run here, or undefined when it can (checked without side effects). */
export function nspawnUnavailableReason(): string | undefined {
  if (process.getuid?.() !== 0) return 'systemd-nspawn needs root';
  for (const tool of ['systemd-nspawn', 'nsenter', 'setpriv', 'mmdebstrap']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) return `${tool} is not installed: ${SETUP_HINT}`;
  }
  return undefined;
}

/** The cached rootfs for this package set (its name changes with the set, so a stale cache is never used). */
export function rootfsPath(): string {
  const tag = createHash('sha256')
    .update(`${SUITE} ${PACKAGES.join(',')}`)
    .digest('hex')
    .slice(0, 8);
  return join(TEST_CACHE_DIR, `debian-${SUITE}-${tag}`);
}

/**
 * Returns the cached rootfs, building it first when missing (~25-60 s, needs a Debian mirror). Built
 * beside the cache entry and renamed into place, so a crash or a concurrent build never leaves a partial
 * rootfs where a later run would trust it.
 */
export function ensureRootfs(): string {
  const root = rootfsPath();
  if (existsSync(root)) return root;
  mkdirSync(TEST_CACHE_DIR, { recursive: true, mode: 0o755 });
  const building = mkdtempSync(`${root}.building-`);
  const mirror = existsSync(HOST_SOURCES) ? HOST_SOURCES : 'http://deb.debian.org/debian';
  const run = spawnSync(
    'mmdebstrap',
    ['--variant=minbase', `--include=${PACKAGES.join(',')}`, SUITE, building, mirror],
    { encoding: 'utf8', timeout: 600_000 },
  );
  if (run.status !== 0) {
    rmSync(building, { recursive: true, force: true });
    const tail = `${run.stderr ?? ''}${run.error ? String(run.error) : ''}`.trim().split('\n').slice(-8).join('\n');
    throw new Error(`mmdebstrap could not build the container rootfs (needs a Debian mirror, ${mirror}):\n${tail}`);
  }
  chmodSync(building, 0o755);
  try {
    renameSync(building, root);
  } catch (error) {
    // Another run finished first: use its rootfs.
    rmSync(building, { recursive: true, force: true });
    if (!existsSync(root)) throw error;
  }
  return root;
}

export interface Bind {
  host: string;
  /** Where the container sees it (default: the same path). */
  container?: string;
  readOnly?: boolean;
}

export interface ExecResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** A clean environment for commands inside: nothing of the host's (KMIP_AGENT_*, NOTIFY_SOCKET, ...) leaks in. */
const INSIDE_ENV = { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C.UTF-8' };

export class Container {
  private stopped = false;

  private constructor(
    private readonly nspawn: ChildProcess,
    /** PID 1 of the container, as the host sees it. */
    readonly initPid: number,
    private readonly output: () => string,
  ) {}

  /**
   * Boots `rootfs` with systemd as PID 1 and waits (bounded) until the boot has finished. The host's
   * /usr/bin/node is bound in read-only; `binds` add the rest.
   */
  static async boot(rootfs: string, binds: Bind[], bootTimeoutMs = 60_000): Promise<Container> {
    const args = [
      '-q',
      '-D',
      rootfs,
      '--boot',
      '--register=no',
      '--keep-unit',
      '--console=pipe',
      '--volatile=overlay',
      // A name of its own: nspawn keeps per-machine state under /run/systemd/nspawn/ by name.
      `--machine=kmip-agent-test-${randomBytes(4).toString('hex')}`,
      '--bind-ro=/usr/bin/node',
      ...binds.map((b) => `--bind${b.readOnly ? '-ro' : ''}=${b.host}:${b.container ?? b.host}`),
    ];
    // setpriv execs nspawn with a parent-death signal: should the test process die, nspawn gets SIGTERM
    // and halts the container, so none is ever left running.
    const nspawn = spawn('setpriv', ['--pdeathsig', 'SIGTERM', 'systemd-nspawn', ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    const keep = (chunk: Buffer) => {
      output = (output + chunk.toString()).slice(-20_000);
    };
    nspawn.stdout!.on('data', keep);
    nspawn.stderr!.on('data', keep);
    const exited = new Promise<void>((resolve) => nspawn.once('exit', () => resolve()));
    const deadline = Date.now() + bootTimeoutMs;
    const fail = async (why: string): Promise<never> => {
      nspawn.kill('SIGKILL');
      await exited;
      throw new Error(`${why}; systemd-nspawn said:\n${output.trim().split('\n').slice(-15).join('\n')}`);
    };
    let initPid: number | undefined;
    while (initPid === undefined) {
      if (nspawn.exitCode !== null || nspawn.signalCode !== null) return fail('systemd-nspawn exited during boot');
      if (Date.now() > deadline) return fail(`the container's PID 1 did not appear within ${bootTimeoutMs} ms`);
      initPid = childSystemd(nspawn.pid!);
      if (initPid === undefined) await delay(50);
    }
    const container = new Container(nspawn, initPid, () => output);
    // is-system-running fails until the manager answers; then it says starting, and finally running (or
    // degraded when some unit of the minimal image failed, which does not concern the test).
    for (;;) {
      const state = container.exec(['systemctl', 'is-system-running']).stdout.trim();
      if (state === 'running' || state === 'degraded') return container;
      if (nspawn.exitCode !== null || nspawn.signalCode !== null) return fail('systemd-nspawn exited during boot');
      if (Date.now() > deadline) {
        await container.stop();
        throw new Error(`the container did not finish booting within ${bootTimeoutMs} ms (state: ${state})`);
      }
      await delay(100);
    }
  }

  /** Runs a command in all of the container's namespaces (as root, with a clean environment). */
  exec(argv: string[], options: { input?: Buffer | string; timeoutMs?: number } = {}): ExecResult {
    const run = spawnSync('nsenter', ['-t', String(this.initPid), '-a', ...argv], {
      encoding: 'utf8',
      env: INSIDE_ENV,
      timeout: options.timeoutMs ?? 60_000,
      ...(options.input === undefined ? {} : { input: options.input }),
    });
    return {
      status: run.status,
      stdout: run.stdout ?? '',
      stderr: `${run.stderr ?? ''}${run.error ? String(run.error) : ''}`,
    };
  }

  /** `systemctl show -p ...` of a unit, as a property map. */
  show(unit: string, properties: string[]): Record<string, string> {
    const run = this.exec(['systemctl', 'show', unit, ...properties.flatMap((p) => ['-p', p])]);
    if (run.status !== 0) throw new Error(`systemctl show ${unit} failed: ${run.stderr}`);
    return Object.fromEntries(
      run.stdout
        .split('\n')
        .filter((l) => l.includes('='))
        .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
    );
  }

  /** Polls `systemctl show` until `done` holds, or fails after `timeoutMs` with the last properties seen. */
  async waitForUnit(
    unit: string,
    properties: string[],
    done: (p: Record<string, string>) => boolean,
    what: string,
    timeoutMs: number,
  ): Promise<Record<string, string>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const seen = this.show(unit, properties);
      if (done(seen)) return seen;
      if (Date.now() > deadline)
        throw new Error(`${unit}: ${what} did not happen within ${timeoutMs} ms: ${JSON.stringify(seen)}`);
      await delay(100);
    }
  }

  /** The journal of one unit (messages only, this boot). */
  journal(unit: string): string {
    return this.exec(['journalctl', '--no-pager', '-b', '-o', 'cat', '-u', unit]).stdout;
  }

  /** What systemd-nspawn and the container's console printed (for failure messages). */
  consoleOutput(): string {
    return this.output();
  }

  /**
   * Powers the container off: SIGTERM makes nspawn ask systemd to halt; if that does not finish in
   * time, nspawn and the container's PID 1 are killed. Resolves once nspawn has exited.
   */
  async stop(timeoutMs = 20_000): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.nspawn.exitCode !== null || this.nspawn.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => this.nspawn.once('exit', () => resolve()));
    this.nspawn.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(true), timeoutMs);
    });
    if (await Promise.race([exited.then(() => false), timedOut])) {
      try {
        process.kill(this.initPid, 'SIGKILL');
      } catch {
        // already gone
      }
      this.nspawn.kill('SIGKILL');
      await exited;
    }
    clearTimeout(timer);
  }
}

/** The child of systemd-nspawn that runs systemd (PID 1 of the container), if it has started. */
function childSystemd(nspawnPid: number): number | undefined {
  try {
    const children = readFileSync(`/proc/${nspawnPid}/task/${nspawnPid}/children`, 'utf8').trim().split(/\s+/);
    for (const child of children.filter(Boolean)) {
      const comm = readFileSync(`/proc/${child}/comm`, 'utf8').trim();
      if (comm === 'systemd') return Number(child);
    }
  } catch {
    // nspawn or its child is still starting (or already gone): the caller polls
  }
  return undefined;
}
