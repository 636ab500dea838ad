/**
 * What is attached: the machine's disks (as systeminformation lists them, enriched from sysfs with WWN,
 * serial, model and transport), the emulated drives and the LUKS2 volumes named in the configuration.
 * Each gets a stable identity, the one key names and state records use (driveIdentity: WWN, else
 * model+serial; an emulated drive: its serial; a LUKS2 volume: its header UUID). Opal support and lock state come from
 * Level 0 discovery where a backend reaches the drive; a disk without Opal (or out of reach) is a fact
 * reported on the entry, not an error. Drives are reached through ports daemon.ts builds.
 */
import { readdir, readFile, realpath } from 'node:fs/promises';
import { basename, join } from 'node:path';
import type { DriveIdentity } from '../drives/types.js';
import type { AgentConfig } from './config.js';

/** A disk as the system lists it (systeminformation's blockDevices/diskLayout, merged by daemon.ts). */
export interface SystemDisk {
  /** Kernel name: sda, nvme0n1. */
  name: string;
  model?: string;
  serial?: string;
  sizeBytes?: number;
}

/** What Level 0 discovery tells of a drive, as much as inventory needs. */
export interface OpalProbe {
  /** The serial the drive reports through its backend (an emulated drive's identity). */
  serial: string;
  /** An Opal or Enterprise SSC is present. */
  opal: boolean;
  lockingEnabled: boolean;
  locked: boolean;
}

export interface InventoryPorts {
  listDisks(): Promise<SystemDisk[]>;
  /** Discovery of `device`; throws (with a code) when no backend reaches it or it speaks no TCG. */
  probeOpal(device: string): Promise<OpalProbe>;
  /** The LUKS2 header's UUID. */
  luksUuid(device: string): Promise<string>;
}

export interface OpalFacts {
  supported: boolean;
  lockingEnabled?: boolean;
  locked?: boolean;
  /** Why support is unknown or absent (the backend's code), e.g. DRIVE_NOT_OPAL. */
  reason?: { code: string; message: string };
}

export interface InventoryItem {
  /** Stable identity; null when the device offers none (no WWN, no serial): it cannot be managed. */
  identity: string | null;
  /** Other names the device may be recorded under (its plain serial, for drives enrolled by serial). */
  aliases: string[];
  kind: 'opal' | 'luks';
  /** /dev/sdX, emu:/path or the LUKS device/image path. */
  device: string;
  /** `system`: found on the machine; `config`: named in config.json. */
  source: 'system' | 'config';
  wwn?: string;
  serial?: string;
  model?: string;
  transport?: string;
  sizeBytes?: number;
  opal?: OpalFacts;
  /** Why a configured entry could not be read (missing image, not LUKS, ...). */
  error?: { code: string; message: string };
}

export interface InventoryOptions {
  /** Root of the sysfs tree (a test's fake tree); default /sys. */
  sysfsRoot?: string;
  /** Probe system disks with Level 0 discovery (default true). */
  probeSystemDisks?: boolean;
}

/** Kernel block devices that are never drives the agent manages. */
const VIRTUAL_BLOCK = /^(loop|ram|zram|dm-|md|sr|nbd|fd)\d*/;

async function readText(path: string): Promise<string | undefined> {
  try {
    const text = (await readFile(path, 'latin1')).replace(/\0/g, '').trim();
    return text === '' ? undefined : text;
  } catch {
    return undefined;
  }
}

/** SCSI unit serial number VPD page (0x80): 4 header bytes, then the serial. */
async function vpdSerial(path: string): Promise<string | undefined> {
  try {
    const page = await readFile(path);
    if (page.length < 5 || page[1] !== 0x80) return undefined;
    const text = page
      .subarray(4, 4 + page.readUInt16BE(2))
      .toString('latin1')
      .trim();
    return text === '' ? undefined : text;
  } catch {
    return undefined;
  }
}

function transportOf(name: string, devicePath: string): string {
  if (name.startsWith('nvme')) return 'nvme';
  for (const [part, transport] of [
    ['/usb', 'usb'],
    ['/ata', 'sata'],
    ['/virtio', 'virtio'],
    ['/host', 'scsi'],
  ] as const)
    if (devicePath.includes(part)) return transport;
  return 'unknown';
}

