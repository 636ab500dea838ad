/**
 * Field-engineer workflows against the real PyKMIP server, emulated Opal drives and LUKS2 images (key
 * checks only: no device-mapper here), through the real CLI as separate processes: `drive remove`,
 * `drive replace`, `drive readd`, `volume remove`, `audit keys`, their bad input (typed errors, nothing
 * done), and the crash tests: the CLI running the job is SIGKILLed at each named journal step (the
 * test-only crash hook: the environment variable names the step, and only the test addon obeys it), then the
 * command is run again; afterwards every drive unlocks with a recorded key that is on the server and
 * `audit keys` finds nothing orphaned.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/agent/config.js';
import { CRASH_AT_ENV } from '../../src/agent/crash-hook.js';
import { productionAddonPath } from '../support/addon.js';
import { decodeState } from '../../src/agent/state.js';
import {
  emulatedDriveInfo,
  emulatedImagePath,
  readEmulatedDrive,
  writeEmulatedDrive,
} from '../../src/drives/emulator.js';
import { OpalDrive, powerCycleEmulatedDrive, SID } from '../../src/drives/index.js';
import { checkKey, luksInfo } from '../../src/drives/luks.js';
import { hasResultReason, ResultReason, RevocationReasonCode } from '../../src/kmip/index.js';
import { luksFormat, makeImage } from '../luks/images.js';
import { CLI, appliancesForEachTest, TestAppliance, type CliResult } from './appliance.js';

const appliance = appliancesForEachTest();

/** The CLI with the crash hook armed for `step` (the variable names the step; the tests load the test addon). */
function crashAt(
  a: TestAppliance,
  step: string,
  args: string[],
): { signal: NodeJS.Signals | null; code: number | null } {
  const d = a.dirs;
  const run = spawnSync(
    process.execPath,
    [CLI, ...args, '--json', '--config-dir', d.config, '--state-dir', d.state, '--runtime-dir', d.runtime],
    { env: { ...process.env, [CRASH_AT_ENV]: step }, timeout: 120_000 },
  );
  return { signal: run.signal, code: run.status };
}

const state = (a: TestAppliance) => decodeState(readFileSync(a.statePath, 'utf8'), a.statePath).body;
const errorCode = (r: CliResult) => (r.json.error as { code?: string } | undefined)?.code;

/** The key's State on the server, or null when it is gone. */
async function serverState(a: TestAppliance, uid: string): Promise<number | null> {
  try {
    const { attributes } = await a.provider().getAttributes(uid, ['State']);
    return attributes.find((x) => x.name === 'State')?.value as number;
  } catch (error) {
    if (hasResultReason(error, ResultReason.ItemNotFound)) return null;
    throw error;
  }
}

/** Factory state: the Locking SP inactive and the SID PIN the MSID again. */
async function isFactoryFresh(device: string): Promise<boolean> {
  const drive = await OpalDrive.open(device);
  try {
    if ((await drive.status()).lockingEnabled) return false;
    const msid = await drive.readMsid();
    await drive.verify(msid, SID);
    return true;
  } catch {
    return false;
  } finally {
    await drive.close();
  }
}

/** Every drive power-cycled (locked), then `unlock`: each must come back with its recorded key. */
async function everyDriveUnlocks(a: TestAppliance): Promise<void> {
  for (const d of state(a).drives) await powerCycleEmulatedDrive(d.device.slice(4));
  const r = a.cli(['unlock']);
  expect(r.code, JSON.stringify(r.json)).toBe(0);
  for (const d of state(a).drives) expect(await serverState(a, d.key.uid)).not.toBeNull();
}

async function enrolled(a: TestAppliance, ...serials: string[]) {
  const devices = await Promise.all(serials.map((s) => a.emulatedDrive(s)));
  const list = a.ok(['drive', 'enroll', ...devices]).enrolled as { id: string; keyUid: string; device: string }[];
  return list;
}

