/**
 * What every `kmip-agent` command shares: the command table (one declaration per command gives its
 * parsing, its --help and the suggestions on a usage error), the --json contract (exactly one JSON
 * document on stdout, bytes as lowercase hex, errors as {"error":{code,message}}), secrets read from
 * files or stdin (never argv) through one reader, text from peers escaped for the terminal, and the
 * exit codes of the CLI conventions.
 */
import { isUtf8 } from 'node:buffer';
import { closeSync, fstatSync, openSync, readSync, writeSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { KmipAgentError } from '../errors.js';

export const ExitCode = {
  Ok: 0,
  Failed: 1,
  Usage: 2,
  NotSupported: 3,
} as const;

/** Bad arguments or configuration: exit 2. */
export class UsageError extends KmipAgentError {
  constructor(message: string, code = 'USAGE') {
    super(message, code);
  }
}

/** A secret file or stdin that is not what the command expects (wrong form, size): exit 2, nothing contacted. */
export class SecretInputError extends KmipAgentError {}

/** Exit code for an error, by its stable code: usage/config/bad secret input 2, not supported 3, else 1. */
export function exitCodeFor(error: unknown): number {
  if (!(error instanceof KmipAgentError)) return ExitCode.Failed;
  const code = error.code;
  if (
    code === 'USAGE' ||
    code.startsWith('USAGE_') ||
    code.startsWith('SECRET_') ||
    code.startsWith('CONFIG_') ||
    code.endsWith('_SPEC_INVALID')
  ) {
    return ExitCode.Usage;
  }
  if (code.endsWith('NOT_SUPPORTED') || code.endsWith('UNSUPPORTED') || code.endsWith('NOT_AVAILABLE')) {
    return ExitCode.NotSupported;
  }
  return ExitCode.Failed;
}

export interface Io {
  stdout: (text: string) => void;
  /** Writes bytes to stdout as they are (`kmip get --out -`); synchronous, so the caller may wipe them after. */
  stdoutBytes: (data: Uint8Array) => void;
  stderr: (text: string) => void;
  /** Reads standard input (for `-` arguments): at most `maxBytes` bytes, never more. */
  readStdin: (maxBytes: number) => Buffer;
}

/** Reads at most `maxBytes` from an open descriptor (retrying a non-blocking descriptor's EAGAIN). */
function readCapped(fd: number, maxBytes: number): Buffer {
  const buffer = Buffer.alloc(maxBytes);
  let length = 0;
  while (length < maxBytes) {
    let n: number;
    try {
      n = readSync(fd, buffer, length, maxBytes - length, null);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EAGAIN') {
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5);
        continue;
      }
      if ((e as NodeJS.ErrnoException).code === 'EOF') break;
      buffer.fill(0);
      throw e;
    }
    if (n === 0) break;
    length += n;
  }
  return buffer.subarray(0, length);
}

function writeAll(fd: number, data: Uint8Array): void {
  let offset = 0;
  while (offset < data.length) {
    try {
      offset += writeSync(fd, data, offset, data.length - offset);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') throw e;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5);
    }
  }
}

export const processIo: Io = {
  stdout: (text) => process.stdout.write(text),
  stdoutBytes: (data) => writeAll(1, data),
  stderr: (text) => process.stderr.write(text),
  readStdin: (maxBytes) => readCapped(0, maxBytes),
};

export interface CommandContext {
  json: boolean;
  io: Io;
}

// ---------------------------------------------------------------------------------------------
// Text from peers (a KMIP server's Result Message, names, attribute values; a drive's strings)

/**
 * `text` with every control character escaped (C0, DEL, C1, bidirectional overrides), so that text
 * from a server cannot move the cursor, ring the bell or forge lines in human output. Every human
 * printer passes peer text through this; JSON output is escaped by JSON itself.
 */
