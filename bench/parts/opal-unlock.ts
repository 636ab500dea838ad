/**
 * Full Opal unlock flows per second on an emulated drive, through the public OpalDrive API:
 * StartSession (authenticating Admin1), Set ReadLocked/WriteLocked on a range, CloseSession.
 * Baselines measured in the same run: a bare Level 0 discovery round trip, and an authenticated
 * session opened and closed without the Set.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BenchOptions, BenchReport } from '../run.js';
import { OpalDrive } from '../../src/drives/opal.js';
import { loadAddon } from '../../src/native/addon.js';
import { ADMIN1 } from '../../src/drives/types.js';

interface EmulatorNative {
  create(path: string, sizeMiB: number, serial: string): Promise<{ psid: string }>;
}

let SECONDS = 1.5;

async function rate(fn: () => Promise<unknown>): Promise<number> {
  for (let i = 0; i < 5; i++) await fn(); // warm up
  const start = process.hrtime.bigint();
  const limit = BigInt(Math.round(SECONDS * 1e9));
  let n = 0;
  while (process.hrtime.bigint() - start < limit) {
    await fn();
    n++;
  }
  return n / (Number(process.hrtime.bigint() - start) / 1e9);
}

export async function run(options: BenchOptions): Promise<BenchReport> {
  SECONDS = options.quick ? 0.1 : 1.5;
  const emulator = loadAddon().emulator as EmulatorNative | undefined;
  if (!emulator) return { part: 'opal-unlock', lines: [], notes: ['skipped: this build has no emulated drive'] };
  const dir = mkdtempSync(join(tmpdir(), 'kmip-agent-bench-opal-'));
  const image = join(dir, 'drive.img');
  // The emulated drive's volatile key cache ("RAM") stays inside this run's directory.
  const ramDir = process.env.KMIP_AGENT_EMU_RAM_DIR;
  process.env.KMIP_AGENT_EMU_RAM_DIR = dir;
  const pin = Buffer.from('bench admin pin, 32 bytes long!!');
  try {
    await emulator.create(image, 16, 'BENCH-0001');
    const drive = await OpalDrive.open(`emu:${image}`);
    try {
      await drive.takeOwnership(pin);
      await drive.activate(pin);
      await drive.setupRange(pin, { range: 1, start: 0, length: 8192, readLockEnabled: true, writeLockEnabled: true });

      const discovery = await rate(() => drive.discover());
      const session = await rate(() => drive.verify(pin, ADMIN1));
      let locked = false;
      const unlock = await rate(async () => {
        // Alternate so every Set changes state, as a boot unlock would.
        await (locked ? drive.unlock(pin, { range: 1 }) : drive.lock(pin, { range: 1 }));
        locked = !locked;
      });
      const baseline = { name: 'Level 0 discovery round trip', value: discovery };
      return {
        part: 'opal-unlock',
        lines: [
          { name: 'authenticated session open+close', value: session, unit: 'ops/s', better: 'higher', baseline },
          {
            name: 'full unlock flow (StartSession+auth, Set RdLocked/WrLocked, Close)',
            value: unlock,
            unit: 'flows/s',
            better: 'higher',
            baseline: { name: 'authenticated session open+close', value: session },
          },
        ],
        notes: [
          'emulated drive: PIN checks run the emulator key derivation, which dominates the session cost',
          `each figure is measured for ${SECONDS}s after a short warm-up, one call at a time`,
        ],
      };
    } finally {
      await drive.close();
    }
  } finally {
    pin.fill(0);
    rmSync(dir, { recursive: true, force: true });
    if (ramDir === undefined) delete process.env.KMIP_AGENT_EMU_RAM_DIR;
    else process.env.KMIP_AGENT_EMU_RAM_DIR = ramDir;
  }
}
