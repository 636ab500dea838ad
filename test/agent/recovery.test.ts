/**
 * `kmip-agent recover` against the real PyKMIP server, emulated Opal drives and LUKS2 images made by
 * cryptsetup: a deleted state is rebuilt and the drives unlock again; a corrupt state file is kept as it
 * was; ambiguous names, missing and wrong keys are reported and not recorded, and a key a drive refused
 * is never tried on it again (counted on the drive's own TryLimit). The guard's decisions that a real
 * drive cannot show (tries read without a PIN, refusals remembered by an older state file) are checked
 * on recoverState itself with a recording verifier.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig, saveConfig } from '../../src/agent/config.js';
import { FaultRegistry } from '../../src/agent/faults.js';
import { ApiServer, API_SOCKET_NAME } from '../../src/api/server.js';
import type { InventoryItem } from '../../src/agent/inventory.js';
import type { FetchedKey } from '../../src/agent/key-source.js';
import {
  recoverState,
  syncRecoveryFault,
  type RecoveryKeys,
  type RecoveryReport,
  type RecoveryVerifier,
} from '../../src/agent/recovery.js';
import { RefusedKeyFile } from '../../src/agent/refused-keys.js';
import { acquireStateLock } from '../../src/agent/state-lock.js';
import { decodeState, StateStore } from '../../src/agent/state.js';
import { emulatedDriveInfo } from '../../src/drives/emulator.js';
import { ADMIN1, OpalDrive, powerCycleEmulatedDrive } from '../../src/drives/index.js';
import { FakeClock } from '../support/fake-clock.js';
import { luksFormat, luksUuid } from '../luks/images.js';
import { TestAppliance } from './appliance.js';

const appliances: TestAppliance[] = [];
const dirs: string[] = [];
afterEach(() => {
  appliances.splice(0).forEach((a) => a.close());
  dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true }));
});

function appliance(): TestAppliance {
  const a = new TestAppliance();
  appliances.push(a);
  a.setup();
  return a;
}

type Entry = RecoveryReport['entries'][number];
const byId = (report: Record<string, unknown>) =>
  new Map((report.entries as Entry[]).map((e) => [e.id ?? e.device, e]));

/** A LUKS2 image formatted with a random passphrase, enrolled into the appliance; returns path and UUID. */
function enrolledVolume(a: TestAppliance, name: string): { path: string; uuid: string; keyslot: number } {
  const path = join(a.work, `${name}.luks`);
  const passphrase = randomBytes(32);
  luksFormat(path, passphrase);
  const enrolled = a.ok(['volume', 'enroll', path, '--name', name, '--key-file', '-'], passphrase);
  return { path, uuid: luksUuid(path), keyslot: enrolled.keyslot as number };
}

