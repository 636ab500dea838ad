/**
 * Runs inside the VM (from test/vm/guest/boot.sh): the boot steps named in argv[2] ("a,b"), each a
 * series of checks (test/vm/scenarios.ts) against the real kernel, the real systemd and the agent as
 * shipped (dist/ and the addon of the 9p-shared checkout). State that a later boot needs stays on the
 * guest's disk under /var/lib/kmip-vm.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import {
  appendFileSync,
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  readdirSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { ApiClient } from '../../../src/api/client.js';
import { API_SOCKET_NAME } from '../../../src/api/server.js';
import { KmipClient } from '../../../src/kmip/client.js';
import { addonPath, loadAddon, packageVersion } from '../../../src/native/addon.js';
import { pykmipCliArgs, pykmipClientOptions, tryHandshake } from '../../support/pykmip.js';
import { GUEST_INPUTS, GUEST_PYKMIP_PORT } from '../qemu.js';
import { STEP_CHECKS, type CheckName, type StepName } from '../scenarios.js';
import { APPLIANCE_STEPS } from './appliance.js';
import { CheckFailed, check, expectThat, must, run, setStep, unitProps } from './checks.js';

const ROOT = '/opt/kmip-agent';
const AGENT = ['/usr/bin/node', join(ROOT, 'dist', 'kmip-agent.mjs')];
const WORK = '/var/lib/kmip-vm';
/** The key server the image starts early in boot (kmip-vm-pykmip.service) from the host-made inputs. */
const PYKMIP = {
  host: '127.0.0.1',
  port: GUEST_PYKMIP_PORT,
  ca: `${GUEST_INPUTS}/pki/ca.crt`,
  clientCert: `${GUEST_INPUTS}/pki/client.crt`,
  clientKey: `${GUEST_INPUTS}/pki/client.key`,
  dir: WORK,
  logPath: `${WORK}/pykmip.log`,
};
const PYKMIP_START_TIMEOUT_MS = 240_000;
/** The two data disks the host attaches: one the daemon opens, one systemd-cryptsetup opens. */
const DAEMON_DISK = '/dev/vdb';
const CRYPTTAB_DISK = '/dev/vdc';
const DAEMON_VOLUME = 'data-a';
const CRYPTTAB_VOLUME = 'data-b';
const KEY_SOCKET = '/run/kmip-agent/luks.sock';
const FAST_PBKDF = ['--pbkdf', 'pbkdf2', '--pbkdf-force-iterations', '1000'];

export type Step<S extends StepName> = (
  c: (name: CheckName<S>, body: () => string | Promise<string>) => Promise<boolean>,
) => Promise<void>;

/** Each CLI run's wall time (node's start under TCG dominates), for the host's boot breakdown. */
const CLI_TIMES = '/results/cli-times.jsonl';
function agent(args: string[], input?: Buffer | string) {
  const started = Date.now();
  try {
    return must([...AGENT, ...args], input, 300_000);
  } finally {
    const command = args.filter((a) => !a.startsWith('-') && !a.startsWith('/')).slice(0, 2);
    appendFileSync(CLI_TIMES, `${JSON.stringify({ cli: command.join(' '), ms: Date.now() - started })}\n`);
  }
}
const passphrase = (disk: string) => Buffer.from(`vm test passphrase of ${disk}`);
/** systemd's unit name of a path (`systemd-escape --path`). */
const escapePath = (path: string) => must(['systemd-escape', '--path', path]).stdout.trim();

function installUnit(): string {
  copyFileSync(join(ROOT, 'systemd', 'kmip-agent.service'), '/etc/systemd/system/kmip-agent.service');
  mkdirSync('/etc/systemd/system/kmip-agent.service.d', { recursive: true });
  // The only adaptation: the checkout's CLI instead of an installed one, and TCG-sized timeouts.
  writeFileSync(
    '/etc/systemd/system/kmip-agent.service.d/vm-test.conf',
    [
      '[Service]',
      'ExecStart=',
      `ExecStart=${AGENT.join(' ')} daemon`,
      'WatchdogSec=300s',
      'TimeoutStartSec=300s',
      '',
    ].join('\n'),
  );
  must(['systemctl', 'daemon-reload']);
  return readFileSync('/etc/systemd/system/kmip-agent.service.d/vm-test.conf', 'utf8');
}

