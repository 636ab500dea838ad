/**
 * Inventory: a fake sysfs tree (SATA with WWN and a VPD serial, NVMe, a disk with model+serial only, one
 * with no identity, virtual devices left out) merged with what systeminformation lists; then the real
 * thing through `kmip-agent drive list`: this machine's disks (no Opal here: reported, not an error),
 * emulated drives and a LUKS2 image from the config, managed or not, with their keys and states.
 */
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { AgentStatus } from '../../src/agent/agent.js';
import { loadConfig, saveConfig } from '../../src/agent/config.js';
import { agentMethods } from '../../src/api/methods.js';
import { ApiServer, API_SOCKET_NAME } from '../../src/api/server.js';
import {
  driveIdentity,
  driveListing,
  encryptionAtRestInfo,
  takeInventory,
  type InventoryItem,
  type InventoryPorts,
} from '../../src/agent/inventory.js';
import { powerCycleEmulatedDrive } from '../../src/drives/index.js';
import { luksFormat, luksUuid } from '../luks/images.js';
import { TestAppliance } from './appliance.js';

const cleanup: (() => void)[] = [];
afterEach(() => cleanup.splice(0).forEach((c) => c()));

/** Writes `files` (path relative to root -> content) and `links` (link -> target) under a new root. */
function fakeSysfs(files: Record<string, string | Buffer>, links: Record<string, string>): string {
  const root = mkdtempSync(join(tmpdir(), 'kmip-agent-sysfs-'));
  cleanup.push(() => rmSync(root, { recursive: true, force: true }));
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), content);
  }
  for (const [link, target] of Object.entries(links)) {
    mkdirSync(dirname(join(root, link)), { recursive: true });
    symlinkSync(target, join(root, link));
  }
  return root;
}

/** SCSI VPD page 0x80: header, then the serial padded with blanks. */
function vpd80(serial: string): Buffer {
  const body = Buffer.from(`${serial}    `, 'latin1');
  const header = Buffer.from([0, 0x80, 0, body.length]);
  return Buffer.concat([header, body]);
}

const SATA = 'devices/pci0000:00/0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0';
const NVME = 'devices/pci0000:00/0000:00:1d.0/0000:3d:00.0/nvme/nvme0/nvme0n1';
const USB = 'devices/pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host6/target6:0:0/6:0:0:0';

/** Two Opal disks found on the system: SER1 (managed in the tests that follow) and naa.2. */
const TWO_OPAL_DISKS: InventoryItem[] = [
  {
    identity: 'naa.1',
    aliases: ['SER1'],
    kind: 'opal',
    device: '/dev/sda',
    source: 'system',
    opal: { supported: true },
  },
  { identity: 'naa.2', aliases: [], kind: 'opal', device: '/dev/sdb', source: 'system', opal: { supported: true } },
];

