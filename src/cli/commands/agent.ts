/**
 * The agent's own commands: `setup` (first run: config + connection test), `daemon` (what systemd
 * runs), `status`, `health`, `faults`, `unlock`, and `drive enroll` (in drive.ts's group). Commands that
 * read or change what the agent manages go through the running daemon's API when there is one, so the
 * state has one owner; with no daemon they do the work themselves under the state lock.
 */
import { copyFileSync, chmodSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ApiClient, isDaemonAbsent } from '../../api/client.js';
import { API_SOCKET_NAME } from '../../api/server.js';
import type { AgentStatus, TargetStatus } from '../../agent/agent.js';
import {
  CONFIG_FILE,
  CONFIG_SCHEMA_VERSION,
  loadConfig,
  parseConfig,
  saveConfig,
  type AgentConfig,
  serverNameFor,
  type AgentConfigInput,
} from '../../agent/config.js';
import { recordTests, testServers, type ServerTest } from '../../agent/connection-test.js';
import { acquireStateLock } from '../../agent/state-lock.js';
import { StateStore } from '../../agent/state.js';
import { openAgentRuntime, runDaemon } from '../../agent/daemon.js';
import type { Fault } from '../../agent/faults.js';
import { resolveDirs, type AgentDirs } from '../../agent/paths.js';
import { KmipAgentError } from '../../errors.js';
import {
  command,
  emit,
  ExitCode,
  KEY_SECRET,
  PIN_SECRET,
  printable,
  SECRET_READING_OPTIONS,
  secretReading,
  UsageError,
  withSecrets,
} from '../framework.js';

/** --config-dir, --state-dir, --runtime-dir: every agent command takes them. */
export const DIR_OPTIONS = {
  'config-dir': {
    type: 'string',
    value: 'DIR',
    help: 'configuration directory (default /etc/kmip-agent; KMIP_AGENT_CONFIG_DIR)',
  },
  'state-dir': {
    type: 'string',
    value: 'DIR',
    help: 'state directory (default /var/lib/kmip-agent; KMIP_AGENT_STATE_DIR)',
  },
  'runtime-dir': {
    type: 'string',
    value: 'DIR',
    help: 'runtime directory of the API socket (default /run/kmip-agent)',
  },
} as const;

const accepted = <const T extends { help: string }>(o: T) =>
  ({ ...o, help: `${o.help.split(' (')[0]}: accepted on every command, unused here` }) as const;

/** The same flags on commands that do not need the agent's directories: every command takes them. */
export const ACCEPTED_DIR_OPTIONS = {
  'config-dir': accepted(DIR_OPTIONS['config-dir']),
  'state-dir': accepted(DIR_OPTIONS['state-dir']),
  'runtime-dir': accepted(DIR_OPTIONS['runtime-dir']),
} as const;

type DirValues = { 'config-dir'?: string; 'state-dir'?: string; 'runtime-dir'?: string };

export function dirsFrom(values: DirValues): AgentDirs {
  return resolveDirs({
    ...(values['config-dir'] !== undefined ? { config: values['config-dir'] } : {}),
    ...(values['state-dir'] !== undefined ? { state: values['state-dir'] } : {}),
    ...(values['runtime-dir'] !== undefined ? { runtime: values['runtime-dir'] } : {}),
  });
}

/** A quiet logger for commands run by hand: only errors reach stderr (the daemon logs everything). */
export async function quietLog() {
  // pino is CommonJS: its module.exports is the default export however it is loaded (Node, or a bundle's chunk).
  const { default: pino } = await import('pino');
  return pino({ level: 'error' }, pino.destination(2));
}

function secondsOption(value: string | undefined, what: string): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value) || Number(value) < 1 || Number(value) > 3600)
    throw new UsageError(`${what} must be a whole number of seconds from 1 to 3600, not '${value}'`);
  return Number(value);
}

function parseServer(text: string): { host: string; port: number } {
  const match = /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(text);
  const port = match?.[2] === undefined ? 5696 : Number(match[2]);
  if (!match || port < 1 || port > 65535) throw new UsageError(`--server must be HOST or HOST:PORT, not '${text}'`);
  return { host: match[1]!.replace(/^\[|\]$/g, ''), port };
}

// ------------------------------------------------------------------------------------------ setup

