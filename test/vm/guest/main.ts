/**
 * Runs inside the VM (from test/vm/guest/boot.sh): the boot steps named in argv[2] ("a,b"), each a
 * series of checks (test/vm/scenarios.ts) against the real kernel, the real systemd and the agent as
 * shipped (dist/ and the addon of the 9p-shared checkout). State that a later boot needs stays on the
 * guest's disk under /var/lib/kmip-vm.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync, copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { pykmipCliArgs, tryHandshake } from '../../support/pykmip.js';
import { GUEST_INPUTS, GUEST_PYKMIP_PORT } from '../qemu.js';
import { STEP_CHECKS, type CheckName, type StepName } from '../scenarios.js';
import { CheckFailed, check, expectThat, must, run, setStep, unitProps } from './checks.js';

const ROOT = '/opt/kmip-agent';
const AGENT = ['/usr/bin/node', join(ROOT, 'dist', 'src', 'cli', 'main.js')];
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

type Step<S extends StepName> = (c: (name: CheckName<S>, body: () => string | Promise<string>) => Promise<boolean>) => Promise<void>;

const agent = (args: string[], input?: Buffer | string) => must([...AGENT, ...args], input, 300_000);
const passphrase = (disk: string) => Buffer.from(`vm test passphrase of ${disk}`);
/** systemd's unit name of a path (`systemd-escape --path`). */
const escapePath = (path: string) => must(['systemd-escape', '--path', path]).stdout.trim();

function installUnit(): string {
  copyFileSync(join(ROOT, 'systemd', 'kmip-agent.service'), '/etc/systemd/system/kmip-agent.service');
  mkdirSync('/etc/systemd/system/kmip-agent.service.d', { recursive: true });
  // The only adaptation: the checkout's CLI instead of an installed one, and TCG-sized timeouts.
  writeFileSync(
    '/etc/systemd/system/kmip-agent.service.d/vm-test.conf',
    ['[Service]', 'ExecStart=', `ExecStart=${AGENT.join(' ')} daemon`, 'WatchdogSec=300s', 'TimeoutStartSec=300s', ''].join(
      '\n',
    ),
  );
  must(['systemctl', 'daemon-reload']);
  return readFileSync('/etc/systemd/system/kmip-agent.service.d/vm-test.conf', 'utf8');
}

/** The tail of a unit's journal this boot, for evidence. */
const unitJournal = (unit: string) =>
  run(['journalctl', '-b', '--no-pager', '-o', 'short-monotonic', '-u', unit]).stdout.slice(-5000);

/** Waits (bounded) until the image's PyKMIP completes a mutual TLS handshake. */
async function waitForPykmip(): Promise<string> {
  const deadline = Date.now() + PYKMIP_START_TIMEOUT_MS;
  while (!(await tryHandshake(PYKMIP))) {
    if (Date.now() > deadline)
      throw new CheckFailed(`no TLS handshake from PyKMIP within ${PYKMIP_START_TIMEOUT_MS} ms\n${unitJournal('kmip-vm-pykmip.service')}`);
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
    const version = must([...AGENT, '--version']);
    const ro = must(['findmnt', '-no', 'OPTIONS', ROOT]).stdout.trim();
    expectThat(ro.split(',').includes('ro'), `the checkout is not mounted read-only: ${ro}`);
    return `${version.stdout.trim()} (node ${process.version}, kernel ${must(['uname', '-r']).stdout.trim()}); ${ROOT}: ${ro}`;
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
      must(['cryptsetup', 'luksFormat', '--batch-mode', '--type', 'luks2', ...FAST_PBKDF, '--key-file', '-', disk], passphrase(disk));
      const enrolled = agent(['volume', 'enroll', disk, '--name', name, '--key-file', pass, ...(socket ? ['--key-socket'] : [])]);
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
  await c('the daemon activates the LUKS2 volume through libcryptsetup: /dev/mapper exists, cryptsetup status agrees', () => {
    const status = run(['cryptsetup', 'status', DAEMON_VOLUME]);
    const json = agent(['status', '--json']).stdout;
    expectThat(existsSync(mapper), `${mapper} does not exist; cryptsetup status: ${status.shown}\nagent status: ${json}`);
    expectThat(/is active/.test(status.stdout), status.shown);
    expectThat(/type:\s+LUKS2/.test(status.stdout) && status.stdout.includes(`device:  ${DAEMON_DISK}`), status.shown);
    const dm = must(['dmsetup', 'table', '--showkeys', DAEMON_VOLUME]).stdout.split(' ').slice(0, 3).join(' ');
    return `${status.shown}\ndm table (key omitted): ${dm}\nagent status: ${json.trim().slice(0, 1500)}`;
  });
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
const activeAt = (unit: string) => Number(unitProps(unit, ['ActiveEnterTimestampMonotonic']).ActiveEnterTimestampMonotonic ?? 0);

const luksSecond: Step<'luks-second'> = async (c) => {
  await c('the daemon reached READY at boot', () => {
    const p = unitProps('kmip-agent.service', ['ActiveState', 'StatusText', 'ActiveEnterTimestampMonotonic', 'ExecMainStartTimestampMonotonic']);
    expectThat(p.ActiveState === 'active', JSON.stringify(p));
    const readyMs = Number(p.ActiveEnterTimestampMonotonic) / 1000;
    return `READY ${readyMs.toFixed(0)} ms after kernel start (process started at ${(Number(p.ExecMainStartTimestampMonotonic) / 1000).toFixed(0)} ms); STATUS=${p.StatusText}`;
  });
  const cryptUnit = `systemd-cryptsetup@${must(['systemd-escape', CRYPTTAB_VOLUME]).stdout.trim()}.service`;
  await c('systemd-cryptsetup opened the crypttab volume with a key from the agent socket', () => {
    const p = unitProps(cryptUnit, ['ActiveState', 'Result', 'After', 'Before']);
    const status = run(['cryptsetup', 'status', CRYPTTAB_VOLUME]);
    expectThat(p.ActiveState === 'active' && /is active/.test(status.stdout), `${cryptUnit}: ${JSON.stringify(p)}\n${status.shown}\n${unitJournal(cryptUnit)}`);
    return `${cryptUnit}: ${p.ActiveState}/${p.Result}\n${status.shown}\nBefore=${p.Before}`;
  });
  await c('the key socket hand-out is in the journal', () => {
    const lines = run(['journalctl', '-b', '--no-pager', '-o', 'cat', '-u', 'kmip-agent.service']).stdout.split('\n');
    const served = lines.filter((l) => l.includes(CRYPTTAB_VOLUME) && /key-socket|keySocket|served/i.test(l));
    expectThat(served.length > 0, `no key-socket line naming ${CRYPTTAB_VOLUME} in the daemon's journal:\n${lines.slice(-40).join('\n')}`);
    expectThat(!served.some((l) => /refus/i.test(l)), served.join('\n'));
    return served.join('\n');
  });
  await c('the crypttab volume was open before its mount unit, and its data reads back', () => {
    const mountUnit = `${escapePath('/mnt/b')}.mount`;
    const opened = activeAt(cryptUnit);
    const mounted = activeAt(mountUnit);
    expectThat(opened > 0 && mounted > 0 && opened <= mounted, `${cryptUnit} active at ${opened} µs, ${mountUnit} at ${mounted} µs`);
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

const STEPS: { [S in StepName]: Step<S> } = { 'luks-first': luksFirst, 'luks-second': luksSecond };

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
