/**
 * What every `kmip-agent` subcommand shares: argument parsing, the --json contract (exactly one
 * JSON document on stdout, bytes as lowercase hex, errors as {"error":{code,message}}), secrets read
 * from files or stdin (never argv), and the exit codes of the CLI conventions.
 */
import { readFileSync } from 'node:fs';
import { parseArgs, type ParseArgsConfig } from 'node:util';
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

/** Exit code for an error, by its stable code: usage/config 2, not supported 3, anything else 1. */
export function exitCodeFor(error: unknown): number {
  if (!(error instanceof KmipAgentError)) return ExitCode.Failed;
  const code = error.code;
  if (code === 'USAGE' || code.startsWith('USAGE_') || code.startsWith('CONFIG_') || code.endsWith('_SPEC_INVALID')) {
    return ExitCode.Usage;
  }
  if (code.endsWith('NOT_SUPPORTED') || code.endsWith('UNSUPPORTED') || code.endsWith('NOT_AVAILABLE')) {
    return ExitCode.NotSupported;
  }
  return ExitCode.Failed;
}

export interface Io {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  /** Reads all of standard input (for `-` arguments). */
  readStdin: () => Buffer;
}

export const processIo: Io = {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
  readStdin: () => readFileSync(0),
};

export interface CommandContext {
  json: boolean;
  io: Io;
}

/** A top-level command group such as `kmip`, `ttlv` or `drive`. */
export interface CommandGroup {
  name: string;
  summary: string;
  /** Full help text for `kmip-agent <name> --help`. */
  help: string;
  /** Runs the group with the arguments after its name; returns the exit code. */
  run(args: string[], ctx: CommandContext): Promise<number>;
}

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

/** Reports a failure in the form --json or a terminal expects, and returns its exit code. */
export function emitError(ctx: CommandContext, error: unknown): number {
  const code = error instanceof KmipAgentError ? error.code : 'INTERNAL';
  const message = error instanceof Error ? error.message : String(error);
  if (ctx.json) {
    const body = error instanceof KmipAgentError ? toJsonValue(error.toJSON()) : { code, message };
    ctx.io.stdout(JSON.stringify({ error: body }) + '\n');
  } else {
    ctx.io.stderr(`kmip-agent: ${message} [${code}]\n`);
  }
  return exitCodeFor(error);
}

/** util.parseArgs with usage errors typed; `strict` so unknown options are refused. */
export function parseOptions<const T extends NonNullable<ParseArgsConfig['options']>>(
  args: string[],
  options: T,
  allowPositionals = true,
): ReturnType<typeof parseArgs<{ args: string[]; options: T; allowPositionals: boolean; strict: true }>> {
  try {
    return parseArgs({ args, options, allowPositionals, strict: true });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/** Reads a secret from a file path, or from stdin for `-`. Secrets never come from argv. */
export function readSecret(ctx: CommandContext, path: string | undefined, what: string): Buffer {
  if (path === undefined) throw new UsageError(`${what} is required (a file path, or - for stdin)`);
  if (path === '-') return ctx.io.readStdin();
  try {
    return readFileSync(path);
  } catch (e) {
    throw new UsageError(`cannot read ${what} from ${path}: ${(e as Error).message}`, 'USAGE_FILE');
  }
}

/**
 * Reads the named secrets (files, or `-` for stdin: at most one), runs `work`, and zeroes every
 * secret read, whatever happens, including a later read failing. `secrets` follows `files`.
 */
export async function withSecrets<T>(
  ctx: CommandContext,
  files: [path: string | undefined, what: string][],
  work: (secrets: Buffer[]) => Promise<T>,
): Promise<T> {
  if (files.filter(([path]) => path === '-').length > 1) throw new UsageError('only one secret can come from stdin');
  const secrets: Buffer[] = [];
  try {
    for (const [path, what] of files) secrets.push(readSecret(ctx, path, what));
    return await work(secrets);
  } finally {
    for (const secret of secrets) secret.fill(0);
  }
}

/** The `files` entry for an optional secret option: none when the option was not given. */
export function optionalSecret(path: string | undefined, what: string): [string, string][] {
  return path === undefined ? [] : [[path, what]];
}