/** The tail of a unit's journal this boot, for evidence. */
const unitJournal = (unit: string) =>
  run(['journalctl', '-b', '--no-pager', '-o', 'short-monotonic', '-u', unit]).stdout.slice(-5000);

/**
 * The running daemon's status document, asked over its API socket from this process: evidence only
 * (what `kmip-agent status --json` prints), without another node start.
 */
async function daemonStatus(): Promise<string> {
  return JSON.stringify(await new ApiClient(`/run/kmip-agent/${API_SOCKET_NAME}`).call('GetStatus'));
}

/** Waits (bounded) until the image's PyKMIP completes a mutual TLS handshake. */
async function waitForPykmip(): Promise<string> {
  const deadline = Date.now() + PYKMIP_START_TIMEOUT_MS;
  while (!(await tryHandshake(PYKMIP))) {
    if (Date.now() > deadline)
      throw new CheckFailed(
        `no TLS handshake from PyKMIP within ${PYKMIP_START_TIMEOUT_MS} ms\n${unitJournal('kmip-vm-pykmip.service')}`,
      );
    await new Promise((r) => setTimeout(r, 500));
  }
  const p = unitProps('kmip-vm-pykmip.service', ['ActiveEnterTimestampMonotonic']);
  return `pykmip-server (kmip-vm-pykmip.service, started ${(Number(p.ActiveEnterTimestampMonotonic) / 1e6).toFixed(1)} s after kernel start) accepted mutual TLS on 127.0.0.1:${PYKMIP.port} at ${(uptimeMs() / 1000).toFixed(1)} s`;
}

const uptimeMs = () => Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]) * 1000;

function writeSecret(path: string, data: Buffer): void {
  writeFileSync(path, data, { mode: 0o600 });
  chmodSync(path, 0o600);
}