export const setupCommand = command({
  name: 'setup',
  usage:
    '--appliance-id ID --server HOST[:PORT] [--server ...] --ca FILE --cert FILE --key FILE [--label TEXT] [--force]',
  summary: 'first-run setup: write the configuration and test the connection to the key servers',
  description: `Writes config.json (a provider named "default" with the servers in failover order) and copies the CA,
client certificate and key into the configuration directory (the key 0600). Then connects to every server
(TLS with name and chain verified, Discover Versions, Query) and saves only when every server answers;
--force saves anyway, marked untested.`,
  options: {
    'appliance-id': { type: 'string', value: 'ID', help: 'this appliance in key names: kmip-agent/<ID>/<drive>' },
    server: {
      type: 'string',
      multiple: true,
      value: 'HOST[:PORT]',
      help: 'key server (port 5696 if omitted); repeat for failover order',
    },
    servername: {
      type: 'string',
      value: 'NAME',
      help: 'name to verify in the server certificates (default: each host)',
    },
    ca: { type: 'string', value: 'FILE', help: 'CA certificate(s) the server chain must end in (PEM)' },
    cert: { type: 'string', value: 'FILE', help: 'client certificate (PEM; EKU clientAuth)' },
    key: { type: 'string', value: 'FILE', help: 'client private key (PEM)' },
    label: { type: 'string', value: 'TEXT', help: 'a description of the provider' },
    force: { type: 'boolean', help: 'save even when the connection test fails (marked untested)' },
    ...DIR_OPTIONS,
  },
  async run({ values }, ctx) {
    const applianceId = values['appliance-id'];
    if (!applianceId) throw new UsageError('--appliance-id is required');
    if (!values.server?.length) throw new UsageError('--server is required (repeat it for failover order)');
    for (const what of ['ca', 'cert', 'key'] as const) if (!values[what]) throw new UsageError(`--${what} is required`);
    const servers = values.server
      .map(parseServer)
      .map((s) => (values.servername ? { ...s, servername: values.servername } : s));
    const read = (path: string, what: string) => {
      try {
        return readFileSync(path);
      } catch (error) {
        throw new UsageError(`cannot read the ${what} ${path}: ${(error as Error).message}`, 'USAGE_FILE');
      }
    };
    const material = {
      ca: read(values.ca!, 'CA'),
      cert: read(values.cert!, 'certificate'),
      key: read(values.key!, 'key'),
    };
    const dirs = dirsFrom(values);
    const names: string[] = [];
    const keyServers: Record<string, NonNullable<AgentConfigInput['servers']>[string]> = {};
    for (const s of servers) {
      const name = serverNameFor(s.host, s.port, names);
      if (Object.values(keyServers).some((k) => k.host === s.host && k.port === s.port))
        throw new UsageError(`--server ${s.host}:${s.port} is given twice`);
      names.push(name);
      keyServers[name] = { ...s, ca: 'ca.pem' };
    }
    const document = {
      schemaVersion: CONFIG_SCHEMA_VERSION,
      applianceId,
      client: { enabled: true, cert: 'client.pem', key: 'client.key' },
      servers: keyServers,
      providers: {
        default: { servers: names, ...(values.label ? { label: values.label } : {}) } as {
          servers: string[];
          label?: string;
          untested?: boolean;
        },
      },
    } satisfies AgentConfigInput;
    // Validated before anything is tested or written, so a bad field is named first.
    const planned = parseConfig(
      { ...(await configToSetUpAgain(dirs.config, applianceId)), ...document },
      '--server/--label',
    );

    const at = new Date();
    let tests: ServerTest[];
    try {
      tests = await testServers({
        servers: names.map((name) => {
          const s = planned.servers[name]!;
          return { name, ...s, ca: material.ca };
        }),
        cert: material.cert,
        key: material.key,
      });
    } finally {
      material.key.fill(0);
    }
    const vendor = tests.find((t) => t.vendor)?.vendor;
    const failed = tests.filter((t) => !t.ok);
    if (failed.length > 0 && !values.force) {
      const why = failed
        .map((t) => `${t.endpoint}: ${printable(t.error?.message ?? 'failed')} [${t.error?.code}]`)
        .join('; ');
      throw new KmipAgentError(
        `connection test failed, nothing saved (${why}); --force saves anyway`,
        failed[0]!.error?.code ?? 'SETUP_TEST_FAILED',
        {
          details: { servers: tests },
        },
      );
    }
    if (failed.length > 0) document.providers.default.untested = true;

    // As the unit's ConfigurationDirectoryMode=0700: systemd never changes the mode of an existing one.
    mkdirSync(dirs.config, { recursive: true, mode: 0o700 });
    copyFileSync(values.ca!, join(dirs.config, 'ca.pem'));
    copyFileSync(values.cert!, join(dirs.config, 'client.pem'));
    copyFileSync(values.key!, join(dirs.config, 'client.key'));
    chmodSync(join(dirs.config, 'client.key'), 0o600);
    await saveConfig(dirs.config, { ...planned, providers: document.providers });
    const recorded = await recordSetupTests(dirs, tests, at);

    const lines = [`configuration written to ${join(dirs.config, CONFIG_FILE)} (appliance ${applianceId})`];
    for (const t of tests) {
      lines.push(
        t.ok
          ? `  ${t.endpoint}: ok, KMIP ${t.protocolVersion} over ${t.tlsVersion}, ${t.latencyMs.toFixed(0)} ms${t.vendor ? `, vendor ${printable(t.vendor)}` : ''}`
          : `  ${t.endpoint}: FAILED ${printable(t.error?.message ?? '')} [${t.error?.code}] (saved untested: --force)`,
      );
    }
    if (!recorded.ok) lines.push(`  (connection results not kept in the state: ${recorded.why})`);
    emit(
      ctx,
      { configFile: join(dirs.config, CONFIG_FILE), applianceId, tested: failed.length === 0, vendor, servers: tests },
      lines.join('\n'),
    );
  },
});

