/**
 * `kmip-agent drive ...`: TCG Opal self-encrypting drives (discover, status, ownership, ranges,
 * lock/unlock, PINs, reverts, crypto erase, MBR). Drives are `/dev/...` or `emu:/path/to/image`.
 * PINs only from files or stdin (`-`), through the framework's one secret reader (checked before the
 * drive is opened, wiped after use). `drive emulate|read|write` belong to the emulator (drive-emulate.ts).
 */
import { driveRotateCommand } from './rotate.js';
import { DIR_OPTIONS, dirsFrom, driveEnrollCommand } from './agent.js';
import { DEFAULT_TRIES_RESERVE, loadConfig } from '../../agent/config.js';
import { RefusedKeyFile } from '../../agent/refused-keys.js';
import { driveIdentifier } from '../../agent/inventory.js';
import { driveListCommand } from './inventory.js';
import { driveFieldCommands } from './field.js';
import { BACKEND_NAMES, BackendChoiceError, describeAttempt, type BackendName } from '../../drives/backend.js';
import { OpalDrive, type OpalDriveOptions } from '../../drives/opal.js';
import { ADMIN1, describeAuthority, SID, userAuthority, type Authority, type Discovery } from '../../drives/types.js';
import { KmipAgentError } from '../../errors.js';
import { DRIVE_EMULATOR_COMMANDS } from './drive-emulate.js';
import {
  command,
  emit,
  exitCodeFor,
  group,
  PIN_SECRET,
  printable,
  PSID_SECRET,
  SECRET_READING_OPTIONS,
  secretReading,
  SEDUTIL_PASSWORD_SECRET,
  UsageError,
  withSecrets,
  type Command,
  type CommandContext,
  type SecretKind,
  type SecretReading,
  type SecretSource,
} from '../framework.js';

const DRIVE_NOTE = `<drive> is a device path (/dev/sdX, /dev/nvme0n1) or emu:/path/to/image (emulated drive).

PINs come from a file, or - for stdin (at most one per command); never from the command line. A PIN is
raw bytes, 1 to 32 of them, checked before the drive is contacted (no try is spent on a refused file):
  - a file that looks like hex text (what \`kmip get\` prints) is refused [SECRET_LOOKS_LIKE_HEX]:
    --hex decodes it; or write the raw value with \`kmip get UID --out FILE\` (or --out -)
  - base64 text, or text ending in a newline, is refused likewise; --raw sends the bytes as they are
  - more than 32 bytes, an empty file, a directory, a missing file: refused
--sedutil-pins (any command): the files hold sedutil-cli passwords (text, up to 255 bytes; one trailing
newline is removed, as sedutil-cli takes passwords on its command line where none can end in one). Each is
sent as sedutil-cli derives it (PBKDF2-HMAC-SHA1 salted with the drive serial), to adopt drives set up with
sedutil; the hex/base64 rules and --hex/--raw do not apply to passwords.

--backend kernel|passthrough|emulated (any command): use only that backend. By default a device is
reached through the kernel's sed-opal driver when it supports the drive (it re-unlocks after suspend),
else through SCSI/ATA/NVMe TCG pass-through; \`drive discover\` shows the choice.
Lock/unlock/setup-range/erase/mbr authenticate as Admin1 unless --user N is given.
Lockout protection: a PIN a drive refused is never sent to that drive's authority again by any kmip-agent
process (this command, later ones, the daemon) until \`drive forget-refusals\` clears it: refusals are kept
as keyed fingerprints in <state-dir>/refused-keys.json (--state-dir, KMIP_AGENT_STATE_DIR, STATE_DIRECTORY;
default /var/lib/kmip-agent), by drive serial and authority. Where a drive shows an authority's tries
without a PIN (most show only the PSID's), the last boot.triesReserve of them (config, default
${DEFAULT_TRIES_RESERVE}) are never spent: DRIVE_LOCKOUT_RISK; elsewhere the refused-key memory is the guard.
Destructive commands (erase, revert, psid-revert, emulate destroy) refuse to run without --yes.`;