export function printable(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g, (c) => {
    const named: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };
    const code = c.charCodeAt(0);
    return named[c] ?? (code < 0x100 ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16)}`);
  });
}

/** Rows as aligned columns (cells made printable, trailing blanks trimmed). */
export function textTable(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => printable(r[i] ?? '').length)));
  return rows
    .map((r) =>
      r
        .map((c, i) => printable(c).padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

// ---------------------------------------------------------------------------------------------
// The command table

/** One option: its parser type and what --help says about it (`value` names its argument). */
export interface OptionSpec {
  type: 'string' | 'boolean';
  multiple?: boolean;
  value?: string;
  help: string;
}
export type OptionSpecs = Record<string, OptionSpec>;

/** Parsed option values, typed from the declaration. */
export type OptionValues<O extends OptionSpecs> = {
  [K in keyof O]?: O[K]['type'] extends 'boolean'
    ? O[K]['multiple'] extends true
      ? boolean[]
      : boolean
    : O[K]['multiple'] extends true
      ? string[]
      : string;
};

export interface Invocation<O extends OptionSpecs = OptionSpecs> {
  values: OptionValues<O>;
  positionals: string[];
  /** The command's path, e.g. `drive unlock`. */
  path: string;
}

/** A command: `kmip-agent <group ...> <name> <usage>`. */
export interface Command {
  kind: 'command';
  name: string;
  /** What follows the command's path on the usage line, e.g. `<drive> --pin-file FILE|- [--range N]`. */
  usage: string;
  summary: string;
  /** More help text, after the usage and summary. */
  description?: string;
  options: OptionSpecs;
  /** How many positional arguments it takes: [min, max]. */
  positionals: [number, number];
  run(invocation: Invocation, ctx: CommandContext): Promise<number>;
}

/** A group of commands, e.g. `drive` or `volume luks`. */
export interface CommandGroup {
  kind: 'group';
  name: string;
  summary: string;
  description?: string;
  commands: CommandNode[];
}
export type CommandNode = Command | CommandGroup;

/** Declares a command; `run` sees its options typed, and returning nothing means exit 0. */
export function command<const O extends OptionSpecs>(spec: {
  name: string;
  usage: string;
  summary: string;
  description?: string;
  options?: O;
  positionals?: number | [number, number];
  run: (invocation: Invocation<O>, ctx: CommandContext) => Promise<number | void> | number | void;
}): Command {
  const count = spec.positionals ?? 0;
  return {
    kind: 'command',
    name: spec.name,
    usage: spec.usage,
    summary: spec.summary,
    ...(spec.description !== undefined ? { description: spec.description } : {}),
    options: spec.options ?? {},
    positionals: typeof count === 'number' ? [count, count] : count,
    run: async (invocation, ctx) => (await spec.run(invocation as Invocation<O>, ctx)) ?? ExitCode.Ok,
  };
}

export function group(spec: Omit<CommandGroup, 'kind'>): CommandGroup {
  return { kind: 'group', ...spec };
}

/** `--json` is read by main.ts anywhere on the line; --help lists it for every command. */
const GLOBAL_OPTIONS: OptionSpecs = {
  json: { type: 'boolean', help: 'exactly one JSON document on stdout (bytes as lowercase hex)' },
  help: { type: 'boolean', help: 'this help' },
};

function optionLines(options: OptionSpecs): string[] {
  const labels = Object.entries(options).map(
    ([name, o]) => `--${name}${o.type === 'string' ? ` ${o.value ?? 'VALUE'}` : ''}${o.multiple ? ' ...' : ''}`,
  );
  const width = Math.min(28, Math.max(...labels.map((l) => l.length)));
  return Object.values(options).map((o, i) => {
    const label = labels[i]!;
    return label.length > width
      ? `  ${label}\n  ${' '.repeat(width)}  ${o.help}`
      : `  ${label.padEnd(width)}  ${o.help}`;
  });
}

/** A summary as the sentence under a usage line. */
const sentence = (text: string) => text.charAt(0).toUpperCase() + text.slice(1) + (/[.!?]$/.test(text) ? '' : '.');

/** `kmip-agent <path> --help` for a command. */
export function commandHelp(path: string, cmd: Command): string {
  const lines = [`Usage: kmip-agent ${path}${cmd.usage ? ' ' + cmd.usage : ''}`, '', sentence(cmd.summary)];
  if (cmd.description) lines.push('', cmd.description.trimEnd());
  lines.push('', 'Options:', ...optionLines({ ...cmd.options, ...GLOBAL_OPTIONS }));
  return lines.join('\n') + '\n';
}

/** `kmip-agent <path> --help` for a group: its commands, one line each. */
export function groupHelp(path: string, node: CommandGroup, trailer = ''): string {
  const width = Math.max(...node.commands.map((c) => c.name.length));
  const lines = [`Usage: kmip-agent ${path ? path + ' ' : ''}<command> [options]`, '', sentence(node.summary)];
  if (node.description) lines.push('', node.description.trimEnd());
  lines.push('', 'Commands:');
  for (const c of node.commands) {
    lines.push(`  ${c.name.padEnd(width)}  ${c.summary}`);
    if (c.kind === 'command' && c.usage) lines.push(`  ${' '.repeat(width)}    ${c.name} ${c.usage}`);
  }
  lines.push('', `\`kmip-agent ${path ? path + ' ' : ''}<command> --help\` shows a command's options.`);
  if (trailer) lines.push('', trailer.trimEnd());
  return lines.join('\n') + '\n';
}

