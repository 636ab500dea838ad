/**
 * The shipped unit under the real thing: systemd/kmip-agent.service, adapted only by a drop-in, run by
 * systemd booted as PID 1 of a systemd-nspawn container (test/support/nspawn.ts), against PyKMIP on the
 * host's loopback (the container shares the host's network) with emulated Opal drives enrolled on the
 * host beforehand. The host's config and state directories are bound where the unit expects them
 * (/etc/kmip-agent, /var/lib/kmip-agent), so the unit's own ConfigurationDirectory=/StateDirectory= are
 * used as shipped; the drive images are bound at the same path on both sides, and the drives' "RAM" is
 * shared so that host and container see the same power state. The first run builds the container's
 * rootfs (mmdebstrap, ~25-60 s, needs a Debian mirror); later runs reuse /var/cache/kmip-agent-test/.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { packageRoot } from '../../src/native/addon.js';
import {
  createEmulatedDrive,
  destroyEmulatedDrive,
  emulatedDriveInfo,
  emulatedImagePath,
  powerCycleEmulatedDrive,
} from '../../src/drives/emulator.js';
import { readBlock, writeBlock } from '../support/daemon-harness.js';
import { pykmipCliArgs, startPykmip, type PykmipServer } from '../support/pykmip.js';
import { Container, TEST_CACHE_DIR, ensureRootfs, nspawnUnavailableReason } from '../support/nspawn.js';

const ROOT = packageRoot();
const CLI = join(ROOT, 'dist', 'kmip-agent.mjs');
const UNIT = 'kmip-agent.service';
const INSIDE_CLI = ['/usr/bin/node', '/opt/kmip-agent/dist/kmip-agent.mjs'];
const DRIVES = ['EMU-N1', 'EMU-N2', 'EMU-N3'];
const unavailable = nspawnUnavailableReason();

/** The emulated drives' RAM for this file's drives (on tmpfs: it holds unwrapped media keys). */
let ramDir = '';

/**
 * `kmip-agent <args> --json` on the host. The host's own handling of the emulated drives (create, write,
 * power-cycle, read, info, destroy) runs in this process with the library calls those commands wrap,
 * against the same drive RAM (KMIP_AGENT_EMU_RAM_DIR is set to it for this file's process): a CLI process
 * each would be most of this file's host-side time.
 */
function hostCli(args: string[]) {
  const run = spawnSync(process.execPath, [CLI, ...args, '--json'], {
    encoding: 'utf8',
    env: { ...process.env, KMIP_AGENT_EMU_RAM_DIR: ramDir },
  });
  return { code: run.status, stdout: run.stdout, json: () => JSON.parse(run.stdout) as Record<string, unknown> };
}

function mustCli(args: string[]): Record<string, unknown> {
  const run = hostCli(args);
  if (run.code !== 0)
    throw new Error(`kmip-agent ${args.slice(0, 3).join(' ')} failed (exit ${run.code}): ${run.stdout}`);
  return run.json();
}

/** The daemon's JSON log lines in the unit's journal. */
function daemonEvents(journal: string): { event?: string; drive?: string; result?: string; msg?: string }[] {
  return journal
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { event?: string; drive?: string; result?: string; msg?: string });
}

function readyLines(c: Container): string[] {
  return daemonEvents(c.journal(UNIT))
    .filter((e) => e.event === 'ready')
    .map((e) => e.msg ?? '');
}

function mode(path: string): number {
  return statSync(path).mode & 0o7777;
}

