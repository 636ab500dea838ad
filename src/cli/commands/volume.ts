/**
 * `kmip-agent volume luks ...`: LUKS2 volumes by hand (info, key check, open/close, keyslots).
 * Keys come from files or stdin (`-`), never argv, and are zeroed once used.
 */
import { isKmipAgentError } from '../../errors.js';
import { addKey, checkKey, close, luksInfo, open, removeKey, type LuksInfo } from '../../drives/luks.js';
import {
  emit,
  emitError,
  ExitCode,
  parseOptions,
  withSecrets,
  UsageError,
  type CommandContext,
  type CommandGroup,
} from '../framework.js';

const HELP = `Usage: kmip-agent volume luks <command> [options] [--json]

Commands:
  info <device>                                   LUKS2 header: UUID, cipher, keyslots, tokens, segments
  check <device> --key-file F|-                   which keyslot the key opens (nothing is activated)
  open <device> <name> --key-file F|- [--read-only]
                                                  activate as /dev/mapper/<name>
  close <name>                                    remove the mapping /dev/mapper/<name>
  add-key <device> --key-file F --new-key-file F [--slot N]
                                                  add a keyslot for the new key, authorized by the key
  remove-key <device> --key-file F (--slot N | --remove-key-file F) [--force]
                                                  remove a keyslot; the authorizing key must still open
                                                  another keyslot afterwards unless --force

<device> is a block device or an image file. Keys are raw bytes read from a file, or stdin for -
(at most one of them from stdin). Only LUKS2 is supported.

Exit codes: 0 success, 1 failed (wrong key, damaged header, ...), 2 usage, 3 not supported here
(no device-mapper on this machine, LUKS1).`;

const NOT_SUPPORTED_CODES = new Set(['LUKS_DM_NOT_AVAILABLE', 'LUKS_UNSUPPORTED_VERSION']);

function positionals(args: string[], count: number, names: string): string[] {
  if (args.length !== count) throw new UsageError(`expected ${names}: see \`kmip-agent volume --help\``);
  return args;
}

function parseSlot(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d{1,3}$/.test(value)) throw new UsageError(`--slot must be a keyslot number, not '${value}'`);
  return Number(value);
}

function describeInfo(info: LuksInfo): string {
  const lines = [
    `${info.device}: ${info.format}`,
    `  UUID:         ${info.uuid}`,
    `  cipher:       ${info.cipher}-${info.cipherMode}, ${info.keySize * 8}-bit key`,
    `  sector size:  ${info.sectorSize}`,
    `  data offset:  ${info.dataOffset} bytes`,
    '  keyslots:',
    ...info.keyslots.map(
      (k) =>
        `    ${k.slot}: ${k.state}, priority ${k.priority}, ${k.pbkdf.type}` +
        (k.pbkdf.hash ? `-${k.pbkdf.hash}` : '') +
        ` (${k.pbkdf.iterations} iterations` +
        (k.pbkdf.memoryKiB ? `, ${k.pbkdf.memoryKiB} KiB, ${k.pbkdf.parallel} threads` : '') +
        ')',
    ),
    '  tokens:' + (info.tokens.length === 0 ? ' none' : ''),
    ...info.tokens.map((t) => `    ${t.token}: ${t.type} (keyslots ${t.keyslots.join(', ') || 'none'})`),
    '  segments:',
    ...info.segments.map(
      (s) =>
        `    ${s.segment}: ${s.type}, offset ${s.offset}, size ${s.size}` +
        (s.encryption ? `, ${s.encryption}` : '') +
        (s.sectorSize ? `, sector ${s.sectorSize}` : ''),
    ),
  ];
  return lines.join('\n');
}