/** What sysfs says about one block device. */
export async function sysfsFacts(
  sysfsRoot: string,
  name: string,
): Promise<{ wwn?: string; serial?: string; model?: string; transport: string }> {
  const block = join(sysfsRoot, 'block', name);
  const device = join(block, 'device');
  const wwn = (await readText(join(block, 'wwid'))) ?? (await readText(join(device, 'wwid')));
  const serial =
    (await readText(join(device, 'serial'))) ??
    (await readText(join(block, 'serial'))) ??
    (await vpdSerial(join(device, 'vpd_pg80')));
  const model = await readText(join(device, 'model'));
  const resolved = await realpath(block).catch(() => block);
  return {
    ...(wwn ? { wwn } : {}),
    ...(serial ? { serial } : {}),
    ...(model ? { model } : {}),
    transport: transportOf(name, resolved),
  };
}

/**
 * A drive's stable identity, the one function every part of the agent asks (inventory, enrollment,
 * adoption, unlocking, the refused-key memory, recovery): WWN, else model+serial, else the serial alone
 * (an emulated drive reports only a serial), else none (id ''). Aliases are the form drives were
 * recorded under before WWN came first: the plain serial, as sysfs and as the drive itself reports it.
 *
 * Records and key names made under an alias are not renamed: the key's KMIP name on the server
 * (kmip-agent/<applianceId>/<id>) carries that id and recovery finds the key by it, so rewriting the
 * local id would part state from server. Every lookup matches the identity or an alias instead.
 */
export function driveIdentity(facts: {
  wwn?: string | undefined;
  model?: string | undefined;
  serial?: string | undefined;
  /** The serial the drive reports through its backend (OpalDrive's former identity), if it differs. */
  reportedSerial?: string | undefined;
}): DriveIdentity {
  const serial = facts.serial?.trim() || facts.reportedSerial?.trim() || undefined;
  const id = facts.wwn?.trim() || (serial ? (facts.model ? `${facts.model}:${serial}` : serial) : '');
  const aliases = [serial, facts.reportedSerial?.trim()].filter((a): a is string => !!a && a !== id);
  return { id, aliases: [...new Set(aliases)] };
}

/**
 * OpalDriveOptions.identify: a drive's identity from sysfs (WWN, model, serial) plus the serial it
 * reports. Emulated drives have no sysfs entry: their serial is their identity.
 */
export function driveIdentifier(sysfsRoot = '/sys'): (spec: string, serial: string) => Promise<DriveIdentity> {
  return async (spec, serial) => {
    if (spec.startsWith('emu:')) return driveIdentity({ serial });
    const name = basename(await realpath(spec).catch(() => spec));
    return driveIdentity({ ...(await sysfsFacts(sysfsRoot, name)), reportedSerial: serial });
  };
}

/** True when a record's id is this drive's identity or one of its older forms. */
export const isSameDrive = (who: DriveIdentity, recordId: string): boolean =>
  who.id !== '' && (recordId === who.id || who.aliases.includes(recordId));

function errorOf(error: unknown): { code: string; message: string } {
  const e = error as { code?: unknown; message?: unknown };
  return { code: typeof e?.code === 'string' ? e.code : 'INTERNAL', message: String(e?.message ?? error) };
}

async function opalFacts(ports: InventoryPorts, device: string): Promise<{ facts: OpalFacts; serial?: string }> {
  try {
    const probe = await ports.probeOpal(device);
    return {
      facts: probe.opal
        ? { supported: true, lockingEnabled: probe.lockingEnabled, locked: probe.locked }
        : { supported: false, reason: { code: 'DRIVE_NOT_OPAL', message: 'no Opal or Enterprise SSC in discovery' } },
      serial: probe.serial,
    };
  } catch (error) {
    return { facts: { supported: false, reason: errorOf(error) } };
  }
}

