/**
 * The agent's refused-key memory: one for every process of the agent (the daemon's Opal unlocker and every
 * `kmip-agent drive` command), kept across restarts, so a key a drive refused is never sent to that drive's
 * authority again until an operator clears it (`kmip-agent drive forget-refusals`).
 *
 * Why a file of its own beside state.json: the daemon owns state.json (the state lock) for as long as it
 * runs, yet a field engineer's `drive unlock` must read and record refusals while it runs, and routing
 * through the API would leave the CLI unguarded whenever the daemon is down. refused-keys.json is replaced
 * whole (writeDurably: temp, fsync, rename, fsync dir), so readers need no lock; writers take
 * refused-keys.lock (flock) only for a read-modify-write of a few milliseconds, so two recordings never
 * lose one another. Every check reads the file again: what another process recorded a moment ago counts.
 *
 * An entry is HMAC-SHA256 under a salt kept in the file (made by its first writer) over drive identity,
 * authority, derivation and PIN: it recognises a PIN, cannot reveal it, and does not show that two drives
 * share one. A file that cannot be trusted fails closed (REFUSED_KEYS_CORRUPT: nothing is sent, nothing
 * overwritten). A refusal that cannot be written is still remembered by this process.
 * Limit: two processes authenticating the same drive at the same instant with the same wrong key may each
 * spend a try (checking and the drive's answer are not one step); drives take one session at a time.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { constants, promises as fs } from 'node:fs';
import { setTimeout as wait } from 'node:timers/promises';
import { join } from 'node:path';
import * as z from 'zod';
import { ProcessRefusedKeyMemory } from '../drives/refused-pins.js';
import type { PinDerivation, RefusedKeyMemory } from '../drives/types.js';
import { KmipAgentError } from '../errors.js';
import { addonModule } from '../native/addon.js';
import { writeDurably } from './durable-file.js';

export const REFUSED_KEYS_FILE = 'refused-keys.json';
export const REFUSED_KEYS_LOCK = 'refused-keys.lock';

const RefusedFileSchema = z.strictObject({
  schemaVersion: z.literal(1),
  /** HMAC salt of the fingerprints (hex). */
  salt: z.string().regex(/^[0-9a-f]{64}$/),
  refused: z.array(
    z.strictObject({
      /** Drive identity (its serial; never a device path). */
      drive: z.string().min(1),
      /** "Admin1", "User1", "SID", "PSID". */
      authority: z.string().min(1),
      derivation: z.enum(['none', 'sedutil']),
      fingerprint: z.string().regex(/^[0-9a-f]{64}$/),
      at: z.iso.datetime(),
    }),
  ),
});

export type RefusedKeysFile = z.infer<typeof RefusedFileSchema>;

interface FileLockNative {
  tryLock(fd: number): boolean;
  unlock(fd: number): void;
}

export interface RefusedKeyFileOptions {
  /** The agent's state directory. */
  dir: string;
  now?: () => Date;
  /** How long a writer waits for another process's short critical section (default 5 s). */
  lockWaitMs?: number;
  native?: FileLockNative;
}

type Which = { authority: string; pin?: { derivation: PinDerivation; pin: Uint8Array } };

export class RefusedKeyFile implements RefusedKeyMemory {
  readonly path: string;
  private readonly lockPath: string;
  private readonly now: () => Date;
  /** Refusals this process could not write: still never sent again from here. */
  private readonly unsaved = new ProcessRefusedKeyMemory();

  constructor(private readonly options: RefusedKeyFileOptions) {
    this.path = join(options.dir, REFUSED_KEYS_FILE);
    this.lockPath = join(options.dir, REFUSED_KEYS_LOCK);
    this.now = options.now ?? (() => new Date());
  }

  async isRefused(drive: string, authority: string, derivation: PinDerivation, pin: Uint8Array): Promise<boolean> {
    if (this.unsaved.isRefused(drive, authority, derivation, pin)) return true;
    const file = await this.read();
    if (!file) return false;
    const mark = Buffer.from(fingerprint(file.salt, drive, authority, derivation, pin), 'hex');
    return file.refused.some(
      (r) =>
        r.drive === drive &&
        r.authority === authority &&
        r.derivation === derivation &&
        timingSafeEqual(Buffer.from(r.fingerprint, 'hex'), mark),
    );
  }

