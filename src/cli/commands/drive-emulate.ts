/**
 * `kmip-agent drive emulate ...` and `drive read|write` (emulated drives only).
 * Placeholder until the emulator lands; `drive` dispatches here for those subcommands.
 */
import { KmipAgentError } from '../../errors.js';
import type { CommandContext } from '../framework.js';

export const DRIVE_EMULATOR_SUBCOMMANDS = ['emulate', 'read', 'write'] as const;

export const DRIVE_EMULATOR_HELP = '';

export function runDriveEmulatorCommand(_sub: string, _args: string[], _ctx: CommandContext): Promise<number> {
  return Promise.reject(new KmipAgentError('the emulated drive is not built yet', 'EMU_NOT_SUPPORTED'));
}