/** Every disk, emulated drive and LUKS2 volume the agent can see, in that order. */
export async function takeInventory(
  config: Pick<AgentConfig, 'drives' | 'volumes'>,
  ports: InventoryPorts,
  options: InventoryOptions = {},
): Promise<InventoryItem[]> {
  const sysfsRoot = options.sysfsRoot ?? '/sys';
  const items: InventoryItem[] = [];
  const listed = new Map((await ports.listDisks().catch(() => [])).map((d) => [d.name, d]));
  const inSysfs = await readdir(join(sysfsRoot, 'block')).catch(() => [] as string[]);
  const names = [...new Set([...listed.keys(), ...inSysfs])].filter((n) => !VIRTUAL_BLOCK.test(n)).sort();
  for (const name of names) {
    const disk = listed.get(name);
    const sys = await sysfsFacts(sysfsRoot, name);
    const facts = {
      ...sys,
      ...(sys.model || !disk?.model ? {} : { model: disk.model }),
      ...(sys.serial || !disk?.serial ? {} : { serial: disk.serial }),
    };
    const device = `/dev/${name}`;
    const opal = options.probeSystemDisks === false ? undefined : await opalFacts(ports, device);
    const serial = facts.serial ?? opal?.serial;
    const who = driveIdentity({ ...facts, reportedSerial: opal?.serial });
    items.push({
      identity: who.id || null,
      aliases: who.aliases,
      kind: 'opal',
      device,
      source: 'system',
      ...facts,
      ...(serial ? { serial } : {}),
      ...(disk?.sizeBytes ? { sizeBytes: disk.sizeBytes } : {}),
      ...(opal ? { opal: opal.facts } : {}),
    });
  }
  for (const entry of config.drives) {
    if (!entry.device.startsWith('emu:')) continue;
    const { facts, serial } = await opalFacts(ports, entry.device);
    const who = driveIdentity({ serial });
    items.push({
      identity: who.id || null,
      aliases: who.aliases,
      kind: 'opal',
      device: entry.device,
      source: 'config',
      transport: 'emulated',
      ...(serial ? { serial } : {}),
      opal: facts,
      ...(facts.reason && !serial ? { error: facts.reason } : {}),
    });
  }
  for (const entry of config.volumes) {
    try {
      const uuid = await ports.luksUuid(entry.device);
      items.push({ identity: uuid, aliases: [], kind: 'luks', device: entry.device, source: 'config' });
    } catch (error) {
      items.push({
        identity: null,
        aliases: [],
        kind: 'luks',
        device: entry.device,
        source: 'config',
        error: errorOf(error),
      });
    }
  }
  return items;
}

/** What the agent knows of a managed drive or volume (the agent's TargetStatus, or the state's record). */
export interface ManagedView {
  id: string;
  kind: 'opal' | 'luks';
  device: string;
  keyUid: string;
  keyName: string;
  state?: string;
}

/** One line of `drive list` / ListDrives: an inventory item with what the agent knows of it. */
export interface DriveListing extends Omit<InventoryItem, 'identity'> {
  id: string | null;
  managed: boolean;
  keyUid?: string;
  keyName?: string;
  state?: string;
  /** A managed drive or volume the inventory did not see (unplugged, image gone). */
  present: boolean;
}

/** Joins the inventory with the managed records: every item once, plus managed ones not seen. */
export function driveListing(items: InventoryItem[], managed: ManagedView[]): DriveListing[] {
  const left = new Map(managed.map((m) => [m.id, m]));
  const listing: DriveListing[] = items.map(({ identity, ...item }) => {
    const ids = identity === null ? [] : [identity, ...item.aliases];
    // A drive that could not be asked who it is (busy, gone) is still the one recorded at its device.
    const m =
      ids.map((id) => left.get(id)).find((x) => x !== undefined) ??
      (identity === null ? [...left.values()].find((x) => x.device === item.device) : undefined);
    if (!m) return { ...item, id: identity, managed: false, present: true };
    left.delete(m.id);
    return {
      ...item,
      id: m.id,
      managed: true,
      present: true,
      keyUid: m.keyUid,
      keyName: m.keyName,
      ...(m.state ? { state: m.state } : {}),
    };
  });
  for (const m of left.values()) {
    listing.push({
      id: m.id,
      aliases: [],
      kind: m.kind,
      device: m.device,
      source: 'config',
      managed: true,
      present: false,
      keyUid: m.keyUid,
      keyName: m.keyName,
      ...(m.state ? { state: m.state } : {}),
    });
  }
  return listing;
}

/** GetEncryptionAtRestInfo: is encryption at rest on, and for which drives and volumes. */
export function encryptionAtRestInfo(listing: DriveListing[], keyMode: string) {
  const managed = listing.filter((d) => d.managed);
  const unmanagedOpal = listing.filter((d) => !d.managed && d.kind === 'opal' && d.opal?.supported === true);
  return {
    state: managed.length === 0 ? 'disabled' : unmanagedOpal.length === 0 ? 'enabled' : 'partial',
    keyMode,
    managed: managed.map((d) => ({ id: d.id, kind: d.kind, device: d.device, keyUid: d.keyUid, state: d.state })),
    unmanagedOpal: unmanagedOpal.map((d) => ({ id: d.id, device: d.device })),
    withoutOpal: listing.filter((d) => d.kind === 'opal' && d.opal?.supported !== true && !d.managed).length,
  };
}
