/** Runs the CLI in-process with a captured Io: stdout, stderr and the exit code. */
import { runCli } from '../../src/cli/main.js';
import type { Io } from '../../src/cli/framework.js';

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
  /** stdout parsed as JSON (for --json runs). */
  json<T = unknown>(): T;
}

/**
 * `stdin` is what the CLI reads as standard input: a Buffer is handed over as is (the CLI wipes secrets
 * it read, so the caller sees the wipe); a function is called for each read (e.g. to hand out copies).
 */
export async function runCliCaptured(
  argv: string[],
  stdin: Buffer | (() => Buffer) = Buffer.alloc(0),
): Promise<CliRun> {
  let stdout = '';
  let stderr = '';
  const io: Io = {
    stdout: (t) => {
      stdout += t;
    },
    stderr: (t) => {
      stderr += t;
    },
    readStdin: typeof stdin === 'function' ? stdin : () => stdin,
  };
  const code = await runCli(argv, io);
  return { code, stdout, stderr, json: <T>() => JSON.parse(stdout) as T };
}
