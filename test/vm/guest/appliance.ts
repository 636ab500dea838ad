/**
 * Runs inside the VM (registered in test/vm/guest/main.ts): the whole appliance (issue 13, item 4) and bad
 * input against it. Boot 1 ends by installing a unit that serves the emulated Opal drive at boot (TCMU
 * handler + tcm_loop, power-cycled first as at power-on) before the shipped, enabled kmip-agent.service.
 * Boot 2 is then an appliance boot (checked after luks-second) and prepares boot 3, where the key server
 * is held back 20 s past a 5 s boot deadline; boot 3 ends with bad input (a volume asked for under
 * another name, an unknown crypttab volume, a drive that disappears mid-unlock).
 * Layout as test/vm/guest/main.ts makes it: the disks, the volumes, the drive image of the tcmu step.
 */
import { chmodSync, existsSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ApiClient } from '../../../src/api/client.js';
import type { StepName } from '../scenarios.js';
import { CheckFailed, expectThat, must, run, unitProps } from './checks.js';
import type { Step } from './main.js';

const ROOT = '/opt/kmip-agent';
const AGENT = ['/usr/bin/node', join(ROOT, 'dist', 'kmip-agent.mjs')];
const WORK = '/var/lib/kmip-vm';
const OPAL_IMAGE = `${WORK}/opal1.img`;
/** What the tcmu step wrote at LBA 100 of the drive in boot 1. */
const MARKER = 'kmip-vm data behind a real sd and sed-opal';
const CRYPTTAB_DISK = '/dev/vdc';
const VOLUMES = { 'data-a': '/mnt/a', 'data-b': '/mnt/b' } as const;
const KEY_SOCKET = '/run/kmip-agent/luks.sock';
const AGENT_UNIT = 'kmip-agent.service';
const PYKMIP_UNIT = 'kmip-vm-pykmip.service';
const DRIVE_UNIT = 'kmip-vm-tcmu.service';
const DRIVE_SCRIPT = '/usr/local/sbin/kmip-vm-tcmu';
const LATE_UNIT = 'kmip-vm-pykmip-late.service';
const AT_READY_UNIT = 'kmip-vm-status-at-ready.service';
const STATUS_AT_READY = `${WORK}/status-at-ready.json`;
/** Boot 3's agent config: READY at most 5 s after the boot unlock starts, retries at most 3 s apart. */
const LATE_DEADLINE_S = 5;
const HOLD_BACK_S = 20;
const SYSTEMD_CRYPTSETUP = '/lib/systemd/systemd-cryptsetup';

const agent = (args: string[]) => must([...AGENT, ...args], undefined, 300_000);
const escapePath = (path: string) => must(['systemd-escape', '--path', path]).stdout.trim();
const activeAt = (unit: string) =>
  Number(unitProps(unit, ['ActiveEnterTimestampMonotonic']).ActiveEnterTimestampMonotonic ?? 0);
const seconds = (us: number) => `${(us / 1e6).toFixed(1)} s`;
const unitJournal = (unit: string) =>
  run(['journalctl', '-b', '--no-pager', '-o', 'short-monotonic', '-u', unit]).stdout.slice(-4000);

function installUnit(name: string, text: string, wantedBy = 'multi-user.target'): void {
  writeFileSync(`/etc/systemd/system/${name}`, text);
  const link = `/etc/systemd/system/${wantedBy}.wants/${name}`;
  if (!existsSync(link)) symlinkSync(`/etc/systemd/system/${name}`, link);
}

