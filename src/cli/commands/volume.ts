/**
 * `kmip-agent volume luks ...`: LUKS2 volumes by hand (info, key check, open/close, keyslots).
 * Keys come from files or stdin (`-`), never argv, and are zeroed once used.
 */
import { volumeRotateCommand } from './rotate.js';
import { volumeEnrollCommand } from './agent.js';
import { volumeFormatCommand } from './volume-format.js';
import { volumeRemoveCommand } from './field.js';
import { isKmipAgentError } from '../../errors.js';
import { addKey, checkKey, close, luksInfo, open, removeKey, type LuksInfo } from '../../drives/luks.js';
import {
  command,
  emit,
  emitError,
  ExitCode,
  group,
  KEY_SECRET,
  printable,
  SECRET_READING_OPTIONS,
  secretReading,
  UsageError,
  withSecrets,
  type Command,
  type OptionSpecs,
  type SecretSource,
} from '../framework.js';

/** No device-mapper here, or a LUKS1 device: "not supported on this system or device", exit 3. */
const NOT_SUPPORTED_CODES = new Set(['LUKS_DM_NOT_AVAILABLE', 'LUKS_UNSUPPORTED_VERSION']);

const KEY_NOTE = `Keys are raw bytes read from a file, or stdin for - (at most one of them from stdin), at most
${KEY_SECRET.maxBytes} bytes. A key file that looks like hex or base64 text, or text ending in a newline, is
refused before the device is touched: --hex decodes hex, --raw takes the bytes as they are.`;

const keyFile = (what: string) => ({ type: 'string', value: 'FILE|-', help: what }) as const;

/** A `volume luks` command: bad secret input is refused first; not-supported errors exit 3. */
function luksCommand<const O extends OptionSpecs>(spec: Parameters<typeof command<O>>[0]): Command {
  const cmd = command(spec);
  return {
    ...cmd,
    async run(invocation, ctx) {
      try {
        return await cmd.run(invocation, ctx);
      } catch (error) {
        if (isKmipAgentError(error) && NOT_SUPPORTED_CODES.has(error.code)) {
          emitError(ctx, error);
          return ExitCode.NotSupported;
        }
        throw error;
      }
    },
  };
}

const key = (path: string | undefined, option: string, what = `the key (${option})`): SecretSource => ({
  path,
  option,
  what,
  kind: KEY_SECRET,
});

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
  // The header is the device's to write: its strings are escaped for the terminal.
  return lines.map(printable).join('\n');
}