describe.skipIf(unavailable !== undefined)(
  `the shipped unit under systemd as PID 1 of a container${unavailable ? ` (skipped: ${unavailable})` : ''}`,
  () => {
    let server: PykmipServer | undefined;
    let container: Container | undefined;
    let work: string;
    let stateDir: string;
    let configDir: string;
    let drives: string[];

    const image = (device: string) => emulatedImagePath(device)!;
    /** Read from the host: the data written before the "reboot" reads back. */
    const expectReadable = async (device: string, serial: string) => {
      const read = await readBlock(device);
      expect(read.refused).toBeUndefined();
      expect(read.data!.toString()).toContain(`data on ${serial}`);
    };
    /** Read from the host: refused, the drive is locked. */
    const expectLocked = async (device: string) => expect((await readBlock(device)).refused).toBe('EMU_DATA_PROTECT');
    let previousRamDir: string | undefined;
    const refusedKeys = () =>
      (JSON.parse(readFileSync(join(stateDir, 'state.json'), 'utf8')) as { body: { refusedKeys: unknown[] } }).body
        .refusedKeys;

    beforeAll(async () => {
      const rootfs = ensureRootfs();
      ramDir = mkdtempSync('/dev/shm/kmip-agent-nspawn-ram-');
      previousRamDir = process.env.KMIP_AGENT_EMU_RAM_DIR;
      process.env.KMIP_AGENT_EMU_RAM_DIR = ramDir;
      server = await startPykmip();
      // Not under /tmp or /var/tmp: the unit's PrivateTmp=yes would hide the drive images from the daemon.
      work = mkdtempSync(join(TEST_CACHE_DIR, 'run-'));
      configDir = join(work, 'etc');
      stateDir = join(work, 'lib');
      const driveDir = join(work, 'drives');
      mkdirSync(driveDir);
      const dirs = ['--config-dir', configDir, '--state-dir', stateDir, '--runtime-dir', join(work, 'run')];
      mustCli(['setup', '--appliance-id', 'nspawn-appliance', ...pykmipCliArgs(server), ...dirs]);
      drives = DRIVES.map((serial) => `emu:${join(driveDir, `${serial}.img`)}`);
      for (const [i, serial] of DRIVES.entries()) await createEmulatedDrive(image(drives[i]!), 8, serial);
      mustCli(['drive', 'enroll', ...drives, ...dirs]);
      for (const [i, serial] of DRIVES.entries()) await writeBlock(drives[i]!, Buffer.from(`data on ${serial}\n`));
      // The boot systemd will run: every drive has lost power and is locked again.
      for (const d of drives) {
        await powerCycleEmulatedDrive(image(d));
        await expectLocked(d);
      }
      // Looser than the unit promises, so the test sees systemd (StateDirectoryMode=) tighten it.
      chmodSync(stateDir, 0o755);

      // The test's adaptation of the shipped unit, and nothing else: this checkout's CLI instead of an
      // installed /usr/bin/kmip-agent, a short watchdog so a hang is caught within the test, and the
      // emulated drives' image directory writable (ProtectSystem=strict keeps it read-only otherwise).
      const dropIn = join(work, 'kmip-agent.service.d');
      mkdirSync(dropIn);
      writeFileSync(
        join(dropIn, 'test.conf'),
        [
          '# Adaptation for test/systemd/nspawn.test.ts (not for appliances).',
          '[Service]',
          'ExecStart=',
          `ExecStart=${INSIDE_CLI.join(' ')} daemon`,
          'WatchdogSec=3s',
          `ReadWritePaths=${driveDir}`,
          '',
        ].join('\n'),
      );
      container = await Container.boot(rootfs, [
        { host: ROOT, container: '/opt/kmip-agent', readOnly: true },
        { host: join(ROOT, 'systemd', UNIT), container: `/etc/systemd/system/${UNIT}`, readOnly: true },
        { host: dropIn, container: `/etc/systemd/system/${UNIT}.d`, readOnly: true },
        { host: configDir, container: '/etc/kmip-agent' },
        { host: stateDir, container: '/var/lib/kmip-agent' },
        { host: driveDir },
        // The emulated drives' "RAM" (unlocked media keys; a missing one is how they notice a power loss)
        // is where the daemon looks by default: both sides must share it, or every access from the other
        // side would look like a power cycle (the drives are the host's; a container boot does not power them).
        { host: ramDir, container: '/dev/shm' },
      ]);
    }, 300_000);

    afterAll(async () => {
      await container?.stop();
      for (const d of drives ?? []) await destroyEmulatedDrive(image(d)).catch(() => undefined);
      await server?.stop();
      if (work) rmSync(work, { recursive: true, force: true });
      if (ramDir) rmSync(ramDir, { recursive: true, force: true });
      if (previousRamDir === undefined) delete process.env.KMIP_AGENT_EMU_RAM_DIR;
      else process.env.KMIP_AGENT_EMU_RAM_DIR = previousRamDir;
    }, 60_000);

    afterEach((context) => {
      // What systemd and the daemon said, when a test failed.
      if (context.task.result?.state === 'fail' && container) console.error(container.journal(UNIT));
    });

    it('runs the shipped unit, changed only by the test drop-in', () => {
      const c = container!;
      const shown = c.show(UNIT, ['FragmentPath', 'DropInPaths', 'Type', 'LoadState', 'DevicePolicy', 'DeviceAllow']);
      expect(shown).toMatchObject({
        LoadState: 'loaded',
        Type: 'notify',
        FragmentPath: `/etc/systemd/system/${UNIT}`,
        DropInPaths: `/etc/systemd/system/${UNIT}.d/test.conf`,
        // Every device stays reachable (drive ioctls, device-mapper). ProtectClock= implies DeviceAllow=char-rtc
        // only when a device policy is set anyway (systemd#18142, fixed in this 252.x); older systemds closed
        // off every other device with it.
        DevicePolicy: 'auto',
      });
      expect(shown.DeviceAllow ?? '').toBe('');
      const cat = c.exec(['systemctl', 'cat', UNIT]).stdout;
      expect(cat).toContain(readFileSync(join(ROOT, 'systemd', UNIT), 'utf8').trim());
    });

    it('systemctl start reaches active with the daemon STATUS line, every drive unlocked', async () => {
      const c = container!;
      // Type=notify: start returns once the daemon sent READY=1.
      const start = c.exec(['systemctl', 'start', UNIT], { timeoutMs: 100_000 });
      expect(start.stderr).toBe('');
      expect(start.status).toBe(0);
      const shown = c.show(UNIT, ['ActiveState', 'SubState', 'StatusText', 'NRestarts', 'WatchdogUSec']);
      expect(shown).toMatchObject({ ActiveState: 'active', SubState: 'running', NRestarts: '0', WatchdogUSec: '3s' });
      expect(shown.StatusText).toMatch(/^3\/3 drives unlocked/);
      // The STATUS= the daemon sent with READY=1, word for word.
      expect(readyLines(c)).toEqual([`ready: ${shown.StatusText}`]);

      // Through the API socket the unit's RuntimeDirectory= made, from inside the container.
      const status = c.exec([...INSIDE_CLI, 'status', '--json']);
      expect(status.status).toBe(0);
      const parsed = JSON.parse(status.stdout) as { ready: boolean; drives: { id: string; state: string }[] };
      expect(parsed.ready).toBe(true);
      expect(parsed.drives.map((d) => [d.id, d.state]).sort()).toEqual(DRIVES.map((id) => [id, 'unlocked']));
      // And from the host: the data written before the "reboot" reads back.
      for (const [i, serial] of DRIVES.entries()) await expectReadable(drives[i]!, serial);
    });

    it('keeps the directory and file modes the unit promises', () => {
      const c = container!;
      expect(mode(stateDir)).toBe(0o700); // StateDirectoryMode=0700 (it was 0755 before the start)
      const stateFiles = readdirSync(stateDir);
      expect(stateFiles).toContain('state.json');
      for (const f of stateFiles) {
        const path = join(stateDir, f);
        expect([f, mode(path)]).toEqual([f, statSync(path).isDirectory() ? 0o700 : 0o600]);
      }
      expect(mode(join(configDir, 'client.key'))).toBe(0o600);
      const inside = c.exec(['stat', '-c', '%n %a', '/var/lib/kmip-agent', '/etc/kmip-agent', '/run/kmip-agent']);
      expect(inside.stdout.trim().split('\n')).toEqual([
        '/var/lib/kmip-agent 700',
        '/etc/kmip-agent 700',
        '/run/kmip-agent 700',
      ]);
      const socket = c.exec(['stat', '-c', '%a %F', '/run/kmip-agent/api.sock']);
      expect(socket.stdout.trim()).toBe('600 socket');
    });

    it('a hung daemon is killed by the watchdog, restarted, and unlocks again without spending a try', async () => {
      const c = container!;
      const before = c.show(UNIT, ['MainPID', 'NRestarts', 'StatusText']);
      const journalBefore = c.journal(UNIT);
      // The drives lose power first (the running daemon does not notice), then the daemon hangs: the restarted
      // daemon has to unlock them for real. In this order the restart cannot overtake the power cycles (on a
      // loaded machine cycling all drives can take longer than WatchdogSec + RestartSec).
      for (const d of drives) {
        await powerCycleEmulatedDrive(image(d));
        await expectLocked(d);
      }
      const kill = c.exec(['systemctl', 'kill', '-s', 'SIGSTOP', UNIT]);
      expect(kill.status).toBe(0);
      // WatchdogSec=3s, then RestartSec=5s of the shipped unit, then the new daemon's boot unlock.
      const after = await c.waitForUnit(
        UNIT,
        ['ActiveState', 'SubState', 'MainPID', 'NRestarts', 'StatusText'],
        (p) => p.NRestarts === String(Number(before.NRestarts) + 1) && p.ActiveState === 'active',
        'a watchdog restart',
        45_000,
      );
      expect(after.MainPID).not.toBe(before.MainPID);
      expect(after.StatusText).toMatch(/^3\/3 drives unlocked/);
      expect(readyLines(c)).toEqual([`ready: ${before.StatusText}`, `ready: ${after.StatusText}`]);
      const journal = c.journal(UNIT);
      expect(journal).toMatch(/Watchdog timeout \(limit 3s\)/);
      for (const [i, serial] of DRIVES.entries()) {
        await expectReadable(drives[i]!, serial);
        expect((await emulatedDriveInfo(image(drives[i]!))).lockedOutAuthorities).toEqual([]);
      }
      // One authentication per drive, and it succeeded: no refusal, nothing remembered as refused.
      const restarted = journal.slice(journalBefore.length);
      const unlocks = daemonEvents(restarted).filter((e) => e.event === 'unlock');
      expect(unlocks.map((e) => [e.drive, e.result]).sort()).toEqual(DRIVES.map((id) => [id, 'unlocked']));
      expect(restarted).not.toMatch(/DriveUnlockFailed|DriveLockoutRisk|refused/);
      expect(refusedKeys()).toEqual([]);
    });

    it('stops cleanly, and nothing the daemon needs was blocked by the sandboxing', () => {
      const c = container!;
      // An inactive unit is garbage-collected at once (its ExecMain* properties with it), and systemd logs a
      // main process's clean exit only at debug level: raise it for the stop, to see how the daemon ended.
      expect(c.exec(['systemctl', 'log-level', 'debug']).status).toBe(0);
      const stop = c.exec(['systemctl', 'stop', UNIT], { timeoutMs: 100_000 });
      expect(c.exec(['systemctl', 'log-level', 'info']).status).toBe(0);
      expect(stop.status).toBe(0);
      expect(c.show(UNIT, ['ActiveState'])).toEqual({ ActiveState: 'inactive' });
      const journal = c.journal(UNIT);
      const stopping = journal.slice(journal.lastIndexOf('stopping on SIGTERM'));
      // It exited by itself with status 0 (not killed by the SIGTERM, nor by a SIGKILL after a stop timeout).
      expect(stopping).toMatch(/Main process exited, code=exited, status=0\/SUCCESS/);
      expect(stopping).toContain('Deactivated successfully');
      expect(stopping).not.toMatch(/timed out|SIGKILL/);
      expect(journal).not.toMatch(
        /EACCES|EPERM|EROFS|permission denied|operation not permitted|read-only file system/i,
      );
      expect(refusedKeys()).toEqual([]);
    });
  },
);