/** The daemon's pino lines this boot, with their journal time (µs since kernel start). */
interface AgentEvent {
  mono: number;
  event?: string;
  msg?: string;
  [field: string]: unknown;
}
function agentEvents(): AgentEvent[] {
  const lines = run(['journalctl', '-b', '--no-pager', '-o', 'json', '-u', AGENT_UNIT], undefined, 60_000).stdout;
  return lines
    .split('\n')
    .filter(Boolean)
    .flatMap((line) => {
      const entry = JSON.parse(line) as { MESSAGE?: unknown; __MONOTONIC_TIMESTAMP?: string };
      if (typeof entry.MESSAGE !== 'string' || !entry.MESSAGE.startsWith('{')) return [];
      try {
        return [{ mono: Number(entry.__MONOTONIC_TIMESTAMP), ...(JSON.parse(entry.MESSAGE) as object) }];
      } catch {
        return [];
      }
    });
}
const shown = (events: AgentEvent[]) =>
  events.map((e) => `${seconds(e.mono)} ${e.event ?? ''} ${e.msg ?? ''}`.trim()).join('\n');

interface Status {
  ready: boolean;
  mode: string;
  health: string;
  drives: { id: string; kind: string; device: string; state: string; attempts: number; lastError?: { code: string } }[];
  faults: { code: string }[];
}
const status = () => JSON.parse(agent(['status', '--json']).stdout) as Status;
/** The same over the API from this process, for polling (a CLI process takes seconds to start under TCG). */
const api = new ApiClient('/run/kmip-agent/api.sock', 30_000);
const liveStatus = () => api.call<Status>('GetStatus').catch(() => undefined);
const allUnlocked = (s: Status) =>
  s.drives.length > 0 && s.drives.every((d) => ['unlocked', 'served'].includes(d.state));

async function until<T>(
  what: string,
  timeoutMs: number,
  probe: () => T | undefined | Promise<T | undefined>,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new CheckFailed(`${what} did not happen within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** The sd disk of the emulated drive (INQUIRY vendor KMIPVM). */
function opalDisk(): string | undefined {
  for (const name of readdirSync('/sys/block').filter((n) => n.startsWith('sd'))) {
    if (readFileSync(`/sys/block/${name}/device/vendor`, 'utf8').trim() === 'KMIPVM') return `/dev/${name}`;
  }
  return undefined;
}
const readBlock = (disk: string, lba: number) =>
  run(['dd', `if=${disk}`, 'bs=512', `skip=${lba}`, 'count=1', 'iflag=direct', 'status=none']);

/** Failed-authentication counts the emulator keeps for each PIN (its state file, as last committed). */
const emulatorTries = () =>
  readFileSync(`${OPAL_IMAGE}.state`, 'utf8')
    .split('\n')
    .filter((l) => /\.tries \d+$/.test(l));

/**
 * The drive unit's script: the configfs device and tcm_loop LUN of the tcmu step, made at boot. `stop`
 * (also after the handler is killed) fails what it left in flight and removes the disk.
 */
const DRIVE_SCRIPT_TEXT = `#!/bin/sh
# kmip-vm-tcmu.service (VM tests): the emulated Opal drive as a SCSI disk from early boot, as an appliance's drive is.
set -eu
img=${OPAL_IMAGE}
dev=/sys/kernel/config/target/core/user_1/opal1
tpg=/sys/kernel/config/target/loopback/naa.5001405000000001/tpgt_1
case "$1" in
pre)
  modprobe target_core_user
  modprobe tcm_loop
  [ -d /sys/kernel/config/target/core ] || mount -t configfs configfs /sys/kernel/config
  # Power-on: LockOnReset ranges lock, as on a machine that was off.
  ${AGENT.join(' ')} drive emulate power-cycle "emu:$img"
  mkdir -p "$dev"
  # A device a killed handler left enabled (its stop could not remove it) is served again as it is.
  if [ "$(cat "$dev/enable")" != 1 ]; then
    printf 'dev_size=%s' ${64 * 1024 * 1024} >"$dev/control"
    printf 'dev_config=kmipvm/%s' "$img" >"$dev/control"
    echo 1 >"$dev/enable"
  fi
  rm -f /run/kmip-vm-tcmu.uio
  i=0
  until [ -s /run/kmip-vm-tcmu.uio ]; do
    for u in /sys/class/uio/uio*; do
      if grep -qs "^tcm-user/1/opal1/" "$u/name"; then echo "/dev/\${u##*/}" >/run/kmip-vm-tcmu.uio; fi
    done
    i=$((i + 1)); [ "$i" -lt 120 ] || { echo "no uio device for the TCMU device" >&2; exit 1; }
    [ -s /run/kmip-vm-tcmu.uio ] || sleep 0.25
  done
  udevadm settle --timeout=60
  ;;
serve)
  exec ${ROOT}/build/vm/tcmu-opal serve "$img" "$(cat /run/kmip-vm-tcmu.uio)"
  ;;
