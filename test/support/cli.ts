/** Runs the CLI in-process with a captured Io: stdout, stderr and the exit code. */
import { runCli } from '../../src/cli/main.js';
import type { Io } from '../../src/cli/framework.js';

export interface CliRun {
  code: number;
  stdout: string;
  /** Every byte written to stdout (text and raw values, as `kmip get --out -` writes them). */
  stdoutBytes: Buffer;
  stderr: string;
  /** stdout parsed as JSON (for --json runs). */
  json<T = unknown>(): T;
}

/**
 * `stdin` is what the CLI reads as standard input: a Buffer is handed over as is (the CLI wipes secrets
 * it read, so the caller sees the wipe); a function is called for each read (e.g. to hand out copies).
 * Like a real stdin, no read returns more than the CLI asks for: `stdinReads` records each cap asked.
 */
export async function runCliCaptured(
  argv: string[],
  stdin: Buffer | (() => Buffer) = Buffer.alloc(0),
  stdinReads: number[] = [],
): Promise<CliRun> {
  const chunks: Buffer[] = [];
  let stderr = '';
  const io: Io = {
    stdout: (t) => {
      chunks.push(Buffer.from(t, 'utf8'));
    },
    stdoutBytes: (data) => {
      chunks.push(Buffer.from(data));
    },
    stderr: (t) => {
      stderr += t;
    },
    readStdin: (maxBytes) => {
      stdinReads.push(maxBytes);
      const data = typeof stdin === 'function' ? stdin() : stdin;
      return data.length <= maxBytes ? data : data.subarray(0, maxBytes);
    },
  };
  const code = await runCli(argv, io);
  const bytes = Buffer.concat(chunks);
  const stdout = bytes.toString('utf8');
  return { code, stdout, stdoutBytes: bytes, stderr, json: <T>() => JSON.parse(stdout) as T };
}
