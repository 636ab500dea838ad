/**
 * The field workflows through the running daemon (API RemoveDrive/ReplaceDrive, GetAsyncResult with
 * progress, AuditKeys) against PyKMIP and emulated drives; and the daemon itself SIGKILLed by the crash
 * hook in the middle of a replace, restarted (the job found interrupted), the command run again: it
 * completes and every drive unlocks at the next boot with a key recorded and on the server.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ApiClient } from '../../src/api/client.js';
import { CRASH_AT_ENV } from '../../src/agent/crash-hook.js';
import type { JobView } from '../../src/agent/jobs.js';
import { Appliance, cli, daemonSuite, exitOf, readBlock, writeBlock } from '../support/daemon-harness.js';

describe('field workflows in the daemon', { timeout: 240_000 }, () => {
  const suite = daemonSuite('kmip-agent-field-e2e-');

  const json = <T>(run: { stdout: string }) => JSON.parse(run.stdout) as T;

  it('drive remove runs as a job in the daemon: progress in GetAsyncResult and --json, the data gone, audit clean', async () => {
    const nas = new Appliance('fld1', suite.root());
    await nas.setup(suite.kmip(), suite.kmip());
    const [gone, kept] = await nas.createDrives(2);
    await nas.enroll();
    const daemon = nas.daemon(undefined);
    await daemon.waitForLog((l) => l.event === 'ready');
    const payload = randomBytes(512);
    await writeBlock(gone!, payload);
    const api = new ApiClient(join(nas.runtimeDir, 'api.sock'));
    await expect(api.call('RemoveDrive', { id: nas.idOf(gone!) })).rejects.toMatchObject({
      code: 'API_CONFIRM_REQUIRED',
    });
    await expect(api.call('RemoveDrive', { id: 'nope', confirm: true })).rejects.toMatchObject({
      code: 'DRIVE_UNKNOWN',
    });

    const run = await cli(['drive', 'remove', nas.idOf(gone!), '--yes', '--json', ...nas.dirArgs()]);
    expect(run.code, run.stdout + run.stderr).toBe(0);
    const job = json<JobView & { progressEvents: { done: number; total: number }[] }>(run);
    expect(job.status).toBe('done');
    expect(job.progressEvents.at(-1)).toMatchObject({ done: 5, total: 5 });
    const again = await api.call<JobView>('GetAsyncResult', { asyncHandle: job.asyncHandle });
    expect(again.progress).toEqual({ done: 5, total: 5 });
    // Crypto-erased and reverted: unlocked with no key, and the block written before is gone.
    expect((await readBlock(gone!)).data).not.toEqual(payload);
    expect((await nas.status()).drives.map((d) => d.id)).toEqual([nas.idOf(kept!)]);
    const audit = await cli(['audit', 'keys', '--json', ...nas.dirArgs()]);
    expect(audit.code).toBe(0);
    expect(json<{ clean: boolean; recorded: number }>(audit)).toMatchObject({ clean: true, recorded: 1 });
  });

  it('the daemon SIGKILLed in the middle of a replace, restarted: the rerun completes, every drive unlocks', async () => {
    const nas = new Appliance('fld2', suite.root());
    await nas.setup(suite.kmip(), suite.kmip());
    const [old, other] = await nas.createDrives(2);
    await nas.enroll();
    const [fresh] = await nas.createDrives(1);
    const first = nas.daemon(undefined, [], {}, { [CRASH_AT_ENV]: 'replace-drive:new-proven' });
    await first.waitForLog((l) => l.event === 'ready');
    const api = new ApiClient(join(nas.runtimeDir, 'api.sock'));
    await api.call('ReplaceDrive', { oldId: nas.idOf(old!), newDevice: fresh });
    expect((await exitOf(first)).signal).toBe('SIGKILL');

    const second = nas.daemon(undefined);
    await second.waitForLog((l) => l.event === 'job_interrupted');
    await second.waitForLog((l) => l.event === 'ready');
    const run = await cli(['drive', 'replace', nas.idOf(old!), fresh!, '--json', ...nas.dirArgs()]);
    expect(run.code, run.stdout + run.stderr).toBe(0);
    const job = json<JobView & { result: { resumedAfter: string[]; newId: string } }>(run);
    expect(job.result.resumedAfter).toEqual(expect.arrayContaining(['new-enrolled', 'new-proven']));
    await second.stop();

    // The next boot: every drive locked again, every one unlocked with a recorded key on the server.
    await nas.powerCycle([other!, fresh!]);
    const third = nas.daemon(undefined);
    await third.waitForLog((l) => l.event === 'ready');
    const status = await nas.status();
    expect(status.drives.map((d) => [d.device, d.state]).sort()).toEqual(
      [
        [other!, 'unlocked'],
        [fresh!, 'unlocked'],
      ].sort(),
    );
    const audit = await cli(['audit', 'keys', '--json', ...nas.dirArgs()]);
    expect(json<{ clean: boolean; recorded: number }>(audit)).toMatchObject({ clean: true, recorded: 2 });
  });
});