describe('recover against PyKMIP, emulated drives and LUKS2 images', () => {
  it('rebuilds a deleted state: every key found by name and verified, then unlock works', async () => {
    const a = appliance();
    const devices = [await a.emulatedDrive('EMU-R1'), await a.emulatedDrive('EMU-R2')];
    const enrolled = a.ok(['drive', 'enroll', ...devices]).enrolled as { id: string; keyUid: string }[];
    const volume = enrolledVolume(a, 'rdata');
    for (const d of devices) await powerCycleEmulatedDrive(d.slice(4));
    // Deleted by hand: the previous generation is still there, and must survive the rebuild.
    const prev = readFileSync(`${a.statePath}.prev`);
    rmSync(a.statePath);

    const report = a.ok(['recover']);
    expect(readFileSync(report.previousKeptAt as string)).toEqual(prev);
    const entries = byId(report);
    for (const e of enrolled) expect(entries.get(e.id)).toMatchObject({ outcome: 'found', keyUids: [e.keyUid] });
    expect(entries.get(volume.uuid)).toMatchObject({ outcome: 'found', kind: 'luks', keyslot: volume.keyslot });
    expect(report.written).toBe(true);
    // Recovery verifies by authenticating only: the drives are still locked after it.
    expect((await emulatedDriveInfo(devices[0]!.slice(4))).ranges[0]).toMatchObject({ readLocked: true });

    const state = decodeState(readFileSync(a.statePath, 'utf8'), a.statePath).body;
    expect(state.drives.map((d) => [d.id, d.key.uid, d.device]).sort()).toEqual(
      enrolled.map((e, i) => [e.id, e.keyUid, devices[i]]).sort(),
    );
    expect(state.volumes).toMatchObject([{ id: volume.uuid, keyslot: volume.keyslot, device: volume.path }]);
    expect(state.jobs.at(-1)).toMatchObject({ kind: 'recover', status: 'done' });

    const unlocked = a.cli(['unlock']).json as { drives: { id: string; state: string }[] };
    const states = new Map(unlocked.drives.map((d) => [d.id, d.state]));
    for (const e of enrolled) expect(states.get(e.id)).toBe('unlocked');
    expect(['unlocked', 'not-supported']).toContain(states.get(volume.uuid));
    expect((await emulatedDriveInfo(devices[0]!.slice(4))).ranges[0]).toMatchObject({ readLocked: false });

    // A state that records drives is not missing: recover refuses without --yes, and keeps records with it.
    const again = a.cli(['recover']);
    expect(again.code).not.toBe(0);
    expect(again.json.error).toMatchObject({ code: 'RECOVER_STATE_PRESENT' });
    const kept = a.ok(['recover', '--yes']);
    expect([...byId(kept).values()].map((e) => e.outcome)).toEqual(['recorded', 'recorded', 'recorded']);
    expect(kept.written).toBe(false);
  });

  it('keeps a corrupt state file as it is, and the last good generation too', async () => {
    const a = appliance();
    const device = await a.emulatedDrive('EMU-C1');
    const [enrolled] = a.ok(['drive', 'enroll', device]).enrolled as { id: string; keyUid: string }[];
    const text = readFileSync(a.statePath, 'utf8');
    const prev = readFileSync(`${a.statePath}.prev`);
    const torn = text.slice(0, Math.floor(text.length / 2));
    writeFileSync(a.statePath, torn);

    const report = a.ok(['recover']);
    expect(byId(report).get(enrolled!.id)).toMatchObject({ outcome: 'found', keyUids: [enrolled!.keyUid] });
    const corrupt = report.corruptFiles as string[];
    expect(corrupt).toHaveLength(1);
    expect(readFileSync(corrupt[0]!, 'utf8')).toBe(torn);
    expect(readFileSync(report.previousKeptAt as string)).toEqual(prev);
    expect(decodeState(readFileSync(a.statePath, 'utf8'), a.statePath).body.drives).toMatchObject([
      { id: enrolled!.id, key: { uid: enrolled!.keyUid } },
    ]);
    // The recovering process saw the corruption and cleared it once the state was rebuilt.
    expect((report.faults as { code: string }[]).map((f) => f.code)).not.toContain('StateCorrupt');
  });

  it('reports ambiguous, missing and wrong keys without recording them; a refused key is not tried again', async () => {
    const a = appliance();
    const good = await a.emulatedDrive('EMU-A1');
    const twice = await a.emulatedDrive('EMU-A2');
    a.ok(['drive', 'enroll', good, twice]);
    const secondUid = await a.registerKey('EMU-A2', randomBytes(32));
    // A drive locked with a key nobody has any more (its key gone from the server), and a fresh one.
    const neverEnrolled = await a.emulatedDrive('EMU-A3');
    const lost = await OpalDrive.open(neverEnrolled);
    try {
      await lost.takeOwnership(Buffer.alloc(32, 1));
      await lost.activate(Buffer.alloc(32, 1));
    } finally {
      await lost.close();
    }
    const fresh = await a.emulatedDrive('EMU-A5');
    // A drive owned with a PIN of its own, whose name on the server holds another key, 3 of 5 tries spent.
    const foreign = await a.emulatedDrive('EMU-A4');
    const pin = randomBytes(32);
    const drive = await OpalDrive.open(foreign);
    try {
      await drive.takeOwnership(pin);
      await drive.activate(pin);
      for (let i = 0; i < 3; i++) await drive.verify(Buffer.from(`wrong-${i}`), ADMIN1).catch(() => undefined);
    } finally {
      await drive.close();
    }
    await a.registerKey('EMU-A4', randomBytes(32));
    const volumePath = join(a.work, 'wrong.luks');
    luksFormat(volumePath, randomBytes(32));
    const volumeUuid = luksUuid(volumePath);
    await a.registerKey(volumeUuid, randomBytes(32));
    const config = await loadConfig(a.dirs.config);
    await saveConfig(a.dirs.config, {
      ...config,
      drives: [
        ...config.drives,
        { device: neverEnrolled, unlockAtBoot: true },
        { device: foreign, unlockAtBoot: true },
        { device: fresh, unlockAtBoot: true },
      ],
      volumes: [...config.volumes, { device: volumePath, name: 'wrong', unlockAtBoot: true, keySocket: false }],
    });
    rmSync(a.statePath);
    rmSync(`${a.statePath}.prev`, { force: true });

    const first = a.cli(['recover']);
    expect(first.code).toBe(1);
    const entries = byId(first.json);
    expect(entries.get('EMU-A1')).toMatchObject({ outcome: 'found' });
    expect(entries.get('EMU-A2')).toMatchObject({ outcome: 'ambiguous' });
    expect(entries.get('EMU-A2')!.keyUids).toContain(secondUid);
    expect(entries.get('EMU-A3')).toMatchObject({ outcome: 'missing', keyUids: [] });
    expect(entries.get('EMU-A4')).toMatchObject({ outcome: 'rejected' });
    expect(entries.get('EMU-A5')).toMatchObject({ outcome: 'unmanaged', keyUids: [] });
    expect(entries.get(volumeUuid)).toMatchObject({ outcome: 'rejected', error: { code: 'LUKS_WRONG_KEY' } });
    const fault = (first.json.faults as { code: string; affects: string[] }[]).find((f) => f.code === 'StateRecovered');
    expect(fault?.affects.sort()).toEqual(['EMU-A2', 'EMU-A3', 'EMU-A4', volumeUuid].sort());
    // Any later agent process (here `status`, as the daemon would at start) raises it from the state.
    const status = a.ok(['status']) as { faults: { code: string; affects: string[] }[] };
    expect(status.faults.find((f) => f.code === 'StateRecovered')?.affects.sort()).toEqual(fault!.affects);
    const state = decodeState(readFileSync(a.statePath, 'utf8'), a.statePath).body;
    expect(state.drives.map((d) => d.id)).toEqual(['EMU-A1']);
    expect(state.volumes).toEqual([]);
    // The refusal is in the agent's one refused-key memory (refused-keys.json), not in state.json.
    const memory = JSON.parse(readFileSync(join(a.dirs.state, 'refused-keys.json'), 'utf8')) as {
      refused: { drive: string; authority: string }[];
    };
    expect(memory.refused).toMatchObject([{ drive: 'EMU-A4', authority: 'Admin1' }]);
    // 4 of 5 tries spent: one more would lock Admin1 out.
    expect((await emulatedDriveInfo(foreign.slice(4))).lockedOutAuthorities).not.toContain('Admin1');

    const second = a.cli(['recover', '--yes']);
    expect(byId(second.json).get('EMU-A4')).toMatchObject({ outcome: 'refused-before' });
    expect(byId(second.json).get('EMU-A1')).toMatchObject({ outcome: 'recorded' });
    expect((await emulatedDriveInfo(foreign.slice(4))).lockedOutAuthorities).not.toContain('Admin1');
    // The drive still takes its own PIN: nothing was spent on it by the second run.
    const check = await OpalDrive.open(foreign);
    try {
      await expect(check.verify(pin, ADMIN1)).resolves.toBeUndefined();
    } finally {
      await check.close();
    }
  });

  it('is refused while another process owns the state', async () => {
    const a = appliance();
    const before = existsSync(a.statePath) ? readFileSync(a.statePath, 'utf8') : undefined;
    const lock = await acquireStateLock(a.dirs.state, 'daemon');
    try {
      const run = a.cli(['recover']);
      expect(run.code).not.toBe(0);
      expect(run.json.error).toMatchObject({ code: 'STATE_LOCKED' });
    } finally {
      await lock.release();
    }
    expect(existsSync(a.statePath) ? readFileSync(a.statePath, 'utf8') : undefined).toBe(before);
  });

  it('is refused, saying what to do, while a daemon answers on the API socket', async () => {
    const a = appliance();
    mkdirSync(a.dirs.runtime, { recursive: true });
    let asked = 0;
    const api = new ApiServer({
      socketPath: join(a.dirs.runtime, API_SOCKET_NAME),
      methods: { GetStatus: () => ({ asked: ++asked }) },
    });
    await api.listen();
    try {
      // Run asynchronously: this process serves the API the CLI asks.
      const run = await a.cliAsync(['recover']);
      expect(run.code).not.toBe(0);
      expect(run.json.error).toMatchObject({ code: 'STATE_LOCKED', message: /stop it/ });
      expect(asked).toBe(1);
    } finally {
      await api.close();
    }
  });
});