/** Every command and group below `node`, with its path (for help walkers and suggestions). */
export function walkCommands(node: CommandGroup, prefix = ''): { path: string; node: CommandNode }[] {
  const out: { path: string; node: CommandNode }[] = [];
  for (const child of node.commands) {
    const path = prefix ? `${prefix} ${child.name}` : child.name;
    out.push({ path, node: child });
    if (child.kind === 'group') out.push(...walkCommands(child, path));
  }
  return out;
}

/** Edit distance with adjacent transpositions (so `unlcok` is one step from `unlock`). */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) =>
    Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1])
        d[i]![j] = Math.min(d[i]![j]!, d[i - 2]![j - 2]! + 1);
    }
  }
  return d[a.length]![b.length]!;
}

/** The closest of `candidates` to `word`, when it is close enough to be a typo. */
export function closest(word: string, candidates: string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const c of candidates) {
    const distance = editDistance(word.toLowerCase(), c.toLowerCase());
    if (distance < bestDistance) [best, bestDistance] = [c, distance];
  }
  return best !== undefined && bestDistance <= Math.min(2, Math.max(1, Math.floor(word.length / 3))) ? best : undefined;
}

const isHelp = (a: string | undefined) => a === '--help' || a === '-h' || a === 'help';

/** Why `word` is not a command of `node` (at `path`), and what would be right. */
function unknownCommand(path: string, node: CommandGroup, word: string): UsageError {
  const where = path ? `\`kmip-agent ${path}\`` : '`kmip-agent`';
  const deeper = walkCommands(node, path).filter((e) => e.node.name === word && e.path.includes(' '));
  const typo = closest(
    word,
    node.commands.map((c) => c.name),
  );
  const suggestion =
    deeper.length > 0
      ? ` did you mean ${deeper.map((e) => `\`${e.path}\``).join(' or ')}?`
      : typo !== undefined
        ? ` did you mean \`${path ? path + ' ' : ''}${typo}\`?`
        : '';
  return new UsageError(
    `unknown command '${word}' for ${where}:${suggestion || ` the commands are ${node.commands.map((c) => c.name).join(', ')}`} (see \`kmip-agent ${path ? path + ' ' : ''}--help\`)`,
  );
}

/** util.parseArgs over the declared options, with usage errors typed and unknown options matched to known ones. */
function parseInvocation(path: string, cmd: Command, args: string[]): Invocation {
  const options = Object.fromEntries(
    Object.entries(cmd.options).map(([name, o]) => [name, { type: o.type, multiple: o.multiple ?? false }]),
  );
  let parsed: { values: Record<string, unknown>; positionals: string[] };
  try {
    parsed = parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (e) {
    const message = (e as Error).message;
    const unknown = /Unknown option '(--?[^']+)'/.exec(message)?.[1];
    if (unknown === undefined) throw new UsageError(message);
    const near = closest(unknown.replace(/^--?/, ''), Object.keys(cmd.options));
    throw new UsageError(`unknown option '${unknown}'${near ? `: did you mean --${near}?` : ''}`);
  }
  const [min, max] = cmd.positionals;
  const n = parsed.positionals.length;
  if (n < min || n > max) {
    const what = n > max ? `unexpected argument '${parsed.positionals[max]}'` : 'missing argument';
    throw new UsageError(`${what}: usage: kmip-agent ${path} ${cmd.usage}`);
  }
  return { values: parsed.values as Invocation['values'], positionals: parsed.positionals, path };
}

