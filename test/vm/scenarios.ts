/**
 * The checks each VM boot step reports, by name: the guest (test/vm/guest/main.ts) runs them and the
 * host (test/vm/*.test.ts) turns each into one vitest test, so a check the guest never reported fails.
 */
export const STEP_CHECKS = {
  /** First boot: PyKMIP on the guest's loopback, setup, LUKS2 enrollment, activation by the daemon. */
  'luks-first': [
    'node and the addon run from the read-only 9p checkout',
    'PyKMIP serves on the guest loopback with a throwaway PKI',
    'kmip-agent setup saves the key server after a connection test',
    'volume enroll adds a KMIP keyslot to two LUKS2 disks (one for the key socket)',
    'the shipped unit starts the daemon and it reaches READY',
    'the daemon activates the LUKS2 volume through libcryptsetup: /dev/mapper exists, cryptsetup status agrees',
    'a filesystem on the activated volume mounts and its data reads back',
    'the next boot is prepared: crypttab names the key socket, fstab mounts both volumes',
  ],
  /** Second boot: systemd opens the volumes from crypttab with the agent's key socket, then mounts them. */
  'luks-second': [
    'the daemon reached READY at boot',
    'systemd-cryptsetup opened the crypttab volume with a key from the agent socket',
    'the key socket hand-out is in the journal',
    'the crypttab volume was open before its mount unit, and its data reads back',
    'the daemon-activated volume is mounted at boot with its data',
  ],
  /** The emulated Opal drive behind the real SCSI stack (TCMU + tcm_loop), through sed-opal and SG_IO. */
  tcmu: [
    'the TCMU handler serves an emulated Opal drive as a SCSI disk through tcm_loop',
    'sd sees it: INQUIRY, VPD pages, READ CAPACITY(16), and SECURITY PROTOCOL IN/OUT reported as supported',
    'drive discover picks kernel sed-opal where sd enabled it for the disk, else SG_IO, and says why',
    'drive enroll takes the disk through the chosen backend and enables locking',
    'after a power cycle, reads of the locked disk are refused with DATA PROTECT sense',
    'the daemon unlocks it at start (kernel backend: IOC_OPAL_SAVE accepted) and data reads back',
    'after a power cycle, --backend passthrough unlocks it over SG_IO and the data reads back',
    'a malformed CDB gets ILLEGAL REQUEST and the handler keeps serving',
  ],
  /** End of boot 1 (full run): the next boots are whole appliance boots (test/vm/guest/appliance.ts). */
  'appliance-prepare': [
    'the next boot is an appliance boot: a unit serves the emulated drive before the agent, power-cycled as at power-on',
  ],
  /** Boot 2, after luks-second: the shipped unit at boot with the drive and both volumes; prepares boot 3. */
  appliance: [
    'the drive unit served the emulated Opal drive before the agent started, power-cycled and locked as at power-on',
    'multi-user was reached with the drive unlocked and both LUKS volumes mounted',
    'kmip-agent status --json says so: ready, normal, healthy, no faults, every drive and volume unlocked or served',
    "the time from kernel start to the daemon's READY is reported",
    'the next boot holds the key server back 20 s, with a 5 s boot deadline',
  ],
  /** Boot 3: the key server starts 20 s late, after the agent's 5 s boot deadline. */
  'late-server': [
    'READY came at the boot deadline, degraded, before the key server was up (status --json at READY and the journal say so)',
    'once the key server arrived, the drive was unlocked and both volumes opened and mounted',
    'the key server fault was cleared: status --json is normal and healthy',
  ],
  /** Boot 3, after late-server: bad input against the running appliance. */
  'bad-input': [
    'a key socket request for a known volume under another name is refused, and nothing is opened',
    'a crypttab entry for a volume the agent does not know fails with the refusal in the journal, and nothing is opened',
    'a drive that disappears mid-unlock: a clear error, nothing unlocked, no try spent, unlocked once it is back',
  ],
} as const;

export type StepName = keyof typeof STEP_CHECKS;
export type CheckName<S extends StepName> = (typeof STEP_CHECKS)[S][number];