// ------------------------------------------------------------------ the guard's decisions, recorded

/** A key server in memory: objects with names, fetches recorded, keys handed out kept to check zeroing. */
class TableKeys implements RecoveryKeys {
  readonly objects = new Map<string, { name: string; key: Buffer }>();
  readonly fetched: string[][] = [];
  readonly handedOut: Buffer[] = [];
  async findByGroup(): Promise<string[]> {
    return [...this.objects.keys()];
  }
  async namesOf(uids: string[]): Promise<Map<string, string[]>> {
    return new Map(uids.map((u) => [u, [this.objects.get(u)!.name]]));
  }
  async fetch(uids: string[]): Promise<Map<string, FetchedKey>> {
    this.fetched.push(uids);
    return new Map(
      uids.map((u) => {
        const key = Buffer.from(this.objects.get(u)!.key);
        this.handedOut.push(key);
        return [u, { ok: true, key }] as const;
      }),
    );
  }
}

class RecordingVerifier implements RecoveryVerifier {
  readonly verified: string[] = [];
  triesLeft: number | null = null;
  async luksCheck(): Promise<number> {
    return 1;
  }
  async opalTriesLeft(): Promise<number | null> {
    return this.triesLeft;
  }
  async opalVerify(device: string): Promise<void> {
    this.verified.push(device);
  }
}