describe('drive remove', () => {
  it('erases and reverts the drive, destroys its key, drops the record and config entry; audit keys is clean', async () => {
    const a = appliance();
    const [gone, kept] = await enrolled(a, 'EMU-F1', 'EMU-F2');
    // Data on the drive before: after the erase it must not read back.
    const goneImage = emulatedImagePath(gone!.device)!;
    const data = randomBytes(4 * 512);
    await writeEmulatedDrive(goneImage, 0, data);
    expect((await readEmulatedDrive(goneImage, 0, 4)).equals(data)).toBe(true);
    const r = a.ok(['drive', 'remove', gone!.id, '--yes']);
    expect(r).toMatchObject({ status: 'done', progress: { done: 5, total: 5 } });
    expect(r.result).toMatchObject({ id: gone!.id, key: { keyUid: gone!.keyUid, revoked: true, destroyed: true } });
    expect((r.steps as { name: string }[]).map((s) => s.name)).toEqual([
      'started',
      'drive-erased',
      'drive-reverted',
      'key-revoked',
      'key-destroyed',
      'record-removed',
    ]);
    expect((r.progressEvents as unknown[]).length).toBeGreaterThan(0);
    expect(await isFactoryFresh(gone!.device)).toBe(true);
    const after = await readEmulatedDrive(goneImage, 0, 4);
    expect(after).toHaveLength(data.length);
    expect(after.equals(data)).toBe(false);
    expect(await serverState(a, gone!.keyUid)).toBeNull();
    expect(state(a).drives.map((d) => d.id)).toEqual([kept!.id]);
    expect((await loadConfig(a.dirs.config)).drives.map((d) => d.device)).toEqual([kept!.device]);
    const audit = a.cli(['audit', 'keys']);
    expect(audit.code).toBe(0);
    expect(audit.json).toMatchObject({ clean: true, orphans: [], missing: [], recorded: 1 });
    await everyDriveUnlocks(a);
  });

  it('refuses without --yes and for an unknown id: typed errors, nothing done', async () => {
    const a = appliance();
    const [d] = await enrolled(a, 'EMU-F3');
    const before = readFileSync(a.statePath);
    const noYes = a.cli(['drive', 'remove', d!.id]);
    expect(noYes.code).toBe(2);
    expect(errorCode(noYes)).toBe('USAGE_CONFIRM_REQUIRED');
    const unknown = a.cli(['drive', 'remove', 'no-such-drive', '--yes']);
    expect(unknown.code).toBe(1);
    expect(errorCode(unknown)).toBe('DRIVE_UNKNOWN');
    expect(errorCode(a.cli(['drive', 'readd', 'no-such-drive']))).toBe('DRIVE_UNKNOWN');
    expect(errorCode(a.cli(['volume', 'remove', 'no-such-volume', '--yes']))).toBe('VOLUME_UNKNOWN');
    expect(errorCode(a.cli(['drive', 'replace', 'no-such-drive', d!.device]))).toBe('DRIVE_UNKNOWN');
    expect(readFileSync(a.statePath)).toEqual(before);
    expect(await serverState(a, d!.keyUid)).not.toBeNull();
    expect(await isFactoryFresh(d!.device)).toBe(false);
  });

  it('an unreachable drive: refused without --force (DRIVE_UNREACHABLE); forced, its key is destroyed and "not erased" recorded', async () => {
    const a = appliance();
    const [dead, kept] = await enrolled(a, 'EMU-F8', 'EMU-F9');
    // The drive is gone (its image removed, as a pulled or dead disk): nothing can erase it.
    rmSync(dead!.device.slice(4), { force: true });
    const before = readFileSync(a.statePath);
    const refused = a.cli(['drive', 'remove', dead!.id, '--yes']);
    expect(refused.code).toBe(1);
    expect(errorCode(refused)).toBe('DRIVE_UNREACHABLE');
    expect(readFileSync(a.statePath)).toEqual(before);
    expect(await serverState(a, dead!.keyUid)).not.toBeNull();

    const r = a.ok(['drive', 'remove', dead!.id, '--yes', '--force']);
    expect(r.result).toMatchObject({
      id: dead!.id,
      erased: false,
      notErasedReason: { code: 'DRIVE_UNREACHABLE' },
      key: { keyUid: dead!.keyUid, revoked: true, destroyed: true },
    });
    expect((r.steps as { name: string }[]).map((s) => s.name)).toEqual([
      'started',
      'drive-not-erased',
      'key-revoked',
      'key-destroyed',
      'record-removed',
    ]);
    expect(await serverState(a, dead!.keyUid)).toBeNull();
    expect(state(a).drives.map((d) => d.id)).toEqual([kept!.id]);
    // A reachable drive with --force is erased as usual: --force only matters when the drive is gone.
    const normal = a.ok(['drive', 'remove', kept!.id, '--yes', '--force']);
    expect(normal.result).toMatchObject({ erased: true });
    expect(await isFactoryFresh(kept!.device)).toBe(true);
  });
});

