/**
 * `kmip-agent drive emulate ...` and `drive read|write` for emulated drives (`emu:<path>`).
 * The `drive` group dispatches here for the subcommands in DRIVE_EMULATOR_SUBCOMMANDS.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import {
  createEmulatedDrive,
  destroyEmulatedDrive,
  emulatedDriveInfo,
  emulatedImagePath,
  LOGICAL_BLOCK_SIZE,
  powerCycleEmulatedDrive,
  readEmulatedDrive,
  writeEmulatedDrive,
  type EmulatedDriveInfo,
} from '../../drives/emulator.js';
import { emit, parseOptions, UsageError, type CommandContext } from '../framework.js';

export const DRIVE_EMULATOR_SUBCOMMANDS = ['emulate', 'read', 'write'] as const;

export const DRIVE_EMULATOR_HELP = [
  '  emulate create <path> --size <MiB> --serial <s>',
  '                                   create an emulated Opal 2 drive (prints its PSID once)',
  '  emulate power-cycle <emu:path>   power cycle it (relocks LockOnReset ranges, resets tries)',
  '  emulate info <emu:path>          size, serial, ranges and lock state (no secrets)',
  '  emulate destroy <emu:path>       delete the image, its state and its key cache',
  '  read <emu:path> --lba N [--count N] [--out FILE]',
  '                                   read 512-byte blocks (hex dump, or raw bytes to FILE)',
  '  write <emu:path> --lba N --in FILE|-',
  '                                   write FILE (or stdin) at LBA N, zero-padded to whole blocks',
].join('\n');

const MAX_BLOCKS_PER_CALL = 65536;

function imagePathOf(device: string | undefined): string {
  if (device === undefined) throw new UsageError('a device is required (emu:/path/to/image)');
  const path = emulatedImagePath(device);
  if (path === undefined || path.length === 0)
    throw new UsageError(`'${device}' is not an emulated drive: use emu:/path/to/image`, 'USAGE_DEVICE');
  return path;
}

function integerOption(value: string | undefined, name: string, fallback?: number): number {
  if (value === undefined) {
    if (fallback === undefined) throw new UsageError(`--${name} is required`);
    return fallback;
  }
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(Number(value)))
    throw new UsageError(`--${name} must be a non-negative integer`);
  return Number(value);
}

function onePositional(positionals: string[], what: string): string {
  if (positionals.length !== 1) throw new UsageError(`expected exactly one ${what}`);
  return positionals[0]!;
}

function hexDump(data: Buffer, firstLba: number): string {
  const lines: string[] = [];
  for (let offset = 0; offset < data.length; offset += 16) {
    const row = data.subarray(offset, offset + 16);
    const hex = [...row].map((b) => b.toString(16).padStart(2, '0')).join(' ');
    const text = [...row].map((b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : '.')).join('');
    const address = (firstLba * LOGICAL_BLOCK_SIZE + offset).toString(16).padStart(10, '0');
    lines.push(`${address}  ${hex.padEnd(47)}  ${text}`);
  }
  return lines.join('\n');
}

function describeInfo(info: EmulatedDriveInfo): string {
  const lines = [
    `emulated drive ${info.path}: serial ${info.serial}, ${info.sizeMiB} MiB (${info.blocks} blocks of ${info.logicalBlockSize} bytes)`,
    `owner: ${info.owned ? 'taken (SID PIN set)' : 'none (SID PIN is the MSID)'}; locking SP: ${
      info.lockingSpActive ? 'active' : 'inactive'
    }; MBR shadow ${info.mbr.enable ? (info.mbr.done ? 'enabled, done' : 'enabled, not done') : 'disabled'}`,
  ];
  for (const r of info.ranges) {
    const state = r.readLocked && r.writeLocked ? 'locked' : r.writeLocked ? 'read-only' : 'unlocked';
    const extent = r.number === 0 ? 'global' : `LBA ${r.start}+${r.length}`;
    const enabled = r.readLockEnabled || r.writeLockEnabled ? state : 'locking off';
    lines.push(`  range ${r.number} (${extent}): ${enabled}`);
  }
  if (info.lockedOutAuthorities.length > 0)
    lines.push(`locked out until power cycle: ${info.lockedOutAuthorities.join(', ')}`);
  return lines.join('\n');
}

async function runEmulate(args: string[], ctx: CommandContext): Promise<number> {
  const [action, ...rest] = args;
  switch (action) {
    case 'create': {
      const { values, positionals } = parseOptions(rest, {
        size: { type: 'string' },
        serial: { type: 'string' },
      });
      const path = onePositional(positionals, 'image path');
      const sizeMiB = integerOption(values.size, 'size');
      if (values.serial === undefined) throw new UsageError('--serial is required');
      const { psid } = await createEmulatedDrive(path, sizeMiB, values.serial);
      if (!ctx.json) ctx.io.stderr('Record the PSID now: it is printed only this once and stored only as a hash.\n');
      emit(
        ctx,
        { device: `emu:${path}`, path, sizeMiB, serial: values.serial, psid },
        `created emulated Opal 2 drive emu:${path} (${sizeMiB} MiB, serial ${values.serial})\nPSID: ${psid}`,
      );
      return 0;
    }
    case 'power-cycle': {
      const { positionals } = parseOptions(rest, {});
      const path = imagePathOf(onePositional(positionals, 'device'));
      await powerCycleEmulatedDrive(path);
      emit(ctx, { device: `emu:${path}`, powerCycled: true }, `power cycled emu:${path}`);
      return 0;
    }
    case 'info': {
      const { positionals } = parseOptions(rest, {});
      const info = await emulatedDriveInfo(imagePathOf(onePositional(positionals, 'device')));
      emit(ctx, info, describeInfo(info));
      return 0;
    }
    case 'destroy': {
      const { positionals } = parseOptions(rest, {});
      const path = imagePathOf(onePositional(positionals, 'device'));
      await destroyEmulatedDrive(path);
      emit(ctx, { device: `emu:${path}`, destroyed: true }, `destroyed emu:${path}`);
      return 0;
    }
    default:
      throw new UsageError(
        action === undefined
          ? 'drive emulate needs an action: create, power-cycle, info or destroy'
          : `unknown action 'drive emulate ${action}': use create, power-cycle, info or destroy`,
      );
  }
}

async function runRead(args: string[], ctx: CommandContext): Promise<number> {
  const { values, positionals } = parseOptions(args, {
    lba: { type: 'string' },
    count: { type: 'string' },
    out: { type: 'string' },
  });
  const path = imagePathOf(onePositional(positionals, 'device'));
  const lba = integerOption(values.lba, 'lba');
  const count = integerOption(values.count, 'count', 1);
  if (count < 1 || count > MAX_BLOCKS_PER_CALL) throw new UsageError(`--count must be 1 to ${MAX_BLOCKS_PER_CALL}`);
  const data = await readEmulatedDrive(path, lba, count);
  if (values.out !== undefined) {
    writeFileSync(values.out, data, { mode: 0o600 });
    emit(
      ctx,
      { device: `emu:${path}`, lba, count, out: values.out, bytes: data.length },
      `read ${count} block(s) from LBA ${lba} into ${values.out}`,
    );
  } else {
    emit(ctx, { device: `emu:${path}`, lba, count, data }, hexDump(data, lba));
  }
  return 0;
}

async function runWrite(args: string[], ctx: CommandContext): Promise<number> {
  const { values, positionals } = parseOptions(args, {
    lba: { type: 'string' },
    in: { type: 'string' },
  });
  const path = imagePathOf(onePositional(positionals, 'device'));
  const lba = integerOption(values.lba, 'lba');
  if (values.in === undefined) throw new UsageError('--in FILE (or - for stdin) is required');
  let input: Buffer;
  try {
    input = values.in === '-' ? ctx.io.readStdin() : readFileSync(values.in);
  } catch (e) {
    throw new UsageError(`cannot read ${values.in}: ${(e as Error).message}`, 'USAGE_FILE');
  }
  if (input.length === 0) throw new UsageError('nothing to write: the input is empty');
  const blocks = Math.ceil(input.length / LOGICAL_BLOCK_SIZE);
  if (blocks > MAX_BLOCKS_PER_CALL) throw new UsageError(`at most ${MAX_BLOCKS_PER_CALL} blocks per write`);
  const data = Buffer.alloc(blocks * LOGICAL_BLOCK_SIZE);
  input.copy(data);
  await writeEmulatedDrive(path, lba, data);
  const padded = data.length !== input.length;
  emit(
    ctx,
    { device: `emu:${path}`, lba, blocks, bytes: input.length, padded },
    `wrote ${input.length} byte(s) as ${blocks} block(s) at LBA ${lba}${padded ? ' (last block zero-padded)' : ''}`,
  );
  return 0;
}

export function runDriveEmulatorCommand(sub: string, args: string[], ctx: CommandContext): Promise<number> {
  switch (sub) {
    case 'emulate':
      return runEmulate(args, ctx);
    case 'read':
      return runRead(args, ctx);
    case 'write':
      return runWrite(args, ctx);
    default:
      return Promise.reject(new UsageError(`'drive ${sub}' is not an emulated-drive subcommand`));
  }
}
