/**
 * Key rotation (src/agent/rotation.ts) on a TestAppliance: the run's PyKMIP server, emulated Opal drives,
 * LUKS2 images and the real CLI as separate processes. A rotation end to end in direct and envelope mode
 * (the drive unlocks after a power cycle with the new key, the old one is gone from the server); then the
 * crash tests: the CLI is killed (SIGKILL, through the test-only crash hook) at each journal step of an Opal
 * and a LUKS rotation, run again, and afterwards the drive unlocks (the volume opens) with a key that is on
 * the server and recorded, and no Active key of the appliance's group is left unrecorded.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig, saveConfig } from '../../src/agent/config.js';
import { CRASH_AT_ENV } from '../../src/agent/crash-hook.js';
import { unwrapKey } from '../../src/agent/envelope.js';
import { ROTATION_STEPS } from '../../src/agent/rotation.js';
import { acquireStateLock } from '../../src/agent/state-lock.js';
import { StateStore, type StateBody } from '../../src/agent/state.js';
import { luks, powerCycleEmulatedDrive } from '../../src/drives/index.js';
import { State } from '../../src/kmip/index.js';
import { luksFormat } from '../luks/images.js';
import { CLI, TestAppliance } from './appliance.js';

const appliances: TestAppliance[] = [];
afterEach(() => {
  for (const a of appliances.splice(0)) a.close();
});

async function appliance(keyMode: 'direct' | 'envelope' = 'direct'): Promise<TestAppliance> {
  const a = new TestAppliance();
  appliances.push(a);
  a.setup();
  if (keyMode === 'envelope') {
    const config = await loadConfig(a.dirs.config);
    await saveConfig(a.dirs.config, { ...config, keyMode });
  }
  return a;
}

async function stateOf(a: TestAppliance): Promise<StateBody> {
  return (await new StateStore({ dir: a.dirs.state }).load()).body;
}

async function stateAttribute(a: TestAppliance, uid: string): Promise<unknown> {
  const { attributes } = await a.provider().getAttributes(uid, ['State']);
  return attributes.find((x) => x.name === 'State')?.value;
}

type UnlockDoc = { drives: { id: string; state: string }[] };

/** The CLI run with the crash hook armed at `step`: it must die of SIGKILL there. */
function crashAt(a: TestAppliance, step: string, args: string[]): void {
  const d = a.dirs;
  const run = spawnSync(
    process.execPath,
    [CLI, ...args, '--json', '--config-dir', d.config, '--state-dir', d.state, '--runtime-dir', d.runtime],
    { env: { ...process.env, [CRASH_AT_ENV]: step }, timeout: 120_000 },
  );
  expect({ step, signal: run.signal }).toEqual({ step, signal: 'SIGKILL' });
}

/** Every Active key of the appliance's group is one the state records (none orphaned). */
async function expectNoUnrecordedActiveKey(a: TestAppliance): Promise<void> {
  const s = await stateOf(a);
  const recorded = new Set([...s.drives, ...s.volumes].map((r) => r.key.uid));
  if (s.masterKeyUid) recorded.add(s.masterKeyUid);
  const active = (await a.provider().locate({ objectGroup: `kmip-agent/${a.id}`, state: State.Active }))
    .uniqueIdentifiers;
  expect(active.filter((uid) => !recorded.has(uid))).toEqual([]);
}

/** Each test runs dozens of CLI processes; on a loaded two-core machine that takes a while. */
const ROTATION_TEST_TIMEOUT = { timeout: 300_000 };