describe('takeInventory over a fake sysfs tree', () => {
  it('gives each disk its stable identity: WWN, else model+serial, else none', async () => {
    const root = fakeSysfs(
      {
        [`${SATA}/block/sda/size`]: '7814037168\n',
        [`${SATA}/wwid`]: 'naa.5000c500a1b2c3d4\n',
        [`${SATA}/model`]: 'ST4000NM0035-1V4\n',
        [`${SATA}/vpd_pg80`]: vpd80('ZC1ABCDE'),
        [`${NVME}/wwid`]: 'eui.0025388b91b2c3d4\n',
        [`${NVME}/device/serial`]: 'S4EWNF0M123456  \n',
        [`${NVME}/device/model`]: 'Samsung SSD 970 EVO Plus 1TB\n',
        [`${USB}/block/sdb/size`]: '0\n',
        [`${USB}/model`]: 'Ultra Fit\n',
        [`${USB}/vpd_pg80`]: vpd80('4C530001'),
        'devices/pci0000:00/0000:00:02.0/virtio1/block/vdb/serial': '',
        'devices/virtual/block/loop0/size': '0\n',
        'devices/virtual/block/zram0/size': '0\n',
      },
      {
        'block/sda': `../${SATA}/block/sda`,
        [`${SATA}/block/sda/device`]: '../..',
        'block/nvme0n1': `../${NVME}`,
        'block/sdb': `../${USB}/block/sdb`,
        [`${USB}/block/sdb/device`]: '../..',
        'block/vdb': '../devices/pci0000:00/0000:00:02.0/virtio1/block/vdb',
        'block/loop0': '../devices/virtual/block/loop0',
        'block/zram0': '../devices/virtual/block/zram0',
      },
    );
    const probed: string[] = [];
    const ports: InventoryPorts = {
      // systeminformation also lists a disk sysfs does not have here (and sizes).
      listDisks: async () => [
        { name: 'sda', sizeBytes: 4000787030016 },
        { name: 'sdc', model: 'WDC WD40EFRX', serial: 'WD-WCC7K0000001' },
        { name: 'zram0' },
      ],
      probeOpal: async (device) => {
        probed.push(device);
        if (device === '/dev/sda') return { serial: 'ZC1ABCDE', opal: true, lockingEnabled: true, locked: true };
        throw Object.assign(new Error(`${device}: no TCG`), { code: 'DRIVE_NOT_OPAL' });
      },
      luksUuid: async () => {
        throw new Error('no volumes here');
      },
    };
    const items = await takeInventory({ drives: [], volumes: [] }, ports, { sysfsRoot: root });
    const byDevice = new Map(items.map((i) => [i.device, i]));
    expect([...byDevice.keys()]).toEqual(['/dev/nvme0n1', '/dev/sda', '/dev/sdb', '/dev/sdc', '/dev/vdb']);
    expect(byDevice.get('/dev/sda')).toMatchObject({
      identity: 'naa.5000c500a1b2c3d4',
      aliases: ['ZC1ABCDE'],
      serial: 'ZC1ABCDE',
      model: 'ST4000NM0035-1V4',
      transport: 'sata',
      sizeBytes: 4000787030016,
      opal: { supported: true, lockingEnabled: true, locked: true },
    });
    expect(byDevice.get('/dev/nvme0n1')).toMatchObject({
      identity: 'eui.0025388b91b2c3d4',
      serial: 'S4EWNF0M123456',
      transport: 'nvme',
      opal: { supported: false, reason: { code: 'DRIVE_NOT_OPAL' } },
    });
    expect(byDevice.get('/dev/sdb')).toMatchObject({ identity: 'Ultra Fit:4C530001', transport: 'usb' });
    expect(byDevice.get('/dev/sdc')).toMatchObject({ identity: 'WDC WD40EFRX:WD-WCC7K0000001' });
    expect(byDevice.get('/dev/vdb')).toMatchObject({ identity: null, transport: 'virtio' });
    expect(probed).not.toContain('/dev/loop0');
    expect(driveIdentity({ serial: 'X1' })).toEqual({ id: 'X1', aliases: [] });
  });

  it('joins managed records with the inventory: matched by identity or alias, absent ones kept', () => {
    const listing = driveListing(
      [
        ...TWO_OPAL_DISKS,
        { identity: null, aliases: [], kind: 'opal', device: '/dev/vda', source: 'system', opal: { supported: false } },
      ],
      [
        { id: 'SER1', kind: 'opal', device: '/dev/sdx', keyUid: 'k1', keyName: 'kmip-agent/a/SER1', state: 'unlocked' },
        { id: 'GONE', kind: 'opal', device: 'emu:/gone.img', keyUid: 'k2', keyName: 'kmip-agent/a/GONE' },
      ],
    );
    expect(listing.map((d) => [d.id, d.device, d.managed, d.present, d.keyUid ?? null])).toEqual([
      ['SER1', '/dev/sda', true, true, 'k1'],
      ['naa.2', '/dev/sdb', false, true, null],
      [null, '/dev/vda', false, true, null],
      ['GONE', 'emu:/gone.img', true, false, 'k2'],
    ]);
    expect(encryptionAtRestInfo(listing, 'direct')).toMatchObject({
      state: 'partial',
      unmanagedOpal: [{ id: 'naa.2' }],
      withoutOpal: 1,
    });
  });
});