/** The options every Opal command takes (drive-wide: which backend, how PINs are derived). */
const DRIVE_OPTIONS = {
  backend: { type: 'string', value: 'kernel|passthrough|emulated', help: 'use only this backend' },
  'sedutil-pins': { type: 'boolean', help: 'PIN files hold sedutil-cli passwords (text; see `drive --help`)' },
  // The state dir holds the refused-key memory, the config dir the tries reserve.
  ...DIR_OPTIONS,
} as const;

/** The options of a command that reads PINs: drive-wide ones plus how to read the PIN files. */
const PIN_OPTIONS = { ...DRIVE_OPTIONS, ...SECRET_READING_OPTIONS } as const;

const pinFileOption = (help: string) => ({ type: 'string', value: 'FILE|-', help }) as const;

type DriveValues = {
  backend?: string;
  'sedutil-pins'?: boolean;
  hex?: boolean;
  raw?: boolean;
  'config-dir'?: string;
  'state-dir'?: string;
  'runtime-dir'?: string;
};

/** How to reach the drive and derive PINs: enough for commands that do not authenticate. */
function reachOptions(values: DriveValues): OpalDriveOptions {
  return {
    // The agent's identity (WWN first): refusals are remembered as the daemon remembers them.
    identify: driveIdentifier(),
    ...(values.backend !== undefined ? { backend: parseBackend(values.backend) } : {}),
    ...(values['sedutil-pins'] ? { pinDerivation: 'sedutil' as const } : {}),
  };
}

/** The agent's refused-key memory in the state directory: shared with the daemon and every other command. */
function refusedKeyMemory(values: DriveValues): RefusedKeyFile {
  return new RefusedKeyFile({ dir: dirsFrom(values).state });
}

/** Plus the agent's lockout guard: its refused-key memory and the configured tries reserve. */
async function driveOptions(values: DriveValues): Promise<OpalDriveOptions> {
  let triesReserve = DEFAULT_TRIES_RESERVE;
  try {
    triesReserve = (await loadConfig(dirsFrom(values).config)).boot.triesReserve;
  } catch (error) {
    // A drive can be worked on before (or without) `kmip-agent setup`; a broken config is still an error.
    if ((error as { code?: unknown }).code !== 'CONFIG_MISSING') throw error;
  }
  return { ...reachOptions(values), refusedKeys: refusedKeyMemory(values), triesReserve };
}

/** How the command's PIN files are read: raw bytes (with --hex/--raw), or sedutil passwords (text). */
function pinReading(values: DriveValues): { kind: SecretKind; reading: SecretReading } {
  const reading = secretReading(values);
  if (!values['sedutil-pins']) return { kind: PIN_SECRET, reading };
  if (reading !== 'auto')
    throw new UsageError('--sedutil-pins reads passwords as text: --hex and --raw do not apply to them');
  return { kind: SEDUTIL_PASSWORD_SECRET, reading };
}

/** Reads the command's PINs (checked before the drive is opened), runs `work` on the open drive. */
function withPins<T>(
  ctx: CommandContext,
  spec: string,
  values: DriveValues,
  pins: { path: string | undefined; option: string; what: string; optional?: boolean }[],
  work: (drive: OpalDrive, pins: Buffer[]) => Promise<T>,
): Promise<T> {
  const { kind, reading } = pinReading(values);
  const sources: SecretSource[] = pins.map((p) => ({ ...p, kind }));
  return withSecrets(ctx, sources, reading, async (secrets) =>
    withDrive(spec, await driveOptions(values), (d) => work(d, secrets)),
  );
}

function intOption(value: string | undefined, what: string, min = 0): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value)) throw new UsageError(`${what} must be a non-negative integer, got '${value}'`);
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < min) throw new UsageError(`${what} must be an integer >= ${min}`);
  return n;
}

function required<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new UsageError(`${what} is required`);
  return value;
}

async function withDrive<T>(spec: string, opts: OpalDriveOptions, fn: (drive: OpalDrive) => Promise<T>): Promise<T> {
  const drive = await OpalDrive.open(spec, opts);
  try {
    return await fn(drive);
  } finally {
    await drive.close();
  }
}

