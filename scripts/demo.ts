/**
 * The main job, end to end on one machine, with the real `kmip-agent` command as an operator and the
 * boot sequence would run it:
 *   1. a real PyKMIP server with a throwaway PKI (mutual TLS, names and chains verified);
 *   2. provisioning: two emulated Opal 2 drives and one LUKS2 volume get fresh 32-byte keys, stored on
 *      the key server under kmip-agent/<appliance>/<drive> in group kmip-agent/<appliance>;
 *   3. a power cycle: the drives come back locked and refuse reads;
 *   4. boot unlock: every key is found again by Locate, fetched with Get, and unlocks its drive; the
 *      volume's key is checked against its LUKS2 header (activation needs device-mapper, which this
 *      machine may lack: the demo says so rather than pretend).
 * Keys only travel through pipes and are zeroed after use; nothing secret is written to disk.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startPykmip, type PykmipServer } from '../test/support/pykmip.js';

const CLI = join(dirname(fileURLToPath(import.meta.url)), '..', 'src', 'cli', 'main.js');
const APPLIANCE = 'demo-appliance';

interface CliResult {
  code: number;
  json: Record<string, unknown>;
}

function step(text: string): void {
  console.log(`demo: ${text}`);
}

/** Runs `kmip-agent <args> --json`, secrets on stdin; returns its JSON document and exit code. */
function kmipAgent(args: string[], stdin?: Buffer): CliResult {
  const run = spawnSync(process.execPath, [CLI, ...args, '--json'], { input: stdin ?? Buffer.alloc(0) });
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(run.stdout.toString()) as Record<string, unknown>;
  } catch {
    throw new Error(`kmip-agent ${args.join(' ')} printed no JSON (exit ${run.status}): ${run.stderr.toString()}`);
  }
  return { code: run.status ?? 1, json };
}

/** Like kmipAgent, but a failure stops the demo with the CLI's own error. */
function must(args: string[], stdin?: Buffer): Record<string, unknown> {
  const result = kmipAgent(args, stdin);
  if (result.code !== 0) {
    const error = result.json.error as { code: string; message: string } | undefined;
    throw new Error(`kmip-agent ${args.join(' ')} failed: ${error?.message ?? 'unknown error'} [${error?.code}]`);
  }
  return result.json;
}

function serverArgs(server: PykmipServer): string[] {
  return [
    '--server',
    `${server.host}:${server.port}`,
    '--servername',
    'localhost',
    '--ca',
    server.ca,
    '--cert',
    server.clientCert,
    '--key',
    server.clientKey,
  ];
}

const keyName = (id: string) => `kmip-agent/${APPLIANCE}/${id}`;

/** Stores a new random key on the key server; returns its UID. The caller zeroes `key`. */
function storeKey(server: PykmipServer, id: string, key: Buffer): string {
  const registered = must(
    ['kmip', 'register', ...serverArgs(server), '--key-file', '-', '--type', 'secret', '--name', keyName(id)].concat([
      '--group',
      `kmip-agent/${APPLIANCE}`,
    ]),
    key,
  );
  return registered.uniqueIdentifier as string;
}

/** What the boot sequence does for one drive or volume: Locate by name, then Get. */
function fetchKey(server: PykmipServer, id: string): { uid: string; key: Buffer } {
  const located = must(['kmip', 'locate', ...serverArgs(server), '--name', keyName(id)]);
  const uids = located.uniqueIdentifiers as string[];
  if (uids.length !== 1) throw new Error(`expected one key named ${keyName(id)}, found ${uids.length}`);
  const object = must(['kmip', 'get', ...serverArgs(server), uids[0]]);
  return { uid: uids[0], key: Buffer.from(object.value as string, 'hex') };
}

function luksFormat(image: string, key: Buffer): void {
  spawnSync('truncate', ['-s', '32M', image]);
  const run = spawnSync(
    'cryptsetup',
    ['luksFormat', '--batch-mode', '--type', 'luks2', '--pbkdf', 'pbkdf2', '--pbkdf-force-iterations', '1000'].concat([
      '--key-file',
      '-',
      image,
    ]),
    { input: key },
  );
  if (run.status !== 0) throw new Error(`cryptsetup luksFormat failed: ${run.stderr.toString()}`);
}