describe('the API over the inventory', () => {
  const status = {
    ready: true,
    mode: 'normal',
    health: 'healthy',
    applianceId: 'a',
    keyMode: 'direct',
    faults: [],
    drives: [
      {
        id: 'SER1',
        kind: 'opal',
        device: '/dev/sda',
        keyUid: 'k1',
        keyName: 'kmip-agent/a/SER1',
        unlockAtBoot: true,
        state: 'unlocked',
        since: new Date(0),
        attempts: 1,
      },
    ],
  } as AgentStatus;
  const methods = agentMethods({
    status: () => status,
    unlockNow: async () => [],
    enrollDrives: async () => [],
    auditEvents: async () => [],
    inventory: async () => [...TWO_OPAL_DISKS],
  });
  const call = (name: string, params: Record<string, unknown> = {}) =>
    Promise.resolve(methods[name]!(params, {} as never)) as Promise<Record<string, unknown>>;

  it('drive list asks the running daemon, whose states are live', async () => {
    const a = new TestAppliance();
    cleanup.push(() => a.close());
    mkdirSync(a.dirs.runtime, { recursive: true });
    const api = new ApiServer({ socketPath: join(a.dirs.runtime, API_SOCKET_NAME), methods });
    await api.listen();
    try {
      // No configuration at all: the answer can only have come from the API.
      const run = await a.cliAsync(['drive', 'list']);
      expect(run.code).toBe(0);
      expect(run.json).toMatchObject({
        daemon: true,
        drives: [
          { id: 'SER1', managed: true, state: 'unlocked' },
          { id: 'naa.2', managed: false },
        ],
      });
    } finally {
      await api.close();
    }
  });

  it('ListDrives and GetDrive include unmanaged drives; GetEncryptionAtRestInfo names them', async () => {
    const listed = await call('ListDrives');
    expect(listed.drives).toMatchObject([{ id: 'SER1', state: 'unlocked' }]);
    expect(listed.inventory).toMatchObject([
      { id: 'SER1', device: '/dev/sda', managed: true, keyUid: 'k1', state: 'unlocked' },
      { id: 'naa.2', managed: false },
    ]);
    expect(await call('GetDrive', { id: 'naa.2' })).toMatchObject({
      managed: false,
      inventory: { device: '/dev/sdb' },
    });
    expect(await call('GetDrive', { id: 'SER1' })).toMatchObject({ keyUid: 'k1', managed: true });
    await expect(call('GetDrive', { id: 'nope' })).rejects.toMatchObject({ code: 'DRIVE_UNKNOWN' });
    expect(await call('GetEncryptionAtRestInfo')).toMatchObject({
      state: 'partial',
      keyMode: 'direct',
      managed: [{ id: 'SER1', state: 'unlocked' }],
      unmanagedOpal: [{ id: 'naa.2', device: '/dev/sdb' }],
    });
  });
});

describe('kmip-agent drive list', () => {
  it('lists this machine, emulated drives and LUKS2 volumes with what the agent knows', async () => {
    const a = new TestAppliance();
    cleanup.push(() => a.close());
    a.setup();
    const managed = await a.emulatedDrive('EMU-L1');
    const fresh = await a.emulatedDrive('EMU-L2');
    const [enrolled] = a.ok(['drive', 'enroll', managed]).enrolled as { keyUid: string }[];
    await powerCycleEmulatedDrive(managed.slice(4));
    const volume = join(a.work, 'list.luks');
    luksFormat(volume, randomBytes(32));
    const config = await loadConfig(a.dirs.config);
    await saveConfig(a.dirs.config, {
      ...config,
      drives: [...config.drives, { device: fresh, unlockAtBoot: true }],
      volumes: [{ device: volume, name: 'list', unlockAtBoot: true, keySocket: false }],
    });

    const { drives } = a.ok(['drive', 'list']) as {
      drives: {
        id: string | null;
        device: string;
        managed: boolean;
        keyUid?: string;
        state?: string;
        source: string;
        opal?: { supported: boolean; locked?: boolean; reason?: { code: string } };
      }[];
    };
    const byDevice = new Map(drives.map((d) => [d.device, d]));
    expect(byDevice.get(managed)).toMatchObject({
      id: 'EMU-L1',
      managed: true,
      keyUid: enrolled!.keyUid,
      state: 'locked',
      opal: { supported: true, locked: true },
    });
    expect(byDevice.get(fresh)).toMatchObject({ id: 'EMU-L2', managed: false, opal: { supported: true } });
    expect(byDevice.get(volume)).toMatchObject({ id: luksUuid(volume), managed: false, source: 'config' });
    // The machine's own disks are listed too; one without Opal says why instead of failing the command.
    const system = drives.filter((d) => d.source === 'system');
    for (const d of system) if (!d.opal?.supported) expect(d.opal?.reason?.code).toMatch(/^[A-Z_]+$/);
  });
});