/** Names the command in a usage error raised while running it, and points at its --help. */
function inCommand(path: string, error: unknown): unknown {
  if (!(error instanceof UsageError || error instanceof SecretInputError)) return error;
  if (error.message.startsWith(`${path}: `)) return error;
  const help = error instanceof UsageError && !error.message.includes('--help');
  error.message = `${path}: ${error.message}${help ? ` (see \`kmip-agent ${path} --help\`)` : ''}`;
  return error;
}

/**
 * Finds the command `args` names below `root`, prints help for `--help` (exit 0) or runs the
 * command with its options parsed. `rootHelp` is what bare `kmip-agent --help` prints.
 */
export async function dispatch(
  root: CommandGroup,
  args: string[],
  ctx: CommandContext,
  rootHelp: () => string,
): Promise<number> {
  let node: CommandGroup = root;
  let path = '';
  let rest = args;
  for (;;) {
    const [word, ...after] = rest;
    if (isHelp(word) || (word === undefined && !path)) {
      // Bare `kmip-agent` shows the help too, but exits 2 (usage).
      ctx.io.stdout(path ? groupHelp(path, node) : rootHelp());
      return word === undefined ? ExitCode.Usage : ExitCode.Ok;
    }
    if (word === undefined) {
      throw new UsageError(
        `\`kmip-agent ${path}\` needs a command: ${node.commands.map((c) => c.name).join(', ')} (see \`kmip-agent ${path} --help\`)`,
      );
    }
    const child = node.commands.find((c) => c.name === word);
    if (!child) throw unknownCommand(path, node, word);
    path = path ? `${path} ${word}` : word;
    rest = after;
    if (child.kind === 'group') {
      node = child;
      continue;
    }
    const end = rest.indexOf('--');
    if ((end === -1 ? rest : rest.slice(0, end)).some((a) => a === '--help' || a === '-h')) {
      ctx.io.stdout(commandHelp(path, child));
      return ExitCode.Ok;
    }
    try {
      return await child.run(parseInvocation(path, child, rest), ctx);
    } catch (error) {
      throw inCommand(path, error);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Output

/** Converts a result to its JSON form: Buffers/Uint8Arrays become lowercase hex, bigints strings, Dates ISO. */
export function toJsonValue(value: unknown): unknown {
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('hex');
  if (typeof value === 'bigint') return value.toString();
  if (value instanceof Date) return value.toISOString();
  if (Array.isArray(value)) return value.map(toJsonValue);
  if (value instanceof Map) return Object.fromEntries([...value].map(([k, v]) => [String(k), toJsonValue(v)]));
  if (value !== null && typeof value === 'object') {
    if (typeof (value as { toJSON?: unknown }).toJSON === 'function')
      return toJsonValue((value as { toJSON: () => unknown }).toJSON());
    return Object.fromEntries(
      Object.entries(value)
        .filter(([, v]) => v !== undefined)
        .map(([k, v]) => [k, toJsonValue(v)]),
    );
  }
  return value;
}

/** Prints a command's result: the JSON document with --json, else the human text (if any). */
export function emit(ctx: CommandContext, json: unknown, human?: string): void {
  if (ctx.json) ctx.io.stdout(JSON.stringify(toJsonValue(json), null, 2) + '\n');
  else if (human !== undefined) ctx.io.stdout(human.endsWith('\n') ? human : human + '\n');
}

/** A note for the operator on stderr (never with --json: stdout stays one document, stderr stays quiet). */
export function note(ctx: CommandContext, text: string): void {
  if (!ctx.json) ctx.io.stderr(`kmip-agent: ${text}\n`);
}

/** Fields the CLI adds to an error's JSON form (e.g. the servers tried), kept beside the error. */
const extraDetails = new WeakMap<object, Record<string, unknown>>();

/** Adds `details` (empty arrays and undefined left out) to the JSON form of `error`; returns the error. */
export function addErrorDetails(error: unknown, details: Record<string, unknown>): unknown {
  if (error === null || typeof error !== 'object') return error;
  const kept = Object.entries(details).filter(([, v]) => v !== undefined && !(Array.isArray(v) && v.length === 0));
  if (kept.length > 0) extraDetails.set(error, { ...extraDetails.get(error), ...Object.fromEntries(kept) });
  return error;
}

/** Reports a failure in the form --json or a terminal expects, and returns its exit code. */
export function emitError(ctx: CommandContext, error: unknown): number {
  const code = error instanceof KmipAgentError ? error.code : 'INTERNAL';
  const message = error instanceof Error ? error.message : String(error);
  // What to do next, when the error knows (KmipError.hint); printed after the message.
  const hint = (error as { hint?: unknown } | null)?.hint;
  if (ctx.json) {
    const own = error instanceof KmipAgentError ? (toJsonValue(error.toJSON()) as object) : { code, message };
    const extra = error !== null && typeof error === 'object' ? extraDetails.get(error) : undefined;
    // What the error carries itself wins over what the CLI adds (e.g. the library's own `attempts`).
    const body = extra ? { ...(toJsonValue(extra) as object), ...own } : own;
    ctx.io.stdout(JSON.stringify({ error: body }) + '\n');
  } else {
    ctx.io.stderr(`kmip-agent: ${printable(message)} [${code}]\n`);
    if (typeof hint === 'string' && hint && !message.includes(hint)) ctx.io.stderr(`  ${printable(hint)}\n`);
  }
  return exitCodeFor(error);
}

// ---------------------------------------------------------------------------------------------
// Secrets

/** What a secret is, for the one reader: its form and its size. */
export interface SecretKind {
  /**
   * 'bytes': raw bytes (a PIN, a key). Input that looks like an encoding of bytes (hex, base64) or
   * like text ending in a newline is refused unless --hex or --raw says how to read it.
   * 'text': a typed string (a sedutil password, a PSID): one trailing newline is removed.
   */
  form: 'bytes' | 'text';
  /** Most bytes it may have (after decoding); the file is never read further than this allows. */
  maxBytes: number;
}

/** A drive PIN: C_PIN.PIN holds 1 to 32 bytes (Opal SSC). */
export const PIN_SECRET: SecretKind = { form: 'bytes', maxBytes: 32 };
/** A sedutil-cli password: text, derived to the 32-byte PIN by PBKDF2 (so it may be longer than a PIN). */
export const SEDUTIL_PASSWORD_SECRET: SecretKind = { form: 'text', maxBytes: 255 };
/** A drive's PSID, typed from its label. */
export const PSID_SECRET: SecretKind = { form: 'text', maxBytes: 32 };
/** A key or secret value (LUKS volume key or passphrase, a value to register): a few KiB at most. */
export const KEY_SECRET: SecretKind = { form: 'bytes', maxBytes: 4096 };

/** How 'bytes' secrets are read: refuse what looks encoded ('auto'), decode hex ('hex'), or take as is ('raw'). */
export type SecretReading = 'auto' | 'hex' | 'raw';

/** The --hex/--raw options of every command that reads a raw secret. */
export const SECRET_READING_OPTIONS = {
  hex: { type: 'boolean', help: 'secret files hold hex text (as `kmip get` prints): decode it' },
  raw: { type: 'boolean', help: 'take secret files byte for byte, even if they look like hex or text' },
} as const;

export function secretReading(values: { hex?: boolean; raw?: boolean }): SecretReading {
  if (values.hex && values.raw) throw new UsageError('--hex and --raw exclude each other');
  return values.hex ? 'hex' : values.raw ? 'raw' : 'auto';
}

export interface SecretSource {
  /** The option's value: a path, or `-` for stdin; undefined when not given. */
  path: string | undefined;
  /** The option, e.g. `--pin-file`. */
  option: string;
  /** What it is, e.g. `the Admin1 PIN`. */
  what: string;
  kind: SecretKind;
  /** Not given is fine (the command runs without it). */
  optional?: boolean;
}

const secretError = (message: string, code: string) => new SecretInputError(message, code);
const where = (path: string) => (path === '-' ? '- (stdin)' : path);

// The form checks work on the bytes themselves: a secret never becomes a (non-wipeable) JS string.

/** The length of `data` without one trailing line ending (LF or CRLF). */
function withoutLineEnd(data: Buffer): number {
  let end = data.length;
  if (end > 0 && data[end - 1] === 0x0a) {
    end--;
    if (end > 0 && data[end - 1] === 0x0d) end--;
  }
  return end;
}

/** The value of a hex digit, or -1. */
function hexValue(b: number): number {
  if (b >= 0x30 && b <= 0x39) return b - 0x30;
  if (b >= 0x61 && b <= 0x66) return b - 0x57;
  if (b >= 0x41 && b <= 0x46) return b - 0x37;
  return -1;
}

/** An even number of hex digits (at least two), then at most one line ending. */
function looksLikeHex(data: Buffer): boolean {
  const end = withoutLineEnd(data);
  if (end === 0 || end % 2 !== 0) return false;
  for (let i = 0; i < end; i++) if (hexValue(data[i]!) < 0) return false;
  return true;
}

const isUpper = (b: number) => b >= 0x41 && b <= 0x5a;
const isLower = (b: number) => b >= 0x61 && b <= 0x7a;
const isDigit = (b: number) => b >= 0x30 && b <= 0x39;

/**
 * Base64 of at least 12 bytes (16 characters, whole groups, `=` padding only at the end) that is
 * padded, or mixes upper case, lower case, digits and `+` or `/`: not a password someone typed or
 * generated (those rarely hold `+` or `/`, and `pwgen -s` never does).
 */
function looksLikeBase64(data: Buffer): boolean {
  const end = withoutLineEnd(data);
  if (end < 16 || end % 4 !== 0) return false;
  let padding = 0;
  let upper = false;
  let lower = false;
  let digit = false;
  let symbol = false;
  for (let i = 0; i < end; i++) {
    const b = data[i]!;
    if (b === 0x3d) {
      if (i < end - 2) return false;
      padding++;
      continue;
    }
    if (padding > 0) return false;
    if (isUpper(b)) upper = true;
    else if (isLower(b)) lower = true;
    else if (isDigit(b)) digit = true;
    else if (b === 0x2b || b === 0x2f) symbol = true;
    else return false;
  }
  return padding > 0 || (upper && lower && digit && symbol);
}

/** Text (valid UTF-8, no control characters) followed by one line ending. */
function isTextLine(data: Buffer): boolean {
  const end = withoutLineEnd(data);
  if (end === data.length || end === 0) return false;
  for (let i = 0; i < end; i++) if (data[i]! < 0x20 || data[i] === 0x7f) return false;
  return isUtf8(data.subarray(0, end));
}

/** Decodes hex text (whitespace between digits allowed) into a new Buffer; undefined when it is not hex. */
function decodeHex(data: Buffer): Buffer | undefined {
  const digits = Buffer.alloc(data.length);
  let n = 0;
  try {
    for (const b of data) {
      if (b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0d) continue;
      const v = hexValue(b);
      if (v < 0) return undefined;
      digits[n++] = v;
    }
    if (n % 2 !== 0) return undefined;
    const value = Buffer.alloc(n / 2);
    for (let i = 0; i < value.length; i++) value[i] = (digits[2 * i]! << 4) | digits[2 * i + 1]!;
    return value;
  } finally {
    digits.fill(0);
  }
}

/** Checks (and decodes, for --hex) one secret as read; throws a typed error naming the option and the fix. */
function shapeSecret(data: Buffer, source: SecretSource, reading: SecretReading): Buffer {
  const { option, what, kind } = source;
  const from = where(source.path!);
  const size = (n: number) => `${n} byte${n === 1 ? '' : 's'}`;
  let value = data;
  if (kind.form === 'text') {
    // Typed text: an editor's or echo's line ending is not part of it (sedutil-cli takes passwords on
    // its command line, where none can end in a newline).
    value = data.subarray(0, withoutLineEnd(data));
  } else if (reading === 'hex') {
    const decoded = decodeHex(data);
    if (decoded === undefined)
      throw secretError(
        `${what} (${option} ${from}) is not hex text, but --hex was given: give the raw bytes without --hex`,
        'SECRET_NOT_HEX',
      );
    value = decoded;
  } else if (reading === 'auto') {
    if (data.length > 0 && withoutLineEnd(data) === 0)
      throw secretError(`${what} (${option} ${from}) holds only a line ending`, 'SECRET_EMPTY');
    if (looksLikeHex(data))
      throw secretError(
        `${what} (${option} ${from}) looks like hex text (${size(data.length)}), not raw bytes: ` +
          'add --hex to decode it (or convert it with `xxd -r -p`, or write it with `kmip get --out FILE`); ' +
          '--raw sends it as it is',
        'SECRET_LOOKS_LIKE_HEX',
      );
    if (looksLikeBase64(data))
      throw secretError(
        `${what} (${option} ${from}) looks like base64 text, not raw bytes: decode it with \`base64 -d\`; ` +
          '--raw sends it as it is',
        'SECRET_LOOKS_LIKE_BASE64',
      );
    if (isTextLine(data))
      throw secretError(
        `${what} (${option} ${from}) is text ending in a newline, which would be sent as part of it: ` +
          'write it without the newline (`printf %s ...`), or give --raw to send it as it is',
        'SECRET_TRAILING_NEWLINE',
      );
  }
  if (value.length === 0) throw secretError(`${what} (${option} ${from}) is empty`, 'SECRET_EMPTY');
  if (value.length > kind.maxBytes)
    throw secretError(
      `${what} (${option} ${from}) has ${size(value.length)}: at most ${size(kind.maxBytes)} allowed`,
      'SECRET_TOO_LONG',
    );
  return value;
}

/** The most bytes read for a secret: enough to see hex text of the longest value, and one more to see "too long". */
function readLimit(kind: SecretKind, reading: SecretReading): number {
  return kind.form === 'bytes' && reading !== 'raw' ? 2 * kind.maxBytes + 3 : kind.maxBytes + 3;
}

/** Reads one secret, capped; a file that is missing, a directory or unreadable is a usage error. */
function readSecretBytes(ctx: CommandContext, source: SecretSource, limit: number): Buffer {
  const path = source.path!;
  const tooLong = () =>
    secretError(
      `${source.what} (${source.option} ${where(path)}) is longer than ${source.kind.maxBytes} bytes allowed` +
        ' (nothing more was read)',
      'SECRET_TOO_LONG',
    );
  if (path === '-') {
    const data = ctx.io.readStdin(limit + 1);
    if (data.length > limit) {
      data.fill(0);
      throw tooLong();
    }
    return data;
  }
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    throw new UsageError(
      `cannot read ${source.what} from ${source.option} ${path}: ${(e as Error).message}`,
      'USAGE_FILE',
    );
  }
  try {
    if (fstatSync(fd).isDirectory())
      throw new UsageError(`${source.option} ${path} is a directory, not a file holding ${source.what}`, 'USAGE_FILE');
    const data = readCapped(fd, limit + 1);
    if (data.length > limit) {
      data.fill(0);
      throw tooLong();
    }
    return data;
  } finally {
    closeSync(fd);
  }
}