describe('drive replace', () => {
  it('enrolls the new drive in the old role, proves it, then destroys the old key and drops the old record', async () => {
    const a = appliance();
    const [old, other] = await enrolled(a, 'EMU-P1', 'EMU-P2');
    const fresh = await a.emulatedDrive('EMU-P3');
    const r = a.ok(['drive', 'replace', old!.id, fresh]);
    expect(r.status).toBe('done');
    const result = r.result as { newId: string; newKeyUid: string; oldKey: object };
    expect(result.oldKey).toMatchObject({ keyUid: old!.keyUid, revoked: true, destroyed: true });
    const names = (r.steps as { name: string }[]).map((s) => s.name);
    expect(names.indexOf('new-proven')).toBeLessThan(names.indexOf('old-key-revoked'));
    expect(await serverState(a, old!.keyUid)).toBeNull();
    expect(
      state(a)
        .drives.map((d) => d.id)
        .sort(),
    ).toEqual([other!.id, result.newId].sort());
    expect(state(a).drives.find((d) => d.id === result.newId)).toMatchObject({
      device: fresh,
      key: { uid: result.newKeyUid },
      unlockAtBoot: true,
    });
    expect((await loadConfig(a.dirs.config)).drives.map((d) => d.device).sort()).toEqual([other!.device, fresh].sort());
    expect(a.cli(['audit', 'keys']).json).toMatchObject({ clean: true, recorded: 2 });
    await everyDriveUnlocks(a);
  });

  it('--keep-key leaves the old key on the server, and audit keys lists it as the one orphan', async () => {
    const a = appliance();
    const [old] = await enrolled(a, 'EMU-P4');
    const fresh = await a.emulatedDrive('EMU-P5');
    const r = a.ok(['drive', 'replace', old!.id, fresh, '--keep-key']);
    expect(r.result).toMatchObject({ oldKey: { keyUid: old!.keyUid, kept: true, destroyed: false } });
    expect(await serverState(a, old!.keyUid)).not.toBeNull();
    const audit = a.cli(['audit', 'keys']);
    expect(audit.code).toBe(1);
    expect(audit.json.orphans).toEqual([
      { uid: old!.keyUid, provider: 'default', name: `kmip-agent/${a.id}/${old!.id}`, state: 'Active' },
    ]);
  });

  it('refuses a managed drive and an owned drive as the new one: typed errors, nothing done', async () => {
    const a = appliance();
    const [old, other] = await enrolled(a, 'EMU-P6', 'EMU-P7');
    const owned = await a.emulatedDrive('EMU-P8');
    const drive = await OpalDrive.open(owned);
    await drive.takeOwnership(randomBytes(16)).finally(() => drive.close());
    const before = readFileSync(a.statePath);
    const managed = a.cli(['drive', 'replace', old!.id, other!.device]);
    expect(errorCode(managed)).toBe('DRIVE_ALREADY_ENROLLED');
    const ownedR = a.cli(['drive', 'replace', old!.id, owned]);
    expect(errorCode(ownedR)).toBe('DRIVE_ALREADY_OWNED');
    expect(errorCode(a.cli(['drive', 'replace', old!.id, old!.device]))).toBe('REPLACE_SAME_DRIVE');
    expect(JSON.parse(readFileSync(a.statePath, 'utf8'))).toEqual(JSON.parse(before.toString()));
    expect(a.cli(['audit', 'keys']).json).toMatchObject({ clean: true, serverObjects: 2 });
  });
});

