/**
 * Rotation through a running daemon (its own PyKMIP, emulated drives, the real daemon and CLI processes):
 * a deep rekey of 16 drives as a job with progress (a second rekey refused while it runs, naming it), after
 * which every drive boots on its new key; and a daemon killed (SIGKILL, test-only crash hook) in the middle
 * of a RotateDriveKey job, whose restart completes the rotation before it unlocks anything.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ApiClient } from '../../src/api/client.js';
import { CRASH_AT_ENV } from '../../src/agent/crash-hook.js';
import type { JobView } from '../../src/agent/jobs.js';
import { ROTATION_STEPS } from '../../src/agent/rotation.js';
import { StateStore, type StateBody } from '../../src/agent/state.js';
import { State } from '../../src/kmip/index.js';
import { Appliance, cli, daemonSuite, exitOf, type StatusJson } from '../support/daemon-harness.js';
import { loadConfig, saveConfig } from '../../src/agent/config.js';
import { pykmipClientOptions } from '../support/pykmip.js';
import { FaultProxy } from '../support/fault-proxy.js';
import { KmipClient } from '../../src/kmip/index.js';

describe('rotation through the daemon (PyKMIP, emulated drives)', { timeout: 300_000 }, () => {
  const suite = daemonSuite('kmip-agent-rotation-e2e-');

  const stateOf = async (nas: Appliance): Promise<StateBody> =>
    (await new StateStore({ dir: nas.stateDir }).load()).body;

  async function waitJob(nas: Appliance, handle: string): Promise<JobView & { code: number }> {
    const run = await cli(['job', handle, '--wait', '--json', ...nas.dirArgs()]);
    return { ...(JSON.parse(run.stdout) as JobView), code: run.code };
  }

  async function activeUnrecorded(nas: Appliance): Promise<string[]> {
    const s = await stateOf(nas);
    const recorded = new Set(s.drives.map((d) => d.key.uid));
    const client = new KmipClient(pykmipClientOptions(suite.kmip()));
    try {
      const { uniqueIdentifiers } = await client.locate({
        objectGroup: `kmip-agent/${nas.applianceId}`,
        state: State.Active,
      });
      return uniqueIdentifiers.filter((u) => !recorded.has(u));
    } finally {
      await client.close();
    }
  }

  it('deep-rekeys 16 drives one by one with progress; a second rekey is refused; every drive boots on its new key', async () => {
    const nas = new Appliance('deep16', suite.root());
    await nas.setup(suite.kmip(), suite.kmip());
    await nas.createDrives(16);
    await nas.enroll();
    const before = new Map((await stateOf(nas)).drives.map((d) => [d.id, d.key.uid]));

    const daemon = nas.daemon(undefined);
    await daemon.waitForLog((l) => l.event === 'ready');
    const api = new ApiClient(join(nas.runtimeDir, 'api.sock'));
    await expect(api.call('RekeySoftwareEncryptionAtRestMasterKey', { deep: false })).rejects.toMatchObject({
      code: 'API_NOT_SUPPORTED',
    });
    const { asyncHandle } = await api.call<{ asyncHandle: string }>('RekeySoftwareEncryptionAtRestMasterKey', {
      deep: true,
    });
    // One rekey at a time: the lane refuses a second, naming the running job.
    await expect(api.call('RekeySoftwareEncryptionAtRestMasterKey', { deep: true })).rejects.toMatchObject({
      code: 'JOB_ALREADY_RUNNING',
      message: expect.stringContaining(asyncHandle) as unknown,
    });
    await expect(api.call('RotateDriveKey', { id: [...before.keys()][0] })).rejects.toMatchObject({
      code: 'JOB_ALREADY_RUNNING',
    });
    await expect(api.call('RotateDriveKey', { id: 'not-a-drive' })).rejects.toMatchObject({
      code: 'DRIVE_NOT_MANAGED',
    });
    const job = await waitJob(nas, asyncHandle);
    expect(job.status, JSON.stringify(job.error)).toBe('done');
    expect(job.code).toBe(0);
    expect(job.progress).toEqual({ done: 16, total: 16 });
    expect(job.steps.filter((s) => s.name === 'rotated')).toHaveLength(16);
    const result = job.result as { rotated: { id: string; keyUid: string; oldKeyDestroyed: boolean }[] };
    expect(result.rotated.map((r) => r.oldKeyDestroyed)).toEqual(Array(16).fill(true));

    const after = await stateOf(nas);
    for (const d of after.drives) expect(d.key.uid).not.toBe(before.get(d.id));
    // Never two drives at once: each rotation journal began after the previous one ended.
    const rotations = after.jobs.filter((j) => j.kind === 'rotate-drive');
    expect(rotations).toHaveLength(16);
    for (let i = 1; i < rotations.length; i++)
      expect(Date.parse(rotations[i]!.startedAt)).toBeGreaterThanOrEqual(Date.parse(rotations[i - 1]!.endedAt!));
    expect(await activeUnrecorded(nas)).toEqual([]);

    await daemon.stop();
    await nas.powerCycle();
    // A rotation policy from now on: status reports each drive's next due date, counted from its rotation.
    const config = await loadConfig(nas.configDir);
    await saveConfig(nas.configDir, { ...config, rotation: { ...config.rotation, everyDays: 365 } });
    const again = nas.daemon(undefined);
    await again.waitForLog((l) => l.event === 'ready');
    const status = await nas.status();
    expect(status.drives.map((d) => d.state)).toEqual(Array(16).fill('unlocked'));
    expect(status.drives.map((d) => d.keyId).sort()).toEqual(after.drives.map((d) => d.key.uid).sort());
    for (const d of status.drives as (StatusJson['drives'][number] & { nextRotation?: string })[]) {
      const made = Date.parse(after.drives.find((x) => x.id === d.id)!.key.createdAt!);
      const next = Date.parse(d.nextRotation!) - made - 365 * 86_400_000;
      expect(next).toBeGreaterThanOrEqual(0);
      expect(next).toBeLessThan(config.rotation.spreadHours * 3_600_000);
    }
    expect(status.faults.filter((f) => f.code.startsWith('Rotation'))).toEqual([]);
  });

  it.each([ROTATION_STEPS.admin1Changed, ROTATION_STEPS.proven, ROTATION_STEPS.activated])(
    'a daemon killed at %s: the restarted daemon completes the rotation, then the drive unlocks on the new key',
    async (step) => {
      const nas = new Appliance(`crash${step.length}`, suite.root());
      await nas.setup(suite.kmip(), suite.kmip());
      const [device] = await nas.createDrives(1);
      await nas.enroll();
      const id = nas.idOf(device!);
      const oldUid = (await stateOf(nas)).drives[0]!.key.uid;

      const doomed = nas.daemon(undefined, [], {}, { [CRASH_AT_ENV]: step });
      await doomed.waitForLog((l) => l.event === 'ready');
      const api = new ApiClient(join(nas.runtimeDir, 'api.sock'));
      await api.call('RotateDriveKey', { id });
      expect((await exitOf(doomed)).signal).toBe('SIGKILL');
      const crashed = (await stateOf(nas)).jobs.filter((j) => j.kind === 'rotate-drive').at(-1)!;
      expect(crashed.steps.at(-1)!.name).toBe(step);

      await nas.powerCycle();
      const daemon = nas.daemon(undefined);
      const rotated = await daemon.waitForLog((l) => l.event === 'rotate');
      expect(rotated).toMatchObject({ id, previousKeyUid: oldUid, resumed: true, oldKeyDestroyed: true });
      await daemon.waitForLog((l) => l.event === 'ready');
      const s = await stateOf(nas);
      expect(s.drives[0]!.key.uid).toBe(rotated.keyUid);
      expect(s.jobs.filter((j) => j.kind === 'rotate-drive').at(-1)!.status).toBe('done');
      const status = await nas.status();
      expect(status.drives[0]).toMatchObject({ id, state: 'unlocked', keyId: rotated.keyUid });
      expect(await activeUnrecorded(nas)).toEqual([]);
    },
  );

  it('a key server that drops mid-way fails the deep rekey with the reason journaled; the rerun resumes when it is back', async () => {
    const gate = new FaultProxy({ host: suite.kmip().host, port: suite.kmip().port });
    await gate.start();
    try {
      const nas = new Appliance('drop', suite.root());
      await nas.setup({ host: '127.0.0.1', port: gate.port }, suite.kmip());
      await nas.createDrives(4);
      await nas.enroll();
      const before = new Map((await stateOf(nas)).drives.map((d) => [d.id, d.key.uid]));
      const daemon = nas.daemon(undefined);
      await daemon.waitForLog((l) => l.event === 'ready');
      const api = new ApiClient(join(nas.runtimeDir, 'api.sock'));
      const { asyncHandle } = await api.call<{ asyncHandle: string }>('RekeySoftwareEncryptionAtRestMasterKey', {
        deep: true,
      });
      // The server goes away once the first drive is rotated.
      await daemon.waitForLog((l) => l.event === 'rotate');
      await gate.stop();
      const failed = await waitJob(nas, asyncHandle);
      expect(failed.status).toBe('failed');
      expect(failed.code).not.toBe(0);
      expect(failed.error?.code).toMatch(/KMIP|KEY/);
      const partial = failed.result as { rotated: { id: string }[] };
      expect(partial.rotated.length).toBeGreaterThanOrEqual(1);
      expect(partial.rotated.length).toBeLessThan(4);
      // The rotation that met the outage is journaled as failed, with the reason.
      const rotations = (await stateOf(nas)).jobs.filter((j) => j.kind === 'rotate-drive');
      expect(rotations.at(-1)).toMatchObject({ status: 'failed', error: { code: expect.stringMatching(/KMIP|KEY/) } });

      await gate.start();
      const rerun = await cli(['rekey', '--deep', '--wait', '--json', ...nas.dirArgs()]);
      const job = JSON.parse(rerun.stdout) as JobView;
      expect(job.status, JSON.stringify(job.error)).toBe('done');
      expect(rerun.code).toBe(0);
      expect(job.progress).toEqual({ done: 4, total: 4 });
      const result = job.result as { rotated: { id: string }[]; skipped: string[] };
      // What the failed job rotated is not rotated again; the rest is.
      expect(result.skipped.sort()).toEqual(partial.rotated.map((r) => r.id).sort());
      expect(result.rotated).toHaveLength(4 - partial.rotated.length);
      const after = await stateOf(nas);
      for (const d of after.drives) expect(d.key.uid).not.toBe(before.get(d.id));
      expect(await activeUnrecorded(nas)).toEqual([]);

      await daemon.stop();
      await nas.powerCycle();
      const again = nas.daemon(undefined);
      await again.waitForLog((l) => l.event === 'ready');
      expect((await nas.status()).drives.map((d) => d.state)).toEqual(Array(4).fill('unlocked'));
    } finally {
      await gate.stop();
    }
  });
});
