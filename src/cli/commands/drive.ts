/**
 * `kmip-agent drive ...`: TCG Opal self-encrypting drives (discover, status, ownership, ranges,
 * lock/unlock, PINs, reverts, crypto erase, MBR). Drives are `/dev/...` or `emu:/path/to/image`.
 * PINs only from files or stdin (`-`), never argv; every PIN Buffer read here is wiped after use.
 * `drive emulate|read|write` belong to the emulator (drive-emulate.ts).
 */
import { BACKEND_NAMES, BackendChoiceError, describeAttempt, type BackendName } from '../../drives/backend.js';
import { OpalDrive, type OpalDriveOptions } from '../../drives/opal.js';
import { ADMIN1, describeAuthority, SID, userAuthority, type Authority, type Discovery } from '../../drives/types.js';
import { DRIVE_EMULATOR_HELP, DRIVE_EMULATOR_SUBCOMMANDS, runDriveEmulatorCommand } from './drive-emulate.js';
import {
  emit,
  exitCodeFor,
  parseOptions,
  optionalSecret,
  withSecrets,
  UsageError,
  type CommandContext,
  type CommandGroup,
} from '../framework.js';

const HELP = `Usage: kmip-agent drive <subcommand> <drive> [options] [--json]

<drive> is a device path (/dev/sdX, /dev/nvme0n1) or emu:/path/to/image (emulated drive).
PIN options take a file path, or - for stdin; PINs are never accepted on the command line.

Subcommands:
  discover <drive>                          which backend reaches the drive and why, then Level 0
                                            discovery: SSC, ComID, locking flags, features
  status <drive> [--probe-sid] [--pin-file F]
                                            locking/MBR state, Locking SP life cycle, SID==MSID?;
                                            with the Admin1 PIN also ranges and Admin1 tries
                                            (--probe-sid tries SID with MSID: costs a SID try if owned)
  take-ownership <drive> --new-pin-file F   read MSID, set the SID PIN
  activate <drive> --pin-file F             activate the Locking SP (SID PIN; Admin1 starts with it)
  setup-range <drive> --pin-file F --range N [--start LBA --length N]
              [--read-lock-enabled] [--write-lock-enabled]
                                            configure a range (0 = global: no start/length)
  enable-user <drive> --pin-file F --user N [--range N ...] [--disable]
                                            enable User N and let it lock/unlock the ranges
  lock <drive> --pin-file F [--range N] [--user N]
  unlock <drive> --pin-file F [--range N] [--user N] [--read-only]
  set-pin <drive> --pin-file F --new-pin-file F [--user N | --sid]
                                            Admin1 changes its PIN, or sets User N's PIN (--user),
                                            or SID changes its PIN (--sid)
  tries <drive> [--user N | --sid] [--pin-file F]
                                            failed tries / TryLimit (reading may need the PIN)
  mbr <drive> --pin-file F [--enable | --disable] [--done | --not-done]
  erase <drive> --pin-file F --range N [--method genkey|erase] --yes
                                            crypto erase: the range gets a new media key
  revert <drive> --pin-file F --yes         factory reset with the SID PIN (ALL DATA LOST)
  psid-revert <drive> --psid-file F --yes   factory reset with the label PSID (ALL DATA LOST)

Destructive subcommands (erase, revert, psid-revert) refuse to run without --yes.
--backend kernel|passthrough|emulated (any subcommand): use only that backend. By default a device
is reached through the kernel's sed-opal driver when it supports the drive (it re-unlocks after
suspend), else through SCSI/ATA/NVMe TCG pass-through; \`drive discover\` shows the choice.

Lock/unlock/setup-range/erase/mbr authenticate as Admin1 unless --user N is given.
--sedutil-pins (any subcommand): send PINs as sedutil-cli derives them from a password
(PBKDF2-HMAC-SHA1 salted with the drive serial) to adopt drives set up with sedutil.
A PIN the drive refused once is not sent again by this process (lockout protection).

Emulated drives:
${DRIVE_EMULATOR_HELP}`;

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