describe('drive readd', () => {
  it('unlocks a locked drive with its key; refuses one whose key was destroyed, which audit keys reports', async () => {
    const a = appliance();
    const [d, lost] = await enrolled(a, 'EMU-A1', 'EMU-A2');
    await powerCycleEmulatedDrive(d!.device.slice(4));
    const r = a.ok(['drive', 'readd', d!.id]);
    expect(r).toMatchObject({ id: d!.id, state: 'unlocked', keyUid: d!.keyUid });
    expect((await emulatedDriveInfo(d!.device.slice(4))).ranges[0]).toMatchObject({ readLocked: false });

    await a.provider().revoke({ uniqueIdentifier: lost!.keyUid, reason: RevocationReasonCode.CessationOfOperation });
    await a.provider().destroy(lost!.keyUid);
    const refused = a.cli(['drive', 'readd', lost!.id]);
    expect(refused.code).toBe(1);
    expect(errorCode(refused)).toBe('READD_KEY_DESTROYED');
    expect((refused.json.error as { message: string }).message).toMatch(/recover.*enroll/s);
    const audit = a.cli(['audit', 'keys']);
    expect(audit.code).toBe(1);
    expect(audit.json.missing).toEqual([
      {
        kind: 'drive',
        id: lost!.id,
        device: lost!.device,
        provider: 'default',
        keyUid: lost!.keyUid,
        keyName: `kmip-agent/${a.id}/${lost!.id}`,
      },
    ]);
  });
});

/** A LUKS2 image with a passphrase keyslot, enrolled (a KMIP keyslot added). */
function volume(a: TestAppliance, name: string, keepPassphrase = true) {
  const path = join(a.work, `${name}.luks`);
  const passphrase = randomBytes(32);
  luksFormat(path, passphrase);
  const r = a.ok(['volume', 'enroll', path, '--name', name, '--key-file', '-'], passphrase);
  return {
    path,
    passphrase,
    id: r.id as string,
    keyUid: r.keyUid as string,
    keyslot: r.keyslot as number,
    keepPassphrase,
  };
}

describe('volume remove', () => {
  it('removes the KMIP keyslot, destroys the key, keeps the passphrase keyslot', async () => {
    const a = appliance();
    const v = volume(a, 'fdata');
    const r = a.ok(['volume', 'remove', v.id, '--yes']);
    expect(r.result).toMatchObject({ id: v.id, key: { destroyed: true } });
    expect((await luksInfo(v.path)).keyslots.map((k) => k.slot)).not.toContain(v.keyslot);
    expect((await checkKey(v.path, v.passphrase)).slot).toBeGreaterThanOrEqual(0);
    expect(await serverState(a, v.keyUid)).toBeNull();
    expect(state(a).volumes).toEqual([]);
    expect((await loadConfig(a.dirs.config)).volumes).toEqual([]);
    expect(a.cli(['audit', 'keys']).code).toBe(0);
  });

  it('refuses the only keyslot unless --destroy-data, saying what is lost', async () => {
    const a = appliance();
    const path = join(a.work, 'only.luks');
    makeImage(path);
    const f = a.ok(['volume', 'format', path, '--name', 'only', '--yes']);
    const before = readFileSync(a.statePath);
    const refused = a.cli(['volume', 'remove', f.id as string, '--yes']);
    expect(errorCode(refused)).toBe('VOLUME_LAST_KEYSLOT');
    expect((refused.json.error as { message: string }).message).toMatch(/ALL ITS DATA/);
    expect(readFileSync(a.statePath)).toEqual(before);
    expect(await serverState(a, f.keyUid as string)).not.toBeNull();
    const r = a.ok(['volume', 'remove', f.id as string, '--yes', '--destroy-data']);
    expect(r.result).toMatchObject({ key: { destroyed: true } });
    expect((await luksInfo(path)).keyslots).toEqual([]);
  });
});

