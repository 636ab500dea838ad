/**
 * The machine's disks as systeminformation lists them (lsblk and udev underneath), merged with its disk
 * layout for model and serial where the block list has none. Inventory adds sysfs and Opal discovery.
 */
import type { Systeminformation } from 'systeminformation';

export interface SystemDiskInfo {
  /** Kernel name: sda, nvme0n1. */
  name: string;
  model?: string;
  serial?: string;
  sizeBytes?: number;
}

export async function listSystemDisks(): Promise<SystemDiskInfo[]> {
  // Loaded here, on first use: the daemon imports this module but lists disks only for an inventory.
  const { default: si } = await import('systeminformation');
  const [blocks, layout] = await Promise.all([
    si.blockDevices(),
    si.diskLayout().catch((): Systeminformation.DiskLayoutData[] => []),
  ]);
  return blocks
    .filter((b) => b.type === 'disk')
    .map((b) => {
      const disk = layout.find((d) => d.device === b.device);
      const model = b.model || disk?.name;
      const serial = b.serial || disk?.serialNum;
      return { name: b.name, ...(model ? { model } : {}), ...(serial ? { serial } : {}), sizeBytes: b.size };
    });
}