function discoveryText(d: Discovery): string {
  const ssc = d.opal2 ?? d.opal1 ?? d.otherSsc ?? d.enterprise;
  const lines = [
    ssc
      ? `SSC ${ssc.feature}, base ComID 0x${ssc.baseComId.toString(16).padStart(4, '0')}, ${ssc.numComIds} ComID(s)`
      : 'no TCG SSC announced',
  ];
  if (d.locking) {
    const l = d.locking;
    lines.push(
      `locking: supported=${l.lockingSupported} enabled=${l.lockingEnabled} locked=${l.locked} ` +
        `encryption=${l.mediaEncryption} mbrEnabled=${l.mbrEnabled} mbrDone=${l.mbrDone}`,
    );
  }
  if (d.geometry) lines.push(`logical block size ${d.geometry.logicalBlockSize}`);
  lines.push(
    'features: ' +
      d.features.map((f) => `${f.name}(0x${f.code.toString(16).padStart(4, '0')} v${f.version})`).join(' '),
  );
  for (const w of d.warnings) lines.push(`warning: ${w}`);
  return lines.join('\n');
}

/** --user N -> User N; --sid -> SID; else the default. */
function pickAuthority(values: { user?: string; sid?: boolean }, fallback: Authority): Authority {
  if (values.user !== undefined && values.sid) throw new UsageError('--user and --sid exclude each other');
  if (values.sid) return SID;
  const user = intOption(values.user, '--user', 1);
  return user === undefined ? fallback : userAuthority(user);
}

/** The call's result, or undefined when this drive's backend cannot do it (DRIVE_OPERATION_NOT_SUPPORTED). */
async function unlessUnsupported<T>(call: Promise<T>): Promise<T | undefined> {
  try {
    return await call;
  } catch (error) {
    if ((error as { code?: string }).code === 'DRIVE_OPERATION_NOT_SUPPORTED') return undefined;
    throw error;
  }
}

/** Destructive commands run only when the operator confirms with --yes (else usage error, exit 2). */
function confirmDestruction(yes: boolean | undefined, sub: string, what: string): void {
  if (yes === true) return;
  throw new UsageError(`${sub} destroys ${what}; this cannot be undone. Add --yes to confirm.`, 'USAGE_CONFIRM');
}