/**
 * What setup keeps of an existing configuration: none when there is none. A configured, enabled client is
 * left alone (SETUP_ALREADY_DONE: the key server commands change it); after `client reset`, the drives,
 * volumes and other settings are kept and the appliance id must be the same, since the keys recorded in
 * the state are named after it.
 */
async function configToSetUpAgain(configDir: string, applianceId: string): Promise<Partial<AgentConfig>> {
  let existing: AgentConfig;
  try {
    existing = await loadConfig(configDir);
  } catch (error) {
    if (error instanceof KmipAgentError && error.code === 'CONFIG_MISSING') return {};
    throw error;
  }
  if (existing.client.enabled || Object.keys(existing.providers).length > 0)
    throw new KmipAgentError(
      `${join(configDir, CONFIG_FILE)} is already set up: change it with \`kmip-agent server\`, \`provider\` and \`cert\`, ` +
        'or start over with `kmip-agent client disable` and `kmip-agent client reset`',
      'SETUP_ALREADY_DONE',
    );
  if (existing.applianceId !== applianceId)
    throw new UsageError(
      `this appliance is ${existing.applianceId} (its keys are named kmip-agent/${existing.applianceId}/...): ` +
        `--appliance-id ${applianceId} would not find them`,
      'USAGE_APPLIANCE_ID_MISMATCH',
    );
  return existing;
}

/**
 * Keeps setup's connection test as the last connection results. Setup runs before the daemon, so it takes
 * the state lock itself; a running daemon or an unreadable state only costs the record, never the setup.
 */
async function recordSetupTests(
  dirs: AgentDirs,
  tests: ServerTest[],
  at: Date,
): Promise<{ ok: true } | { ok: false; why: string }> {
  let lock;
  try {
    lock = await acquireStateLock(dirs.state, 'cli');
  } catch (error) {
    return { ok: false, why: (error as Error).message };
  }
  try {
    const state = new StateStore({ dir: dirs.state });
    await state.load();
    await recordTests(state, tests, at);
    return { ok: true };
  } catch (error) {
    return { ok: false, why: (error as Error).message };
  } finally {
    await lock.release();
  }
}

// ----------------------------------------------------------------------------------------- daemon

