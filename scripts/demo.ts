/**
 * The main job, end to end on one machine: the appliance's first setup and its next boot, through the
 * real `kmip-agent` command and daemon:
 *   1. a real PyKMIP server with a throwaway PKI (mutual TLS, names and chains verified);
 *   2. `kmip-agent setup` (connection test), four emulated Opal 2 drives and one LUKS2 volume enrolled:
 *      each gets a fresh key on the key server, named kmip-agent/<appliance>/<drive> in the appliance's group;
 *   3. a reboot: the drives are power-cycled and come back locked (reads refused);
 *   4. `kmip-agent daemon` starts as systemd would start it, with a real NOTIFY_SOCKET listener: one batched
 *      Get, parallel unlocks, READY=1; the status table and the time from start to READY follow, and the
 *      data written before the reboot reads back. The volume's key is checked against its LUKS2 header;
 *      activation needs device-mapper, which this machine may lack (its state then says so).
 * Keys never touch disk in plaintext, never pass through this script, and are zeroed after use.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { NotifyReceiver, notifyField } from '../test/support/notify-receiver.js';
import { luksFormat } from '../test/luks/images.js';
import { pykmipCliArgs, startPykmip } from '../test/support/pykmip.js';

const CLI = join(dirname(fileURLToPath(import.meta.url)), '..', 'kmip-agent.mjs');
const APPLIANCE = 'demo-appliance';
const DRIVES = 4;

function step(text: string): void {
  console.log(`demo: ${text}`);
}

/** Runs `kmip-agent <args>`; a failure stops the demo with the CLI's own message. */
function kmipAgent(args: string[], options: { stdin?: Buffer; json?: boolean; allowFailure?: boolean } = {}) {
  const run = spawnSync(process.execPath, [CLI, ...args, ...(options.json === false ? [] : ['--json'])], {
    input: options.stdin ?? Buffer.alloc(0),
  });
  const stdout = run.stdout.toString();
  if (run.status !== 0 && !options.allowFailure) {
    throw new Error(
      `kmip-agent ${args.slice(0, 3).join(' ')} failed (exit ${run.status}): ${stdout}${run.stderr.toString()}`,
    );
  }
  return {
    code: run.status ?? 1,
    stdout,
    json: options.json === false ? {} : (JSON.parse(stdout) as Record<string, unknown>),
  };
}

async function main(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), 'kmip-agent-demo-'));
  const dirs = [
    '--config-dir',
    join(work, 'etc'),
    '--state-dir',
    join(work, 'lib'),
    '--runtime-dir',
    join(work, 'run'),
  ];
  const drives = Array.from({ length: DRIVES }, (_, i) => ({
    serial: `EMU-000${i + 1}`,
    dev: `emu:${join(work, `drive-${i + 1}.img`)}`,
  }));
  const volume = join(work, 'data.luks');
  step('starting PyKMIP (Debian python3-pykmip) with a throwaway CA, server and client certificates');
  const server = await startPykmip();
  let daemon: ChildProcess | undefined;
  let receiver: NotifyReceiver | undefined;
  try {
    step('--- first setup of the appliance ---');
    const setup = kmipAgent(['setup', '--appliance-id', APPLIANCE, ...pykmipCliArgs(server), ...dirs]);
    for (const s of setup.json.servers as {
      endpoint: string;
      protocolVersion: string;
      tlsVersion: string;
      latencyMs: number;
    }[]) {
      step(
        `key server ${s.endpoint}: KMIP ${s.protocolVersion} over ${s.tlsVersion}, ${s.latencyMs.toFixed(0)} ms, vendor ${String(setup.json.vendor)}`,
      );
    }
    for (const d of drives) kmipAgent(['drive', 'emulate', 'create', d.dev, '--size', '16', '--serial', d.serial]);
    const enrolled = kmipAgent(['drive', 'enroll', ...drives.map((d) => d.dev), ...dirs]).json.enrolled as {
      id: string;
      keyName: string;
      keyUid: string;
    }[];
    for (const e of enrolled)
      step(`${e.id}: enrolled, locking enabled with key ${e.keyName} (KMIP object ${e.keyUid})`);
    for (const d of drives) {
      kmipAgent(['drive', 'write', d.dev, '--lba', '0', '--in', '-'], { stdin: Buffer.from(`data on ${d.serial}\n`) });
    }
    const passphrase = randomBytes(32);
    try {
      luksFormat(volume, passphrase);
      const v = kmipAgent(['volume', 'enroll', volume, '--name', 'demo-data', '--key-file', '-', ...dirs], {
        stdin: passphrase,
      }).json;
      step(`LUKS2 volume ${String(v.id)}: enrolled, keyslot ${String(v.keyslot)} opens with key ${String(v.keyName)}`);
    } finally {
      passphrase.fill(0);
    }

    step('--- reboot: the drives lose power and come back locked ---');
    for (const d of drives) {
      kmipAgent(['drive', 'emulate', 'power-cycle', d.dev]);
      const refused = kmipAgent(['drive', 'read', d.dev, '--lba', '0'], { allowFailure: true });
      if (refused.code === 0) throw new Error(`${d.serial} was readable after a power cycle`);
      step(`${d.serial}: read after power-on refused [${(refused.json.error as { code: string }).code}]`);
    }

    step('--- boot: kmip-agent daemon, as systemd starts it (Type=notify) ---');
    receiver = await NotifyReceiver.start(join(work, 'notify.sock'));
    const started = performance.now();
    daemon = spawn(process.execPath, [CLI, 'daemon', ...dirs], {
      env: { ...process.env, NOTIFY_SOCKET: receiver.address },
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    const ready = await receiver.waitForMessage((m) => m.includes('READY=1'), 60_000);
    const readyMs = performance.now() - started;
    step(
      `systemd got READY=1 after ${readyMs.toFixed(0)} ms (process start included), STATUS="${notifyField(ready, 'STATUS') ?? ''}"`,
    );
    console.log(kmipAgent(['status', ...dirs], { json: false }).stdout.trimEnd());
    for (const d of drives) {
      const read = kmipAgent(['drive', 'read', d.dev, '--lba', '0']).json;
      const text = Buffer.from(read.data as string, 'hex')
        .toString('utf8')
        .replace(/\0+$/, '')
        .trim();
      step(`${d.serial}: LBA 0 reads "${text}"`);
    }
    const health = kmipAgent(['health', ...dirs], { json: false, allowFailure: true });
    step(`kmip-agent health: ${health.stdout.trim()} (exit ${health.code})`);
    daemon.kill('SIGTERM');
    await receiver.waitForMessage((m) => m.includes('STOPPING=1'), 30_000);
    await new Promise((resolve) => daemon!.once('exit', resolve));
    daemon = undefined;
    step('daemon stopped (STOPPING=1, exit 0); done: every drive unlocked at boot with keys from the KMIP server');
  } finally {
    daemon?.kill('SIGKILL');
    receiver?.stop();
    for (const d of drives) kmipAgent(['drive', 'emulate', 'destroy', d.dev, '--yes'], { allowFailure: true });
    await server.stop();
    rmSync(work, { recursive: true, force: true });
    step('PyKMIP stopped; emulated drives and temporary files removed');
  }
}

main().catch((error: unknown) => {
  console.error(`demo: failed: ${error instanceof Error ? error.message : String(error)}`);
  process.exitCode = 1;
});
