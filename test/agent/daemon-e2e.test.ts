/**
 * The daemon end to end, as an appliance runs it: a real PyKMIP server, emulated Opal drives in image
 * files, and the real CLI and daemon processes (dist/src/cli/main.js) in temp config/state/runtime
 * directories, with sd_notify datagrams received on a real AF_UNIX socket. Every wait is on a log line,
 * a datagram or a process exit, and bounded.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { acquireStateLock } from '../../src/agent/state-lock.js';
import { StateStore } from '../../src/agent/state.js';
import { NotifyReceiver } from '../support/notify-receiver.js';
import { FaultProxy } from '../support/fault-proxy.js';
import { pykmipCliArgs, startPykmip, type PykmipServer } from '../support/pykmip.js';
import {
  Appliance,
  cli,
  COMMAND_TIMEOUT_MS,
  exitOf,
  ok,
  readBlock,
  running,
  writeBlock,
  type DaemonProcess,
  type Run,
  type StatusJson,
} from '../support/daemon-harness.js';

/** Each test spawns dozens of CLI processes; on a loaded two-core machine that takes a while. */
const E2E_TEST_TIMEOUT_MS = 180_000;

const receivers: NotifyReceiver[] = [];
let root: string;
let kmip: PykmipServer;

async function notifySocket(): Promise<NotifyReceiver> {
  const dir = mkdtempSync(join(root, 'notify-'));
  const receiver = await NotifyReceiver.start(join(dir, 'notify.sock'));
  receivers.push(receiver);
  return receiver;
}

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'kmip-agent-e2e-'));
  kmip = await startPykmip();
});

afterEach(async () => {
  for (const d of [...running]) d.kill();
  await Promise.all([...running].map((d) => exitOf(d).catch(() => undefined)));
  running.clear();
  receivers.splice(0).forEach((r) => r.stop());
});

afterAll(async () => {
  await kmip?.stop();
  if (root) rmSync(root, { recursive: true, force: true });
});

