/** `kmip-agent ttlv`: decode TTLV bytes to a readable dump (or JSON/XML), encode the JSON/XML form to hex. */
import { TtlvError, TtlvErrorCode } from '../../kmip/ttlv/errors.js';
import { decode, encode, fromJson, fromXml, toJson, toText, toXml, type TtlvItem } from '../../kmip/ttlv/index.js';
import { emit, parseOptions, UsageError, type CommandContext, type CommandGroup } from '../framework.js';

const HELP = `Usage:
  kmip-agent ttlv decode [--json|--xml] [--redact] <hex | ->
                                    dump one TTLV message (hex; - reads stdin, --raw for bytes)
  kmip-agent ttlv encode [--json] [--xml] <text | ->
                                    encode the KMIP JSON form (or XML with --xml) to hex

decode prints one line per item (tag, type, value; enumerations by name, bytes in hex); --json prints
the KMIP JSON form, --xml the KMIP XML form; --redact hides key material and passwords in the dump. encode reads {"tag":..,"type":..,"value":..} (or XML
elements, one hex line per message) and prints hex; --json prints {"hex": "..."} (or {"hex": [...]}).
Malformed input fails with a KMIP_TTLV_* code and exit status 1.`;

function input(ctx: CommandContext, arg: string | undefined, what: string): Buffer {
  if (arg === undefined) throw new UsageError(`ttlv: ${what} is required (or - for stdin)`);
  return arg === '-' ? ctx.io.readStdin() : Buffer.from(arg, 'utf8');
}

function parseHex(text: string): Buffer {
  const digits = text.replace(/\s+/g, '');
  if (digits.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(digits))
    throw new TtlvError(TtlvErrorCode.BadSyntax, 'input is not an even number of hex digits');
  return Buffer.from(digits, 'hex');
}

function runDecode(args: string[], ctx: CommandContext): number {
  const { values, positionals } = parseOptions(args, {
    raw: { type: 'boolean' },
    xml: { type: 'boolean' },
    redact: { type: 'boolean' },
  });
  if (positionals.length > 1) throw new UsageError('ttlv decode takes one argument');
  const data = input(ctx, positionals[0], 'a hex message');
  if (values.raw && positionals[0] !== '-') throw new UsageError('--raw applies to stdin (-) only');
  const item = decode(values.raw ? data : parseHex(data.toString('utf8')));
  if (values.xml && !ctx.json) ctx.io.stdout(toXml(item));
  else if (values.redact && (ctx.json || values.xml)) throw new UsageError('--redact applies to the text dump only');
  else emit(ctx, toJson(item), toText(item, { redact: values.redact }));
  return 0;
}

function runEncode(args: string[], ctx: CommandContext): number {
  const { values, positionals } = parseOptions(args, { xml: { type: 'boolean' } });
  if (positionals.length > 1) throw new UsageError('ttlv encode takes one argument (quote the JSON)');
  const text = input(ctx, positionals[0], values.xml ? 'the XML form' : 'the JSON form').toString('utf8');
  const items: TtlvItem[] = values.xml ? fromXml(text) : [fromJson(text)];
  const hex = items.map((item) => encode(item).toString('hex'));
  emit(ctx, { hex: values.xml ? hex : hex[0] }, hex.join('\n'));
  return 0;
}

export const ttlvCommand: CommandGroup = {
  name: 'ttlv',
  summary: 'decode and encode KMIP TTLV messages (hex, JSON, XML, text dump)',
  help: HELP,
  async run(args, ctx) {
    const [sub, ...rest] = args;
    if (sub === 'decode') return runDecode(rest, ctx);
    if (sub === 'encode') return runEncode(rest, ctx);
    throw new UsageError(sub === undefined ? 'ttlv: decode or encode?' : `ttlv: unknown subcommand '${sub}'`);
  },
};
