/**
 * RemoveDrive, RemoveVolume, ReplaceDrive (jobs: an asyncHandle for GetAsyncResult), ReaddDrive and
 * AuditKeys. Destructive ones need params.confirm: true; ids and devices are checked here, the rest by
 * the field service before any job starts.
 */
import { KmipAgentError } from '../errors.js';
import type { FieldService } from '../agent/field-service.js';
import type { RpcMethod } from './server.js';

const plain = (value: unknown): unknown => JSON.parse(JSON.stringify(value)) as unknown;

function text(params: Record<string, unknown>, name: string, method: string, what: string): string {
  const value = params[name];
  if (typeof value !== 'string' || value === '')
    throw new KmipAgentError(`${method} needs params.${name} (${what})`, 'API_INVALID_PARAMS');
  return value;
}

function confirmed(params: Record<string, unknown>, method: string, what: string): void {
  if (params.confirm !== true)
    throw new KmipAgentError(`${method} ${what}: it needs params.confirm: true`, 'API_CONFIRM_REQUIRED');
}

export function fieldMethods(field: () => FieldService): Record<string, RpcMethod> {
  return {
    RemoveDrive: async (params) => {
      const id = text(params, 'id', 'RemoveDrive', 'a managed drive id');
      confirmed(params, 'RemoveDrive', 'crypto-erases the drive (ALL ITS DATA LOST) and destroys its key');
      return plain(await field().removeDrive(id, { force: params.force === true }));
    },
    RemoveVolume: async (params) => {
      const id = text(params, 'id', 'RemoveVolume', 'a managed volume id');
      confirmed(params, 'RemoveVolume', "removes the volume's KMIP keyslot and destroys its key");
      return plain(await field().removeVolume(id, { destroyData: params.destroyData === true }));
    },
    ReplaceDrive: async (params) => {
      const oldId = text(params, 'oldId', 'ReplaceDrive', 'the managed drive replaced');
      const newDevice = text(params, 'newDevice', 'ReplaceDrive', 'the new drive: a device path or emu:/image');
      return plain(await field().replaceDrive(oldId, newDevice, { keepKey: params.keepKey === true }));
    },
    ReaddDrive: async (params) =>
      plain(await field().readdDrive(text(params, 'id', 'ReaddDrive', 'a managed drive id'))),
    AuditKeys: async () => plain(await field().auditKeys()),
  };
}