const opalItem = (id: string): InventoryItem => ({
  identity: id,
  aliases: [],
  kind: 'opal',
  device: `emu:/x/${id}.img`,
  source: 'config',
  opal: { supported: true, lockingEnabled: true, locked: true },
});

async function guardSetup() {
  const dir = mkdtempSync(join(tmpdir(), 'kmip-agent-recovery-'));
  dirs.push(dir);
  const clock = new FakeClock();
  const state = new StateStore({ dir, now: () => clock.now() });
  await state.load();
  const keys = new TableKeys();
  const verifier = new RecordingVerifier();
  const refusedKeys = new RefusedKeyFile({ dir, now: () => clock.now() });
  const run = (inventory: InventoryItem[]) =>
    recoverState({
      applianceId: 'nas1',
      provider: 'default',
      inventory,
      keys,
      verifier,
      state,
      clock,
      triesReserve: 2,
      refusedKeys,
      jobId: 'recover-1',
    });
  return { dir, state, keys, verifier, refusedKeys, run };
}

describe('recoverState: what is never tried', () => {
  it('does not authenticate within the tries reserve', async () => {
    const t = await guardSetup();
    t.keys.objects.set('u1', { name: 'kmip-agent/nas1/D1', key: Buffer.alloc(32, 1) });
    t.verifier.triesLeft = 2;
    const report = await t.run([opalItem('D1')]);
    expect(report.entries[0]).toMatchObject({ outcome: 'lockout-risk', error: { code: 'DRIVE_LOCKOUT_RISK' } });
    expect(t.verifier.verified).toEqual([]);
    t.verifier.triesLeft = 3;
    expect((await t.run([opalItem('D1')])).entries[0]).toMatchObject({ outcome: 'found' });
    expect(t.verifier.verified).toEqual(['emu:/x/D1.img']);
    expect(t.keys.handedOut.every((k) => k.every((b) => b === 0))).toBe(true);
  });

  it('honours a refusal in the shared refused-key memory (which outlives a lost state) and tries nothing', async () => {
    const t = await guardSetup();
    const key = Buffer.alloc(32, 7);
    t.keys.objects.set('u1', { name: 'kmip-agent/nas1/D1', key });
    await t.refusedKeys.remember('D1', 'Admin1', 'none', key);
    const report = await t.run([opalItem('D1')]);
    expect(report.entries[0]).toMatchObject({ outcome: 'refused-before' });
    expect(t.verifier.verified).toEqual([]);
    expect(await t.refusedKeys.isRefused('D1', 'Admin1', 'none', key)).toBe(true);
  });

  it('tries no key of an ambiguous name and fetches none', async () => {
    const t = await guardSetup();
    t.keys.objects.set('u1', { name: 'kmip-agent/nas1/D1', key: Buffer.alloc(32, 1) });
    t.keys.objects.set('u2', { name: 'kmip-agent/nas1/D1', key: Buffer.alloc(32, 2) });
    t.keys.objects.set('u3', { name: 'kmip-agent/other/D9', key: Buffer.alloc(32, 3) });
    t.keys.objects.set('u4', { name: 'kmip-agent/nas1/GONE', key: Buffer.alloc(32, 4) });
    const report = await t.run([opalItem('D1')]);
    expect(report.entries[0]).toMatchObject({ outcome: 'ambiguous', keyUids: ['u1', 'u2'] });
    expect(t.keys.fetched).toEqual([]);
    expect(t.verifier.verified).toEqual([]);
    expect(report.unmatched).toEqual([{ uid: 'u4', name: 'kmip-agent/nas1/GONE' }]);
  });

  it('StateRecovered stays while something is unsettled and clears once it is recorded', async () => {
    const t = await guardSetup();
    t.keys.objects.set('u1', { name: 'kmip-agent/nas1/D1', key: Buffer.alloc(32, 1) });
    t.keys.objects.set('u2', { name: 'kmip-agent/nas1/D1', key: Buffer.alloc(32, 2) });
    await t.run([opalItem('D1'), opalItem('D2')]);
    const faults = new FaultRegistry();
    syncRecoveryFault(t.state.snapshot(), faults);
    expect(faults.list()).toMatchObject([{ code: 'StateRecovered', affects: ['D1', 'D2'] }]);
    t.keys.objects.delete('u2');
    t.keys.objects.set('u3', { name: 'kmip-agent/nas1/D2', key: Buffer.alloc(32, 3) });
    await t.run([opalItem('D1'), opalItem('D2')]);
    syncRecoveryFault(t.state.snapshot(), faults);
    expect(faults.has('StateRecovered')).toBe(false);
  });
});
