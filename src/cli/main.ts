#!/usr/bin/env node
/** `kmip-agent`: one command for every user (admin, field engineer, boot sequence, developer). */
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { packageVersion } from '../native/addon.js';
import {
  dispatch,
  emitError,
  ExitCode,
  group,
  processIo,
  type CommandContext,
  type CommandGroup,
  type Io,
} from './framework.js';
import { loadTopLevel, TOP_LEVEL_COMMANDS } from './commands/table.js';

function topLevelHelp(commandTree: CommandGroup): string {
  const width = Math.max(...commandTree.commands.map((g) => g.name.length));
  return [
    'Usage: kmip-agent [--json] <command> [options]',
    '',
    'Key-management agent for storage appliances: KMIP keys, TCG Opal drives, LUKS2 volumes.',
    '',
    'Commands:',
    ...commandTree.commands.map((g) => `  ${g.name.padEnd(width)}  ${g.summary}`),
    '',
    'Options:',
    '  --json      exactly one JSON document on stdout (bytes as lowercase hex)',
    '  --version   print the version',
    '  --help      this help; `kmip-agent <command> --help` for a command (at every level)',
    '',
    'Exit codes: 0 success, 1 failed, 2 usage or configuration error (bad secret input included),',
    '3 not supported here.',
    '',
  ].join('\n');
}

/**
 * The command table to dispatch `name` from: for a top-level command, that command alone (its module and
 * what it imports: `daemon`, on the boot's critical path, loads no other command's libraries); its parsing,
 * --help and usage errors are the same as through the whole table, which is for the top-level help and for
 * names that are not a top-level command (the typo suggestions look through every command).
 */
async function commandTreeFor(name: string | undefined): Promise<CommandGroup> {
  const entry = TOP_LEVEL_COMMANDS.find((c) => c.name === name);
  if (entry) return group({ name: 'kmip-agent', summary: '', commands: [await loadTopLevel(entry)] });
  return (await import('./commands/index.js')).commandTree;
}

/** Runs the CLI on argv (without node and script); returns the exit code. */
export async function runCli(argv: string[], io: Io = processIo): Promise<number> {
  const json = argv.includes('--json');
  const args = argv.filter((a) => a !== '--json');
  const ctx: CommandContext = { json, io };
  try {
    const [name] = args;
    if (name === '--version' || name === '-V') {
      if (json) io.stdout(JSON.stringify({ version: packageVersion() }) + '\n');
      else io.stdout(`kmip-agent ${packageVersion()}\n`);
      return ExitCode.Ok;
    }
    const tree = await commandTreeFor(name);
    return await dispatch(tree, args, ctx, () => topLevelHelp(tree));
  } catch (error) {
    return emitError(ctx, error);
  }
}

function invokedDirectly(): boolean {
  const script = process.argv[1];
  if (!script) return false;
  try {
    return realpathSync(script) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (invokedDirectly()) {
  runCli(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (error: unknown) => {
      process.stderr.write(`kmip-agent: internal error: ${String(error)}\n`);
      process.exitCode = ExitCode.Failed;
    },
  );
}