post)
  mkdir -p "$tpg/lun/lun_0"
  cat "$tpg/nexus" >/dev/null 2>&1 || echo naa.5001405000000002 >"$tpg/nexus"
  ln -s "$dev" "$tpg/lun/lun_0/opal1"
  i=0
  until grep -qs KMIPVM /sys/block/sd*/device/vendor; do
    i=$((i + 1)); [ "$i" -lt 480 ] || { echo "sd never probed the disk" >&2; exit 1; }
    sleep 0.25
  done
  udevadm settle --timeout=60
  disk=$(grep -ls KMIPVM /sys/block/sd*/device/vendor | cut -d/ -f4)
  if dd if="/dev/$disk" of=/dev/null bs=512 skip=100 count=1 iflag=direct status=none 2>/dev/null; then
    echo "disk $disk up, readable at power-on"
  else
    echo "disk $disk up, locked at power-on: reads refused"
  fi
  ;;
stop)
  # Commands the handler never answered fail now (CHECK CONDITION), then the disk goes away.
  [ ! -e "$dev/action/reset_ring" ] || echo 2 >"$dev/action/reset_ring" || true
  rm -f "$tpg/lun/lun_0/opal1"
  rmdir "$tpg/lun/lun_0" 2>/dev/null || true
  rmdir "$dev" 2>/dev/null || true
  echo "disk removed"
  ;;
esac
`;

const DRIVE_UNIT_TEXT = `[Unit]
Description=Emulated Opal drive as a SCSI disk (VM tests: TCMU handler + tcm_loop), up before the agent as a real drive is
DefaultDependencies=no
After=local-fs.target sys-kernel-config.mount systemd-udevd.service
Before=${AGENT_UNIT}
RequiresMountsFor=${ROOT} ${WORK}

[Service]
Type=exec
ExecStartPre=${DRIVE_SCRIPT} pre
ExecStart=${DRIVE_SCRIPT} serve
ExecStartPost=${DRIVE_SCRIPT} post
ExecStopPost=${DRIVE_SCRIPT} stop
TimeoutStartSec=300s

