/**
 * The LUKS unlocker when the mapping already exists, as after a daemon restart (Restart=on-failure):
 * kept when it is of the same device and the key opens the header, refused (LUKS_MAPPING_CONFLICT) when
 * another device holds the name. The activation port is a fake (no device-mapper on this machine; the
 * real path runs in the VM tests); mappingDevices reads a fake sysfs tree laid out as the kernel's.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { KmipAgentError } from '../../src/errors.js';
import { LuksUnlocker, type LuksPort } from '../../src/agent/unlockers.js';
import type { UnlockTarget } from '../../src/agent/unlock.js';
import { mappingDevices } from '../../src/drives/luks.js';

const target = { id: 'vol-1', kind: 'luks', device: '/dev/vdb' } as unknown as UnlockTarget;
const settings = { nameOf: () => 'data-a', servedBySocket: () => false };
const alreadyActive = () =>
  new KmipAgentError('data-a: a mapping with this name already exists', 'LUKS_ALREADY_ACTIVE');

function port(under: string[] | null, checks: Buffer[], checkError?: Error): LuksPort {
  return {
    activate: async () => {
      throw alreadyActive();
    },
    check: async (_device, key) => {
      checks.push(Buffer.from(key));
      if (checkError) throw checkError;
    },
    mappingDevices: () => under,
    kernelName: (device) => device.replace('/dev/', ''),
  };
}

describe('LuksUnlocker with the mapping already active', () => {
  it('keeps a mapping of the same device once the key opens its header', async () => {
    const checks: Buffer[] = [];
    const state = await new LuksUnlocker(port(['vdb'], checks), settings).unlock(target, Buffer.alloc(32, 7));
    expect(state).toBe('unlocked');
    expect(checks).toEqual([Buffer.alloc(32, 7)]);
  });

  it('refuses a mapping of another device, naming both, without checking the key', async () => {
    const checks: Buffer[] = [];
    const unlocking = new LuksUnlocker(port(['vdc'], checks), settings).unlock(target, Buffer.alloc(32, 7));
    await expect(unlocking).rejects.toMatchObject({ code: 'LUKS_MAPPING_CONFLICT', message: /vdc.*\/dev\/vdb/ });
    expect(checks).toEqual([]);
  });

  it('passes on the header check failure when the key does not open the device', async () => {
    const wrong = new KmipAgentError('no keyslot opens with this key', 'LUKS_WRONG_KEY');
    const unlocking = new LuksUnlocker(port(['vdb'], [], wrong), settings).unlock(target, Buffer.alloc(32, 1));
    await expect(unlocking).rejects.toMatchObject({ code: 'LUKS_WRONG_KEY' });
  });

  it('lets other activation failures through unchanged', async () => {
    const p = port(['vdb'], []);
    p.activate = async () => {
      throw new KmipAgentError('no device-mapper', 'LUKS_DM_NOT_AVAILABLE');
    };
    await expect(new LuksUnlocker(p, settings).unlock(target, Buffer.alloc(32))).rejects.toMatchObject({
      code: 'LUKS_DM_NOT_AVAILABLE',
    });
  });
});

describe('mappingDevices (sysfs)', () => {
  let root: string | undefined;
  afterEach(() => root && rmSync(root, { recursive: true, force: true }));

  const mapping = (dm: string, name: string, slaves: string[]) => {
    mkdirSync(join(root!, 'block', dm, 'dm'), { recursive: true });
    mkdirSync(join(root!, 'block', dm, 'slaves'), { recursive: true });
    writeFileSync(join(root!, 'block', dm, 'dm', 'name'), `${name}\n`);
    for (const s of slaves) writeFileSync(join(root!, 'block', dm, 'slaves', s), '');
  };

  it('finds the devices under a mapping by its name, and null for a name no mapping has', () => {
    root = mkdtempSync(join(tmpdir(), 'sysfs-'));
    mkdirSync(join(root, 'block', 'vdb'), { recursive: true });
    mapping('dm-0', 'swap', ['vda2']);
    mapping('dm-1', 'data-a', ['vdb']);
    expect(mappingDevices('data-a', root)).toEqual(['vdb']);
    expect(mappingDevices('swap', root)).toEqual(['vda2']);
    expect(mappingDevices('data-b', root)).toBeNull();
  });
});