export const daemonCommand = command({
  name: 'daemon',
  usage: '[--boot-deadline SECONDS] [--retry-cap SECONDS]',
  summary: 'run the agent in the foreground (what systemd starts: Type=notify)',
  description: `Unlocks every enrolled drive and volume at start (one batched Get from the key server, bounded
parallel unlocks), tells systemd READY=1 when all are unlocked or the boot deadline passes (then degraded),
and keeps retrying what is still locked (capped exponential backoff with jitter). Serves the local API on
<runtime-dir>/api.sock. Logs JSON to stdout. SIGTERM stops it.`,
  options: {
    'boot-deadline': {
      type: 'string',
      value: 'SECONDS',
      help: 'READY=1 at the latest after this long (default from config: 120)',
    },
    'retry-cap': { type: 'string', value: 'SECONDS', help: 'longest wait between retries (default from config: 60)' },
    ...DIR_OPTIONS,
  },
  async run({ values }) {
    const deadline = secondsOption(values['boot-deadline'], '--boot-deadline');
    const cap = secondsOption(values['retry-cap'], '--retry-cap');
    return runDaemon({
      dirs: dirsFrom(values),
      ...(deadline !== undefined ? { bootDeadlineSeconds: deadline } : {}),
      ...(cap !== undefined ? { retryCapSeconds: cap } : {}),
    });
  },
});

// -------------------------------------------------------------------- status, health, faults, unlock

/** The daemon's answer, or undefined when no daemon runs. */
export async function fromDaemon<T>(
  dirs: AgentDirs,
  method: string,
  params: Record<string, unknown> = {},
): Promise<T | undefined> {
  try {
    return await new ApiClient(join(dirs.runtime, API_SOCKET_NAME)).call<T>(method, params);
  } catch (error) {
    if (isDaemonAbsent(error)) return undefined;
    throw error;
  }
}

type StatusDocument = Omit<AgentStatus, 'drives' | 'faults'> & {
  daemon: boolean;
  drives: (Omit<TargetStatus, 'since'> & { since: string; keyId: string })[];
  faults: (Omit<Fault, 'firstSeen' | 'lastSeen'> & { firstSeen: string; lastSeen: string })[];
};

/** The status as the daemon reports it; with no daemon, what the state records, nothing unlocked by us. */
async function currentStatus(dirs: AgentDirs): Promise<StatusDocument> {
  const live = await fromDaemon<Omit<StatusDocument, 'daemon'>>(dirs, 'GetStatus');
  if (live) return { ...live, daemon: true, drives: live.drives.map((d) => ({ ...d, keyId: d.keyUid })) };
  const runtime = await openAgentRuntime({ dirs, role: 'cli', log: await quietLog() });
  try {
    const s = JSON.parse(JSON.stringify(runtime.agent.status())) as Omit<StatusDocument, 'daemon'>;
    return { ...s, daemon: false, drives: s.drives.map((d) => ({ ...d, state: 'pending', keyId: d.keyUid })) };
  } finally {
    await runtime.close();
  }
}

function statusTable(s: StatusDocument): string {
  const head = s.daemon
    ? `appliance ${s.applianceId}: ${s.ready ? 'ready' : 'booting'}, mode ${s.mode}, health ${s.health}`
    : `appliance ${s.applianceId}: no daemon running (states below are not live)`;
  const rows = [
    ['ID', 'KIND', 'DEVICE', 'STATE', 'KEY', 'WHY'],
    ...s.drives.map((d) => [d.id, d.kind, d.device, d.state, d.keyUid, d.lastError?.code ?? '']),
  ];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => printable(r[i]!).length)));
  const table = rows.map((r) =>
    r
      .map((c, i) => printable(c).padEnd(widths[i]!))
      .join('  ')
      .trimEnd(),
  );
  const faults = s.faults.map(
    (f) => `fault ${f.code} (${f.severity}) ${printable(f.subject)}: ${f.summary}; ${f.hint}`,
  );
  return [
    head,
    ...(s.drives.length ? table : ['no drives or volumes enrolled (`kmip-agent drive enroll <drive>`)']),
    ...faults,
  ].join('\n');
}

export const statusCommand = command({
  name: 'status',
  usage: '',
  summary: 'what the agent manages and the state of each drive and volume',
  options: { ...DIR_OPTIONS },
  async run({ values }, ctx) {
    const s = await currentStatus(dirsFrom(values));
    emit(ctx, s, statusTable(s));
  },
});

const HEALTH_EXIT = { healthy: 0, degraded: 1, faulted: 2 } as const;

