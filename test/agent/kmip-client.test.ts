/**
 * `kmip-agent client disable|reset|enable` against PyKMIP and an enrolled emulated drive: disable is refused
 * while the drive needs the key server (naming it), reset only when disabled and only with --yes after
 * saying what becomes unreachable, the state is never touched, and `setup` with the same server afterwards
 * gives the drive its key back.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { powerCycleEmulatedDrive } from '../../src/drives/index.js';
import { Appliance, cli, ok, running } from '../support/daemon-harness.js';
import { NotifyReceiver } from '../support/notify-receiver.js';
import { pykmipCliArgs, type PykmipServer } from '../support/pykmip.js';
import { TestAppliance } from './appliance.js';

const appliances: TestAppliance[] = [];
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const a of appliances.splice(0)) a.close();
  for (const d of running) d.kill();
  running.clear();
  for (const c of cleanups.splice(0).reverse()) await c();
});

const configOf = (a: TestAppliance) => JSON.parse(readFileSync(join(a.dirs.config, 'config.json'), 'utf8'));

describe('kmip-agent client', () => {
  it('guards disable and reset, keeps the state, and setup with the same server restores access', async () => {
    const a = new TestAppliance();
    appliances.push(a);
    a.setup();
    const device = await a.emulatedDrive('EMU-C1');
    const [enrolled] = a.ok(['drive', 'enroll', device]).enrolled as { id: string; keyUid: string }[];
    const state = () => readFileSync(a.statePath, 'utf8');
    const stateAtStart = state();

    const status = a.ok(['client', 'status']);
    expect(status).toMatchObject({ enabled: true, dependents: [{ kind: 'drive', id: enrolled!.id }] });

    const refused = a.cli(['client', 'disable']);
    expect(refused.code).toBe(1);
    expect(refused.json.error).toMatchObject({ code: 'CLIENT_IN_USE' });
    expect(JSON.stringify(refused.json)).toContain(enrolled!.id);
    expect(configOf(a).client.enabled).toBe(true);

    const resetEnabled = a.cli(['client', 'reset', '--yes']);
    expect(resetEnabled.json.error).toMatchObject({ code: 'CLIENT_ENABLED' });

    const forced = a.ok(['client', 'disable', '--force']);
    expect(forced).toMatchObject({ enabled: false, stranded: [{ id: enrolled!.id }] });
    // A disabled client contacts no key server.
    const disabledGet = a.cli(['kmip', 'get', enrolled!.keyUid, '--provider', 'default']);
    expect(disabledGet.json.error).toMatchObject({ code: 'KMIP_CLIENT_DISABLED' });

    const unconfirmed = a.cli(['client', 'reset']);
    expect(unconfirmed.code).toBe(2);
    expect(unconfirmed.stderr).toContain(enrolled!.keyUid);
    expect(unconfirmed.stderr).toContain('Nothing changed');
    expect(configOf(a).servers).not.toEqual({});

    const reset = a.ok(['client', 'reset', '--yes']);
    expect(reset).toMatchObject({ reset: true, unreachable: [{ id: enrolled!.id, keyUid: enrolled!.keyUid }] });
    const after = configOf(a);
    expect(after).toMatchObject({ client: { enabled: false }, servers: {}, providers: {} });
    expect(after.client.cert).toBeUndefined();
    expect(after.drives).toEqual([expect.objectContaining({ device })]);
    for (const f of ['client.pem', 'client.key', 'ca.pem']) expect(existsSync(join(a.dirs.config, f))).toBe(false);
    expect(state()).toBe(stateAtStart);

    expect(a.cli(['client', 'enable']).json.error).toMatchObject({ code: 'CLIENT_NOT_CONFIGURED' });
    const otherId = a.cli(['setup', '--appliance-id', 'someone-else', ...pykmipCliArgs(a.server)]);
    expect(otherId.json.error).toMatchObject({ code: 'USAGE_APPLIANCE_ID_MISMATCH' });

    // Reconnected to the same server: the drive, still recorded, unlocks with its key after a power cycle.
    a.ok(['setup', '--appliance-id', a.id, ...pykmipCliArgs(a.server)]);
    expect(configOf(a)).toMatchObject({ client: { enabled: true }, drives: [expect.objectContaining({ device })] });
    expect(a.cli(['setup', '--appliance-id', a.id, ...pykmipCliArgs(a.server)]).json.error).toMatchObject({
      code: 'SETUP_ALREADY_DONE',
    });
    await powerCycleEmulatedDrive(device.slice(4));
    const unlocked = a.ok(['unlock']) as { drives: { id: string; state: string }[] };
    expect(unlocked.drives.find((d) => d.id === enrolled!.id)?.state).toBe('unlocked');
  });

  it('through a running daemon: disable --force strands the drive (KmipClientDisabled), enable unlocks it', async () => {
    const kmip = inject('pykmip');
    const root = mkdtempSync(join(tmpdir(), 'kmip-agent-client-'));
    cleanups.push(() => rmSync(root, { recursive: true, force: true }));
    const app = new Appliance(`cl${Date.now().toString(36)}`, root);
    await app.setup(kmip, kmip as PykmipServer);
    await app.createDrives(1);
    await app.enroll();
    const notify = await NotifyReceiver.start(join(root, 'notify.sock'));
    cleanups.push(() => notify.stop());
    const dirs = app.dirArgs();

    const refused = await cli(['client', 'disable', '--json', ...dirs]);
    expect(refused.code).toBe(1);
    expect(JSON.parse(refused.stdout).error.code).toBe('CLIENT_IN_USE');

    await ok(['client', 'disable', '--force', ...dirs]);
    await app.powerCycle();
    // A daemon with the client disabled starts, contacts no server, and says why the drive stays locked.
    const daemon = app.daemon(notify, ['--boot-deadline', '2']);
    const ready = await notify.waitForMessage((m) => m.startsWith('READY=1'), 30_000);
    expect(ready).toContain('KmipClientDisabled');
    const status = await app.status();
    expect(status.drives[0]!.state).not.toBe('unlocked');
    expect(status.faults.map((f) => f.code)).toContain('KmipClientDisabled');

    const enabled = await ok(['client', 'enable', '--json', ...dirs]);
    expect(JSON.parse(enabled.stdout)).toEqual({ enabled: true });
    expect(daemon.events('api_call').map((l) => l.method)).toContain('EnableKmipClient');
    await daemon.waitForLog((l) => l.event === 'config_reloaded');
    // Waited on the daemon's own lines (a status CLI run per poll would cost a node start each).
    await daemon.waitForLog((l) => l.event === 'unlock' && l.result === 'unlocked');
    await daemon.waitForLog((l) => l.event === 'fault_cleared' && l.fault === 'KmipClientDisabled');
    const after = await app.status();
    expect(after.drives[0]!.state).toBe('unlocked');
    expect(after.faults.map((f) => f.code)).not.toContain('KmipClientDisabled');
    await daemon.stop();
  });
});