const luksFirst: Step<'luks-first'> = async (c) => {
  mkdirSync(WORK, { recursive: true, mode: 0o700 });
  await c('node and the addon run from the read-only 9p checkout', () => {
    // This process is node running the checkout's code; loading the addon here proves the native half
    // (the CLI runs of the next checks prove the command itself: each node start costs seconds under TCG).
    const addon = addonPath();
    expectThat(addon.startsWith(`${ROOT}/`), `the addon was found outside the checkout: ${addon}`);
    const native = loadAddon().version();
    const ro = must(['findmnt', '-no', 'OPTIONS', ROOT]).stdout.trim();
    expectThat(ro.split(',').includes('ro'), `the checkout is not mounted read-only: ${ro}`);
    return `kmip-agent ${packageVersion()}, addon ${addon} (native ${native}) in node ${process.version}, kernel ${must(['uname', '-r']).stdout.trim()}; ${ROOT}: ${ro}`;
  });
  const serverOk = await c('PyKMIP serves on the guest loopback with a throwaway PKI', () => waitForPykmip());
  if (!serverOk) return;
  await c('kmip-agent setup saves the key server after a connection test', () => {
    const r = agent(['setup', '--appliance-id', 'vm1', ...pykmipCliArgs(PYKMIP)]);
    expectThat(existsSync('/etc/kmip-agent/config.json'), 'no /etc/kmip-agent/config.json after setup');
    return r.stdout.trim();
  });
  const uuids: Record<string, string> = {};
  await c('volume enroll adds a KMIP keyslot to two LUKS2 disks (one for the key socket)', () => {
    const out: string[] = [];
    for (const [disk, name, socket] of [
      [DAEMON_DISK, DAEMON_VOLUME, false],
      [CRYPTTAB_DISK, CRYPTTAB_VOLUME, true],
    ] as const) {
      const pass = join(WORK, `${name}.pass`);
      writeSecret(pass, passphrase(disk));
      must(
        ['cryptsetup', 'luksFormat', '--batch-mode', '--type', 'luks2', ...FAST_PBKDF, '--key-file', '-', disk],
        passphrase(disk),
      );
      const enrolled = agent([
        'volume',
        'enroll',
        disk,
        '--name',
        name,
        '--key-file',
        pass,
        ...(socket ? ['--key-socket'] : []),
      ]);
      uuids[name] = must(['cryptsetup', 'luksUUID', disk]).stdout.trim();
      const slots = must(['cryptsetup', 'luksDump', disk]).stdout.match(/^\s+\d+: luks2/gm) ?? [];
      expectThat(slots.length === 2, `${disk}: expected 2 keyslots after enroll, luksDump shows ${slots.length}`);
      out.push(`${enrolled.stdout.trim()} (keyslots: ${slots.length})`);
    }
    return out.join('\n');
  });
  await c('the shipped unit starts the daemon and it reaches READY', () => {
    const dropIn = installUnit();
    const started = Date.now();
    const r = run(['systemctl', 'start', 'kmip-agent.service'], undefined, 150_000);
    const props = unitProps('kmip-agent.service', ['ActiveState', 'SubState', 'StatusText', 'Result']);
    if (r.status !== 0 || props.ActiveState !== 'active')
      throw new CheckFailed(`${r.shown}\n${JSON.stringify(props)}\n${unitJournal('kmip-agent.service')}`);
    return `active after ${Date.now() - started} ms; STATUS=${props.StatusText}\ndrop-in:\n${dropIn}`;
  });
  const mapper = `/dev/mapper/${DAEMON_VOLUME}`;
  await c(
    'the daemon activates the LUKS2 volume through libcryptsetup: /dev/mapper exists, cryptsetup status agrees',
    async () => {
      const status = run(['cryptsetup', 'status', DAEMON_VOLUME]);
      const json = await daemonStatus();
      expectThat(
        existsSync(mapper),
        `${mapper} does not exist; cryptsetup status: ${status.shown}\nagent status: ${json}`,
      );
      expectThat(/is active/.test(status.stdout), status.shown);
      expectThat(
        /type:\s+LUKS2/.test(status.stdout) && status.stdout.includes(`device:  ${DAEMON_DISK}`),
        status.shown,
      );
      const dm = must(['dmsetup', 'table', '--showkeys', DAEMON_VOLUME]).stdout.split(' ').slice(0, 3).join(' ');
      return `${status.shown}\ndm table (key omitted): ${dm}\nagent status: ${json.trim().slice(0, 1500)}`;
    },
  );
  await c('a filesystem on the activated volume mounts and its data reads back', () => {
    must(['mkfs.ext4', '-q', '-L', DAEMON_VOLUME, mapper]);
    mkdirSync('/mnt/a', { recursive: true });
    must(['mount', mapper, '/mnt/a']);
    writeFileSync('/mnt/a/proof.txt', 'written through dm-crypt in boot 1\n');
    must(['umount', '/mnt/a']);
    must(['sh', '-c', 'echo 3 >/proc/sys/vm/drop_caches']);
    must(['mount', mapper, '/mnt/a']);
    const back = readFileSync('/mnt/a/proof.txt', 'utf8');
    must(['umount', '/mnt/a']);
    // The ciphertext on the disk must not contain the plaintext.
    const raw = run(['grep', '-c', 'written through dm-crypt', DAEMON_DISK]);
    expectThat(raw.stdout.trim() === '0', `plaintext found on ${DAEMON_DISK}: ${raw.shown}`);
    return `read back after remount: ${JSON.stringify(back)}; not found in the ciphertext of ${DAEMON_DISK}`;
  });
  await c('the next boot is prepared: crypttab names the key socket, fstab mounts both volumes', () => {
    // The crypttab volume gets a filesystem now (opened with its passphrase, once, by the test).
    must(['cryptsetup', 'open', '--key-file', '-', CRYPTTAB_DISK, 'prep-b'], passphrase(CRYPTTAB_DISK));
    must(['mkfs.ext4', '-q', '-L', CRYPTTAB_VOLUME, '/dev/mapper/prep-b']);
    mkdirSync('/mnt/b', { recursive: true });
    must(['mount', '/dev/mapper/prep-b', '/mnt/b']);
    writeFileSync('/mnt/b/proof.txt', 'written in boot 1, opened by systemd-cryptsetup in boot 2\n');
    must(['umount', '/mnt/b']);
    must(['cryptsetup', 'close', 'prep-b']);
    const crypttab = `${CRYPTTAB_VOLUME} UUID=${uuids[CRYPTTAB_VOLUME]} ${KEY_SOCKET} luks,_netdev,headless=true\n`;
    writeFileSync('/etc/crypttab', crypttab);
    const fstab = [
      `/dev/mapper/${DAEMON_VOLUME} /mnt/a ext4 _netdev,x-systemd.device-timeout=240s 0 0`,
      `/dev/mapper/${CRYPTTAB_VOLUME} /mnt/b ext4 _netdev,x-systemd.device-timeout=240s 0 0`,
      '',
    ].join('\n');
    writeFileSync('/etc/fstab', `${readFileSync('/etc/fstab', 'utf8')}${fstab}`);
    must(['systemctl', 'enable', 'kmip-agent.service']);
    must(['systemctl', 'stop', 'kmip-agent.service'], undefined, 120_000);
    return `crypttab: ${crypttab}fstab +\n${fstab}enabled: ${must(['systemctl', 'is-enabled', 'kmip-agent.service']).stdout.trim()}`;
  });
};

