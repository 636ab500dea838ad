/**
 * `kmip-agent drive list`: every drive and volume this machine has, with what the agent knows of each
 * (managed or not, key, state). With a daemon running the answer is the daemon's (live states); without
 * one the inventory is taken here and a managed drive's state is what Level 0 discovery says (locked or
 * unlocked).
 */
import type { DriveListing } from '../../agent/inventory.js';
import { driveListing } from '../../agent/inventory.js';
import { openAgentRuntime } from '../../agent/daemon.js';
import { command, emit, textTable } from '../framework.js';
import { DIR_OPTIONS, dirsFrom, fromDaemon, quietLog } from './agent.js';

function lockState(d: DriveListing): string | undefined {
  if (d.kind !== 'opal' || d.opal?.supported !== true) return undefined;
  return d.opal.locked ? 'locked' : 'unlocked';
}

function listingTable(drives: DriveListing[], live: boolean): string {
  const rows = [
    ['ID', 'KIND', 'DEVICE', 'TRANSPORT', 'OPAL', 'MANAGED', 'STATE', 'KEY'],
    ...drives.map((d) => [
      d.id ?? '(no identity)',
      d.kind,
      d.device,
      d.transport ?? '',
      d.kind === 'luks' ? '-' : d.opal?.supported ? 'yes' : `no${d.opal?.reason ? ` (${d.opal.reason.code})` : ''}`,
      d.managed ? 'yes' : 'no',
      (d.present ? d.state : 'missing') ?? '',
      d.keyUid ?? '',
    ]),
  ];
  const head = live ? 'drives and volumes (states from the running daemon)' : 'drives and volumes (no daemon running)';
  return [head, textTable(rows)].join('\n');
}

export const driveListCommand = command({
  name: 'list',
  usage: '',
  summary: 'every drive and volume here: identity, Opal support, managed or not, key and state',
  description: `Lists the machine's disks (WWN, serial, model, transport from sysfs; Opal support and lock state
from Level 0 discovery where a backend reaches the drive), the emulated drives and LUKS2 volumes named in the
configuration, and managed ones that are not present. A disk without Opal is listed with the reason.`,
  options: { ...DIR_OPTIONS },
  async run({ values }, ctx) {
    const dirs = dirsFrom(values);
    const live = await fromDaemon<{ inventory: DriveListing[] }>(dirs, 'ListDrives');
    let drives = live?.inventory;
    if (!drives) {
      const runtime = await openAgentRuntime({ dirs, role: 'cli', log: await quietLog() });
      try {
        const items = await runtime.inventory();
        const managed = runtime.agent.status().drives.map((t) => ({ ...t, state: undefined }));
        drives = driveListing(items, managed).map((d) => {
          const state = d.managed && d.present ? lockState(d) : undefined;
          return state ? { ...d, state } : d;
        });
      } finally {
        await runtime.close();
      }
    }
    emit(ctx, { daemon: live !== undefined, drives }, listingTable(drives, live !== undefined));
  },
});
