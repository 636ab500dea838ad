/**
 * The Element-style master rekey through a running daemon (envelope mode, emulated drives, two PyKMIP
 * servers of one PKI as the providers "default" and "second"): RekeySoftwareEncryptionAtRestMasterKey
 * answers with a handle at once; GetAsyncResult shows newKey and keyToDecommission; the master key moves
 * external -> internal (sealed with systemd-creds in a 0600 file) -> provider "second" (through the CLI)
 * -> back to the default provider, each time retiring the previous one only after the rewrap, and the
 * drives boot on it. A daemon killed (SIGKILL, test-only crash hook) at each journal step of a provider
 * move is restarted and finishes the move before unlocking. Bad input is refused before any job starts.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiClient } from '../../src/api/client.js';
import { CRASH_AT_ENV } from '../../src/agent/crash-hook.js';
import { loadConfig, saveConfig } from '../../src/agent/config.js';
import { masterKeyNameFor, REKEY_STEPS } from '../../src/agent/envelope.js';
import type { JobView } from '../../src/agent/jobs.js';
import type { KeyAuditReport } from '../../src/agent/key-audit.js';
import { StateStore, type StateBody } from '../../src/agent/state.js';
import { KmipClient, State } from '../../src/kmip/index.js';
import { Appliance, cli, daemonSuite, exitOf, ok } from '../support/daemon-harness.js';
import { pykmipClientOptions, startPykmip, type PykmipServer } from '../support/pykmip.js';

type Info = {
  state: string;
  mode: string;
  masterKeyInfo: { keyID: string; keyManagementType: string; keyProviderID: string | null; keyCreatedTime: string };
};

describe('master rekey through the daemon (two PyKMIP providers, emulated drives)', { timeout: 300_000 }, () => {
  const suite = daemonSuite('kmip-agent-master-rekey-');
  let second: PykmipServer | undefined;
  beforeAll(async () => {
    second = await startPykmip({ ca: suite.kmip().pki.ca });
  });
  afterAll(async () => {
    await second?.stop();
  });

  const stateOf = async (nas: Appliance): Promise<StateBody> =>
    (await new StateStore({ dir: nas.stateDir }).load()).body;

  /** The UIDs of our master key's name in `state` on a server. */
  async function masters(server: PykmipServer, nas: Appliance, state: number): Promise<string[]> {
    const client = new KmipClient(pykmipClientOptions(server));
    try {
      return (await client.locate({ name: masterKeyNameFor(nas.applianceId), state })).uniqueIdentifiers;
    } finally {
      await client.close();
    }
  }

  /** An envelope-mode appliance with two enrolled drives and the second provider configured. */
  async function appliance(name: string): Promise<Appliance> {
    const nas = new Appliance(name, suite.root());
    await nas.setup(suite.kmip(), suite.kmip());
    const config = await loadConfig(nas.configDir);
    // The second server: same CA and client identity, no pinned fingerprint (its certificate is its own).
    const { pinnedSha256: _pinned, ...base } = Object.values(config.servers)[0]!;
    await saveConfig(nas.configDir, {
      ...config,
      keyMode: 'envelope',
      servers: {
        ...config.servers,
        b: { ...base, host: '127.0.0.1', port: second!.port, ca: second!.ca },
      },
      providers: { ...config.providers, second: { servers: ['b'] } },
    });
    await nas.createDrives(2);
    await nas.enroll();
    return nas;
  }

  async function waitJob(nas: Appliance, handle: string): Promise<JobView & { code: number }> {
    const run = await cli(['job', handle, '--wait', '--json', ...nas.dirArgs()]);
    return { ...(JSON.parse(run.stdout) as JobView), code: run.code };
  }

  const sealedFiles = (nas: Appliance) => {
    try {
      return readdirSync(join(nas.stateDir, 'master-keys')).filter((f) => f.endsWith('.cred'));
    } catch {
      return [];
    }
  };

  it('moves the master key external -> internal -> provider "second" -> default; drives boot on each', async () => {
    const nas = await appliance('move');
    const first = (await stateOf(nas)).masterKeyUid!;
    const daemon = nas.daemon(undefined);
    await daemon.waitForLog((l) => l.event === 'ready');
    const api = new ApiClient(join(nas.runtimeDir, 'api.sock'));

    const info0 = await api.call<Info>('GetSoftwareEncryptionAtRestInfo');
    expect(info0).toMatchObject({
      state: 'enabled',
      mode: 'envelope',
      masterKeyInfo: { keyID: first, keyManagementType: 'external', keyProviderID: 'default' },
    });

    // Bad input: refused before a job starts (no job journaled).
    const jobsBefore = (await stateOf(nas)).jobs.length;
    for (const [params, code] of [
      [{ keyManagementType: 'cloud' }, 'API_INVALID_PARAMS'],
      [{ keyProviderID: 'nowhere' }, 'CONFIG_PROVIDER_UNKNOWN'],
      [{ keyManagementType: 'internal', keyProviderID: 'second' }, 'REKEY_INVALID_KEY_MANAGEMENT'],
      [{ deep: 'yes' }, 'API_INVALID_PARAMS'],
    ] as const)
      await expect(api.call('RekeySoftwareEncryptionAtRestMasterKey', params)).rejects.toMatchObject({ code });
    expect((await stateOf(nas)).jobs).toHaveLength(jobsBefore);

    // External -> internal: the handle comes back at once; the job reports both keys.
    const toInternal = await api.call<{ asyncHandle: string }>('RekeySoftwareEncryptionAtRestMasterKey', {
      keyManagementType: 'internal',
    });
    const j1 = await waitJob(nas, toInternal.asyncHandle);
    expect(j1.status, JSON.stringify(j1.error)).toBe('done');
    expect(j1.progress).toEqual({ done: 3, total: 3 });
    expect(j1.keyToDecommission).toEqual({ keyID: first, keyManagementType: 'external', keyProviderID: 'default' });
    const internalUid = (j1.newKey as { keyID: string }).keyID;
    expect(j1.newKey).toEqual({ keyID: internalUid, keyManagementType: 'internal', keyProviderID: null });
    expect(Date.parse(j1.lastUpdateTime!)).toBeGreaterThanOrEqual(Date.parse(j1.createTime!));
    // Sealed in a 0600 file, never the key itself: a systemd-creds credential (base64 text, no raw bytes).
    expect(sealedFiles(nas)).toEqual([`${internalUid}.cred`]);
    const sealed = join(nas.stateDir, 'master-keys', `${internalUid}.cred`);
    expect(statSync(sealed).mode & 0o777).toBe(0o600);
    expect(readFileSync(sealed, 'utf8')).toMatch(/^[A-Za-z0-9+/=\s]+$/);
    // The previous one is retired on its provider only now: Deactivated, no Active master key of ours there.
    expect(await masters(suite.kmip(), nas, State.Active)).toEqual([]);
    expect(await masters(suite.kmip(), nas, State.Deactivated)).toEqual([first]);
    const s1 = await stateOf(nas);
    for (const d of s1.drives) expect(d.key.masterKeyUid).toBe(internalUid);
    expect((await api.call<Info>('GetSoftwareEncryptionAtRestInfo')).masterKeyInfo).toMatchObject({
      keyID: internalUid,
      keyManagementType: 'internal',
      keyProviderID: null,
    });

    // Internal -> provider "second", through the CLI (in the daemon, followed with --wait).
    const run = await cli(['rekey', 'master', '--provider', 'second', '--wait', '--json', ...nas.dirArgs()]);
    const j2 = JSON.parse(run.stdout) as JobView;
    expect(j2.status, run.stderr).toBe('done');
    expect(run.code).toBe(0);
    const onSecond = (j2.newKey as { keyID: string }).keyID;
    expect(j2).toMatchObject({
      newKey: { keyManagementType: 'external', keyProviderID: 'second' },
      keyToDecommission: { keyID: internalUid, keyManagementType: 'internal' },
    });
    expect(await masters(second!, nas, State.Active)).toEqual([onSecond]);
    // Unwrapping with the internal key (to rewrap under the new one) is in the audit trail like any Get.
    const audited = readFileSync(join(nas.stateDir, 'audit.log'), 'utf8')
      .split('\n')
      .filter((l) => l.trim())
      .map((l) => JSON.parse(l) as { operation: string; keyUid?: string; server?: string; result: string });
    expect(audited).toContainEqual(
      expect.objectContaining({ operation: 'get', keyUid: internalUid, server: 'internal', result: 'ok' }),
    );
    // The internal key is gone once nothing is wrapped by it.
    expect(sealedFiles(nas)).toEqual([]);
    const info = JSON.parse((await ok(['rekey', 'info', '--json', ...nas.dirArgs()])).stdout) as Info;
    expect(info.masterKeyInfo).toMatchObject({ keyID: onSecond, keyProviderID: 'second' });
    // audit keys asks every provider: the master key on the second one is in use there, neither orphan nor
    // missing (before, only the default provider was asked, and a master key gone from "second" went unseen).
    const audit = async () =>
      JSON.parse((await cli(['audit', 'keys', '--json', ...nas.dirArgs()])).stdout) as KeyAuditReport;
    const moved = await audit();
    expect(moved.providers).toEqual([
      { name: 'default', serverObjects: expect.any(Number) },
      { name: 'second', serverObjects: 1 },
    ]);
    expect(moved).toMatchObject({ orphans: [], missing: [], inFlight: [], clean: true });

    // A boot: the master key now comes from the second provider.
    await daemon.stop();
    await nas.powerCycle();
    const again = nas.daemon(undefined);
    await again.waitForLog((l) => l.event === 'ready');
    expect((await nas.status()).drives.map((d) => d.state)).toEqual(['unlocked', 'unlocked']);
    // The provider holding the master key cannot be deleted: nothing could unwrap the drives' keys after.
    const refused = await cli(['provider', 'delete', 'second', '--yes', '--json', ...nas.dirArgs()]);
    expect(refused.code).toBe(1);
    expect(JSON.parse(refused.stdout || refused.stderr)).toMatchObject({
      error: { code: 'KEY_PROVIDER_IN_USE', provider: 'second', masterKeys: [onSecond] },
    });

    // And back to the default provider (external with no provider named: it stays where it is; so name it).
    const api2 = new ApiClient(join(nas.runtimeDir, 'api.sock'));
    const back = await api2.call<{ asyncHandle: string }>('RekeySoftwareEncryptionAtRestMasterKey', {
      keyManagementType: 'external',
      keyProviderID: 'default',
    });
    const j3 = await waitJob(nas, back.asyncHandle);
    expect(j3.status, JSON.stringify(j3.error)).toBe('done');
    expect(await masters(second!, nas, State.Active)).toEqual([]);
    expect(await masters(second!, nas, State.Deactivated)).toEqual([onSecond]);
    expect(await masters(suite.kmip(), nas, State.Active)).toEqual([(j3.newKey as { keyID: string }).keyID]);
    // The superseded master key on "second" is listed there as retired.
    expect((await audit()).retired).toContainEqual(
      expect.objectContaining({ uid: onSecond, provider: 'second', state: 'Deactivated' }),
    );
    // Holding nothing now, "second" can go: the running daemon reloads and drops its connection to it.
    await ok(['provider', 'delete', 'second', '--yes', '--json', ...nas.dirArgs()]);
    await again.waitForLog((l) => l.event === 'config_reloaded' && !(l.providers as string[]).includes('second'));
  });

  const steps = [REKEY_STEPS.created, REKEY_STEPS.rewrapped, REKEY_STEPS.activated];
  it.each([
    ...steps.map((step) => ({ move: 'default -> second', step })),
    ...steps.map((step) => ({ move: 'internal -> default', step })),
  ])(
    'a daemon killed at $step of a move $move: the restart finishes it, then the drives unlock',
    async ({ move, step }) => {
      const nas = await appliance(`crash-${step.length}-${move.length}`);
      const fromInternal = move.startsWith('internal');
      if (fromInternal) {
        const run = await cli(['rekey', 'master', '--internal', '--json', ...nas.dirArgs()]);
        expect(run.code, run.stderr).toBe(0);
      }
      const oldServer = fromInternal ? undefined : suite.kmip();
      const newServer = fromInternal ? suite.kmip() : second!;
      const first = (await stateOf(nas)).masterKeyUid!;
      const doomed = nas.daemon(undefined, [], {}, { [CRASH_AT_ENV]: step });
      await doomed.waitForLog((l) => l.event === 'ready');
      const api = new ApiClient(join(nas.runtimeDir, 'api.sock'));
      await api.call(
        'RekeySoftwareEncryptionAtRestMasterKey',
        fromInternal ? { keyManagementType: 'external', keyProviderID: 'default' } : { keyProviderID: 'second' },
      );
      expect((await exitOf(doomed)).signal).toBe('SIGKILL');
      const crashed = (await stateOf(nas)).jobs.filter((j) => j.kind === 'rekey-shallow').at(-1)!;
      expect(crashed.steps.at(-1)!.name).toBe(step);
      // Until the new key is activated and the rewrap durable, the old master key stays usable.
      if (step === REKEY_STEPS.created) expect((await stateOf(nas)).masterKeyUid).toBe(first);
      if (oldServer) expect(await masters(oldServer, nas, State.Active)).toEqual([first]);
      else expect(sealedFiles(nas)).toEqual([`${first}.cred`]);

      await nas.powerCycle();
      const daemon = nas.daemon(undefined);
      const resumed = await daemon.waitForLog((l) => l.event === 'rekey_resumed');
      expect(resumed.status).toBe('done');
      await daemon.waitForLog((l) => l.event === 'ready');
      const s = await stateOf(nas);
      expect(s.jobs.filter((j) => j.kind === 'rekey-shallow').at(-1)).toMatchObject({ id: crashed.id, status: 'done' });
      expect(s.jobs.filter((j) => j.kind === 'rekey-shallow' && j.status !== 'done')).toEqual([]);
      const now = s.masterKeyUid!;
      expect(s.masterKey).toMatchObject({
        uid: now,
        keyManagementType: 'external',
        keyProviderID: fromInternal ? 'default' : 'second',
      });
      for (const d of s.drives) expect(d.key.masterKeyUid).toBe(now);
      // One master key of ours Active, on the new provider; none left Pre-Active; the old one retired.
      expect(await masters(newServer, nas, State.Active)).toEqual([now]);
      expect(await masters(newServer, nas, State.PreActive)).toEqual([]);
      if (oldServer) {
        expect(await masters(oldServer, nas, State.Active)).toEqual([]);
        expect(await masters(oldServer, nas, State.Deactivated)).toEqual([first]);
      } else expect(sealedFiles(nas)).toEqual([]);
      expect((await nas.status()).drives.map((d) => d.state)).toEqual(['unlocked', 'unlocked']);
    },
  );
});