describe('crash tests: SIGKILL at each journal step, then the command run again', () => {
  const removeSteps = ['drive-erased', 'drive-reverted', 'key-revoked', 'key-destroyed'];
  it.each(removeSteps)('drive remove killed after %s completes on the rerun', async (step) => {
    const a = appliance();
    const [gone] = await enrolled(a, 'EMU-C1', 'EMU-C2');
    const killed = crashAt(a, `remove-drive:${step}`, ['drive', 'remove', gone!.id, '--yes']);
    expect(killed.signal).toBe('SIGKILL');
    const job = state(a).jobs.find((j) => j.kind === 'remove-drive')!;
    expect(job.steps.at(-1)!.name).toBe(step);
    const r = a.ok(['drive', 'remove', gone!.id, '--yes']);
    expect(r.result).toMatchObject({ key: { destroyed: true } });
    expect((r.result as { resumedAfter: string[] }).resumedAfter).toContain(step);
    expect(await isFactoryFresh(gone!.device)).toBe(true);
    expect(await serverState(a, gone!.keyUid)).toBeNull();
    expect(a.cli(['audit', 'keys']).json).toMatchObject({ clean: true, recorded: 1 });
    await everyDriveUnlocks(a);
  });

  const replaceSteps = [
    'replace-started',
    'new-enrolled',
    'new-proven',
    'role-taken',
    'old-key-revoked',
    'old-key-destroyed',
  ];
  it.each(replaceSteps)('drive replace killed after %s completes on the rerun', async (step) => {
    const a = appliance();
    const [old] = await enrolled(a, 'EMU-C3', 'EMU-C4');
    const fresh = await a.emulatedDrive('EMU-C5');
    const killed = crashAt(a, `replace-drive:${step}`, ['drive', 'replace', old!.id, fresh]);
    expect(killed.signal).toBe('SIGKILL');
    const r = a.ok(['drive', 'replace', old!.id, fresh]);
    expect(r.status).toBe('done');
    expect(await serverState(a, old!.keyUid)).toBeNull();
    expect(state(a).drives.map((d) => d.device)).toContain(fresh);
    expect(state(a).drives.map((d) => d.id)).not.toContain(old!.id);
    expect(a.cli(['audit', 'keys']).json).toMatchObject({ clean: true, recorded: 2 });
    await everyDriveUnlocks(a);
  });

  it.each(['keyslot-removed', 'key-revoked'])('volume remove killed after %s completes on the rerun', async (step) => {
    const a = appliance();
    const v = volume(a, 'cdata');
    expect(crashAt(a, `remove-volume:${step}`, ['volume', 'remove', v.id, '--yes']).signal).toBe('SIGKILL');
    a.ok(['volume', 'remove', v.id, '--yes']);
    expect(await serverState(a, v.keyUid)).toBeNull();
    expect((await checkKey(v.path, v.passphrase)).slot).toBeGreaterThanOrEqual(0);
    expect(a.cli(['audit', 'keys']).json).toMatchObject({ clean: true, recorded: 0 });
  });

  it('the hook is inert with the shipped addon, whatever the environment says', async () => {
    const a = appliance();
    const [gone] = await enrolled(a, 'EMU-C6');
    const d = a.dirs;
    const run = spawnSync(
      process.execPath,
      [
        CLI,
        'drive',
        'remove',
        gone!.id,
        '--yes',
        '--json',
        '--config-dir',
        d.config,
        '--state-dir',
        d.state,
        '--runtime-dir',
        d.runtime,
      ],
      {
        env: { ...process.env, KMIP_AGENT_ADDON: productionAddonPath(), [CRASH_AT_ENV]: 'remove-drive:drive-erased' },
        timeout: 120_000,
      },
    );
    expect(run.signal).toBeNull();
    expect(run.status).toBe(0);
    expect(state(a).drives).toEqual([]);
  });
});
