/**
 * `kmip-agent drive emulate ...` and `drive read|write` for emulated drives (`emu:<path>`): the
 * commands the `drive` group lists after its Opal ones (DRIVE_EMULATOR_COMMANDS).
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
import { command, emit, group, note, printable, UsageError, type CommandNode } from '../framework.js';

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
  return lines.map(printable).join('\n');
}

const emulate = group({
  name: 'emulate',
  summary: 'emulated Opal 2 drives in image files, for tests and demos (emu:/path/to/image)',
  commands: [
    command({
      name: 'create',
      usage: '[emu:]<path> --size MiB --serial S',
      summary: 'create an emulated Opal 2 drive (prints its PSID once)',
      options: {
        size: { type: 'string', value: 'MiB', help: 'capacity in MiB' },
        serial: { type: 'string', value: 'S', help: 'the serial number it reports' },
      },
      positionals: 1,
      async run({ values, positionals: [spec] }, ctx) {
        // Where a drive is named, emu: is accepted; a plain path is the image to create.
        const path = emulatedImagePath(spec!) ?? spec!;
        if (path.length === 0) throw new UsageError(`'${spec}' names no image path`, 'USAGE_DEVICE');
        const sizeMiB = integerOption(values.size, 'size');
        if (values.serial === undefined) throw new UsageError('--serial is required');
        const { psid } = await createEmulatedDrive(path, sizeMiB, values.serial);
        note(ctx, 'Record the PSID now: it is printed only this once and stored only as a hash.');
        emit(
          ctx,
          { device: `emu:${path}`, path, sizeMiB, serial: values.serial, psid },
          `created emulated Opal 2 drive emu:${path} (${sizeMiB} MiB, serial ${values.serial})\nPSID: ${psid}`,
        );
      },
    }),
    command({
      name: 'power-cycle',
      usage: 'emu:<path>',
      summary: 'power cycle it (relocks LockOnReset ranges, resets tries)',
      positionals: 1,
      async run({ positionals: [device] }, ctx) {
        const path = imagePathOf(device);
        await powerCycleEmulatedDrive(path);
        emit(ctx, { device: `emu:${path}`, powerCycled: true }, `power cycled emu:${path}`);
      },
    }),
    command({
      name: 'info',
      usage: 'emu:<path>',
      summary: 'size, serial, ranges and lock state (no secrets)',
      positionals: 1,
      async run({ positionals: [device] }, ctx) {
        const info = await emulatedDriveInfo(imagePathOf(device));
        emit(ctx, info, describeInfo(info));
      },
    }),
    command({
      name: 'destroy',
      usage: 'emu:<path> --yes',
      summary: 'delete the image, its state and its key cache (needs --yes)',
      options: { yes: { type: 'boolean', help: 'confirm: the drive and all its data are gone for good' } },
      positionals: 1,
      async run({ values, positionals: [device] }, ctx) {
        const path = imagePathOf(device);
        if (values.yes !== true)
          throw new UsageError(
            `destroying emu:${path} deletes the drive and all its data; this cannot be undone. Add --yes to confirm.`,
            'USAGE_CONFIRM',
          );
        await destroyEmulatedDrive(path);
        emit(ctx, { device: `emu:${path}`, destroyed: true }, `destroyed emu:${path}`);
      },
    }),
  ],
});

const read = command({
  name: 'read',
  usage: 'emu:<path> --lba N [--count N] [--out FILE]',
  summary: 'read 512-byte blocks of an emulated drive (hex dump, or raw bytes to FILE)',
  options: {
    lba: { type: 'string', value: 'N', help: 'first block' },
    count: { type: 'string', value: 'N', help: `blocks to read (default 1, at most ${MAX_BLOCKS_PER_CALL})` },
    out: { type: 'string', value: 'FILE', help: 'write the raw bytes to FILE (created 0600)' },
  },
  positionals: 1,
  async run({ values, positionals: [device] }, ctx) {
    const path = imagePathOf(device);
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
  },
});

/** One write is at most MAX_BLOCKS_PER_CALL blocks: stdin is read no further. */
const MAX_WRITE_BYTES = MAX_BLOCKS_PER_CALL * LOGICAL_BLOCK_SIZE;

const write = command({
  name: 'write',
  usage: 'emu:<path> --lba N --in FILE|-',
  summary: 'write FILE (or stdin) to an emulated drive at LBA N, zero-padded to whole blocks',
  options: {
    lba: { type: 'string', value: 'N', help: 'first block' },
    in: { type: 'string', value: 'FILE|-', help: 'the bytes to write (- for stdin)' },
  },
  positionals: 1,
  async run({ values, positionals: [device] }, ctx) {
    const path = imagePathOf(device);
    const lba = integerOption(values.lba, 'lba');
    if (values.in === undefined) throw new UsageError('--in FILE (or - for stdin) is required');
    let input: Buffer;
    try {
      input = values.in === '-' ? ctx.io.readStdin(MAX_WRITE_BYTES + 1) : readFileSync(values.in);
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
  },
});

/** The emulator's commands, listed in the `drive` group after the Opal ones. */
export const DRIVE_EMULATOR_COMMANDS: CommandNode[] = [emulate, read, write];