const opalCommands: Command[] = [
  command({
    name: 'discover',
    usage: '<drive>',
    summary: 'which backend reaches the drive and why, then Level 0 discovery: SSC, ComID, locking, features',
    options: DRIVE_OPTIONS,
    positionals: 1,
    async run({ values, positionals: [spec] }, ctx) {
      let drive: OpalDrive;
      try {
        drive = await OpalDrive.open(spec!, reachOptions(values));
      } catch (error) {
        // With --json the attempts travel in the error document (BackendChoiceError.details()).
        if (!(error instanceof BackendChoiceError) || ctx.json) throw error;
        const lines = [`kmip-agent: ${spec}: no usable backend [${error.code}]`];
        for (const a of error.attempts) lines.push(`  ${describeAttempt(a)}`);
        ctx.io.stderr(lines.join('\n') + '\n');
        return exitCodeFor(error);
      }
      try {
        const choice = drive.choice;
        let discovery = null;
        let discoveryNote: string | undefined;
        try {
          discovery = await drive.discover();
        } catch (error) {
          if ((error as { code?: string }).code !== 'DRIVE_OPERATION_NOT_SUPPORTED') throw error;
          discoveryNote = (error as Error).message;
        }
        const lines = [`${spec}: backend ${choice?.backend ?? 'unknown'} (${drive.describe()})`];
        if (choice) {
          lines.push(`why: ${choice.reason}`);
          for (const a of choice.attempts) lines.push(`  ${describeAttempt(a)}`);
        }
        lines.push(discovery ? discoveryText(discovery) : `discovery unavailable: ${discoveryNote}`);
        // The discovery's fields stay at the top level (as before backends were chosen); the choice is `backend`.
        const backend = {
          name: choice?.backend,
          description: drive.describe(),
          reason: choice?.reason,
          attempts: choice?.attempts,
        };
        emit(
          ctx,
          discovery
            ? { ...discovery, drive: spec, backend }
            : { drive: spec, backend, discoveryUnavailable: discoveryNote },
          lines.map(printable).join('\n'),
        );
        return 0;
      } finally {
        await drive.close();
      }
    },
  }),

  command({
    name: 'status',
    usage: '<drive> [--probe-sid] [--pin-file FILE|-]',
    summary: 'locking/MBR state, Locking SP life cycle, SID==MSID?; with the Admin1 PIN also ranges and tries',
    description: '--probe-sid tries SID with the MSID: it costs a SID try if the drive is owned.',
    options: {
      'probe-sid': { type: 'boolean', help: 'try SID with the MSID (costs a SID try if owned)' },
      'pin-file': pinFileOption('the Admin1 PIN: also list ranges and Admin1 tries'),
      ...PIN_OPTIONS,
    },
    positionals: 1,
    async run({ values, positionals: [spec] }, ctx) {
      const pinFile = { path: values['pin-file'], option: '--pin-file', what: 'the Admin1 PIN', optional: true };
      const result = await withPins(ctx, spec!, values, [pinFile], async (d, [pin]) => {
        const status = await d.status({ probeSid: values['probe-sid'] ?? false });
        // A backend that cannot list ranges or read tries (kernel sed-opal alone) still reports status.
        const ranges = pin ? await unlessUnsupported(d.ranges(pin)) : undefined;
        const admin1Tries = pin ? await unlessUnsupported(d.tries(ADMIN1, { authority: ADMIN1, pin })) : undefined;
        return { ...status, ranges, admin1Tries };
      });
      const owned = result.sidIsMsid === null ? 'unknown' : result.sidIsMsid ? 'no (SID == MSID)' : 'yes';
      const lines = [
        discoveryText(result.discovery),
        `Locking SP: ${result.lockingSpLifecycle === 9 ? 'active' : result.lockingSpLifecycle === 8 ? 'inactive' : 'unknown'}`,
        `owned (SID set): ${owned}`,
      ];
      for (const r of result.ranges ?? []) {
        lines.push(
          `range ${r.range}: start ${r.start} length ${r.length} RLE=${r.readLockEnabled} WLE=${r.writeLockEnabled} ` +
            `readLocked=${r.readLocked} writeLocked=${r.writeLocked}`,
        );
      }
      if (result.admin1Tries)
        lines.push(
          `Admin1 tries: ${result.admin1Tries.tries}/${result.admin1Tries.tryLimit} (read as Admin1, which resets the count)`,
        );
      emit(ctx, result, lines.map(printable).join('\n'));
    },
  }),

  command({
    name: 'take-ownership',
    usage: '<drive> --new-pin-file FILE|-',
    summary: 'read the MSID, set the SID PIN',
    options: { 'new-pin-file': pinFileOption('the new SID PIN'), ...PIN_OPTIONS },
    positionals: 1,
    async run({ values, positionals: [spec] }, ctx) {
      const pin = { path: values['new-pin-file'], option: '--new-pin-file', what: 'the new SID PIN' };
      await withPins(ctx, spec!, values, [pin], (d, [p]) => d.takeOwnership(p!));
      emit(ctx, { drive: spec, owned: true }, `${spec}: SID PIN set (drive owned)`);
    },
  }),

  command({
    name: 'activate',
    usage: '<drive> --pin-file FILE|-',
    summary: 'activate the Locking SP (SID PIN; Admin1 starts with it)',
    options: { 'pin-file': pinFileOption('the SID PIN'), ...PIN_OPTIONS },
    positionals: 1,
    async run({ values, positionals: [spec] }, ctx) {
      const pin = { path: values['pin-file'], option: '--pin-file', what: 'the SID PIN' };
      await withPins(ctx, spec!, values, [pin], (d, [p]) => d.activate(p!));
      emit(ctx, { drive: spec, lockingSpActive: true }, `${spec}: Locking SP active`);
    },
  }),

  command({
    name: 'setup-range',
    usage: '<drive> --pin-file FILE|- --range N [--start LBA --length N] [--read-lock-enabled] [--write-lock-enabled]',
    summary: 'configure a range (0 = global: no start/length)',
    options: {
      'pin-file': pinFileOption('the Admin1 PIN'),
      range: { type: 'string', value: 'N', help: 'the range (0 = global)' },
      start: { type: 'string', value: 'LBA', help: 'first block of a numbered range' },
      length: { type: 'string', value: 'N', help: 'blocks in a numbered range' },
      'read-lock-enabled': { type: 'boolean', help: 'the range can be read-locked' },
      'write-lock-enabled': { type: 'boolean', help: 'the range can be write-locked' },
      ...PIN_OPTIONS,
    },
    positionals: 1,
    async run({ values, positionals: [spec] }, ctx) {
      const range = required(intOption(values.range, '--range'), '--range');
      const start = intOption(values.start, '--start');
      const length = intOption(values.length, '--length');
      if (range > 0 && (start === undefined || length === undefined)) {
        throw new UsageError('--start and --length are required for a numbered range');
      }
      if (range === 0 && (start !== undefined || length !== undefined)) {
        throw new UsageError('the global range (0) has no --start/--length');
      }
      const options = {
        range,
        start,
        length,
        readLockEnabled: values['read-lock-enabled'] ?? false,
        writeLockEnabled: values['write-lock-enabled'] ?? false,
      };
      const pin = { path: values['pin-file'], option: '--pin-file', what: 'the Admin1 PIN' };
      await withPins(ctx, spec!, values, [pin], (d, [p]) => d.setupRange(p!, options));
      emit(
        ctx,
        { drive: spec, ...options },
        `${spec}: range ${range} set up (readLockEnabled=${options.readLockEnabled}, writeLockEnabled=${options.writeLockEnabled})`,
      );
    },
  }),

  command({
    name: 'enable-user',
    usage: '<drive> --pin-file FILE|- --user N [--range N ...] [--disable]',
    summary: 'enable User N and let it lock/unlock the ranges',
    options: {
      'pin-file': pinFileOption('the Admin1 PIN'),
      user: { type: 'string', value: 'N', help: 'the user (1, 2, ...)' },
      range: { type: 'string', multiple: true, value: 'N', help: 'a range the user may lock and unlock' },
      disable: { type: 'boolean', help: 'disable the user instead' },
      ...PIN_OPTIONS,
    },
    positionals: 1,
    async run({ values, positionals: [spec] }, ctx) {
      const user = required(intOption(values.user, '--user', 1), '--user');
      const ranges = (values.range ?? []).map((r) => required(intOption(r, '--range'), '--range'));
      const enabled = !(values.disable ?? false);
      const pin = { path: values['pin-file'], option: '--pin-file', what: 'the Admin1 PIN' };
      await withPins(ctx, spec!, values, [pin], (d, [p]) => d.enableUser(p!, user, { enabled, ranges }));
      emit(ctx, { drive: spec, user, enabled, ranges }, `${spec}: User${user} ${enabled ? 'enabled' : 'disabled'}`);
    },
  }),

  lockCommand('lock'),
  lockCommand('unlock'),

  command({
    name: 'set-pin',
    usage: '<drive> --pin-file FILE --new-pin-file FILE [--user N | --sid]',
    summary: "Admin1 changes its PIN, or sets User N's PIN (--user), or SID changes its PIN (--sid)",
    options: {
      'pin-file': pinFileOption('the current PIN (Admin1, or SID with --sid)'),
      'new-pin-file': pinFileOption('the new PIN'),
      user: { type: 'string', value: 'N', help: "set User N's PIN (as Admin1)" },
      sid: { type: 'boolean', help: 'change the SID PIN' },
      ...PIN_OPTIONS,
    },
    positionals: 1,
    async run({ values, positionals: [spec] }, ctx) {
      const target = pickAuthority(values, ADMIN1);
      const authority = target.kind === 'user' ? ADMIN1 : target;
      const pins = [
        { path: values['pin-file'], option: '--pin-file', what: `the ${describeAuthority(authority)} PIN` },
        { path: values['new-pin-file'], option: '--new-pin-file', what: 'the new PIN' },
      ];
      await withPins(ctx, spec!, values, pins, (d, [pin, newPin]) =>
        d.setPin({ authority, pin: pin!, target, newPin: newPin! }),
      );
      emit(
        ctx,
        { drive: spec, authority: describeAuthority(target) },
        `${spec}: ${describeAuthority(target)} PIN changed`,
      );
    },
  }),

  command({
    name: 'tries',
    usage: '<drive> [--user N | --sid] [--pin-file FILE|-]',
    summary: 'failed tries / TryLimit of an authority (reading may need a PIN)',
    description: `Most drives let tries be read only by an authenticated session. Authenticating as the
authority itself (Admin1 with the Admin1 PIN, SID with the SID PIN) resets its count to 0 when the PIN
is right, so it then shows 0: the failed tries before it cannot be seen. User N's tries are read as
Admin1 and are not reset. Without a PIN, when the drive does not answer, nothing was read: exit 1.`,
    options: {
      'pin-file': pinFileOption('the PIN to read with (Admin1, or SID with --sid)'),
      user: { type: 'string', value: 'N', help: "User N's tries (read as Admin1)" },
      sid: { type: 'boolean', help: "SID's tries" },
      ...PIN_OPTIONS,
    },
    positionals: 1,
    async run({ values, positionals: [spec] }, ctx) {
      const target = pickAuthority(values, ADMIN1);
      const asAuthority = target.kind === 'user' ? ADMIN1 : target;
      const name = describeAuthority(target);
      const as = describeAuthority(asAuthority);
      const pin = { path: values['pin-file'], option: '--pin-file', what: `the ${as} PIN`, optional: true };
      const authenticated = values['pin-file'] !== undefined;
      const notRead = (why: string, cause?: unknown) =>
        new KmipAgentError(
          `${name}: nothing was read: ${spec} ${why}` +
            (authenticated
              ? ''
              : `; give --pin-file with the ${as} PIN (which, when right, resets ${as}'s count to 0)`),
          'DRIVE_TRIES_NOT_READ',
          cause === undefined ? undefined : { cause },
        );
      const tries = await withPins(ctx, spec!, values, [pin], async (d, [p]) => {
        try {
          return await d.tries(target, p ? { authority: asAuthority, pin: p } : undefined);
        } catch (error) {
          // Without a PIN the drive may refuse the session outright: that too means nothing was read.
          if (authenticated || !String((error as { code?: unknown }).code).startsWith('TCG_')) throw error;
          throw notRead(`refused to show them without authentication (${(error as Error).message})`, error);
        }
      });
      if (!tries)
        throw notRead(`does not let its tries be read ${authenticated ? 'by ' + as : 'without authentication'}`);
      // Authenticating as the target itself resets its count: what is shown is after that reset.
      const resetByAuthentication = authenticated && name === as;
      const limit = tries.tryLimit === 0 ? 'unlimited' : String(tries.tryLimit);
      emit(
        ctx,
        { drive: spec, authority: name, tries, resetByAuthentication },
        `${name}: ${tries.tries} failed tries of ${limit}` +
          (resetByAuthentication
            ? `\nnote: authenticating as ${as} to read this reset the count to 0; failed tries before it are not visible`
            : ''),
      );
    },
  }),

  command({
    name: 'mbr',
    usage: '<drive> --pin-file FILE|- [--enable | --disable] [--done | --not-done]',
    summary: 'MBR shadowing: enable/disable it, mark it done/not done',
    options: {
      'pin-file': pinFileOption('the Admin1 PIN'),
      enable: { type: 'boolean', help: 'enable MBR shadowing' },
      disable: { type: 'boolean', help: 'disable MBR shadowing' },
      done: { type: 'boolean', help: 'mark the shadow MBR done (the real data shows)' },
      'not-done': { type: 'boolean', help: 'mark it not done (the shadow shows)' },
      ...PIN_OPTIONS,
    },
    positionals: 1,
    async run({ values, positionals: [spec] }, ctx) {
      if (values.enable && values.disable) throw new UsageError('--enable and --disable exclude each other');
      if (values.done && values['not-done']) throw new UsageError('--done and --not-done exclude each other');
      const enable = values.enable ? true : values.disable ? false : undefined;
      const done = values.done ? true : values['not-done'] ? false : undefined;
      if (enable === undefined && done === undefined)
        throw new UsageError('give --enable/--disable and/or --done/--not-done');
      const pin = { path: values['pin-file'], option: '--pin-file', what: 'the Admin1 PIN' };
      await withPins(ctx, spec!, values, [pin], (d, [p]) => d.setMbr(p!, { enable, done }));
      emit(ctx, { drive: spec, enable, done }, `${spec}: MBR control updated`);
    },
  }),

  command({
    name: 'erase',
    usage: '<drive> --pin-file FILE|- --range N [--method genkey|erase] --yes',
    summary: 'crypto erase: the range gets a new media key (destructive: needs --yes)',
    options: {
      'pin-file': pinFileOption('the Admin1 PIN'),
      range: { type: 'string', value: 'N', help: 'the range to erase' },
      method: { type: 'string', value: 'genkey|erase', help: 'GenKey (default) or the Erase method' },
      yes: { type: 'boolean', help: "confirm: the range's data becomes unreadable" },
      ...PIN_OPTIONS,
    },
    positionals: 1,
    async run({ values, positionals: [spec] }, ctx) {
      const range = required(intOption(values.range, '--range'), '--range');
      const method = values.method ?? 'genkey';
      if (method !== 'genkey' && method !== 'erase') throw new UsageError('--method is genkey or erase');
      confirmDestruction(
        values.yes,
        'erase',
        `the media key of range ${range} on ${spec}: its data becomes unreadable`,
      );
      const pin = { path: values['pin-file'], option: '--pin-file', what: 'the Admin1 PIN' };
      await withPins(ctx, spec!, values, [pin], (d, [p]) => d.erase(p!, { range, method }));
      emit(ctx, { drive: spec, range, method, erased: true }, `${spec}: range ${range} crypto-erased`);
    },
  }),

  command({
    name: 'revert',
    usage: '<drive> --pin-file FILE|- --yes',
    summary: 'factory reset with the SID PIN (ALL DATA LOST; needs --yes)',
    options: {
      'pin-file': pinFileOption('the SID PIN'),
      yes: { type: 'boolean', help: 'confirm: every key and all data are lost' },
      ...PIN_OPTIONS,
    },
    positionals: 1,
    async run({ values, positionals: [spec] }, ctx) {
      confirmDestruction(values.yes, 'revert', `every key and ALL DATA on ${spec} (factory reset)`);
      const pin = { path: values['pin-file'], option: '--pin-file', what: 'the SID PIN' };
      await withPins(ctx, spec!, values, [pin], (d, [p]) => d.revert(p!));
      emit(ctx, { drive: spec, reverted: true }, `${spec}: reverted to factory state`);
    },
  }),

  command({
    name: 'psid-revert',
    usage: '<drive> --psid-file FILE|- --yes',
    summary: 'factory reset with the PSID from the label (ALL DATA LOST; needs --yes)',
    description: 'The PSID file holds the PSID as printed on the label (text; one trailing newline is removed).',
    options: {
      'psid-file': pinFileOption('the PSID, as printed on the drive label'),
      yes: { type: 'boolean', help: 'confirm: every key and all data are lost' },
      ...DRIVE_OPTIONS,
    },
    positionals: 1,
    async run({ values, positionals: [spec] }, ctx) {
      confirmDestruction(values.yes, 'psid-revert', `every key and ALL DATA on ${spec} (factory reset)`);
      // A PSID is typed from a label: the reader drops the newline of `echo` or an editor.
      const psid: SecretSource = {
        path: values['psid-file'],
        option: '--psid-file',
        what: 'the PSID',
        kind: PSID_SECRET,
      };
      await withSecrets(ctx, [psid], 'auto', async ([p]) =>
        withDrive(spec!, await driveOptions(values), (d) => d.psidRevert(p!)),
      );
      emit(ctx, { drive: spec, reverted: true }, `${spec}: reverted to factory state with the PSID`);
    },
  }),

  command({
    name: 'forget-refusals',
    usage: '<drive> [--authority Admin1|UserN|SID|PSID]',
    summary: 'clear the refused-key memory of a drive (all authorities, or one), once its keys are sorted out',
    description: `Every kmip-agent process (the daemon included) refuses to send a drive a PIN or key the drive
refused before. After the key was fixed (or a PIN was found to be right after all), this clears the
memory so it is tried again: each wrong one costs a try again. The drive is opened only to read its
serial, which refusals are remembered by; no PIN is sent.`,
    options: {
      authority: { type: 'string', value: 'NAME', help: 'only this authority: Admin1, User1, ..., SID, PSID' },
      // Every derivation of the authority's PINs is forgotten: --sedutil-pins has no meaning here.
      backend: DRIVE_OPTIONS.backend,
      ...DIR_OPTIONS,
    },
    positionals: 1,
    async run({ values, positionals: [spec] }, ctx) {
      const authority = values.authority === undefined ? undefined : parseAuthorityName(values.authority);
      const memory = refusedKeyMemory(values);
      const identity = await withDrive(spec!, reachOptions(values), async (d) => d.identity());
      if (identity === '') {
        throw new KmipAgentError(
          `${spec} reports no serial: its refusals were never kept beyond one process, there is nothing to forget`,
          'DRIVE_NO_IDENTITY',
        );
      }
      const forgotten = await memory.forget(identity, authority === undefined ? undefined : { authority });
      emit(
        ctx,
        { drive: spec, identity, authority: authority ?? null, forgotten },
        `${spec} (${printable(identity)}): ${forgotten} refused key(s) forgotten${authority ? ` for ${authority}` : ''}`,
      );
    },
  }),
];