describe(
  'kmip-agent daemon end to end (PyKMIP, emulated drives, real processes)',
  { timeout: E2E_TEST_TIMEOUT_MS },
  () => {
    it('8 drives: READY=1 with every drive unlocked, data intact, STOPPING=1 on SIGTERM, and again after a power cycle', async () => {
      const nas = new Appliance('nas1', root);
      await nas.setup(kmip, kmip);
      await nas.createDrives(8);
      await nas.enroll();
      expect(nas.enrolled.size).toBe(8);

      // Enrollment enables locking but leaves the drives unlocked until their next power loss (data stays usable).
      expect((await readBlock(nas.devices[0]!)).data).toBeDefined();
      const payloads = nas.devices.map(() => randomBytes(512));
      await Promise.all(nas.devices.map((device, i) => writeBlock(device, payloads[i]!)));

      for (let boot = 1; boot <= 2; boot++) {
        await nas.powerCycle();
        for (const [i, locked] of (await Promise.all(nas.devices.map(readBlock))).entries()) {
          expect(locked.data, `${nas.devices[i]} readable after a power cycle`).toBeUndefined();
          expect(locked.refused).toBe('EMU_DATA_PROTECT');
        }

        const notify = await notifySocket();
        // As systemd with WatchdogSec=0.4 would start it (no WATCHDOG_PID: the child's pid is not known yet).
        const daemon = nas.daemon(notify, [], {}, { WATCHDOG_USEC: '400000' });
        const ready = await notify.waitForMessage((m) => m.startsWith('READY=1'));
        expect(ready).toBe('READY=1\nSTATUS=8/8 drives unlocked');
        // The watchdog keeps pinging after READY while the daemon runs.
        await notify.waitForMessage((m) => m === 'WATCHDOG=1', 5_000, notify.messages.indexOf(ready) + 1);
        // The ready line is logged after every unlock line (the datagram can overtake the log pipe).
        await daemon.waitForLog((l) => l.event === 'ready');
        expect(daemon.events('unlock').filter((l) => l.result === 'unlocked')).toHaveLength(8);

        const status = await nas.status();
        expect(status).toMatchObject({ daemon: true, ready: true, mode: 'normal', health: 'healthy', faults: [] });
        expect(status.drives).toHaveLength(8);
        for (const device of nas.devices) {
          const drive = status.drives.find((d) => d.device === device);
          expect(drive, device).toMatchObject({ id: nas.idOf(device), state: 'unlocked' });
          expect(drive!.keyId).toBe(nas.enrolled.get(device)!.keyUid);
        }
        expect((await nas.health()).code).toBe(0);
        for (const [i, read] of (await Promise.all(nas.devices.map(readBlock))).entries()) {
          expect(read.data?.equals(payloads[i]!), `${nas.devices[i]} data after boot ${boot}`).toBe(true);
        }

        const from = notify.messages.length;
        expect(await daemon.stop()).toEqual({ code: 0, signal: null });
        await notify.waitForMessage((m) => m.startsWith('STOPPING=1'), 5_000, from);
        running.delete(daemon);
      }
    });

    it('key server down at boot: degraded READY=1 after the deadline with KmipServerFault; back up: unlocked and cleared', async () => {
      const gate = new FaultProxy(kmip);
      await gate.start();
      const nas = new Appliance('nas2', root);
      try {
        await nas.setup({ host: '127.0.0.1', port: gate.port }, kmip);
        await nas.createDrives(2);
        await nas.enroll();
        await nas.powerCycle();
        await gate.stop();

        const notify = await notifySocket();
        const daemon = nas.daemon(notify, ['--boot-deadline', '2', '--retry-cap', '1']);
        const ready = await notify.waitForMessage((m) => m.startsWith('READY=1'), 20_000);
        expect(ready).toMatch(/^READY=1\nSTATUS=degraded: 0\/2 drives unlocked; 1 fault\(s\): KmipServerFault$/);
        // While it waited for the server within the deadline, it asked systemd for more time.
        const readyAt = notify.messages.indexOf(ready);
        expect(notify.messages.slice(0, readyAt).some((m) => m.startsWith('EXTEND_TIMEOUT_USEC='))).toBe(true);
        const raised = daemon.events('fault_raised').find((l) => l.fault === 'KmipServerFault');
        expect(raised).toBeDefined();

        const down = await nas.health();
        expect(down).toMatchObject({ code: 2, health: 'faulted', faults: ['KmipServerFault'] });
        const status = await nas.status();
        expect(status.mode).toBe('degraded');
        expect(status.drives.map((d) => d.state)).toEqual(['locked', 'locked']);

        const reopenedAt = daemon.lines.length;
        await gate.start();
        await daemon.waitForLog(
          (l) => l.event === 'fault_cleared' && l.fault === 'KmipServerFault',
          20_000,
          reopenedAt,
        );
        for (const device of nas.devices)
          await daemon.waitForLog(
            (l) => l.event === 'unlock' && l.result === 'unlocked' && l.drive === nas.idOf(device),
            20_000,
            reopenedAt,
          );
        expect(await nas.health()).toMatchObject({ code: 0, health: 'healthy', faults: [] });
        expect((await nas.status()).mode).toBe('normal');
        expect((await daemon.stop()).code).toBe(0);
      } finally {
        await gate.stop();
      }
    });

    it('a key destroyed on the server faults only its drive (KeyNotFound); the others unlock', async () => {
      const nas = new Appliance('nas3', root);
      await nas.setup(kmip, kmip);
      await nas.createDrives(3);
      await nas.enroll();
      const victim = nas.devices[1]!;
      const victimUid = nas.enrolled.get(victim)!.keyUid;
      await ok(['kmip', 'revoke', victimUid, ...pykmipCliArgs(kmip)]);
      await ok(['kmip', 'destroy', victimUid, '--yes', ...pykmipCliArgs(kmip)]);
      await nas.powerCycle();

      const notify = await notifySocket();
      const daemon = nas.daemon(notify, ['--boot-deadline', '1', '--retry-cap', '1']);
      const ready = await notify.waitForMessage((m) => m.startsWith('READY=1'));
      expect(ready).toBe('READY=1\nSTATUS=degraded: 2/3 drives unlocked; 1 fault(s): KeyNotFound');
      const status = await nas.status();
      for (const device of nas.devices) {
        const drive = status.drives.find((d) => d.device === device)!;
        expect(drive.state, device).toBe(device === victim ? 'key-not-found' : 'unlocked');
      }
      expect(status.faults).toEqual([
        expect.objectContaining({ code: 'KeyNotFound', subject: nas.idOf(victim), affects: [nas.idOf(victim)] }),
      ]);
      expect(await nas.health()).toMatchObject({ code: 1, health: 'degraded', faults: ['KeyNotFound'] });
      expect((await readBlock(victim)).data).toBeUndefined();
      expect((await readBlock(nas.devices[0]!)).data).toBeDefined();
      expect((await daemon.stop()).code).toBe(0);
    });

    it('a corrupt state file: the daemon starts with StateCorrupt, keeps the file aside byte-identical, overwrites nothing', async () => {
      const nas = new Appliance('nas4', root);
      await nas.setup(kmip, kmip);
      await nas.createDrives(1);
      await nas.enroll();
      const statePath = join(nas.stateDir, 'state.json');
      const original = readFileSync(statePath, 'utf8');
      // One hex digit of the fingerprint salt: still valid JSON and a valid schema, only the checksum tells.
      const at = original.indexOf('"fingerprintSalt": "') + '"fingerprintSalt": "'.length;
      const edited = original.slice(0, at) + (original[at] === 'a' ? 'b' : 'a') + original.slice(at + 1);
      writeFileSync(statePath, edited);
      const before = new Map(
        readdirSync(nas.stateDir)
          .filter((f) => f !== 'state.lock')
          .map((f) => [f, readFileSync(join(nas.stateDir, f))]),
      );

      const notify = await notifySocket();
      const daemon = nas.daemon(notify, ['--boot-deadline', '1']);
      const ready = await notify.waitForMessage((m) => m.startsWith('READY=1'));
      expect(ready).toBe('READY=1\nSTATUS=degraded: 0/0 drives unlocked; 1 fault(s): StateCorrupt');
      const raised = await daemon.waitForLog((l) => l.event === 'fault_raised' && l.fault === 'StateCorrupt');
      expect(raised.subject).toBe('agent');
      expect(await nas.health()).toMatchObject({ code: 2, health: 'faulted', faults: ['StateCorrupt'] });
      const status = await nas.status();
      expect(status.faults.map((f) => f.code)).toEqual(['StateCorrupt']);
      expect(status.mode).toBe('degraded');
      expect((await daemon.stop()).code).toBe(0);

      const after = readdirSync(nas.stateDir).filter((f) => f !== 'state.lock');
      const aside = after.filter((f) => f.startsWith('state.json.corrupt-'));
      expect(aside).toHaveLength(1);
      expect(readFileSync(join(nas.stateDir, aside[0]!)).equals(Buffer.from(edited))).toBe(true);
      // Every other file that was there is still there, unchanged; no new state was written over it.
      for (const [name, bytes] of before) {
        if (name === 'state.json') continue;
        expect(readFileSync(join(nas.stateDir, name)).equals(bytes), name).toBe(true);
      }
      expect(after.filter((f) => !before.has(f) && !aside.includes(f))).toEqual([]);
    });

    describe('with a daemon running', () => {
      let nas: Appliance;
      let first: DaemonProcess;

      beforeAll(async () => {
        nas = new Appliance('nas5', root);
        // The API test runs curl as nobody: the directories must not be what stops it, the socket mode must.
        chmodSync(root, 0o755);
        chmodSync(nas.base, 0o755);
        await nas.setup(kmip, kmip);
      });

      afterEach(async () => {
        if (first) await first.stop();
      });

      async function startFirst(): Promise<void> {
        first = nas.daemon(undefined);
        await first.waitForLog((l) => l.event === 'ready');
      }

      it('a second daemon is refused: on the same state with STATE_LOCKED naming the first pid, on the same runtime dir with API_SOCKET_IN_USE', async () => {
        await startFirst();
        const sameState = nas.daemon(undefined);
        const refused = await exitOf(sameState);
        expect(refused.code).not.toBe(0);
        expect(sameState.stderr).toContain('[STATE_LOCKED]');
        expect(sameState.stderr).toContain(`pid ${first.pid}`);

        const otherState = nas.daemon(undefined, [], { state: join(nas.base, 'var2') });
        const inUse = await exitOf(otherState);
        expect(inUse.code).not.toBe(0);
        expect(otherState.stderr).toContain('[API_SOCKET_IN_USE]');

        // The first daemon is untouched: it still answers on its socket.
        expect(await nas.status()).toMatchObject({ daemon: true, ready: true });
      });

      it('the API refuses a non-root peer: curl as nobody fails (socket 0600), is refused by SO_PEERCRED when the mode is widened; as root it answers', async () => {
        await startFirst();
        const socket = join(nas.runtimeDir, 'api.sock');
        chmodSync(nas.runtimeDir, 0o755);
        expect(statSync(socket).mode & 0o777).toBe(0o600);
        const request = [
          '-sS',
          '--unix-socket',
          socket,
          '-X',
          'POST',
          '-H',
          'content-type: application/json',
          '-d',
          JSON.stringify({ jsonrpc: '2.0', method: 'GetStatus', id: 1 }),
          'http://localhost/json-rpc/1.0',
        ];
        // What a non-root local user runs: the same command as uid nobody, without root's groups.
        const nobody = (...command: string[]) =>
          runProcess('setpriv', ['--reuid', 'nobody', '--regid', 'nogroup', '--clear-groups', ...command]);
        const asNobody = await nobody('curl', ...request);
        expect(asNobody.code).not.toBe(0);
        expect(asNobody.stdout).toBe('');
        // Control: nobody can reach the socket's path, so what refused it is the socket itself.
        const seen = await nobody('test', '-S', socket);
        expect(seen.code).toBe(0);
        const asRoot = await runProcess('curl', request);
        expect(asRoot.code).toBe(0);
        expect(JSON.parse(asRoot.stdout)).toMatchObject({ id: 1, result: { ready: true } });
        // Second barrier, in the daemon itself: with the socket's mode widened by mistake, the peer's
        // credentials (SO_PEERCRED) still refuse nobody, with the typed error and nothing of the status.
        chmodSync(socket, 0o666);
        const widened = await nobody('curl', '-w', '\n%{http_code}', ...request);
        const [body, code] = widened.stdout.split('\n');
        expect(code).toBe('403');
        expect(JSON.parse(body!)).toMatchObject({ error: { data: { code: 'API_PERMISSION_DENIED' } } });
        expect(body).not.toContain('drives');
      });
    });

    it('lockout safety across processes: a wrong recorded key is sent to its drive once, whatever restarts and retries follow', async () => {
      const nas = new Appliance('nas6', root);
      await nas.setup(kmip, kmip);
      await nas.createDrives(2);
      await nas.enroll();
      const [victim, other] = nas.devices as [string, string];
      const victimId = nas.idOf(victim);
      const rightUid = nas.enrolled.get(victim)!.keyUid;

      // A wrong key, registered and activated on the server, recorded for the victim through the state API
      // (so the checksum is valid, as if an operator or a bug had recorded the wrong object).
      const wrongFile = join(nas.base, 'wrong.key');
      writeFileSync(wrongFile, randomBytes(32), { mode: 0o600 });
      const registered = await ok([
        'kmip',
        'register',
        '--key-file',
        wrongFile,
        '--raw',
        '--json',
        ...pykmipCliArgs(kmip),
      ]);
      const wrongUid = (JSON.parse(registered.stdout) as { uniqueIdentifier: string }).uniqueIdentifier;
      await ok(['kmip', 'activate', wrongUid, ...pykmipCliArgs(kmip)]);
      await recordKeyUid(nas, victimId, wrongUid);
      await nas.powerCycle();

      // Two daemon lifetimes: the first sends the wrong key and the drive refuses it; the second does not send it.
      for (const [run, expected] of [
        [1, 'DRIVE_PIN_REFUSED'],
        [2, 'DRIVE_PIN_ALREADY_REFUSED'],
      ] as const) {
        const notify = await notifySocket();
        const daemon = nas.daemon(notify, ['--boot-deadline', '1']);
        const ready = await notify.waitForMessage((m) => m.startsWith('READY=1'));
        expect(ready, `daemon ${run}`).toBe(
          'READY=1\nSTATUS=degraded: 1/2 drives unlocked; 1 fault(s): DriveUnlockFailed',
        );
        const status = await nas.status();
        const drive = status.drives.find((d) => d.id === victimId)!;
        expect(drive.state).toBe('key-refused');
        expect(drive.lastError?.code, `daemon ${run}`).toBe(expected);
        expect(status.drives.find((d) => d.device === other)!.state).toBe('unlocked');
        expect((await daemon.stop()).code).toBe(0);
        running.delete(daemon);
      }

      // Six operator retries with no daemon (more than the emulator's TryLimit of 5 would survive).
      for (let i = 0; i < 6; i++) {
        const run = await cli(['unlock', '--json', ...nas.dirArgs()]);
        expect(run.code).not.toBe(0);
        const drive = (JSON.parse(run.stdout) as StatusJson).drives.find((d) => d.id === victimId)!;
        expect(drive.lastError?.code).toBe('DRIVE_PIN_ALREADY_REFUSED');
      }

      // The drive was not locked out: with the right key recorded again, it unlocks, with no power cycle.
      await recordKeyUid(nas, victimId, rightUid);
      const unlocked = await ok(['unlock', '--json', ...nas.dirArgs()]);
      expect((JSON.parse(unlocked.stdout) as StatusJson).drives.map((d) => d.state)).toEqual(['unlocked', 'unlocked']);
      expect((await readBlock(victim)).data).toBeDefined();

      // One memory for every process: the daemon's and the CLI's refusals live in refused-keys.json.
      const memory = JSON.parse(readFileSync(join(nas.stateDir, 'refused-keys.json'), 'utf8')) as {
        refused: { drive: string; authority: string }[];
      };
      expect(memory.refused).toEqual([expect.objectContaining({ drive: victimId, authority: 'Admin1' })]);
    });
  },
);

/** Runs a program, bounded. */
function runProcess(command: string, args: string[]): Promise<Run> {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${command} did not finish within ${COMMAND_TIMEOUT_MS} ms`));
    }, COMMAND_TIMEOUT_MS);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout, stderr });
    });
  });
}

/** Records `uid` as the key of drive `driveId`, through the state store and under the state lock. */
async function recordKeyUid(nas: Appliance, driveId: string, uid: string): Promise<void> {
  const lock = await acquireStateLock(nas.stateDir, 'test');
  try {
    const store = new StateStore({ dir: nas.stateDir });
    await store.load();
    await store.update((s) => {
      const drive = s.drives.find((d) => d.id === driveId);
      if (!drive) throw new Error(`no drive ${driveId} in the state`);
      drive.key.uid = uid;
    });
  } finally {
    await lock.release();
  }
}
