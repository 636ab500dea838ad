/**
 * The drives layer's default refused-PIN memory: this process only, as keyed HMACs under a random
 * per-process key (never the PINs). The agent replaces it with one that lasts across processes and
 * restarts (src/agent/refused-keys.ts); library users get this one.
 */
import { createHmac, randomBytes } from 'node:crypto';
import type { PinDerivation, RefusedKeyMemory } from './types.js';

export class ProcessRefusedKeyMemory implements RefusedKeyMemory {
  private readonly key = randomBytes(32);
  /** Per drive identity: fingerprint -> authority (kept to forget one authority's refusals). */
  private readonly refused = new Map<string, Map<string, string>>();

  isRefused(drive: string, authority: string, derivation: PinDerivation, pin: Uint8Array): boolean {
    return this.refused.get(drive)?.has(this.fingerprint(authority, derivation, pin)) ?? false;
  }

  remember(drive: string, authority: string, derivation: PinDerivation, pin: Uint8Array): void {
    let entries = this.refused.get(drive);
    if (!entries) this.refused.set(drive, (entries = new Map()));
    entries.set(this.fingerprint(authority, derivation, pin), authority);
  }

  forget(drive: string, which?: { authority: string; pin?: { derivation: PinDerivation; pin: Uint8Array } }): number {
    const entries = this.refused.get(drive);
    if (!entries) return 0;
    const before = entries.size;
    if (!which) entries.clear();
    else if (which.pin) entries.delete(this.fingerprint(which.authority, which.pin.derivation, which.pin.pin));
    else for (const [f, a] of entries) if (a === which.authority) entries.delete(f);
    return before - entries.size;
  }

  private fingerprint(authority: string, derivation: PinDerivation, pin: Uint8Array): string {
    return createHmac('sha256', this.key).update(`${authority}\0${derivation}\0`).update(pin).digest('hex');
  }
}

/** The memory every OpalDrive of this process shares unless it is given another. */
export const processRefusedKeyMemory = new ProcessRefusedKeyMemory();
