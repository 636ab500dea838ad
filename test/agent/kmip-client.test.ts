/**
 * `kmip-agent client disable|reset|enable` against PyKMIP and an enrolled emulated drive: disable is refused
 * while the drive needs the key server (naming it), reset only when disabled and only with --yes after
 * saying what becomes unreachable, the state is never touched, and `setup` with the same server afterwards
 * gives the drive its key back.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { powerCycleEmulatedDrive } from '../../src/drives/index.js';
import { pykmipCliArgs } from '../support/pykmip.js';
import { TestAppliance } from './appliance.js';

const appliances: TestAppliance[] = [];
afterEach(() => {
  for (const a of appliances.splice(0)) a.close();
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
});