[Install]
WantedBy=multi-user.target
`;

const prepare: Step<'appliance-prepare'> = async (c) => {
  await c(
    'the next boot is an appliance boot: a unit serves the emulated drive before the agent, power-cycled as at power-on',
    () => {
      writeFileSync(DRIVE_SCRIPT, DRIVE_SCRIPT_TEXT);
      chmodSync(DRIVE_SCRIPT, 0o755);
      installUnit(DRIVE_UNIT, DRIVE_UNIT_TEXT);
      must(['systemctl', 'daemon-reload']);
      const enabled = must(['systemctl', 'is-enabled', DRIVE_UNIT, AGENT_UNIT]).stdout.trim().replace(/\n/g, ', ');
      const dropIns = readdirSync(`/etc/systemd/system/${AGENT_UNIT}.d`).join(', ');
      const shipped = readFileSync(join(ROOT, 'systemd', AGENT_UNIT), 'utf8');
      expectThat(
        readFileSync(`/etc/systemd/system/${AGENT_UNIT}`, 'utf8') === shipped,
        'the installed kmip-agent.service differs from systemd/kmip-agent.service',
      );
      return `${DRIVE_UNIT} and ${AGENT_UNIT} enabled (${enabled}); ${AGENT_UNIT} as shipped, drop-ins: ${dropIns}\n${DRIVE_UNIT_TEXT}`;
    },
  );
};

const appliance: Step<'appliance'> = async (c) => {
  const disk = opalDisk() ?? '';
  await c(
    'the drive unit served the emulated Opal drive before the agent started, power-cycled and locked as at power-on',
    () => {
      const drive = unitProps(DRIVE_UNIT, ['ActiveState', 'ActiveEnterTimestampMonotonic']);
      const agentStarted = Number(
        unitProps(AGENT_UNIT, ['ExecMainStartTimestampMonotonic']).ExecMainStartTimestampMonotonic,
      );
      // All of it: the handler's command log would push the power cycle out of unitJournal's tail.
      const journal = run(['journalctl', '-b', '--no-pager', '-o', 'short-monotonic', '-u', DRIVE_UNIT]).stdout;
      expectThat(drive.ActiveState === 'active' && disk !== '', `${JSON.stringify(drive)} disk ${disk}\n${journal}`);
      const up = Number(drive.ActiveEnterTimestampMonotonic);
      expectThat(up > 0 && up <= agentStarted, `${DRIVE_UNIT} up at ${up} µs, agent started at ${agentStarted} µs`);
      const lines = journal.split('\n').filter((l) => /power cycled|disk \w+ up|serving/.test(l));
      expectThat(
        /power cycled emu:/.test(journal) && /locked at power-on: reads refused/.test(journal),
        lines.join('\n'),
      );
      return `${disk} up at ${seconds(up)}, the agent's process started at ${seconds(agentStarted)}\n${lines.join('\n')}`;
    },
  );
  await c('multi-user was reached with the drive unlocked and both LUKS volumes mounted', () => {
    const multiUser = activeAt('multi-user.target');
    expectThat(multiUser > 0, 'multi-user.target is not active');
    const mounts = Object.entries(VOLUMES).map(([name, path]) => {
      const unit = `${escapePath(path)}.mount`;
      const at = activeAt(unit);
      expectThat(at > 0 && at <= multiUser, `${unit} active at ${at} µs, multi-user at ${multiUser} µs`);
      const data = readFileSync(join(path, 'proof.txt'), 'utf8');
      return `${name} on ${path} mounted at ${seconds(at)}: ${JSON.stringify(data.trim())}`;
    });
    const unlocked = agentEvents().filter((e) => e.event === 'unlock' && e.kind === 'opal' && e.result === 'unlocked');
    expectThat(unlocked.length === 1 && unlocked[0]!.mono <= multiUser, `opal unlocks:\n${shown(unlocked)}`);
    const block = readBlock(disk, 100);
    expectThat(block.status === 0 && block.stdout.startsWith(MARKER), block.shown.slice(0, 300));
    return `multi-user at ${seconds(multiUser)}; ${disk} unlocked by the daemon at ${seconds(unlocked[0]!.mono)}, LBA 100: ${JSON.stringify(MARKER)}\n${mounts.join('\n')}`;
  });
  await c(
    'kmip-agent status --json says so: ready, normal, healthy, no faults, every drive and volume unlocked or served',
    () => {
      const s = status();
      const text = JSON.stringify(s, null, 1);
      expectThat(s.ready && s.mode === 'normal' && s.health === 'healthy' && s.faults.length === 0, text);
      expectThat(allUnlocked(s), text);
      const kinds = s.drives.map((d) => `${d.kind}:${d.id}=${d.state}`);
      expectThat(
        s.drives.some((d) => d.kind === 'opal' && d.state === 'unlocked'),
        text,
      );
      expectThat(s.drives.filter((d) => d.kind === 'luks').length === 2, text);
      return `ready ${s.ready}, mode ${s.mode}, health ${s.health}, faults ${s.faults.length}: ${kinds.join(', ')}`;
    },
  );
  await c("the time from kernel start to the daemon's READY is reported", () => {
    const p = unitProps(AGENT_UNIT, ['ExecMainStartTimestampMonotonic', 'ActiveEnterTimestampMonotonic', 'StatusText']);
    const ready = agentEvents().find((e) => e.event === 'ready');
    const readyAt = Number(p.ActiveEnterTimestampMonotonic);
    expectThat(
      readyAt > 0 && ready !== undefined && ready.mode === 'normal',
      `${JSON.stringify(p)} ${JSON.stringify(ready)}`,
    );
    const multiUser = activeAt('multi-user.target');
    return `kernel start -> daemon READY: ${seconds(readyAt)} (its process started at ${seconds(Number(p.ExecMainStartTimestampMonotonic))}, boot unlock ${String(ready!.ms)} ms; multi-user at ${seconds(multiUser)}); STATUS=${p.StatusText}`;
  });
  await c(`the next boot holds the key server back ${HOLD_BACK_S} s, with a ${LATE_DEADLINE_S} s boot deadline`, () => {
    const path = '/etc/kmip-agent/config.json';
    const config = JSON.parse(readFileSync(path, 'utf8')) as { boot?: Record<string, number> };
    config.boot = { ...config.boot, deadlineSeconds: LATE_DEADLINE_S, retryCapSeconds: 3 };
    writeFileSync(path, `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600 });
    must(['systemctl', 'disable', PYKMIP_UNIT]);
    // The mounts wait for the agent's volumes past the held-back server: under TCG on a loaded machine the
    // agent itself may start minutes into the boot, so luks-first's 240 s device timeout is not enough here.
    const fstab = readFileSync('/etc/fstab', 'utf8').replace(
      /x-systemd\.device-timeout=240s/g,
      'x-systemd.device-timeout=900s',
    );
    writeFileSync('/etc/fstab', fstab);
    // After the snapshot at READY (the agent's 5 s deadline), and 15 s more: 20 s into the boot unlock at least.
    installUnit(
      LATE_UNIT,
      `[Unit]
Description=Starts the key server late (VM tests: a boot where the key server comes up after the agent's deadline)
DefaultDependencies=no
After=${AT_READY_UNIT}
# DefaultDependencies=no drops the ordering a target adds to what it wants: the scenario runs after this.
Before=multi-user.target

[Service]
Type=oneshot
ExecStart=/bin/sleep ${HOLD_BACK_S - LATE_DEADLINE_S}
ExecStart=/bin/systemctl start --no-block ${PYKMIP_UNIT}
`,
    );
    installUnit(
      AT_READY_UNIT,
      `[Unit]
Description=kmip-agent status --json as the daemon reports READY (VM tests)
DefaultDependencies=no
After=${AGENT_UNIT}
Before=multi-user.target

[Service]
Type=oneshot
ExecStart=/bin/sh -c '${AGENT.join(' ')} status --json >${STATUS_AT_READY}'
`,
    );
    must(['systemctl', 'daemon-reload']);
    return `boot: ${JSON.stringify(config.boot)}; fstab device timeouts 900 s; ${PYKMIP_UNIT} ${run(['systemctl', 'is-enabled', PYKMIP_UNIT]).stdout.trim()}; ${LATE_UNIT} and ${AT_READY_UNIT} enabled`;
  });
};

const lateServer: Step<'late-server'> = async (c) => {
  await c(
    'READY came at the boot deadline, degraded, before the key server was up (status --json at READY and the journal say so)',
    () => {
      const events = agentEvents();
      const ready = events.find((e) => e.event === 'ready');
      const raised = events.find((e) => e.event === 'fault_raised' && e.fault === 'KmipServerFault');
      const bootAt = events.find((e) => e.event === 'boot')?.mono ?? 0;
      const readyAt = activeAt(AGENT_UNIT);
      const serverAt = activeAt(PYKMIP_UNIT);
      const atReady = existsSync(STATUS_AT_READY) ? readFileSync(STATUS_AT_READY, 'utf8') : '';
      const evidence = `READY (systemd) at ${seconds(readyAt)}, key server started at ${seconds(serverAt)}\n${shown(events.slice(0, 30))}\nstatus at READY: ${atReady.slice(0, 2000)}`;
      expectThat(ready?.mode === 'degraded' && typeof ready.ms === 'number', evidence);
      const ms = ready!.ms as number;
      expectThat(
        ms >= LATE_DEADLINE_S * 1000 && ms < (LATE_DEADLINE_S + 10) * 1000,
        `boot unlock took ${ms} ms\n${evidence}`,
      );
      expectThat(raised !== undefined && raised.mono <= ready!.mono, evidence);
      expectThat(readyAt > 0 && serverAt > readyAt && serverAt - bootAt >= HOLD_BACK_S * 1e6, evidence);
      const s = JSON.parse(atReady || '{}') as Partial<Status>;
      expectThat(
        s.ready === true && s.mode === 'degraded' && (s.faults ?? []).some((f) => f.code === 'KmipServerFault'),
        evidence,
      );
      expectThat(!allUnlocked(s as Status), evidence);
      return `boot unlock from ${seconds(bootAt)}: READY degraded after ${ms} ms (deadline ${LATE_DEADLINE_S} s) at ${seconds(readyAt)}; the key server started at ${seconds(serverAt)}; status at READY: mode ${s.mode}, faults ${(s.faults ?? []).map((f) => f.code).join(',')}, ${(s.drives ?? []).map((d) => `${d.id}=${d.state}`).join(', ')}\n${raised!.msg ?? ''}\n${ready!.msg ?? ''}`;
    },
  );
  await c('once the key server arrived, the drive was unlocked and both volumes opened and mounted', async () => {
    await until('everything unlocked', 180_000, async () => {
      const now = await liveStatus();
      return now && allUnlocked(now) ? now : undefined;
    });
    const s = status();
    expectThat(allUnlocked(s), JSON.stringify(s));
    // The mount units wait for the mapper devices the unlock makes (x-systemd.device-timeout).
    await until('both volumes mounted', 240_000, () =>
      Object.values(VOLUMES).every((path) => activeAt(`${escapePath(path)}.mount`) > 0) ? true : undefined,
    );
    const serverAt = activeAt(PYKMIP_UNIT);
    const events = agentEvents();
    const unlocks = events.filter((e) => e.event === 'unlock' && (e.result === 'unlocked' || e.result === 'served'));
    expectThat(unlocks.length >= 3 && unlocks.every((e) => e.mono > serverAt), shown(unlocks));
    const mounts = Object.entries(VOLUMES).map(([name, path]) => {
      const unit = `${escapePath(path)}.mount`;
      const at = activeAt(unit);
      expectThat(
        at > serverAt,
        `${unit} active at ${at} µs, the key server started at ${serverAt} µs\n${unitJournal(unit)}`,
      );
      return `${name}: ${must(['cryptsetup', 'status', name]).stdout.split('\n')[0]}; ${path} mounted at ${seconds(at)}: ${readFileSync(join(path, 'proof.txt'), 'utf8').trim()}`;
    });
    const waited = events.filter((e) => e.event === 'keysocket.waiting' || e.event === 'keysocket.key');
    const handed = waited.find(
      (e) => e.event === 'keysocket.key' && e.outcome === 'handed-out' && e.volume === 'data-b',
    );
    expectThat(handed !== undefined, `no key-socket hand-out of data-b:\n${shown(waited)}`);
    const disk = opalDisk() ?? '';
    expectThat(readBlock(disk, 100).stdout.startsWith(MARKER), `${disk} LBA 100 does not read back`);
    return `key server started at ${seconds(serverAt)}; ${s.drives.map((d) => `${d.id}=${d.state}`).join(', ')}\n${shown(unlocks)}\n${mounts.join('\n')}\nkey socket:\n${shown(waited).slice(0, 1500)}`;
  });
  await c('the key server fault was cleared: status --json is normal and healthy', () => {
    const events = agentEvents();
    const cleared = events.find((e) => e.event === 'fault_cleared' && e.fault === 'KmipServerFault');
    const s = status();
    expectThat(cleared !== undefined, shown(events.filter((e) => String(e.event).startsWith('fault'))));
    expectThat(s.mode === 'normal' && s.health === 'healthy' && s.faults.length === 0, JSON.stringify(s));
    return `${seconds(cleared!.mono)} ${cleared!.msg ?? ''}; now mode ${s.mode}, health ${s.health}, no faults`;
  });
};

/** The daemon's key-socket events about `volume` since `after` (µs). */
const socketEvents = (volume: string, after: number) =>
  agentEvents().filter((e) => e.event === 'keysocket.key' && e.volume === volume && e.mono >= after);
const nowUs = () => Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]) * 1e6;

const badInput: Step<'bad-input'> = async (c) => {
  await c('a key socket request for a known volume under another name is refused, and nothing is opened', () => {
    const since = nowUs() - 1e6;
    const alias = 'data-b-alias';
    const r = run(
      [SYSTEMD_CRYPTSETUP, 'attach', alias, CRYPTTAB_DISK, KEY_SOCKET, 'headless=true,tries=1'],
      undefined,
      90_000,
    );
    const events = socketEvents(alias, since);
    expectThat(r.status !== 0 && !existsSync(`/dev/mapper/${alias}`), r.shown);
    expectThat(
      events.length >= 1 && events.every((e) => e.outcome === 'refused' && e.reason === 'unknown-volume'),
      `${r.shown}\n${shown(events)}`,
    );
    return `${r.shown.slice(0, 600)}\nagent: ${JSON.stringify(events[0])}`;
  });
  await c(
    'a crypttab entry for a volume the agent does not know fails with the refusal in the journal, and nothing is opened',
    () => {
      const image = `${WORK}/stray.img`;
      must(['truncate', '-s', '20M', image]);
      const pbkdf = ['--pbkdf', 'pbkdf2', '--pbkdf-force-iterations', '1000'];
      must(
        ['cryptsetup', 'luksFormat', '--batch-mode', '--type', 'luks2', ...pbkdf, '--key-file', '-', image],
        'stray',
      );
      const loop = must(['losetup', '--find', '--show', image]).stdout.trim();
      writeFileSync(
        '/etc/crypttab',
        `${readFileSync('/etc/crypttab', 'utf8')}stray ${loop} ${KEY_SOCKET} luks,noauto,headless=true,tries=1\n`,
      );
      must(['systemctl', 'daemon-reload']);
      const since = nowUs() - 1e6;
      const unit = 'systemd-cryptsetup@stray.service';
      const r = run(['systemctl', 'start', unit], undefined, 120_000);
      const p = unitProps(unit, ['ActiveState', 'Result']);
      const events = socketEvents('stray', since);
      const journal = unitJournal(unit);
      expectThat(
        r.status !== 0 && p.ActiveState === 'failed' && !existsSync('/dev/mapper/stray'),
        `${r.shown}\n${JSON.stringify(p)}\n${journal}`,
      );
      expectThat(
        events.length >= 1 && events.every((e) => e.outcome === 'refused' && e.reason === 'unknown-volume'),
        `${shown(events)}\n${journal}`,
      );
      run(['losetup', '-d', loop]);
      return `${unit}: ${p.ActiveState}/${p.Result}\nagent: ${JSON.stringify(events[0])}\n${journal.split('\n').slice(-6).join('\n')}`;
    },
  );
  await c(
    'a drive that disappears mid-unlock: a clear error, nothing unlocked, no try spent, unlocked once it is back',
    async () => {
      const disk = opalDisk();
      expectThat(disk !== undefined, 'no emulated drive to start from');
      const handlerPid = Number(unitProps(DRIVE_UNIT, ['MainPID']).MainPID);
      const device = disk!.slice('/dev/'.length);
      // Relock it (a power cycle the agent does not see), freeze the handler, and have the agent unlock it at start.
      process.kill(handlerPid, 'SIGUSR1');
      await until('the power cycle relocking the drive', 60_000, () =>
        readBlock(disk!, 100).status !== 0 ? true : undefined,
      );
      process.kill(handlerPid, 'SIGSTOP');
      const triesBefore = emulatorTries();
      const since = nowUs();
      must(['systemctl', 'restart', '--no-block', AGENT_UNIT]);
      const busy = `/sys/block/${device}/device/device_busy`;
      await until("the agent's command in flight on the frozen drive", 180_000, () =>
        Number(readFileSync(busy, 'utf8')) > 0 ? true : undefined,
      );
      const midway = agentEvents()
        .filter((e) => e.mono >= since)
        .map((e) => e.event);
      // The drive disappears: the handler dies, the unit's stop fails its commands and removes the disk.
      process.kill(handlerPid, 'SIGKILL');
      await until('the disk removed', 120_000, () => (existsSync(disk!) ? undefined : true));
      const failed = await until('the agent reporting the drive', 120_000, async () => {
        const d = (await liveStatus())?.drives.find((t) => t.kind === 'opal');
        return d && d.lastError && !['unlocked', 'pending'].includes(d.state) ? d : undefined;
      });
      const info = agent(['drive', 'emulate', 'info', `emu:${OPAL_IMAGE}`]).stdout.trim();
      const tries = emulatorTries();
      expectThat(/range \d+ \([^)]*\): locked/.test(info) && !/unlocked/.test(info), info);
      expectThat(
        tries.length > 0 && tries.join() === triesBefore.join(),
        `tries before: ${triesBefore.join(', ')}\nafter: ${tries.join(', ')}`,
      );
      const failures = agentEvents().filter((e) => e.mono >= since && e.event === 'unlock' && e.kind === 'opal');
      // Back: the unit power-cycles it and serves it again; the agent's retries unlock it.
      must(['systemctl', 'start', DRIVE_UNIT], undefined, 300_000);
      const back = await until('the agent unlocking the drive again', 180_000, async () => {
        const d = (await liveStatus())?.drives.find((t) => t.kind === 'opal');
        return d?.state === 'unlocked' ? d : undefined;
      });
      const again = opalDisk() ?? '';
      expectThat(readBlock(again, 100).stdout.startsWith(MARKER), `${again} LBA 100 does not read back`);
      const opal = agentEvents().filter((e) => e.mono >= since && e.event === 'unlock' && e.kind === 'opal');
      const refused = opal.filter((e) => /REFUSED|LOCKOUT/.test(JSON.stringify(e.error ?? '')));
      expectThat(refused.length === 0, shown(refused));
      expectThat(opal.filter((e) => e.result === 'unlocked').length === 1, shown(opal));
      return [
        `in flight on ${disk} when the handler died (agent events so far: ${midway.join(', ')})`,
        `agent: ${failed.id} ${failed.state} after ${failed.attempts} attempt(s), lastError ${JSON.stringify(failed.lastError)}`,
        ...failures.map((e) => `${seconds(e.mono)} ${e.msg ?? ''} ${JSON.stringify(e.error ?? '')}`),
        `emulator with no handler: ${info.replace(/\n/g, '; ')}; tries: ${tries.join(', ')}`,
        `back as ${again}: ${back.state} after ${back.attempts} attempt(s); no refusal, one unlock`,
      ].join('\n');
    },
  );
};

/** Registered in main.ts. */
export const APPLIANCE_STEPS: { [S in Exclude<StepName, 'luks-first' | 'luks-second' | 'tcmu'>]: Step<S> } = {
  'appliance-prepare': prepare,
  appliance,
  'late-server': lateServer,
  'bad-input': badInput,
};