  async remember(drive: string, authority: string, derivation: PinDerivation, pin: Uint8Array): Promise<void> {
    try {
      await this.change((file) => {
        const print = fingerprint(file.salt, drive, authority, derivation, pin);
        if (file.refused.some((r) => r.fingerprint === print)) return false;
        file.refused.push({ drive, authority, derivation, fingerprint: print, at: this.now().toISOString() });
        return true;
      });
    } catch (error) {
      this.unsaved.remember(drive, authority, derivation, pin);
      throw error;
    }
  }

  async forget(drive: string, which?: Which): Promise<number> {
    let forgotten = this.unsaved.forget(drive, which);
    await this.change((file) => {
      const print = which?.pin && fingerprint(file.salt, drive, which.authority, which.pin.derivation, which.pin.pin);
      const keep = file.refused.filter(
        (r) =>
          r.drive !== drive ||
          (which !== undefined && r.authority !== which.authority) ||
          (print !== undefined && r.fingerprint !== print),
      );
      const removed = file.refused.length - keep.length;
      forgotten += removed;
      file.refused = keep;
      return removed > 0;
    });
    return forgotten;
  }

  /** The file as stored (undefined when there is none); REFUSED_KEYS_CORRUPT when it cannot be trusted. */
  async read(): Promise<RefusedKeysFile | undefined> {
    let text: string;
    try {
      text = await fs.readFile(this.path, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new KmipAgentError(`cannot read ${this.path}: ${(error as Error).message}`, 'REFUSED_KEYS_UNREADABLE', {
        cause: error,
      });
    }
    let parsed;
    try {
      parsed = RefusedFileSchema.safeParse(JSON.parse(text));
    } catch {
      parsed = undefined;
    }
    if (!parsed?.success) {
      const where = parsed ? ` at ${parsed.error.issues[0]!.path.join('.') || 'top level'}` : '';
      throw new KmipAgentError(
        `${this.path} is not a valid refused-key memory${where}: no drive is sent a key until it is repaired or ` +
          'moved aside (then each key it held may cost one try again)',
        'REFUSED_KEYS_CORRUPT',
        { details: { path: this.path } },
      );
    }
    return parsed.data;
  }

  /** Read-modify-write under the writers' lock; `edit` returns whether anything changed. */
  private async change(edit: (file: RefusedKeysFile) => boolean): Promise<void> {
    await fs.mkdir(this.options.dir, { recursive: true, mode: 0o700 });
    await this.locked(async () => {
      const file = (await this.read()) ?? { schemaVersion: 1, salt: randomBytes(32).toString('hex'), refused: [] };
      if (!edit(file)) return;
      await writeDurably(this.path, JSON.stringify(file, null, 2) + '\n');
    });
  }

  private async locked(work: () => Promise<void>): Promise<void> {
    const native = this.options.native ?? addonModule<FileLockNative>('fileLock');
    const handle = await fs.open(this.lockPath, constants.O_RDWR | constants.O_CREAT, 0o600);
    try {
      // The holder keeps it for milliseconds; flock's blocking form would stall the event loop.
      const deadline = Date.now() + (this.options.lockWaitMs ?? 5_000);
      while (!native.tryLock(handle.fd)) {
        if (Date.now() >= deadline) {
          throw new KmipAgentError(
            `${this.lockPath} stayed locked by another kmip-agent process; the refused-key memory was not changed`,
            'REFUSED_KEYS_BUSY',
          );
        }
        await wait(10);
      }
      try {
        await work();
      } finally {
        native.unlock(handle.fd);
      }
    } finally {
      await handle.close();
    }
  }
}

function fingerprint(salt: string, drive: string, authority: string, derivation: string, pin: Uint8Array): string {
  return createHmac('sha256', Buffer.from(salt, 'hex'))
    .update(`${drive}\0${authority}\0${derivation}\0`)
    .update(pin)
    .digest('hex');
}