export const healthCommand = command({
  name: 'health',
  usage: '',
  summary: 'health for monitoring: exit 0 healthy, 1 degraded, 2 faulted (or no daemon running)',
  options: { ...DIR_OPTIONS },
  async run({ values }, ctx) {
    const live = await fromDaemon<AgentStatus>(dirsFrom(values), 'GetStatus');
    const health = live?.health ?? 'faulted';
    const codes = live ? [...new Set(live.faults.map((f) => f.code))] : ['DaemonNotRunning'];
    emit(
      ctx,
      { health, daemon: live !== undefined, faults: codes },
      `${health}${codes.length ? `: ${codes.join(', ')}` : ''}`,
    );
    return HEALTH_EXIT[health];
  },
});

export const faultsCommand = command({
  name: 'faults',
  usage: '',
  summary: 'the active faults, most severe first, each with what to do',
  options: { ...DIR_OPTIONS },
  async run({ values }, ctx) {
    const live = await fromDaemon<{ faults: StatusDocument['faults'] }>(dirsFrom(values), 'ListFaults');
    if (!live)
      throw new KmipAgentError(
        "no kmip-agent daemon is running: faults are the daemon's (start it with systemctl start kmip-agent)",
        'API_NOT_RUNNING',
      );
    const lines = live.faults.map(
      (f) =>
        `${f.code} (${f.severity}) ${printable(f.subject)}, since ${f.firstSeen}, seen ${f.count}x: ${f.summary}\n  affects: ${f.affects.join(', ') || '-'}\n  what to do: ${f.hint}`,
    );
    emit(ctx, live, lines.length ? lines.join('\n') : 'no faults');
  },
});

export const unlockCommand = command({
  name: 'unlock',
  usage: '[--all]',
  summary: 'unlock what is still locked now (through the daemon, or directly when none runs)',
  description: `Fetches the keys of every enrolled drive and volume that is not unlocked and unlocks them.
--all also retries drives parked after a refusal (a key the drive refused is still never sent again).`,
  options: {
    all: { type: 'boolean', help: 'also retry drives parked after a refusal or a lockout risk' },
    ...DIR_OPTIONS,
  },
  async run({ values }, ctx) {
    const dirs = dirsFrom(values);
    let status = await fromDaemon<Omit<StatusDocument, 'daemon'>>(dirs, 'UnlockDrives', { all: values.all === true });
    let daemon = true;
    if (!status) {
      daemon = false;
      const runtime = await openAgentRuntime({ dirs, role: 'cli', log: await quietLog() });
      try {
        await runtime.agent.unlockNow({ all: true });
        status = JSON.parse(JSON.stringify(runtime.agent.status())) as Omit<StatusDocument, 'daemon'>;
      } finally {
        await runtime.close();
      }
    }
    const doc: StatusDocument = { ...status, daemon, drives: status.drives.map((d) => ({ ...d, keyId: d.keyUid })) };
    emit(ctx, doc, statusTable({ ...doc, daemon: true }));
    return doc.drives.every((d) => ['unlocked', 'served', 'not-supported'].includes(d.state))
      ? ExitCode.Ok
      : ExitCode.Failed;
  },
});

// --------------------------------------------------------------------------------------- enroll