/** The monotonic time (µs since boot) at which a unit last became active, or 0. */
const activeAt = (unit: string) =>
  Number(unitProps(unit, ['ActiveEnterTimestampMonotonic']).ActiveEnterTimestampMonotonic ?? 0);

const luksSecond: Step<'luks-second'> = async (c) => {
  await c('the daemon reached READY at boot', () => {
    const p = unitProps('kmip-agent.service', [
      'ActiveState',
      'StatusText',
      'ActiveEnterTimestampMonotonic',
      'ExecMainStartTimestampMonotonic',
    ]);
    expectThat(p.ActiveState === 'active', JSON.stringify(p));
    const readyMs = Number(p.ActiveEnterTimestampMonotonic) / 1000;
    return `READY ${readyMs.toFixed(0)} ms after kernel start (process started at ${(Number(p.ExecMainStartTimestampMonotonic) / 1000).toFixed(0)} ms); STATUS=${p.StatusText}`;
  });
  const cryptUnit = `systemd-cryptsetup@${must(['systemd-escape', CRYPTTAB_VOLUME]).stdout.trim()}.service`;
  await c('systemd-cryptsetup opened the crypttab volume with a key from the agent socket', () => {
    const p = unitProps(cryptUnit, ['ActiveState', 'Result', 'After', 'Before', 'InactiveExitTimestampMonotonic']);
    // The unit's promise: a _netdev crypttab volume starts only once the agent is READY (its socket is up).
    const agentReady = activeAt('kmip-agent.service');
    const cryptStarted = Number(p.InactiveExitTimestampMonotonic ?? 0);
    expectThat(
      agentReady > 0 && cryptStarted >= agentReady,
      `${cryptUnit} started at ${cryptStarted} µs, kmip-agent READY at ${agentReady} µs\nAfter=${p.After}\n${unitJournal(cryptUnit)}`,
    );
    const status = run(['cryptsetup', 'status', CRYPTTAB_VOLUME]);
    expectThat(
      p.ActiveState === 'active' && /is active/.test(status.stdout),
      `${cryptUnit}: ${JSON.stringify(p)}\n${status.shown}\n${unitJournal(cryptUnit)}`,
    );
    return `${cryptUnit}: ${p.ActiveState}/${p.Result}, started at ${cryptStarted} µs after kmip-agent READY at ${agentReady} µs\n${status.shown}`;
  });
  await c('the key socket hand-out is in the journal', () => {
    const lines = run(['journalctl', '-b', '--no-pager', '-o', 'cat', '-u', 'kmip-agent.service']).stdout.split('\n');
    const served = lines.filter((l) => l.includes(CRYPTTAB_VOLUME) && /key-socket|keySocket|served/i.test(l));
    expectThat(
      served.length > 0,
      `no key-socket line naming ${CRYPTTAB_VOLUME} in the daemon's journal:\n${lines.slice(-40).join('\n')}`,
    );
    expectThat(!served.some((l) => /refus/i.test(l)), served.join('\n'));
    return served.join('\n');
  });
  await c('the crypttab volume was open before its mount unit, and its data reads back', () => {
    const mountUnit = `${escapePath('/mnt/b')}.mount`;
    const opened = activeAt(cryptUnit);
    const mounted = activeAt(mountUnit);
    expectThat(
      opened > 0 && mounted > 0 && opened <= mounted,
      `${cryptUnit} active at ${opened} µs, ${mountUnit} at ${mounted} µs`,
    );
    const data = readFileSync('/mnt/b/proof.txt', 'utf8');
    expectThat(data.includes('opened by systemd-cryptsetup'), data);
    const ready = activeAt('kmip-agent.service');
    return `kmip-agent READY at ${ready} µs, ${cryptUnit} at ${opened} µs, ${mountUnit} at ${mounted} µs; /mnt/b/proof.txt: ${JSON.stringify(data)}`;
  });
  await c('the daemon-activated volume is mounted at boot with its data', () => {
    const mountUnit = `${escapePath('/mnt/a')}.mount`;
    const p = unitProps(mountUnit, ['ActiveState']);
    expectThat(p.ActiveState === 'active', `${mountUnit}: ${JSON.stringify(p)}\n${unitJournal(mountUnit)}`);
    const data = readFileSync('/mnt/a/proof.txt', 'utf8');
    return `${mountUnit} active at ${activeAt(mountUnit)} µs; /mnt/a/proof.txt: ${JSON.stringify(data)}`;
  });
};