/** "admin1", "User2", "sid", "psid" -> the name refusals are kept under (describeAuthority's spelling). */
function parseAuthorityName(text: string): string {
  const match = /^(?:(sid|psid)|(admin|user)([1-9]\d{0,3}))$/i.exec(text);
  if (!match) throw new UsageError(`--authority takes Admin1, User1 (any number), SID or PSID, not '${text}'`);
  if (match[1]) return match[1].toUpperCase();
  const index = Number(match[3]);
  return describeAuthority(match[2]!.toLowerCase() === 'admin' ? { kind: 'admin', index } : userAuthority(index));
}

function lockCommand(name: 'lock' | 'unlock'): Command {
  return command({
    name,
    usage: `<drive> --pin-file FILE|- [--range N] [--user N]${name === 'unlock' ? ' [--read-only]' : ''}`,
    summary: name === 'lock' ? 'lock a range (read and write)' : 'unlock a range (or make it read-only)',
    options: {
      'pin-file': pinFileOption('the PIN of Admin1 (or of User N with --user)'),
      range: { type: 'string', value: 'N', help: 'the range (default 0, the global range)' },
      user: { type: 'string', value: 'N', help: 'authenticate as User N instead of Admin1' },
      ...(name === 'unlock' ? { 'read-only': { type: 'boolean', help: 'unlock for reading only' } } : {}),
      ...PIN_OPTIONS,
    },
    positionals: 1,
    async run({ values, positionals: [spec] }, ctx) {
      const range = intOption(values.range, '--range') ?? 0;
      const authority = pickAuthority({ user: values.user }, ADMIN1);
      const readOnly = name === 'unlock' && (values as { 'read-only'?: boolean })['read-only'] === true;
      const pin = { path: values['pin-file'], option: '--pin-file', what: `the ${describeAuthority(authority)} PIN` };
      await withPins(ctx, spec!, values, [pin], (d, [p]) =>
        name === 'lock' ? d.lock(p!, { range, authority }) : d.unlock(p!, { range, authority, readOnly }),
      );
      const state = name === 'lock' ? 'locked' : readOnly ? 'read-only' : 'unlocked';
      emit(ctx, { drive: spec, range, state }, `${spec}: range ${range} ${state}`);
    },
  });
}

function parseBackend(value: string | undefined): BackendName {
  if (value === undefined || !(BACKEND_NAMES as readonly string[]).includes(value)) {
    throw new UsageError(`--backend takes ${BACKEND_NAMES.join('|')}, got '${value ?? ''}'`);
  }
  return value as BackendName;
}

export const driveCommand = group({
  name: 'drive',
  summary: 'TCG Opal self-encrypting drives: discover, own, configure, lock, unlock, erase, revert',
  description: DRIVE_NOTE,
  commands: [
    ...opalCommands,
    driveEnrollCommand,
    driveRotateCommand,
    driveListCommand,
    ...driveFieldCommands,
    ...DRIVE_EMULATOR_COMMANDS,
  ],
});
