/**
 * The agent's unlockers, one per kind of target, over narrow ports that daemon.ts builds from the drives
 * layer. The Opal unlocker owns lockout safety across processes: before a key goes to a drive it checks
 * the agent's refused-key memory (refused-keys.ts, shared with the CLI's drive commands; by drive identity
 * and authority, never by device path), and it records a refusal the drive reports, so no process of the
 * agent sends that key to that drive again. It also
 * checks that the device still is the recorded drive, so a key never goes to a drive that moved in.
 */
import { KmipAgentError, isKmipAgentError } from '../errors.js';
import type { RefusedKeyMemory } from '../drives/types.js';
import { isSameDrive } from './inventory.js';
import type { UnlockTarget, Unlocker, UnlockedState } from './unlock.js';

/** The authority the agent authenticates as to unlock a drive it enrolled. */
export const UNLOCK_AUTHORITY = 'Admin1';

/** An opened Opal drive, as much as unlocking needs. */
export interface OpalUnlockDrive {
  /** Stable identity (inventory's driveIdentity: WWN, else model+serial). */
  identity(): string;
  /** Older forms of it a record may carry (enrolled by plain serial). */
  aliases(): string[];
  unlock(pin: Buffer): Promise<void>;
  close(): Promise<void>;
}

export interface OpalPort {
  open(device: string): Promise<OpalUnlockDrive>;
}

/** A refusal the drives layer marks as such (authRefused with TCG_NOT_AUTHORIZED): the key itself was wrong. */
export function isKeyRefusal(error: unknown): boolean {
  const e = error as { authRefused?: unknown; code?: unknown } | null;
  return e !== null && typeof e === 'object' && e.authRefused === true && e.code === 'TCG_NOT_AUTHORIZED';
}

export class OpalUnlocker implements Unlocker {
  constructor(
    private readonly port: OpalPort,
    private readonly refused: RefusedKeyMemory,
  ) {}

  async unlock(target: UnlockTarget, key: Buffer): Promise<UnlockedState> {
    const alreadyRefused = (cause?: unknown) =>
      new KmipAgentError(
        `${target.id}: the drive refused this key before; it is not sent again (lockout protection). ` +
          'Check the key on the server, then clear the refusal with `kmip-agent drive forget-refusals`',
        'DRIVE_PIN_ALREADY_REFUSED',
        cause === undefined ? undefined : { cause },
      );
    // The agent sends keys as they are (no sedutil derivation).
    if (await this.refused.isRefused(target.id, UNLOCK_AUTHORITY, 'none', key)) throw alreadyRefused();
    const drive = await this.port.open(target.device);
    try {
      const identity = drive.identity();
      if (!isSameDrive({ id: identity, aliases: drive.aliases() }, target.id)) {
        throw new KmipAgentError(
          `${target.device} is now drive ${identity || '(no identity)'}, not ${target.id}: its key is not sent there`,
          'DRIVE_NOT_FOUND',
        );
      }
      try {
        await drive.unlock(key);
      } catch (error) {
        // The drive object checks the same memory (by its identity and aliases): it may have found it first.
        if ((error as { code?: unknown }).code === 'TCG_PIN_KNOWN_WRONG') throw alreadyRefused(error);
        if (isKeyRefusal(error)) {
          await this.refused.remember(target.id, UNLOCK_AUTHORITY, 'none', key);
          throw new KmipAgentError(
            `${target.id}: the drive refused its recorded key (KMIP object ${target.keyUid})`,
            'DRIVE_PIN_REFUSED',
            {
              cause: error,
            },
          );
        }
        throw error;
      }
      return 'unlocked';
    } finally {
      await drive.close();
    }
  }
}

/** LUKS2 activation, as much as unlocking needs. */
export interface LuksPort {
  /** Activates `device` as /dev/mapper/<name> with `key`; LUKS_DM_NOT_AVAILABLE without device-mapper. */
  activate(device: string, name: string, key: Buffer): Promise<void>;
  /** Checks `key` against the header without activating (no try is spent: LUKS has no try counter). */
  check(device: string, key: Buffer): Promise<void>;
  /** The kernel names of the devices under mapping `name`, or null when there is none. */
  mappingDevices(name: string): string[] | null;
  /** The kernel's name of `device` (`/dev/vdb` -> `vdb`). */
  kernelName(device: string): string;
}

export interface VolumeSettings {
  /** device-mapper name per volume id. */
  nameOf(target: UnlockTarget): string;
  /** The volume's key is served on the crypttab key socket instead of activated here. */
  servedBySocket(target: UnlockTarget): boolean;
}

export class LuksUnlocker implements Unlocker {
  constructor(
    private readonly port: LuksPort,
    private readonly settings: VolumeSettings,
  ) {}

  async unlock(target: UnlockTarget, key: Buffer): Promise<UnlockedState> {
    if (this.settings.servedBySocket(target)) {
      // The key is checked now so a wrong one shows at boot, not when systemd-cryptsetup asks.
      await this.port.check(target.device, key);
      return 'served';
    }
    const name = this.settings.nameOf(target);
    try {
      await this.port.activate(target.device, name, key);
    } catch (error) {
      if (!isKmipAgentError(error) || error.code !== 'LUKS_ALREADY_ACTIVE') throw error;
      // A restarted daemon (Restart=on-failure, `systemctl restart`) meets the mappings it made before:
      // kept when the mapping is of this very device and the key still opens its header.
      const under = this.port.mappingDevices(name);
      const own = this.port.kernelName(target.device);
      if (under === null || under.length !== 1 || under[0] !== own)
        throw new KmipAgentError(
          `/dev/mapper/${name} is already active on ${under?.join(', ') || 'another device'}, not on ${target.device}: ` +
            `close it (cryptsetup close ${name}) or give the volume another name`,
          'LUKS_MAPPING_CONFLICT',
          { cause: error },
        );
      await this.port.check(target.device, key);
    }
    return 'unlocked';
  }
}