function onlyDrive(positionals: string[], sub: string): string {
  if (positionals.length !== 1) throw new UsageError(`usage: kmip-agent drive ${sub} <drive> ...`);
  return positionals[0];
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

/** Destructive subcommands run only when the operator confirms with --yes (else usage error, exit 2). */
function confirmDestruction(yes: boolean | undefined, sub: string, what: string): void {
  if (yes === true) return;
  throw new UsageError(`${sub} destroys ${what}; this cannot be undone. Add --yes to confirm.`, 'USAGE_CONFIRM');
}

type Handler = (args: string[], ctx: CommandContext, opts: OpalDriveOptions) => Promise<number>;

const handlers: Record<string, Handler> = {
  async discover(args, ctx, opts) {
    const { positionals } = parseOptions(args, {});
    const spec = onlyDrive(positionals, 'discover');
    let drive: OpalDrive;
    try {
      drive = await OpalDrive.open(spec, opts);
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
        lines.join('\n'),
      );
      return 0;
    } finally {
      await drive.close();
    }
  },

  async status(args, ctx, opts) {
    const { values, positionals } = parseOptions(args, {
      'probe-sid': { type: 'boolean' },
      'pin-file': { type: 'string' },
    });
    const spec = onlyDrive(positionals, 'status');
    return withSecrets(
      ctx,
      optionalSecret(values['pin-file'], 'the Admin1 PIN'),
      async ([pin]: (Buffer | undefined)[]) => {
        const result = await withDrive(spec, opts, async (d) => {
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
        if (result.admin1Tries) lines.push(`Admin1 tries: ${result.admin1Tries.tries}/${result.admin1Tries.tryLimit}`);
        emit(ctx, result, lines.join('\n'));
        return 0;
      },
    );
  },

  async 'take-ownership'(args, ctx, opts) {
    const { values, positionals } = parseOptions(args, { 'new-pin-file': { type: 'string' } });
    const spec = onlyDrive(positionals, 'take-ownership');
    await withSecrets(ctx, [[values['new-pin-file'], 'the new SID PIN (--new-pin-file)']], async ([pin]) =>
      withDrive(spec, opts, (d) => d.takeOwnership(pin)),
    );
    emit(ctx, { drive: spec, owned: true }, `${spec}: SID PIN set (drive owned)`);
    return 0;
  },

  async activate(args, ctx, opts) {
    const { values, positionals } = parseOptions(args, { 'pin-file': { type: 'string' } });
    const spec = onlyDrive(positionals, 'activate');
    await withSecrets(ctx, [[values['pin-file'], 'the SID PIN (--pin-file)']], async ([pin]) =>
      withDrive(spec, opts, (d) => d.activate(pin)),
    );
    emit(ctx, { drive: spec, lockingSpActive: true }, `${spec}: Locking SP active`);
    return 0;
  },

  async 'setup-range'(args, ctx, opts) {
    const { values, positionals } = parseOptions(args, {
      'pin-file': { type: 'string' },
      range: { type: 'string' },
      start: { type: 'string' },
      length: { type: 'string' },
      'read-lock-enabled': { type: 'boolean' },
      'write-lock-enabled': { type: 'boolean' },
    });
    const spec = onlyDrive(positionals, 'setup-range');
    const range = required(intOption(values.range, '--range'), '--range');
    const start = intOption(values.start, '--start');
    const length = intOption(values.length, '--length');
    if (range > 0 && (start === undefined || length === undefined)) {
      throw new UsageError('--start and --length are required for a numbered range');
    }
    if (range === 0 && (start !== undefined || length !== undefined)) {
      throw new UsageError('the global range (0) has no --start/--length');
    }
    const pinFile: [string | undefined, string] = [values['pin-file'], 'the Admin1 PIN (--pin-file)'];
    const options = {
      range,
      start,
      length,
      readLockEnabled: values['read-lock-enabled'] ?? false,
      writeLockEnabled: values['write-lock-enabled'] ?? false,
    };
    await withSecrets(ctx, [pinFile], async ([pin]) => withDrive(spec, opts, (d) => d.setupRange(pin, options)));
    emit(
      ctx,
      { drive: spec, ...options },
      `${spec}: range ${range} set up (readLockEnabled=${options.readLockEnabled}, writeLockEnabled=${options.writeLockEnabled})`,
    );
    return 0;
  },

  async 'enable-user'(args, ctx, opts) {
    const { values, positionals } = parseOptions(args, {
      'pin-file': { type: 'string' },
      user: { type: 'string' },
      range: { type: 'string', multiple: true },
      disable: { type: 'boolean' },
    });
    const spec = onlyDrive(positionals, 'enable-user');
    const user = required(intOption(values.user, '--user', 1), '--user');
    const ranges = (values.range ?? []).map((r) => required(intOption(r, '--range'), '--range'));
    const enabled = !(values.disable ?? false);
    await withSecrets(ctx, [[values['pin-file'], 'the Admin1 PIN (--pin-file)']], async ([pin]) =>
      withDrive(spec, opts, (d) => d.enableUser(pin, user, { enabled, ranges })),
    );
    emit(ctx, { drive: spec, user, enabled, ranges }, `${spec}: User${user} ${enabled ? 'enabled' : 'disabled'}`);
    return 0;
  },

  lock: (args, ctx, opts) => lockOrUnlock('lock', args, ctx, opts),
  unlock: (args, ctx, opts) => lockOrUnlock('unlock', args, ctx, opts),

  async 'set-pin'(args, ctx, opts) {
    const { values, positionals } = parseOptions(args, {
      'pin-file': { type: 'string' },
      'new-pin-file': { type: 'string' },
      user: { type: 'string' },
      sid: { type: 'boolean' },
    });
    const spec = onlyDrive(positionals, 'set-pin');
    const target = pickAuthority(values, ADMIN1);
    const authority = target.kind === 'user' ? ADMIN1 : target;
    const files: [string | undefined, string][] = [
      [values['pin-file'], `the ${describeAuthority(authority)} PIN (--pin-file)`],
      [values['new-pin-file'], 'the new PIN (--new-pin-file)'],
    ];
    await withSecrets(ctx, files, async ([pin, newPin]) =>
      withDrive(spec, opts, (d) => d.setPin({ authority, pin, target, newPin })),
    );
    emit(
      ctx,
      { drive: spec, authority: describeAuthority(target) },
      `${spec}: ${describeAuthority(target)} PIN changed`,
    );
    return 0;
  },

  async tries(args, ctx, opts) {
    const { values, positionals } = parseOptions(args, {
      'pin-file': { type: 'string' },
      user: { type: 'string' },
      sid: { type: 'boolean' },
    });
    const spec = onlyDrive(positionals, 'tries');
    const target = pickAuthority(values, ADMIN1);
    const asAuthority = target.kind === 'user' ? ADMIN1 : target;
    const tries = await withSecrets(
      ctx,
      optionalSecret(values['pin-file'], 'the PIN'),
      async ([pin]: (Buffer | undefined)[]) =>
        withDrive(spec, opts, (d) => d.tries(target, pin ? { authority: asAuthority, pin } : undefined)),
    );
    const name = describeAuthority(target);
    emit(
      ctx,
      { drive: spec, authority: name, tries },
      tries
        ? `${name}: ${tries.tries} failed tries of ${tries.tryLimit === 0 ? 'unlimited' : tries.tryLimit}`
        : `${name}: the drive does not let its tries be read without authentication (give --pin-file)`,
    );
    return 0;
  },

  async mbr(args, ctx, opts) {
    const { values, positionals } = parseOptions(args, {
      'pin-file': { type: 'string' },
      enable: { type: 'boolean' },
      disable: { type: 'boolean' },
      done: { type: 'boolean' },
      'not-done': { type: 'boolean' },
    });
    const spec = onlyDrive(positionals, 'mbr');
    if (values.enable && values.disable) throw new UsageError('--enable and --disable exclude each other');
    if (values.done && values['not-done']) throw new UsageError('--done and --not-done exclude each other');
    const enable = values.enable ? true : values.disable ? false : undefined;
    const done = values.done ? true : values['not-done'] ? false : undefined;
    if (enable === undefined && done === undefined)
      throw new UsageError('give --enable/--disable and/or --done/--not-done');
    await withSecrets(ctx, [[values['pin-file'], 'the Admin1 PIN (--pin-file)']], async ([pin]) =>
      withDrive(spec, opts, (d) => d.setMbr(pin, { enable, done })),
    );
    emit(ctx, { drive: spec, enable, done }, `${spec}: MBR control updated`);
    return 0;
  },

  async erase(args, ctx, opts) {
    const { values, positionals } = parseOptions(args, {
      'pin-file': { type: 'string' },
      range: { type: 'string' },
      method: { type: 'string' },
      yes: { type: 'boolean' },
    });
    const spec = onlyDrive(positionals, 'erase');
    const range = required(intOption(values.range, '--range'), '--range');
    const method = values.method ?? 'genkey';
    if (method !== 'genkey' && method !== 'erase') throw new UsageError('--method is genkey or erase');
    confirmDestruction(values.yes, 'erase', `the media key of range ${range} on ${spec}: its data becomes unreadable`);
    await withSecrets(ctx, [[values['pin-file'], 'the Admin1 PIN (--pin-file)']], async ([pin]) =>
      withDrive(spec, opts, (d) => d.erase(pin, { range, method })),
    );
    emit(ctx, { drive: spec, range, method, erased: true }, `${spec}: range ${range} crypto-erased`);
    return 0;
  },

  async revert(args, ctx, opts) {
    const { values, positionals } = parseOptions(args, { 'pin-file': { type: 'string' }, yes: { type: 'boolean' } });
    const spec = onlyDrive(positionals, 'revert');
    confirmDestruction(values.yes, 'revert', `every key and ALL DATA on ${spec} (factory reset)`);
    await withSecrets(ctx, [[values['pin-file'], 'the SID PIN (--pin-file)']], async ([pin]) =>
      withDrive(spec, opts, (d) => d.revert(pin)),
    );
    emit(ctx, { drive: spec, reverted: true }, `${spec}: reverted to factory state`);
    return 0;
  },

  async 'psid-revert'(args, ctx, opts) {
    const { values, positionals } = parseOptions(args, { 'psid-file': { type: 'string' }, yes: { type: 'boolean' } });
    const spec = onlyDrive(positionals, 'psid-revert');
    confirmDestruction(values.yes, 'psid-revert', `every key and ALL DATA on ${spec} (factory reset)`);
    await withSecrets(ctx, [[values['psid-file'], 'the PSID (--psid-file)']], async ([raw]) => {
      // A PSID is typed from a label: trailing newlines from `echo` or editors are not part of it.
      let end = raw.length;
      while (end > 0 && (raw[end - 1] === 0x0a || raw[end - 1] === 0x0d)) end--;
      return withDrive(spec, opts, (d) => d.psidRevert(raw.subarray(0, end)));
    });
    emit(ctx, { drive: spec, reverted: true }, `${spec}: reverted to factory state with the PSID`);
    return 0;
  },
};

async function lockOrUnlock(
  sub: 'lock' | 'unlock',
  args: string[],
  ctx: CommandContext,
  opts: OpalDriveOptions,
): Promise<number> {
  const { values, positionals } = parseOptions(args, {
    'pin-file': { type: 'string' },
    range: { type: 'string' },
    user: { type: 'string' },
    ...(sub === 'unlock' ? { 'read-only': { type: 'boolean' as const } } : {}),
  });
  const spec = onlyDrive(positionals, sub);
  const range = intOption(values.range, '--range') ?? 0;
  const authority = pickAuthority({ user: values.user }, ADMIN1);
  const readOnly = sub === 'unlock' && (values as { 'read-only'?: boolean })['read-only'] === true;
  await withSecrets(
    ctx,
    [[values['pin-file'], `the ${describeAuthority(authority)} PIN (--pin-file)`]],
    async ([pin]) =>
      withDrive(spec, opts, (d) =>
        sub === 'lock' ? d.lock(pin, { range, authority }) : d.unlock(pin, { range, authority, readOnly }),
      ),
  );
  const state = sub === 'lock' ? 'locked' : readOnly ? 'read-only' : 'unlocked';
  emit(ctx, { drive: spec, range, state }, `${spec}: range ${range} ${state}`);
  return 0;
}

function parseBackend(value: string | undefined): BackendName {
  if (value === undefined || !(BACKEND_NAMES as readonly string[]).includes(value)) {
    throw new UsageError(`--backend takes ${BACKEND_NAMES.join('|')}, got '${value ?? ''}'`);
  }
  return value as BackendName;
}

function driveWideOptions(args: string[]): { args: string[]; options: OpalDriveOptions } {
  const options: OpalDriveOptions = {};
  const own: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === '--sedutil-pins') options.pinDerivation = 'sedutil';
    else if (a === '--backend') options.backend = parseBackend(args[++i]);
    else if (a.startsWith('--backend=')) options.backend = parseBackend(a.slice('--backend='.length));
    else own.push(a);
  }
  return { args: own, options };
}

export const driveCommand: CommandGroup = {
  name: 'drive',
  summary: 'TCG Opal self-encrypting drives: discover, own, configure, lock, unlock, erase, revert',
  help: HELP,
  async run(args, ctx) {
    const [sub, ...rest] = args;
    if (sub === undefined) throw new UsageError('drive needs a subcommand: see `kmip-agent drive --help`');
    if ((DRIVE_EMULATOR_SUBCOMMANDS as readonly string[]).includes(sub)) return runDriveEmulatorCommand(sub, rest, ctx);
    const handler = Object.hasOwn(handlers, sub) ? handlers[sub] : undefined;
    if (!handler) throw new UsageError(`unknown drive subcommand '${sub}': see \`kmip-agent drive --help\``);
    // --sedutil-pins and --backend apply to every subcommand: take them out before strict parsing.
    const { args: own, options } = driveWideOptions(rest);
    return handler(own, ctx, options);
  },
};