/**
 * Reads the named secrets (files, or `-` for stdin: at most one), checks each against its kind
 * before anything is contacted, runs `work`, and zeroes every secret read, whatever happens
 * (including a later read failing). `secrets` follows `sources`; an optional one not given is undefined.
 */
export async function withSecrets<T>(
  ctx: CommandContext,
  sources: SecretSource[],
  reading: SecretReading,
  work: (secrets: Buffer[]) => Promise<T>,
): Promise<T> {
  const fromStdin = sources.filter((s) => s.path === '-');
  if (fromStdin.length > 1)
    throw new UsageError(`only one secret can come from stdin (-): ${fromStdin.map((s) => s.option).join(' and ')}`);
  for (const s of sources) {
    if (s.path === undefined && !s.optional)
      throw new UsageError(`${s.what} is required: ${s.option} FILE, or ${s.option} - for stdin`);
  }
  const read: Buffer[] = [];
  const secrets: Buffer[] = [];
  try {
    for (const source of sources) {
      if (source.path === undefined) {
        secrets.push(undefined as unknown as Buffer);
        continue;
      }
      const data = readSecretBytes(ctx, source, readLimit(source.kind, reading));
      read.push(data);
      const value = shapeSecret(data, source, reading);
      if (value !== data) read.push(value);
      secrets.push(value);
    }
    return await work(secrets);
  } finally {
    for (const buffer of read) buffer.fill(0);
  }
}