const luks = group({
  name: 'luks',
  summary: 'LUKS2 volumes: header info, key check, open/close, add/remove keyslots',
  description: `<device> is a block device or an image file. Only LUKS2 is supported.
${KEY_NOTE}

Exit codes: 0 success, 1 failed (wrong key, damaged header, ...), 2 usage, 3 not supported here
(no device-mapper on this machine, LUKS1).`,
  commands: [
    luksCommand({
      name: 'info',
      usage: '<device>',
      summary: 'LUKS2 header: UUID, cipher, keyslots, tokens, segments',
      positionals: 1,
      async run({ positionals: [device] }, ctx) {
        const info = await luksInfo(device!);
        emit(ctx, info, describeInfo(info));
      },
    }),
    luksCommand({
      name: 'check',
      usage: '<device> --key-file FILE|- [--hex|--raw]',
      summary: 'which keyslot the key opens (nothing is activated)',
      description: KEY_NOTE,
      options: { 'key-file': keyFile('the key'), ...SECRET_READING_OPTIONS },
      positionals: 1,
      async run({ values, positionals: [device] }, ctx) {
        const { slot } = await withSecrets(ctx, [key(values['key-file'], '--key-file')], secretReading(values), ([k]) =>
          checkKey(device!, k!),
        );
        emit(ctx, { device, valid: true, slot }, `the key opens keyslot ${slot} of ${device}`);
      },
    }),
    luksCommand({
      name: 'open',
      usage: '<device> <name> --key-file FILE|- [--read-only] [--hex|--raw]',
      summary: 'activate as /dev/mapper/<name>',
      description: KEY_NOTE,
      options: {
        'key-file': keyFile('the key'),
        'read-only': { type: 'boolean', help: 'map the volume read-only' },
        ...SECRET_READING_OPTIONS,
      },
      positionals: 2,
      async run({ values, positionals: [device, name] }, ctx) {
        const readOnly = values['read-only'] ?? false;
        const { slot } = await withSecrets(ctx, [key(values['key-file'], '--key-file')], secretReading(values), ([k]) =>
          open(device!, name!, k!, { readOnly }),
        );
        const mapping = `/dev/mapper/${name}`;
        emit(ctx, { device, name, mapping, slot, readOnly }, `${device} is open as ${mapping} (keyslot ${slot})`);
      },
    }),
    luksCommand({
      name: 'close',
      usage: '<name>',
      summary: 'remove the mapping /dev/mapper/<name>',
      positionals: 1,
      async run({ positionals: [name] }, ctx) {
        await close(name!);
        emit(ctx, { name, closed: true }, `closed /dev/mapper/${name}`);
      },
    }),
    luksCommand({
      name: 'add-key',
      usage: '<device> --key-file FILE --new-key-file FILE [--slot N] [--hex|--raw]',
      summary: 'add a keyslot for the new key, authorized by the key',
      description: KEY_NOTE,
      options: {
        'key-file': keyFile('a key the volume opens with'),
        'new-key-file': keyFile('the key to add'),
        slot: { type: 'string', value: 'N', help: 'the keyslot to use (default: the first free one)' },
        ...SECRET_READING_OPTIONS,
      },
      positionals: 1,
      async run({ values, positionals: [device] }, ctx) {
        const requested = parseSlot(values.slot);
        const { slot } = await withSecrets(
          ctx,
          [key(values['key-file'], '--key-file'), key(values['new-key-file'], '--new-key-file', 'the new key')],
          secretReading(values),
          ([k, newKey]) => addKey(device!, k!, newKey!, { slot: requested }),
        );
        emit(ctx, { device, slot }, `added keyslot ${slot} to ${device}`);
      },
    }),
    luksCommand({
      name: 'remove-key',
      usage: '<device> --key-file FILE (--slot N | --remove-key-file FILE) [--force] --yes',
      summary: 'remove a keyslot (destructive: needs --yes)',
      description: `The authorizing key must still open another keyslot afterwards unless --force.
${KEY_NOTE}`,
      options: {
        'key-file': keyFile('a key the volume opens with'),
        slot: { type: 'string', value: 'N', help: 'the keyslot to remove' },
        'remove-key-file': keyFile('remove the keyslot this key opens'),
        force: { type: 'boolean', help: 'also when the authorizing key opens no other keyslot afterwards' },
        yes: { type: 'boolean', help: 'confirm: the keyslot is gone for good' },
        ...SECRET_READING_OPTIONS,
      },
      positionals: 1,
      async run({ values, positionals: [device] }, ctx) {
        const slotOption = parseSlot(values.slot);
        const removeKeyFile = values['remove-key-file'];
        if ((slotOption === undefined) === (removeKeyFile === undefined))
          throw new UsageError('name the keyslot to remove with exactly one of --slot N or --remove-key-file F');
        if (values.yes !== true)
          throw new UsageError(
            `removing a keyslot of ${device} cannot be undone. Add --yes to confirm.`,
            'USAGE_CONFIRM',
          );
        const force = values.force ?? false;
        const files = [key(values['key-file'], '--key-file')];
        if (removeKeyFile !== undefined) files.push(key(removeKeyFile, '--remove-key-file', 'the key to remove'));
        const { slot } = await withSecrets(ctx, files, secretReading(values), ([k, keyToRemove]) =>
          removeKey(device!, k!, slotOption !== undefined ? { slot: slotOption } : { key: keyToRemove! }, { force }),
        );
        emit(ctx, { device, slot, removed: true }, `removed keyslot ${slot} of ${device}`);
      },
    }),
  ],
});

export const volumeCommand = group({
  name: 'volume',
  summary: 'LUKS2 volumes: header info, key check, open/close, add/remove keyslots',
  commands: [volumeEnrollCommand, volumeFormatCommand, volumeRotateCommand, volumeRemoveCommand, luks],
});