async function runLuks(sub: string | undefined, args: string[], ctx: CommandContext): Promise<number> {
  switch (sub) {
    case 'info': {
      const { positionals: pos } = parseOptions(args, {});
      const [device] = positionals(pos, 1, '<device>');
      const info = await luksInfo(device);
      emit(ctx, info, describeInfo(info));
      return ExitCode.Ok;
    }
    case 'check': {
      const { values, positionals: pos } = parseOptions(args, { 'key-file': { type: 'string' } });
      const [device] = positionals(pos, 1, '<device>');
      const { slot } = await withSecrets(ctx, [[values['key-file'], '--key-file']], ([key]) => checkKey(device, key));
      emit(ctx, { device, valid: true, slot }, `the key opens keyslot ${slot} of ${device}`);
      return ExitCode.Ok;
    }
    case 'open': {
      const { values, positionals: pos } = parseOptions(args, {
        'key-file': { type: 'string' },
        'read-only': { type: 'boolean' },
      });
      const [device, name] = positionals(pos, 2, '<device> <name>');
      const readOnly = values['read-only'] ?? false;
      const { slot } = await withSecrets(ctx, [[values['key-file'], '--key-file']], ([key]) =>
        open(device, name, key, { readOnly }),
      );
      const mapping = `/dev/mapper/${name}`;
      emit(ctx, { device, name, mapping, slot, readOnly }, `${device} is open as ${mapping} (keyslot ${slot})`);
      return ExitCode.Ok;
    }
    case 'close': {
      const { positionals: pos } = parseOptions(args, {});
      const [name] = positionals(pos, 1, '<name>');
      await close(name);
      emit(ctx, { name, closed: true }, `closed /dev/mapper/${name}`);
      return ExitCode.Ok;
    }
    case 'add-key': {
      const { values, positionals: pos } = parseOptions(args, {
        'key-file': { type: 'string' },
        'new-key-file': { type: 'string' },
        slot: { type: 'string' },
      });
      const [device] = positionals(pos, 1, '<device>');
      const requested = parseSlot(values.slot);
      const { slot } = await withSecrets(
        ctx,
        [
          [values['key-file'], '--key-file'],
          [values['new-key-file'], '--new-key-file'],
        ],
        ([key, newKey]) => addKey(device, key, newKey, { slot: requested }),
      );
      emit(ctx, { device, slot }, `added keyslot ${slot} to ${device}`);
      return ExitCode.Ok;
    }
    case 'remove-key': {
      const { values, positionals: pos } = parseOptions(args, {
        'key-file': { type: 'string' },
        slot: { type: 'string' },
        'remove-key-file': { type: 'string' },
        force: { type: 'boolean' },
      });
      const [device] = positionals(pos, 1, '<device>');
      const slotOption = parseSlot(values.slot);
      const removeKeyFile = values['remove-key-file'];
      if ((slotOption === undefined) === (removeKeyFile === undefined))
        throw new UsageError('name the keyslot to remove with exactly one of --slot N or --remove-key-file F');
      const force = values.force ?? false;
      const files: [string | undefined, string][] = [[values['key-file'], '--key-file']];
      if (removeKeyFile !== undefined) files.push([removeKeyFile, '--remove-key-file']);
      const { slot } = await withSecrets(ctx, files, ([key, keyToRemove]) =>
        removeKey(device, key, slotOption !== undefined ? { slot: slotOption } : { key: keyToRemove }, { force }),
      );
      emit(ctx, { device, slot, removed: true }, `removed keyslot ${slot} of ${device}`);
      return ExitCode.Ok;
    }
    default:
      throw new UsageError(
        sub === undefined
          ? 'missing luks command: see `kmip-agent volume --help`'
          : `unknown luks command '${sub}': see \`kmip-agent volume --help\``,
      );
  }
}

export const volumeCommand: CommandGroup = {
  name: 'volume',
  summary: 'LUKS2 volumes: header info, key check, open/close, add/remove keyslots',
  help: HELP,
  async run(args, ctx) {
    const [kind, sub, ...rest] = args;
    if (kind !== 'luks') {
      throw new UsageError(
        kind === undefined ? 'missing volume type: `kmip-agent volume luks ...`' : `unknown volume type '${kind}'`,
      );
    }
    if (sub === '--help' || sub === '-h' || sub === 'help') {
      ctx.io.stdout(HELP + '\n');
      return ExitCode.Ok;
    }
    try {
      return await runLuks(sub, rest, ctx);
    } catch (error) {
      // No device-mapper here, or a LUKS1 device: "not supported on this system or device", exit 3.
      if (isKmipAgentError(error) && NOT_SUPPORTED_CODES.has(error.code)) {
        emitError(ctx, error);
        return ExitCode.NotSupported;
      }
      throw error;
    }
  },
};
