/** Every command and group of the CLI answers --help the same way: derived from the command table, not a list. */
import { describe, expect, it } from 'vitest';
import { commandTree } from '../../src/cli/commands/index.js';
import { walkCommands } from '../../src/cli/framework.js';
import { runCliCaptured as cli } from '../support/cli.js';

const entries = walkCommands(commandTree);

describe('--help everywhere', () => {
  it('the table holds the commands the issue names (so the walk below is not vacuous)', () => {
    const paths = entries.map((e) => e.path);
    for (const path of ['drive unlock', 'volume luks open', 'ttlv decode', 'drive emulate', 'kmip get', 'addon'])
      expect(paths).toContain(path);
    expect(paths.length).toBeGreaterThan(30);
  });

  it.each(entries.map((e) => [e.path, e.node.kind] as const))('%s --help (%s): exit 0, a usage line', async (path) => {
    for (const flag of ['--help', '-h']) {
      const run = await cli([...path.split(' '), flag]);
      expect(run.code).toBe(0);
      expect(run.stderr).toBe('');
      const [usage] = run.stdout.split('\n');
      expect(usage).toMatch(new RegExp(`^Usage: kmip-agent ${path}( \\S.*)?$`));
      expect(run.stdout.toLowerCase()).not.toContain('subcommand');
    }
  });

  it('a command answers --help after its other arguments too, without running', async () => {
    const run = await cli(['drive', 'unlock', 'emu:/nonexistent.img', '--pin-file', '/nonexistent', '--help']);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^Usage: kmip-agent drive unlock <drive> --pin-file FILE\|-/);
  });

  it('top-level help uses the word "command" only', async () => {
    const run = await cli(['--help']);
    expect(run.code).toBe(0);
    expect(run.stdout.toLowerCase()).not.toContain('subcommand');
  });
});

describe('usage errors name the command and say what would be right', () => {
  it.each([
    [['volume', 'info', '/dev/null'], /did you mean `volume luks info`\?/],
    [['drive', 'unlcok', 'emu:/x'], /did you mean `drive unlock`\?/],
    [['kmip', 'locat'], /did you mean `kmip locate`\?/],
    [['ttlv', 'decod', '00'], /did you mean `ttlv decode`\?/],
    [['drive', 'info', 'emu:/x'], /did you mean `drive emulate info`\?/],
    [
      ['drive', 'tries', 'emu:/x', '--pinfile', 'p'],
      /^drive tries: unknown option '--pinfile': did you mean --pin-file\?/,
    ],
    [['drive', 'unlock'], /^drive unlock: missing argument: usage: kmip-agent drive unlock <drive>/],
    [['volume', 'luks'], /`kmip-agent volume luks` needs a command: info, check/],
    [['frobnicate'], /unknown command 'frobnicate' for `kmip-agent`/],
  ])('%j', async (args, message) => {
    const run = await cli(['--json', ...args]);
    expect(run.code).toBe(2);
    const { error } = run.json<{ error: { code: string; message: string } }>();
    expect(error.code).toBe('USAGE');
    expect(error.message).toMatch(message);
  });

  it('a usage error raised inside a command names it and points at its --help', async () => {
    const run = await cli(['drive', 'setup-range', 'emu:/x', '--range', '1', '--pin-file', '/dev/null']);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/^kmip-agent: drive setup-range: --start and --length are required/);
    expect(run.stderr).toContain('see `kmip-agent drive setup-range --help`');
  });
});