describe('key rotation against PyKMIP, an emulated Opal drive and a LUKS2 image', ROTATION_TEST_TIMEOUT, () => {
  it.each(['direct', 'envelope'] as const)(
    '%s mode: both keys replaced, old ones destroyed, the drive unlocks with the new key after a power cycle',
    async (mode) => {
      const a = await appliance(mode);
      const device = await a.emulatedDrive(`EMU-R-${mode}`);
      a.ok(['drive', 'enroll', device]);
      const volumePath = join(a.work, 'rdata.luks');
      const passphrase = randomBytes(32);
      luksFormat(volumePath, passphrase);
      a.ok(['volume', 'enroll', volumePath, '--name', 'rdata', '--key-file', '-'], passphrase);
      const before = await stateOf(a);
      const drive = before.drives[0]!;
      const volume = before.volumes[0]!;

      const rotated = a.ok(['drive', 'rotate', drive.id]);
      expect(rotated).toMatchObject({
        id: drive.id,
        kind: 'opal',
        previousKeyUid: drive.key.uid,
        oldKeyDestroyed: true,
      });
      expect(rotated.keyName).toBe(drive.key.name);
      const vol = a.ok(['volume', 'rotate', volume.id]);
      expect(vol).toMatchObject({ id: volume.id, kind: 'luks', previousKeyUid: volume.key.uid, oldKeyDestroyed: true });

      const after = await stateOf(a);
      const newDrive = after.drives[0]!;
      const newVolume = after.volumes[0]!;
      expect(newDrive.key.uid).toBe(rotated.keyUid);
      expect(newVolume.key.uid).toBe(vol.keyUid);
      expect(newVolume.keyslot).toBe(vol.keyslot);
      if (mode === 'envelope') {
        // Recorded wrapped, like every key in envelope mode.
        expect(newDrive.key).toMatchObject({ masterKeyUid: after.masterKeyUid });
        const master = (await a.provider().get(after.masterKeyUid!)).value;
        expect(unwrapKey(master, Buffer.from(newDrive.key.wrapped!, 'hex'))).toEqual(
          (await a.provider().get(newDrive.key.uid)).value,
        );
      } else {
        expect(newDrive.key.wrapped).toBeUndefined();
      }
      for (const uid of [newDrive.key.uid, newVolume.key.uid]) expect(await stateAttribute(a, uid)).toBe(State.Active);
      // The old keys are gone from the server.
      for (const uid of [drive.key.uid, volume.key.uid]) await expect(a.provider().get(uid)).rejects.toThrow();
      // The volume opens with the new key only, in the slot recorded; the passphrase's slot is untouched.
      const newVolumeKey = (await a.provider().get(newVolume.key.uid)).value;
      expect((await luks.checkKey(volumePath, newVolumeKey)).slot).toBe(newVolume.keyslot);
      expect((await luks.checkKey(volumePath, passphrase)).slot).not.toBe(newVolume.keyslot);
      expect(after.jobs.filter((j) => j.kind.startsWith('rotate-')).map((j) => j.status)).toEqual(['done', 'done']);

      await powerCycleEmulatedDrive(device.slice(4));
      const booted = a.ok(['unlock']) as unknown as UnlockDoc;
      expect(booted.drives.find((x) => x.id === drive.id)?.state).toBe('unlocked');
      await expectNoUnrecordedActiveKey(a);
    },
  );

  it('refuses a drive or volume that is not managed before contacting anything', async () => {
    const a = await appliance();
    const r = a.cli(['drive', 'rotate', 'no-such-drive']);
    expect(r.code).not.toBe(0);
    expect(r.json.error).toMatchObject({ code: 'DRIVE_NOT_MANAGED' });
    expect(a.cli(['volume', 'rotate', 'no-such-volume']).json.error).toMatchObject({ code: 'VOLUME_NOT_MANAGED' });
    expect((await stateOf(a)).jobs).toEqual([]);
  });
});

const S = ROTATION_STEPS;
const OPAL_STEPS = [
  S.keyCreated,
  S.admin1Changing,
  S.admin1Changed,
  S.sidChanging,
  S.sidChanged,
  S.proven,
  S.recorded,
  S.activated,
  S.oldRevoked,
];
const LUKS_STEPS = [
  S.keyCreated,
  S.keyslotAdding,
  S.keyslotAdded,
  S.proven,
  S.recorded,
  S.activated,
  S.oldKeyslotRemoving,
  S.oldKeyslotRemoved,
  S.oldRevoked,
];

/** The drives the refused-key memory names (every key a drive refused is remembered there). */
function refusedDrives(a: TestAppliance): string[] {
  const path = join(a.dirs.state, 'refused-keys.json');
  if (!existsSync(path)) return [];
  return (JSON.parse(readFileSync(path, 'utf8')) as { refused: { drive: string }[] }).refused.map((r) => r.drive);
}

/**
 * A crash after the drive changed but before the journal said so: killed at the step that records the
 * change, which is then taken out of the journal (as if the process had died a moment earlier).
 */
async function dropLastStep(a: TestAppliance, kind: string): Promise<void> {
  const lock = await acquireStateLock(a.dirs.state, 'test');
  try {
    const store = new StateStore({ dir: a.dirs.state });
    await store.load();
    await store.update((s) => {
      s.jobs
        .filter((j) => j.kind === kind)
        .at(-1)!
        .steps.pop();
    });
  } finally {
    await lock.release();
  }
}