async function main(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), 'kmip-agent-demo-'));
  step('starting PyKMIP (Debian python3-pykmip) with a throwaway CA, server and client certificates');
  const server = await startPykmip();
  const drives = [1, 2].map((n) => ({ id: `EMU-000${n}`, dev: `emu:${join(work, `drive-${n}.img`)}` }));
  const volume = { id: 'volume-data', image: join(work, 'data.luks') };
  try {
    const discovered = must(['kmip', 'discover', ...serverArgs(server)]);
    for (const s of discovered.servers as { endpoint: string; protocolVersion: string; tlsVersion: string }[]) {
      step(`key server ${s.endpoint}: KMIP ${s.protocolVersion} over ${s.tlsVersion}, client certificate accepted`);
    }

    step('--- provisioning ---');
    for (const drive of drives) {
      must(['drive', 'emulate', 'create', drive.dev.slice(4), '--size', '16', '--serial', drive.id]);
      const key = randomBytes(32);
      try {
        const uid = storeKey(server, drive.id, key);
        must(['drive', 'take-ownership', drive.dev, '--new-pin-file', '-'], key);
        must(['drive', 'activate', drive.dev, '--pin-file', '-'], key);
        must(
          ['drive', 'setup-range', drive.dev, '--pin-file', '-', '--range', '0'].concat([
            '--read-lock-enabled',
            '--write-lock-enabled',
          ]),
          key,
        );
        must(['drive', 'write', drive.dev, '--lba', '0', '--in', '-'], Buffer.from(`data on ${drive.id}\n`));
        step(`${drive.id}: owned and locking enabled with its key (KMIP object ${uid}); test data written`);
      } finally {
        key.fill(0);
      }
    }
    const volumeKey = randomBytes(32);
    try {
      const uid = storeKey(server, volume.id, volumeKey);
      luksFormat(volume.image, volumeKey);
      step(`${volume.id}: LUKS2 volume formatted with its key (KMIP object ${uid})`);
    } finally {
      volumeKey.fill(0);
    }

    step('--- power cycle (the appliance reboots) ---');
    for (const drive of drives) {
      must(['drive', 'emulate', 'power-cycle', drive.dev]);
      const refused = kmipAgent(['drive', 'read', drive.dev, '--lba', '0']);
      const error = refused.json.error as { code: string } | undefined;
      step(`${drive.id}: read after power-on -> ${refused.code === 0 ? 'READ (unexpected)' : error?.code}`);
      if (refused.code === 0) throw new Error(`${drive.id} was readable after a power cycle`);
    }

    step('--- boot unlock: keys from the key server ---');
    for (const drive of drives) {
      const { uid, key } = fetchKey(server, drive.id);
      try {
        must(['drive', 'unlock', drive.dev, '--pin-file', '-'], key);
      } finally {
        key.fill(0);
      }
      const read = must(['drive', 'read', drive.dev, '--lba', '0']);
      const text = Buffer.from(read.data as string, 'hex')
        .toString('utf8')
        .replace(/\0+$/, '')
        .trim();
      step(`${drive.id}: unlocked with KMIP object ${uid}; LBA 0 reads "${text}"`);
    }
    const { uid, key } = fetchKey(server, volume.id);
    try {
      const checked = must(['volume', 'luks', 'check', volume.image, '--key-file', '-'], key);
      step(`${volume.id}: key from KMIP object ${uid} opens LUKS2 keyslot ${String(checked.slot)}`);
      const opened = kmipAgent(['volume', 'luks', 'open', volume.image, 'kmip-agent-demo', '--key-file', '-'], key);
      if (opened.code === 0) {
        step(`${volume.id}: activated as /dev/mapper/kmip-agent-demo`);
        must(['volume', 'luks', 'close', 'kmip-agent-demo']);
      } else {
        const error = opened.json.error as { code: string; message: string };
        step(`${volume.id}: not activated here: ${error.message} [${error.code}]`);
      }
    } finally {
      key.fill(0);
    }
    step('done: every drive unlocked with keys fetched from the KMIP server');
  } finally {
    for (const drive of drives) kmipAgent(['drive', 'emulate', 'destroy', drive.dev, '--yes']);
    await server.stop();
    rmSync(work, { recursive: true, force: true });
    step('PyKMIP stopped; emulated drives and temporary files removed');
  }
}

main().catch((error: unknown) => {
  console.error(`demo: failed: ${error instanceof Error ? error.message : String(error)}`);
  process.exitCode = 1;
});