const CONFIGFS = '/sys/kernel/config/target';
const TCMU_HANDLER = join(ROOT, 'build', 'vm', 'tcmu-opal');
const OPAL_IMAGE = `${WORK}/opal1.img`;
const OPAL_SERIAL = 'VMOPAL0001';
const HANDLER_LOG = `${WORK}/tcmu-opal.log`;
/** tcm_loop's target and initiator WWNs (any NAA-5 names will do). */
const LOOP_WWN = 'naa.5001405000000001';
const LOOP_INITIATOR = 'naa.5001405000000002';
const MARKER = 'kmip-vm data behind a real sd and sed-opal';

/** The appliance's key server settings, once per guest disk (a step may come first in its boot). */
function ensureSetup(): string {
  if (existsSync('/etc/kmip-agent/config.json')) return 'already set up';
  return agent(['setup', '--appliance-id', 'vm1', ...pykmipCliArgs(PYKMIP)]).stdout.trim();
}

async function until<T>(what: string, timeoutMs: number, probe: () => T | undefined): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new CheckFailed(`${what} did not happen within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** The sd disk tcm_loop made of our LUN (by its INQUIRY vendor), once the kernel has probed it. */
function opalDisk(): string | undefined {
  for (const name of readdirSync('/sys/block').filter((n) => n.startsWith('sd'))) {
    const vendor = readFileSync(`/sys/block/${name}/device/vendor`, 'utf8').trim();
    if (vendor === 'KMIPVM') return `/dev/${name}`;
  }
  return undefined;
}

/** Reads one block with O_DIRECT (the page cache must not answer for the drive). */
const readBlock = (disk: string, lba: number) =>
  run(['dd', `if=${disk}`, 'bs=512', `skip=${lba}`, 'count=1', 'iflag=direct', 'status=none']);

let handler: ChildProcess | undefined;

/** Power-cycles the emulated drive (the handler's SIGUSR1), as at power-on: LockOnReset ranges relock. */
async function powerCycle(): Promise<void> {
  const before = readFileSync(HANDLER_LOG, 'utf8').split('power cycled').length;
  process.kill(handler!.pid!, 'SIGUSR1');
  await until('the handler power-cycling the drive', 30_000, () =>
    readFileSync(HANDLER_LOG, 'utf8').split('power cycled').length > before ? true : undefined,
  );
}

/** What the handler and the kernel said, for a failing check's evidence. */
const tcmuEvidence = () =>
  `tcmu-opal log:\n${readFileSync(HANDLER_LOG, 'utf8').slice(-3000)}\nkernel:\n${run(['dmesg']).stdout.split('\n').slice(-25).join('\n')}`;

const tcmuStep: Step<'tcmu'> = async (c) => {
  mkdirSync(WORK, { recursive: true, mode: 0o700 });
  let disk = '';
  const served = await c('the TCMU handler serves an emulated Opal drive as a SCSI disk through tcm_loop', async () => {
    must(['modprobe', 'target_core_user']);
    must(['modprobe', 'tcm_loop']);
    if (!existsSync(`${CONFIGFS}/core`)) must(['mount', '-t', 'configfs', 'configfs', '/sys/kernel/config']);
    if (!existsSync(OPAL_IMAGE)) must([TCMU_HANDLER, 'create', OPAL_IMAGE, '64', OPAL_SERIAL]);
    const dev = `${CONFIGFS}/core/user_1/opal1`;
    mkdirSync(dev, { recursive: true });
    writeFileSync(`${dev}/control`, `dev_size=${64 * 1024 * 1024}`);
    writeFileSync(`${dev}/control`, `dev_config=kmipvm/${OPAL_IMAGE}`);
    writeFileSync(`${dev}/enable`, '1');
    const uio = await until('the TCMU device appearing as /dev/uio*', 30_000, () =>
      readdirSync('/sys/class/uio').find((u) =>
        readFileSync(`/sys/class/uio/${u}/name`, 'utf8').startsWith('tcm-user/1/opal1/'),
      ),
    );
    handler = spawn(TCMU_HANDLER, ['serve', OPAL_IMAGE, `/dev/${uio}`], {
      stdio: ['ignore', 'pipe', openSync(HANDLER_LOG, 'a')],
      detached: true,
    });
    await new Promise<void>((resolve, reject) => {
      handler!.stdout!.once('data', () => resolve());
      handler!.once('exit', (code) =>
        reject(new CheckFailed(`tcmu-opal exited with ${code}: ${readFileSync(HANDLER_LOG, 'utf8')}`)),
      );
    });
    const tpg = `${CONFIGFS}/loopback/${LOOP_WWN}/tpgt_1`;
    mkdirSync(`${tpg}/lun/lun_0`, { recursive: true });
    writeFileSync(`${tpg}/nexus`, LOOP_INITIATOR);
    symlinkSync(dev, `${tpg}/lun/lun_0/opal1`);
    try {
      disk = await until('sd probing the tcm_loop disk', 120_000, opalDisk);
    } catch (error) {
      throw new CheckFailed(`${String(error)}\n${tcmuEvidence()}`);
    }
    run(['udevadm', 'settle', '--timeout=30']);
    return `/dev/${uio} served by tcmu-opal (pid ${handler.pid}); tcm_loop ${LOOP_WWN} lun 0 -> ${disk}; ${readFileSync(`/sys/block/${disk.slice(5)}/size`, 'utf8').trim()} sectors`;
  });
  if (!served) return;
  await c(
    'sd sees it: INQUIRY, VPD pages, READ CAPACITY(16), and SECURITY PROTOCOL IN/OUT reported as supported',
    () => {
      const inq = must(['sg_inq', disk]).stdout;
      const serial = must(['sg_vpd', '--page=0x80', disk]).stdout;
      const cap = must(['sg_readcap', '--16', disk]).stdout;
      const secIn = must(['sg_opcodes', '--opcode=0xa2', disk]).stdout;
      const secOut = must(['sg_opcodes', '--opcode=0xb5', disk]).stdout;
      expectThat(serial.includes(OPAL_SERIAL), serial);
      expectThat(/Logical block length=512/.test(cap), cap);
      expectThat(/SPC-4|version=0x06/i.test(inq), inq);
      return [inq, serial, cap, secIn, secOut].map((t) => t.trim()).join('\n');
    },
  );
  let backendName = '';
  await c('drive discover picks kernel sed-opal where sd enabled it for the disk, else SG_IO, and says why', () => {
    ensureSetup();
    const json = agent(['drive', 'discover', disk, '--json']).stdout;
    const backend = (JSON.parse(json) as { backend?: { name?: string; reason?: string; attempts?: unknown[] } })
      .backend;
    backendName = backend?.name ?? '';
    // sd hands a disk to sed-opal only when the transport marks it security-capable and it reports
    // SECURITY PROTOCOL IN/OUT; whichever way this kernel went, the agent must have tried the kernel first.
    expectThat(Boolean(backend?.reason), `no reason given for the backend: ${json}`);
    let kernelOnly = '';
    if (backendName !== 'kernel') {
      expectThat(backendName === 'passthrough', json);
      const alone = run([...AGENT, 'drive', 'discover', disk, '--backend', 'kernel']);
      expectThat(
        alone.status !== 0 && JSON.stringify(backend?.attempts ?? []).includes('kernel'),
        `${json}\n${alone.shown}`,
      );
      kernelOnly = `\n--backend kernel alone:\n${alone.shown}`;
    }
    const sd = run(['dmesg'])
      .stdout.split('\n')
      .filter((l) => /\bsd \d|opal/i.test(l))
      .slice(-12);
    return `backend ${backendName}: ${backend?.reason}\n${json.trim().slice(0, 2000)}${kernelOnly}\nkernel:\n${sd.join('\n')}`;
  });
  let keyUid = '';
  await c('drive enroll takes the disk through the chosen backend and enables locking', () => {
    run(['systemctl', 'stop', 'kmip-agent.service'], undefined, 120_000);
    const out = agent(['drive', 'enroll', disk, '--json']).stdout;
    const enrolled = (JSON.parse(out) as { enrolled: { keyUid: string }[] }).enrolled;
    keyUid = enrolled[0]!.keyUid;
    expectThat(Boolean(keyUid), `no key uid in ${out}`);
    return out.trim();
  });
  /** READ(10) of one block through SG_IO, to see the sense data itself. */
  const rawRead = (lba: number) =>
    run([
      'sg_raw',
      '-r',
      '512',
      '-o',
      '/dev/null',
      disk,
      '28',
      '00',
      '00',
      '00',
      '00',
      lba.toString(16),
      '00',
      '00',
      '01',
      '00',
    ]);
  await c('after a power cycle, reads of the locked disk are refused with DATA PROTECT sense', async () => {
    // Enroll enables locking (LockOnReset) and leaves the range open until the drive next powers up.
    await powerCycle();
    const read = readBlock(disk, 100);
    expectThat(read.status !== 0, `a locked disk was readable: ${read.shown}`);
    const raw = rawRead(100);
    expectThat(/Data Protect/i.test(raw.shown) && /access not authorized/i.test(raw.shown), raw.shown);
    return `${read.shown}\n${raw.shown}`;
  });
  await c('the daemon unlocks it at start (kernel backend: IOC_OPAL_SAVE accepted) and data reads back', async () => {
    if (!existsSync('/etc/systemd/system/kmip-agent.service')) installUnit();
    const r = run(['systemctl', 'start', 'kmip-agent.service'], undefined, 150_000);
    const props = unitProps('kmip-agent.service', ['ActiveState', 'StatusText']);
    expectThat(
      r.status === 0 && props.ActiveState === 'active',
      `${r.shown}\n${JSON.stringify(props)}\n${unitJournal('kmip-agent.service')}`,
    );
    const status = await daemonStatus();
    const readable = readBlock(disk, 100);
    expectThat(
      readable.status === 0,
      `still not readable after the daemon started: ${readable.shown}\n${status}\n${unitJournal('kmip-agent.service')}`,
    );
    const block = Buffer.alloc(512);
    block.write(MARKER);
    must(['dd', `of=${disk}`, 'bs=512', 'seek=100', 'count=1', 'oflag=direct', 'status=none'], block);
    const back = readBlock(disk, 100).stdout;
    expectThat(back.startsWith(MARKER), `read back ${JSON.stringify(back.slice(0, 60))}`);
    const unlocked = unitJournal('kmip-agent.service')
      .split('\n')
      .filter((l) => /unlock/i.test(l))
      .slice(-3);
    // With the kernel backend an unlock is LOCK_UNLOCK then SAVE (src/drives/kernel-backend.ts): a refused SAVE fails it.
    return `backend ${backendName}${backendName === 'kernel' ? ' (IOC_OPAL_LOCK_UNLOCK + IOC_OPAL_SAVE)' : ' (SG_IO; IOC_OPAL_SAVE not reachable: sd did not enable sed-opal for this disk)'}; STATUS=${props.StatusText}\n${unlocked.join('\n')}\nLBA 100 after write: ${JSON.stringify(back.slice(0, MARKER.length))}`;
  });
  await c('after a power cycle, --backend passthrough unlocks it over SG_IO and the data reads back', async () => {
    must(['systemctl', 'stop', 'kmip-agent.service'], undefined, 120_000);
    await powerCycle();
    const locked = rawRead(100);
    expectThat(/Data Protect/i.test(locked.shown), `readable after the power cycle: ${locked.shown}`);
    // The drive's key from the key server, fetched here (the CLI under test is `drive unlock`).
    const keyFile = `${WORK}/opal1.key`;
    const kmip = new KmipClient(pykmipClientOptions(PYKMIP));
    try {
      const key = await kmip.get(keyUid);
      writeSecret(keyFile, key.value);
      key.value.fill(0);
    } finally {
      kmip.close();
    }
    const unlock = agent(['drive', 'unlock', disk, '--pin-file', keyFile, '--backend', 'passthrough']);
    writeFileSync(keyFile, Buffer.alloc(32));
    const back = readBlock(disk, 100).stdout;
    expectThat(back.startsWith(MARKER), `read back ${JSON.stringify(back.slice(0, 60))}`);
    return `power cycle relocked (${locked.shown.split('\n').find((l) => /sense key/i.test(l)) ?? 'DATA PROTECT'})\n${unlock.stdout.trim()}\nLBA 100: ${JSON.stringify(back.slice(0, MARKER.length))}`;
  });
  await c('a malformed CDB gets ILLEGAL REQUEST and the handler keeps serving', () => {
    // A vendor-specific opcode, and SECURITY PROTOCOL IN for a protocol the TPer does not speak.
    const bogus = run(['sg_raw', '-r', '512', disk, 'c0', '00', '00', '00', '00', '00']);
    const badProtocol = run([
      'sg_raw',
      '-r',
      '512',
      disk,
      'a2',
      '07',
      '00',
      '00',
      '00',
      '00',
      '00',
      '00',
      '02',
      '00',
      '00',
      '00',
    ]);
    expectThat(/Illegal Request/i.test(bogus.shown), bogus.shown);
    expectThat(/Illegal Request/i.test(badProtocol.shown), badProtocol.shown);
    const tur = must(['sg_turs', disk]);
    expectThat(handler!.exitCode === null, 'the handler exited');
    return `${bogus.shown}\n${badProtocol.shown}\n${tur.shown}`;
  });
};

const STEPS: { [S in StepName]: Step<S> } = {
  'luks-first': luksFirst,
  'luks-second': luksSecond,
  tcmu: tcmuStep,
  ...APPLIANCE_STEPS,
};

async function main(): Promise<void> {
  const names = (process.argv[2] ?? '').split(',').filter(Boolean);
  for (const name of names) {
    if (!(name in STEP_CHECKS)) throw new Error(`unknown VM step ${name}`);
    setStep(name);
    await (STEPS[name as StepName] as Step<StepName>)(check as never);
  }
  // PyKMIP (detached) and anything else started here die with the VM; exit now so the unit can power off.
  process.exit(0);
}

void main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