describe('a rotation killed at each journal step completes when run again (PyKMIP)', ROTATION_TEST_TIMEOUT, () => {
  it('a change made on the drive but not journaled (Admin1, SID, keyslot) is found on the rerun, no try wasted on a refused key', async () => {
    const a = await appliance();
    const device = await a.emulatedDrive('EMU-CRASH-U');
    a.ok(['drive', 'enroll', device]);
    const id = (await stateOf(a)).drives[0]!.id;
    for (const step of [S.admin1Changed, S.sidChanged]) {
      crashAt(a, step, ['drive', 'rotate', id]);
      await dropLastStep(a, 'rotate-drive');
      const rerun = a.ok(['drive', 'rotate', id]);
      expect({ step, resumed: rerun.resumed, destroyed: rerun.oldKeyDestroyed }).toEqual({
        step,
        resumed: true,
        destroyed: true,
      });
      // The new key settled it at once: the drive refused nothing.
      expect({ step, refused: refusedDrives(a) }).toEqual({ step, refused: [] });
      await powerCycleEmulatedDrive(device.slice(4));
      const booted = a.ok(['unlock']) as unknown as UnlockDoc;
      expect({ step, state: booted.drives.find((x) => x.id === id)?.state }).toEqual({ step, state: 'unlocked' });
    }
    const volumePath = join(a.work, 'u.luks');
    const passphrase = randomBytes(32);
    luksFormat(volumePath, passphrase);
    a.ok(['volume', 'enroll', volumePath, '--name', 'u', '--key-file', '-'], passphrase);
    const vid = (await stateOf(a)).volumes[0]!.id;
    crashAt(a, S.keyslotAdded, ['volume', 'rotate', vid]);
    await dropLastStep(a, 'rotate-volume');
    const rerun = a.ok(['volume', 'rotate', vid]);
    expect(rerun).toMatchObject({ resumed: true, oldKeyDestroyed: true });
    // The keyslot the crashed run added is the one used: no second one.
    expect((await luks.luksInfo(volumePath)).keyslots).toHaveLength(2);
    await expectNoUnrecordedActiveKey(a);
  });

  it(`Opal: ${OPAL_STEPS.join(', ')}`, async () => {
    const a = await appliance();
    const device = await a.emulatedDrive('EMU-CRASH-O');
    a.ok(['drive', 'enroll', device]);
    const id = (await stateOf(a)).drives[0]!.id;
    for (const step of OPAL_STEPS) {
      const before = (await stateOf(a)).drives[0]!.key.uid;
      crashAt(a, step, ['drive', 'rotate', id]);
      const job = (await stateOf(a)).jobs.filter((j) => j.kind === 'rotate-drive').at(-1)!;
      expect({ step, last: job.steps.at(-1)?.name, status: job.status }).toEqual({
        step,
        last: step,
        status: 'running',
      });
      const rerun = a.ok(['drive', 'rotate', id]);
      expect({ step, resumed: rerun.resumed, destroyed: rerun.oldKeyDestroyed }).toEqual({
        step,
        resumed: true,
        destroyed: true,
      });
      expect(rerun.previousKeyUid).toBe(before);
      const s = await stateOf(a);
      expect(s.drives[0]!.key.uid).toBe(rerun.keyUid);
      expect(s.jobs.filter((j) => j.kind === 'rotate-drive').at(-1)!.status).toBe('done');
      await expect(a.provider().get(before)).rejects.toThrow();
      await powerCycleEmulatedDrive(device.slice(4));
      const booted = a.ok(['unlock']) as unknown as UnlockDoc;
      expect({ step, state: booted.drives.find((x) => x.id === id)?.state }).toEqual({ step, state: 'unlocked' });
      await expectNoUnrecordedActiveKey(a);
    }
  });

  it(`LUKS: ${LUKS_STEPS.join(', ')}`, async () => {
    const a = await appliance();
    const volumePath = join(a.work, 'crash.luks');
    const passphrase = randomBytes(32);
    luksFormat(volumePath, passphrase);
    a.ok(['volume', 'enroll', volumePath, '--name', 'crash', '--key-file', '-'], passphrase);
    const id = (await stateOf(a)).volumes[0]!.id;
    for (const step of LUKS_STEPS) {
      const before = (await stateOf(a)).volumes[0]!;
      crashAt(a, step, ['volume', 'rotate', id]);
      const rerun = a.ok(['volume', 'rotate', id]);
      expect({ step, resumed: rerun.resumed, destroyed: rerun.oldKeyDestroyed }).toEqual({
        step,
        resumed: true,
        destroyed: true,
      });
      const after = (await stateOf(a)).volumes[0]!;
      expect(after.key.uid).toBe(rerun.keyUid);
      const key = (await a.provider().get(after.key.uid)).value;
      expect({ step, slot: (await luks.checkKey(volumePath, key)).slot }).toEqual({ step, slot: after.keyslot });
      // The old key opens nothing any more (its keyslot removed) and is gone from the server.
      await expect(a.provider().get(before.key.uid)).rejects.toThrow();
      const info = await luks.luksInfo(volumePath);
      // The passphrase's keyslot and the current key's: no stale keyslot left by a crash.
      expect({ step, slots: info.keyslots.length }).toEqual({ step, slots: 2 });
      await expectNoUnrecordedActiveKey(a);
    }
  });
});