export const driveEnrollCommand = command({
  name: 'enroll',
  usage: '<drive>... | <drive> --sid-pin-file FILE|- [--admin1-pin-file FILE|-]',
  summary: 'take a factory-fresh Opal drive under the agent: a new key on the key server locks it',
  description: `For each drive (a device path or emu:/path/to/image): a random 32-byte key is registered on the key
server as kmip-agent/<appliance>/<drive id> in group kmip-agent/<appliance> and activated, then the drive
is taken (SID and Admin1 PINs), its Locking SP activated and its global range read/write locked, and the
drive is recorded in the state (and emulated drives in the config) so the next boot unlocks it.
Each step is journaled: a crash never leaves a drive locked with a key nobody can find.
Runs inside the daemon when one runs.
A drive that already has an owner is adopted with its current PINs (one drive; stop the daemon first):
--sid-pin-file and/or --admin1-pin-file (Admin1 defaults to the SID PIN). They are checked first (a PIN the
drive refuses is never sent again), then the new key replaces the Admin1 PIN and, given it, the SID PIN,
and global range locking is enabled. Run again after an interruption, it resumes with the same key.`,
  options: {
    'sid-pin-file': { type: 'string', value: 'FILE|-', help: 'adopt an owned drive: its current SID PIN' },
    'admin1-pin-file': {
      type: 'string',
      value: 'FILE|-',
      help: 'adopt an owned drive: its current Admin1 PIN (default: the SID PIN)',
    },
    ...SECRET_READING_OPTIONS,
    ...DIR_OPTIONS,
  },
  positionals: [1, 64],
  async run({ values, positionals }, ctx) {
    const dirs = dirsFrom(values);
    if (values['sid-pin-file'] !== undefined || values['admin1-pin-file'] !== undefined) {
      if (positionals.length !== 1) throw new UsageError('adopting an owned drive takes one drive at a time');
      const pinFile = (path: string | undefined, option: string, what: string) => ({
        path,
        option,
        what,
        kind: PIN_SECRET,
        optional: true,
      });
      const sources = [
        pinFile(values['sid-pin-file'], '--sid-pin-file', 'the current SID PIN'),
        pinFile(values['admin1-pin-file'], '--admin1-pin-file', 'the current Admin1 PIN'),
      ];
      const adopted = await withSecrets(ctx, sources, secretReading(values), async ([sid, admin1]) => {
        const runtime = await openAgentRuntime({ dirs, role: 'cli', log: await quietLog() });
        try {
          return await runtime.adoptDrive(positionals[0]!, { sid, admin1 });
        } finally {
          await runtime.close();
        }
      });
      emit(
        ctx,
        { enrolled: [adopted] },
        `${adopted.device}: adopted as ${adopted.id}, key ${adopted.keyName} (KMIP object ${adopted.keyUid})` +
          (adopted.sidChanged ? '' : '; the SID PIN was left as it was'),
      );
      return;
    }
    let result = await fromDaemon<{ enrolled: unknown[] }>(dirs, 'EnrollDrives', { devices: positionals });
    if (!result) {
      const runtime = await openAgentRuntime({ dirs, role: 'cli', log: await quietLog() });
      try {
        result = { enrolled: await runtime.enrollDrives(positionals) };
      } finally {
        await runtime.close();
      }
    }
    const enrolled = result.enrolled as { id: string; device: string; keyUid: string; keyName: string }[];
    emit(
      ctx,
      result,
      enrolled.map((e) => `${e.device}: enrolled as ${e.id}, key ${e.keyName} (KMIP object ${e.keyUid})`).join('\n'),
    );
  },
});

export const volumeEnrollCommand = command({
  name: 'enroll',
  usage: '<luks-device> --name NAME --key-file FILE|- [--key-socket]',
  summary: 'put a LUKS2 volume under the agent: a new KMIP key gets a keyslot, authorized by the current passphrase',
  description: `A random 32-byte key is registered on the key server as kmip-agent/<appliance>/<LUKS UUID> and gets a new
keyslot, authorized by the passphrase in --key-file (which keeps its own keyslot). The volume is recorded and
added to the configuration: at boot the daemon opens it as /dev/mapper/NAME, or with --key-socket serves its
key to systemd-cryptsetup on <runtime-dir>/luks.sock (crypttab: NAME UUID=... /run/kmip-agent/luks.sock luks,_netdev).
Needs the state to itself: stop the daemon first.`,
  options: {
    name: { type: 'string', value: 'NAME', help: 'device-mapper name to open it as' },
    'key-file': {
      type: 'string',
      value: 'FILE|-',
      help: "the volume's current passphrase (raw bytes; --raw for text)",
    },
    'key-socket': { type: 'boolean', help: 'serve the key to systemd-cryptsetup instead of opening the volume' },
    ...SECRET_READING_OPTIONS,
    ...DIR_OPTIONS,
  },
  positionals: 1,
  async run({ values, positionals }, ctx) {
    if (!values.name) throw new UsageError('--name is required (the /dev/mapper name)');
    const name = values.name;
    const device = positionals[0]!;
    const source = { path: values['key-file'], option: '--key-file', what: 'the current passphrase', kind: KEY_SECRET };
    const result = await withSecrets(ctx, [source], secretReading(values), async ([existing]) => {
      const runtime = await openAgentRuntime({ dirs: dirsFrom(values), role: 'cli', log: await quietLog() });
      try {
        return await runtime.enrollVolume(device, name, existing!, values['key-socket'] === true);
      } finally {
        await runtime.close();
      }
    });
    emit(
      ctx,
      result,
      `${device}: enrolled as ${result.id} (keyslot ${result.keyslot}), key ${result.keyName} (KMIP object ${result.keyUid})`,
    );
  },
});
