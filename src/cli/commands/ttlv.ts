/** `kmip-agent ttlv`: decode TTLV bytes to a readable dump (or JSON/XML), encode the JSON/XML form to hex. */
import { TtlvError, TtlvErrorCode } from '../../kmip/ttlv/errors.js';
import { decode, encode, fromJson, fromXml, toJson, toText, toXml, type TtlvItem } from '../../kmip/ttlv/index.js';
import { command, emit, group, printable, UsageError, type CommandContext } from '../framework.js';

/** TTLV messages are at most a few MiB; stdin is read no further. */
const MAX_INPUT_BYTES = 16 * 1024 * 1024;

function input(ctx: CommandContext, arg: string | undefined, what: string): Buffer {
  if (arg === undefined) throw new UsageError(`${what} is required (or - for stdin)`);
  if (arg !== '-') return Buffer.from(arg, 'utf8');
  const data = ctx.io.readStdin(MAX_INPUT_BYTES + 1);
  if (data.length > MAX_INPUT_BYTES) throw new UsageError(`stdin holds more than ${MAX_INPUT_BYTES} bytes`);
  return data;
}

function parseHex(text: string): Buffer {
  const digits = text.replace(/\s+/g, '');
  const bad = /[^0-9a-fA-F]/.exec(digits);
  if (bad)
    throw new TtlvError(
      TtlvErrorCode.BadSyntax,
      `input is not hex: ${JSON.stringify(bad[0])} at digit ${bad.index} (give raw bytes on stdin with --raw -)`,
    );
  if (digits.length % 2 !== 0)
    throw new TtlvError(TtlvErrorCode.BadSyntax, `input has an odd number of hex digits (${digits.length})`);
  return Buffer.from(digits, 'hex');
}

const decodeCommand = command({
  name: 'decode',
  usage: '[--xml] [--raw] [--redact] <hex | ->',
  summary: 'dump one TTLV message: one line per item (tag, type, value), or the KMIP JSON/XML form',
  description: `The message is hex (whitespace ignored); - reads it from stdin, --raw - reads raw bytes from stdin.
Enumerations print by name, bytes in hex; --json prints the KMIP JSON form, --xml the KMIP XML form.
Malformed input fails with a KMIP_TTLV_* code and exit status 1.`,
  options: {
    raw: { type: 'boolean', help: 'stdin holds raw bytes, not hex (with -)' },
    xml: { type: 'boolean', help: 'print the KMIP XML form' },
    redact: { type: 'boolean', help: 'hide key material and passwords in the text dump' },
  },
  positionals: 1,
  run({ values, positionals }, ctx) {
    const data = input(ctx, positionals[0], 'a hex message');
    if (values.raw && positionals[0] !== '-') throw new UsageError('--raw applies to stdin (-) only');
    const item = decode(values.raw ? data : parseHex(data.toString('utf8')));
    if (values.xml && !ctx.json) ctx.io.stdout(toXml(item));
    else if (values.redact && (ctx.json || values.xml)) throw new UsageError('--redact applies to the text dump only');
    // The dump quotes text strings; escaping each line keeps a message's text from reaching the terminal raw.
    else emit(ctx, toJson(item), toText(item, { redact: values.redact }).split('\n').map(printable).join('\n'));
  },
});

const encodeCommand = command({
  name: 'encode',
  usage: '[--xml] <text | ->',
  summary: 'encode the KMIP JSON form (or XML with --xml) to hex',
  description: `Reads {"tag":..,"type":..,"value":..} (or XML elements: one hex line per message) and prints hex;
--json prints {"hex": "..."} (or {"hex": [...]} for XML).`,
  options: { xml: { type: 'boolean', help: 'the input is the KMIP XML form' } },
  positionals: 1,
  run({ values, positionals }, ctx) {
    const text = input(ctx, positionals[0], values.xml ? 'the XML form' : 'the JSON form').toString('utf8');
    const items: TtlvItem[] = values.xml ? fromXml(text) : [fromJson(text)];
    const hex = items.map((item) => encode(item).toString('hex'));
    emit(ctx, { hex: values.xml ? hex : hex[0] }, hex.join('\n'));
  },
});

export const ttlvCommand = group({
  name: 'ttlv',
  summary: 'decode and encode KMIP TTLV messages (hex, JSON, XML, text dump)',
  commands: [decodeCommand, encodeCommand],
});
