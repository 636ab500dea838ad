/**
 * A least-privilege client identity on a real PyKMIP server: its operation policy (a policy file in the
 * server's policy_path) lets the agent Get, Locate, Get Attributes and Activate its drive key but never
 * Revoke or Destroy it. `drive remove` still erases, reverts and removes the drive; the key the server
 * refused to retire is reported as left on the server and listed by `audit keys`.
 *
 * How the policy reaches the key, and why so: PyKMIP decides by the object's Operation Policy Name, which a
 * client can set only in its Register/Create request (the attribute is not modifiable by a client
 * afterwards) and which defaults to the reserved "default" policy (everything allowed to the owner; a
 * policy file may not redefine it). Groups come only from its SLUGS authentication plugin, never from the
 * certificate, and a group is looked up in that same object policy. So PyKMIP cannot express "this
 * identity may not Destroy" on its own; what it can express is "objects under policy P may not be
 * destroyed by anyone". The test gives the enrolled key policy P the only way left to a server operator:
 * in PyKMIP's database (the fixture's own SQLite file), as a real key server's administrator would assign
 * a policy out of band. The refusals themselves are PyKMIP's, through its policy engine.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KmipClient, ResultReason, hasResultReason, RevocationReasonCode } from '../../src/kmip/index.js';
import { Appliance, cli, ok, running, exitOf } from '../support/daemon-harness.js';
import { PYKMIP_PYTHON, pykmipClientOptions, startPykmip, type PykmipServer } from '../support/pykmip.js';

const POLICY = 'kmip-agent-least-privilege';

/** The policy file: the owner may use its Secret Data, nobody may Revoke or Destroy it. */
const policyFile = {
  [POLICY]: {
    preset: {
      SECRET_DATA: {
        GET: 'ALLOW_OWNER',
        GET_ATTRIBUTES: 'ALLOW_OWNER',
        GET_ATTRIBUTE_LIST: 'ALLOW_OWNER',
        LOCATE: 'ALLOW_OWNER',
        ACTIVATE: 'ALLOW_OWNER',
        CHECK: 'ALLOW_OWNER',
        REVOKE: 'DISALLOW_ALL',
        DESTROY: 'DISALLOW_ALL',
      },
    },
  },
};

/** Waits (bounded) for PyKMIP's policy monitor to log that it loaded the policy (it rescans every second). */
async function policyLoaded(server: PykmipServer): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (!readFileSync(server.logPath, 'utf8').includes(`Loading policy: ${POLICY}`)) {
    if (Date.now() > deadline) throw new Error(`PyKMIP did not load the policy ${POLICY}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Puts the object under the policy in PyKMIP's database (see the header for why it cannot be done over KMIP). */
function assignPolicy(server: PykmipServer, uid: string): void {
  const script = [
    'import sqlite3, sys',
    'db = sqlite3.connect(sys.argv[1])',
    'n = db.execute("UPDATE managed_objects SET operation_policy_name = ? WHERE uid = ?", (sys.argv[2], int(sys.argv[3]))).rowcount',
    'db.commit()',
    'sys.exit(0 if n == 1 else 3)',
  ].join('\n');
  const run = spawnSync(PYKMIP_PYTHON, ['-c', script, join(server.dir, 'pykmip.db'), POLICY, uid], {
    encoding: 'utf8',
  });
  expect(run.status, run.stderr).toBe(0);
}

describe('a least-privilege identity on PyKMIP (operation policy: no Revoke, no Destroy)', { timeout: 300_000 }, () => {
  let kmip: PykmipServer | undefined;
  let root: string | undefined;
  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'kmip-agent-least-privilege-'));
    kmip = await startPykmip();
    writeFileSync(join(kmip.dir, 'policies', `${POLICY}.json`), JSON.stringify(policyFile));
    await policyLoaded(kmip);
  });
  afterAll(async () => {
    for (const d of [...running]) d.kill();
    await Promise.all([...running].map((d) => exitOf(d).catch(() => undefined)));
    await kmip?.stop();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  it('drive remove still removes the drive; the key the server refuses to retire is reported and audited', async () => {
    const nas = new Appliance('lp', root!);
    await nas.setup(kmip!, kmip!);
    const [device, other] = await nas.createDrives(2);
    await nas.enroll();
    const { id, keyUid } = nas.enrolled.get(device!)!;
    assignPolicy(kmip!, keyUid);

    // The policy is in force: the agent's identity (the owner) may Get the key but not Revoke or Destroy it.
    const client = new KmipClient(pykmipClientOptions(kmip!));
    try {
      expect((await client.get(keyUid)).value).toHaveLength(32);
      for (const refused of [
        () => client.revoke({ uniqueIdentifier: keyUid, reason: RevocationReasonCode.CessationOfOperation }),
        () => client.destroy(keyUid),
      ])
        await expect(refused()).rejects.toSatisfy((e: unknown) => hasResultReason(e, ResultReason.PermissionDenied));
    } finally {
      await client.close();
    }

    const run = await cli(['drive', 'remove', id, '--yes', '--json', ...nas.dirArgs()]);
    const job = JSON.parse(run.stdout) as {
      status: string;
      result: { erased: boolean; key: { revoked: boolean; destroyed: boolean; leftOnServer?: { code: string } } };
      steps: { name: string }[];
    };
    expect(job.status, run.stderr).toBe('done');
    expect(run.code).toBe(0);
    expect(job.result).toMatchObject({
      erased: true,
      key: { keyUid, revoked: false, destroyed: false, leftOnServer: { code: expect.any(String) as unknown } },
    });
    expect(job.steps.map((s) => s.name)).toEqual([
      'started',
      'drive-erased',
      'drive-reverted',
      'key-left-on-server',
      'record-removed',
    ]);
    // The drive is gone from the records; its key is still on the server, Active, and audit keys says so.
    const status = await nas.status();
    expect(status.drives.map((d) => d.id)).toEqual([nas.idOf(other!)]);
    const audit = await cli(['audit', 'keys', '--json', ...nas.dirArgs()]);
    expect(audit.code).toBe(1);
    expect(JSON.parse(audit.stdout)).toMatchObject({
      clean: false,
      orphans: [{ uid: keyUid, state: 'Active', name: `kmip-agent/lp/${id}` }],
      missing: [],
    });
    // The refusal is on the audit trail too.
    const trail = JSON.parse((await ok(['audit', '--json', ...nas.dirArgs()])).stdout) as {
      events: { operation: string; keyUid?: string; result: string }[];
    };
    expect(trail.events.filter((e) => e.keyUid === keyUid && e.operation === 'revoke')).toEqual([
      expect.objectContaining({ result: 'error' }),
    ]);
  });
});
