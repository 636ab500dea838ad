/**
 * The daemon's logger: pino JSON lines on stdout, which systemd hands to journald.
 *
 * Priorities: journald reads a line's priority from a `<N>` syslog prefix on a stdout stream
 * (SyslogLevelPrefix=, on by default), not from a field in the JSON (a PRIORITY field counts only with the
 * native journal protocol). So when stdout is the journal (JOURNAL_STREAM names stdout's device and inode,
 * as systemd sets it), each line is prefixed `<N>` with pino's level mapped to a syslog priority: journald
 * strips the prefix, records PRIORITY=N and `journalctl -p warning -u kmip-agent` works. Anywhere else
 * (a terminal, a pipe, tests) the lines are plain JSON.
 *
 * Key material: fields named like secrets are censored by path (any depth up to three), and every byte
 * buffer is censored whatever its name, so a key passed to a logger by mistake still never reaches it.
 */
import { fstatSync } from 'node:fs';
import { pino, type DestinationStream, type Level, type Logger } from 'pino';

export const REDACTED = '[redacted]';

/** Field names that hold secrets wherever they appear. */
const SECRET_FIELDS = [
  'key',
  'keys',
  'pin',
  'pins',
  'secret',
  'value',
  'passphrase',
  'password',
  'existingKey',
  'newKey',
  'sidPin',
  'adminPin',
  'kek',
  'wrappedKey',
];
export const REDACT_PATHS = SECRET_FIELDS.flatMap((f) => [f, `*.${f}`, `*.*.${f}`, `*.*.*.${f}`]);

/** pino level -> syslog priority (sd-daemon(3)): fatal 2 crit, error 3 err, warn 4 warning, info 6, debug/trace 7. */
export const SYSLOG_PRIORITY: Record<Level, number> = { fatal: 2, error: 3, warn: 4, info: 6, debug: 7, trace: 7 };

/** True when stdout is a journald stream (systemd sets JOURNAL_STREAM=<dev>:<inode> of it). */
export function stdoutIsJournal(env: NodeJS.ProcessEnv = process.env, fd = 1): boolean {
  const match = /^(\d+):(\d+)$/.exec(env.JOURNAL_STREAM ?? '');
  if (!match) return false;
  try {
    const st = fstatSync(fd, { bigint: true });
    return st.dev === BigInt(match[1]!) && st.ino === BigInt(match[2]!);
  } catch {
    return false;
  }
}

/** Replaces byte buffers anywhere in a log object (bounded depth; cycles are left to pino). */
function censorBytes(value: unknown, depth = 0): unknown {
  if (value instanceof Uint8Array) return REDACTED;
  if (depth > 6 || value === null || typeof value !== 'object' || value instanceof Error) return value;
  if (Array.isArray(value)) return value.some(hasBytes) ? value.map((v) => censorBytes(v, depth + 1)) : value;
  if (!hasBytes(value)) return value;
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, censorBytes(v, depth + 1)]));
}

function hasBytes(value: unknown, depth = 0): boolean {
  if (value instanceof Uint8Array) return true;
  if (depth > 6 || value === null || typeof value !== 'object' || value instanceof Error) return false;
  return Object.values(value).some((v) => hasBytes(v, depth + 1));
}

function serializeError(value: unknown): unknown {
  return censorBytes(value instanceof Error ? pino.stdSerializers.err(value) : value);
}

export interface AgentLoggerOptions {
  /** Where lines go (default stdout). */
  destination?: DestinationStream;
  /** Prefix lines with `<N>` for journald (default: when stdout is the journal). */
  journal?: boolean;
  level?: Level;
}

/** The agent's logger (see the module comment for priorities and redaction). */
export function agentLogger(options: AgentLoggerOptions = {}): Logger {
  const out: DestinationStream = options.destination ?? pino.destination(1);
  const journal = options.journal ?? (options.destination === undefined && stdoutIsJournal());
  const settings = {
    base: { service: 'kmip-agent' },
    level: options.level ?? 'info',
    redact: { paths: REDACT_PATHS, censor: REDACTED },
    // Errors are serialized after formatters.log runs: their properties (details, cause) get the same check.
    serializers: { err: serializeError, error: serializeError },
    formatters: {
      level: (label: string) => ({ level: label }),
      log: (object: Record<string, unknown>) => censorBytes(object) as Record<string, unknown>,
    },
  };
  if (!journal) return pino(settings, out);
  // One stream per level, each adding its priority prefix; dedupe sends a line to its own level's stream only.
  const streams = (Object.keys(SYSLOG_PRIORITY) as Level[]).map((level) => ({
    level,
    stream: { write: (line: string) => out.write(`<${SYSLOG_PRIORITY[level]}>${line}`) },
  }));
  return pino(settings, pino.multistream(streams, { dedupe: true }));
}
