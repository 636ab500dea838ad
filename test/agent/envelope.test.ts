/**
 * Envelope mode: the RFC 5649 key wrap against the RFC's own examples, then an appliance in envelope
 * mode end to end (the TestAppliance harness: the run's PyKMIP server, emulated Opal drives, a LUKS2
 * image, the real CLI as separate processes): one master key on the server, keys kept wrapped in the
 * state with plain recovery copies on the server, an unlock that Gets exactly one key (counted in the
 * audit trail), a shallow rekey after which the drives still unlock and the old master key is
 * Deactivated, and a tampered blob that faults its drive with KEY_UNWRAP_FAILED and spends no try.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { readAuditEvents, type AuditEvent } from '../../src/agent/audit.js';
import { loadConfig, saveConfig } from '../../src/agent/config.js';
import {
  EnvelopeKeySource,
  KmipMasterKeyServer,
  KeyUnwrapError,
  masterKeyNameFor,
  unwrapKey,
  wrapKey,
  type MasterKeyServer,
} from '../../src/agent/envelope.js';
import { KmipKeySource, type CreatedKey, type FetchedKey, type KeySource } from '../../src/agent/key-source.js';
import { acquireStateLock } from '../../src/agent/state-lock.js';
import { StateStore, type StateBody } from '../../src/agent/state.js';
import { emulatedDriveInfo } from '../../src/drives/emulator.js';
import { luks, powerCycleEmulatedDrive } from '../../src/drives/index.js';
import { ObjectType, State } from '../../src/kmip/index.js';
import { luksFormat } from '../luks/images.js';
import { FakeClock } from '../support/fake-clock.js';
import { TestAppliance } from './appliance.js';

const hex = (s: string) => Buffer.from(s.replace(/\s/g, ''), 'hex');

describe('AES key wrap with padding (RFC 5649)', () => {
  // RFC 5649 section 6: a 192-bit KEK, a 20-octet and a 7-octet key.
  const kek = hex('5840df6e29b02af1 ab493b705bf16ea1 ae8338f4dcc176a8');
  const vectors = [
    {
      key: hex('c37b7e6492584340 bed1220780894115 5068f738'),
      wrapped: hex('138bdeaa9b8fa7fc 61f97742e72248ee 5ae6ae5360d1ae6a 5f54f373fa543b6a'),
    },
    { key: hex('466f7250617369'), wrapped: hex('afbeb0f07dfbf541 9200f2ccb50bb24f') },
  ];

  it.each(vectors.map((v, i) => [i === 0 ? '20 octets' : '7 octets', v] as const))(
    'wraps and unwraps the RFC example of %s',
    (_, v) => {
      expect(wrapKey(kek, v.key).toString('hex')).toBe(v.wrapped.toString('hex'));
      expect(unwrapKey(kek, v.wrapped).toString('hex')).toBe(v.key.toString('hex'));
    },
  );

  it('refuses a tampered blob and a wrong key-encryption key with KEY_UNWRAP_FAILED', () => {
    const master = randomBytes(32);
    const key = randomBytes(32);
    const wrapped = wrapKey(master, key);
    expect(wrapped).toHaveLength(40);
    expect(unwrapKey(master, wrapped)).toEqual(key);
    const tampered = Buffer.from(wrapped);
    tampered[7]! ^= 0x01;
    expect(() => unwrapKey(master, tampered)).toThrow(KeyUnwrapError);
    expect(() => unwrapKey(randomBytes(32), wrapped)).toThrow(expect.objectContaining({ code: 'KEY_UNWRAP_FAILED' }));
    expect(() => unwrapKey(master, wrapped.subarray(0, 24))).toThrow(
      expect.objectContaining({ code: 'KEY_UNWRAP_FAILED' }),
    );
  });
});

/** A key server in memory: counts every fetch, hands out copies (the caller zeroes them). */
class SpyKeys implements KeySource {
  readonly objects = new Map<string, Buffer>();
  readonly fetches: string[][] = [];
  readonly handedOut: Buffer[] = [];
  private next = 1;

  add(key: Buffer): string {
    const uid = String(this.next++);
    this.objects.set(uid, Buffer.from(key));
    return uid;
  }

  fetch(uids: string[]): Promise<Map<string, FetchedKey>> {
    this.fetches.push([...uids]);
    const result = new Map<string, FetchedKey>();
    for (const uid of uids) {
      const key = this.objects.get(uid);
      if (!key) {
        result.set(uid, { ok: false, error: { code: 'KMIP_ITEM_NOT_FOUND', message: 'no such key', notFound: true } });
        continue;
      }
      const copy = Buffer.from(key);
      this.handedOut.push(copy);
      result.set(uid, { ok: true, key: copy });
    }
    return Promise.resolve(result);
  }
  findByName = () => Promise.resolve([]);
  findByGroup = () => Promise.resolve([...this.objects.keys()]);
  createKey(): Promise<CreatedKey> {
    const key = randomBytes(32);
    return Promise.resolve({ uid: this.add(key), key });
  }
}

describe('EnvelopeKeySource (a spy key server)', () => {
  const dirs: string[] = [];
  afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));

  async function source(active: (keys: SpyKeys) => string[] = () => []) {
    const dir = mkdtempSync(join(tmpdir(), 'kmip-agent-envelope-'));
    dirs.push(dir);
    const state = new StateStore({ dir });
    await state.load();
    const keys = new SpyKeys();
    const created: string[] = [];
    const server: MasterKeyServer = {
      createMasterKey: (name) => {
        created.push(name);
        return Promise.resolve(keys.add(randomBytes(32)));
      },
      findActive: () => Promise.resolve(active(keys)),
      findPreActive: () => Promise.resolve([]),
      activate: () => Promise.resolve(),
      retire: () => Promise.resolve(),
      destroy: () => Promise.resolve(),
    };
    const envelope = new EnvelopeKeySource({
      applianceId: 'app1',
      inner: keys,
      server,
      state,
      clock: new FakeClock(),
      newJobId: () => `job-${randomBytes(4).toString('hex')}`,
    });
    return { state, keys, created, envelope };
  }

  it('makes one master key for concurrent enrollments and answers every wrapped key from one Get of it', async () => {
    const { state, keys, created, envelope } = await source();
    const made = await Promise.all(
      Array.from({ length: 8 }, (_, i) => envelope.createKey(`kmip-agent/app1/d${i}`, 'kmip-agent/app1')),
    );
    expect(created).toEqual(['kmip-agent/app1/master-key']);
    const masterUid = state.snapshot().masterKeyUid!;
    await state.update((s) => {
      made.forEach((m, i) =>
        s.drives.push({
          id: `d${i}`,
          device: `emu:/d${i}`,
          key: { uid: m.uid, name: `kmip-agent/app1/d${i}`, provider: 'default', ...m.record },
          enrolledAt: new Date(0).toISOString(),
          unlockAtBoot: true,
        }),
      );
    });
    const plain = made.map((m) => Buffer.from(m.key));
    made.forEach((m) => m.key.fill(0));
    keys.fetches.length = 0;
    keys.handedOut.length = 0;

    const fetched = await envelope.fetch(made.map((m) => m.uid));
    expect(keys.fetches).toEqual([[masterUid]]);
    made.forEach((m, i) => expect(fetched.get(m.uid)).toEqual({ ok: true, key: plain[i] }));
    // The master key's copy is zeroed once the keys are unwrapped.
    expect(keys.handedOut).toHaveLength(1);
    expect(keys.handedOut[0]!.equals(Buffer.alloc(32))).toBe(true);
  });

  it('adopts the one active master key of its name when the state records none, refuses when there are two', async () => {
    let existing = '';
    const one = await source((keys) => [(existing ||= keys.add(randomBytes(32)))]);
    const made = await one.envelope.createKey('kmip-agent/app1/d', 'kmip-agent/app1');
    expect(one.created).toEqual([]);
    expect(made.record?.masterKeyUid).toBe(existing);
    expect(one.state.snapshot().masterKeyUid).toBe(existing);

    const two = await source(() => ['m1', 'm2']);
    await expect(two.envelope.createKey('kmip-agent/app1/d', 'kmip-agent/app1')).rejects.toMatchObject({
      code: 'MASTER_KEY_AMBIGUOUS',
    });
    expect(two.created).toEqual([]);
    expect(two.keys.objects.size).toBe(0);
  });

  it('fetches a key recorded without a wrapped blob from the server, in the same batch', async () => {
    const { state, keys, envelope } = await source();
    const wrapped = await envelope.createKey('kmip-agent/app1/w', 'kmip-agent/app1');
    const direct = keys.add(randomBytes(32));
    await state.update((s) => {
      s.drives.push({
        id: 'w',
        device: 'emu:/w',
        key: { uid: wrapped.uid, name: 'kmip-agent/app1/w', provider: 'default', ...wrapped.record },
        enrolledAt: new Date(0).toISOString(),
        unlockAtBoot: true,
      });
    });
    keys.fetches.length = 0;
    const fetched = await envelope.fetch([wrapped.uid, direct]);
    expect(keys.fetches).toEqual([[state.snapshot().masterKeyUid, direct]]);
    expect(fetched.get(direct)).toMatchObject({ ok: true, key: keys.objects.get(direct) });
    expect(fetched.get(wrapped.uid)).toMatchObject({ ok: true, key: wrapped.key });
  });
});

const appliances: TestAppliance[] = [];
afterEach(() => appliances.splice(0).forEach((a) => a.close()));

/** An appliance set up against the run's PyKMIP server and switched to envelope mode. */
async function envelopeAppliance(): Promise<TestAppliance> {
  const a = new TestAppliance();
  appliances.push(a);
  a.setup();
  const config = await loadConfig(a.dirs.config);
  await saveConfig(a.dirs.config, { ...config, keyMode: 'envelope' });
  return a;
}

async function stateOf(a: TestAppliance): Promise<StateBody> {
  const store = new StateStore({ dir: a.dirs.state });
  return (await store.load()).body;
}

/** The audit events a CLI run added (the trail is append-only) and the run's result. */
async function eventsOf<T>(a: TestAppliance, run: () => T): Promise<{ events: AuditEvent[]; result: T }> {
  const all = () => readAuditEvents(a.dirs.state, { limit: 100_000 });
  const before = (await all()).length;
  const result = run();
  return { events: (await all()).slice(before), result };
}

type UnlockDoc = {
  drives: { id: string; state: string; lastError?: { code: string } }[];
  faults: { code: string; affects: string[] }[];
};

async function stateAttribute(a: TestAppliance, uid: string): Promise<unknown> {
  const { attributes } = await a.provider().getAttributes(uid, ['State']);
  return attributes.find((x) => x.name === 'State')?.value;
}

/** The drives the agent's refused-key memory names (a key a drive refused is remembered there). */
function refusedDrives(a: TestAppliance): string[] {
  const path = join(a.dirs.state, 'refused-keys.json');
  if (!existsSync(path)) return [];
  return (JSON.parse(readFileSync(path, 'utf8')) as { refused: { drive: string }[] }).refused.map((r) => r.drive);
}

describe('envelope mode against PyKMIP, emulated drives and a LUKS2 image', () => {
  it('enrolls under one master key, boots with one Get, survives a shallow rekey, faults a tampered blob', async () => {
    const a = await envelopeAppliance();
    const devices = [await a.emulatedDrive('EMU-E1'), await a.emulatedDrive('EMU-E2')];
    // Two enrollment runs (separate processes): the second finds the recorded master key, never makes another.
    a.ok(['drive', 'enroll', devices[0]!]);
    a.ok(['drive', 'enroll', devices[1]!]);
    const volumePath = join(a.work, 'edata.luks');
    const passphrase = randomBytes(32);
    luksFormat(volumePath, passphrase);
    const volume = a.ok(['volume', 'enroll', volumePath, '--name', 'edata', '--key-file', '-'], passphrase);

    const kmip = a.provider();
    const masters = (await kmip.locate({ name: masterKeyNameFor(a.id) })).uniqueIdentifiers;
    expect(masters).toHaveLength(1);
    const masterUid = masters[0]!;
    const master = await kmip.get(masterUid);
    expect(master.objectType).toBe(ObjectType.SymmetricKey);
    expect(master.value).toHaveLength(32);
    expect(await stateAttribute(a, masterUid)).toBe(State.Active);
    expect((await kmip.locate({ objectGroup: `kmip-agent/${a.id}` })).uniqueIdentifiers).toContain(masterUid);

    const state = await stateOf(a);
    expect(state.masterKeyUid).toBe(masterUid);
    const refs = [...state.drives, ...state.volumes];
    expect(refs).toHaveLength(3);
    for (const r of refs) {
      expect(r.key).toMatchObject({ masterKeyUid: masterUid, name: `kmip-agent/${a.id}/${r.id}` });
      // The state holds the key wrapped; the server's recovery copy is the same key, plain (see envelope.ts).
      const key = unwrapKey(master.value, Buffer.from(r.key.wrapped!, 'hex'));
      expect((await kmip.get(r.key.uid)).value).toEqual(key);
    }
    const volumeRef = state.volumes[0]!;
    expect(volumeRef.keyslot).toBe(volume.keyslot);
    expect(
      (await luks.checkKey(volumePath, unwrapKey(master.value, Buffer.from(volumeRef.key.wrapped!, 'hex')))).slot,
    ).toBe(volume.keyslot);

    // A boot: the drives lose power; one unlock run fetches exactly one key, the master key.
    for (const d of devices) await powerCycleEmulatedDrive(d.slice(4));
    const boot = await eventsOf(a, () => a.cli(['unlock']));
    const gets = boot.events.filter((e) => e.operation === 'get');
    expect(gets.map((e) => [e.keyUid, e.result])).toEqual([[masterUid, 'ok']]);
    const booted = boot.result.json as UnlockDoc;
    for (const d of state.drives) expect(booted.drives.find((x) => x.id === d.id)?.state).toBe('unlocked');
    expect(['unlocked', 'not-supported']).toContain(booted.drives.find((x) => x.id === volumeRef.id)?.state);

    // Shallow rekey: a new master key, every key rewrapped, the old master key Deactivated afterwards.
    const rekey = a.ok(['rekey', '--shallow']);
    expect(rekey).toMatchObject({ previousMasterKeyUid: masterUid, previousRevoked: true });
    const newMaster = rekey.masterKeyUid as string;
    expect(newMaster).not.toBe(masterUid);
    expect((rekey.rewrapped as string[]).sort()).toEqual(refs.map((r) => r.id).sort());
    expect(await stateAttribute(a, masterUid)).toBe(State.Deactivated);
    expect(await stateAttribute(a, newMaster)).toBe(State.Active);
    const rekeyed = await stateOf(a);
    expect(rekeyed.masterKeyUid).toBe(newMaster);
    for (const r of [...rekeyed.drives, ...rekeyed.volumes]) {
      const old = refs.find((x) => x.id === r.id)!;
      // Same key (same recovery copy), new wrapping.
      expect(r.key.uid).toBe(old.key.uid);
      expect(r.key.masterKeyUid).toBe(newMaster);
      expect(r.key.wrapped).not.toBe(old.key.wrapped);
    }
    expect(rekeyed.jobs.at(-1)).toMatchObject({ kind: 'rekey-shallow', status: 'done' });

    for (const d of devices) await powerCycleEmulatedDrive(d.slice(4));
    const reboot = await eventsOf(a, () => a.cli(['unlock']));
    expect(reboot.events.filter((e) => e.operation === 'get').map((e) => e.keyUid)).toEqual([newMaster]);
    for (const d of state.drives)
      expect((reboot.result.json as UnlockDoc).drives.find((x) => x.id === d.id)?.state).toBe('unlocked');

    // A tampered blob: that drive faults with KEY_UNWRAP_FAILED and its key never reaches it.
    const victim = rekeyed.drives[0]!;
    const lock = await acquireStateLock(a.dirs.state, 'test');
    try {
      const store = new StateStore({ dir: a.dirs.state });
      await store.load();
      await store.update((s) => {
        const blob = Buffer.from(s.drives[0]!.key.wrapped!, 'hex');
        blob[blob.length - 1]! ^= 0x80;
        s.drives[0]!.key.wrapped = blob.toString('hex');
      });
    } finally {
      await lock.release();
    }
    for (const d of devices) await powerCycleEmulatedDrive(d.slice(4));
    const victimDevice = devices.find((d) => d === victim.device)!;
    const tampered = await eventsOf(a, () => a.cli(['unlock']));
    const doc = tampered.result.json as UnlockDoc;
    expect(tampered.result.code).toBe(1);
    expect(doc.drives.find((d) => d.id === victim.id)).toMatchObject({
      state: 'locked',
      lastError: { code: 'KEY_UNWRAP_FAILED' },
    });
    expect(doc.drives.find((d) => d.id === rekeyed.drives[1]!.id)?.state).toBe('unlocked');
    const fault = doc.faults.find((f) => f.code === 'DriveUnlockFailed');
    expect(fault?.affects).toEqual([victim.id]);
    // The server answered: not a server fault.
    expect(doc.faults.map((f) => f.code)).not.toContain('KmipServerFault');
    expect(tampered.events.filter((e) => e.operation === 'unlock').map((e) => e.target)).not.toContain(victim.id);
    // Never sent: no unlock attempt, no refusal remembered, still locked (the emulator shows no try counter
    // without a PIN; a wrong key sent would be refused and remembered).
    expect(refusedDrives(a)).not.toContain(victim.id);
    expect((await emulatedDriveInfo(victimDevice.slice(4))).ranges[0]).toMatchObject({ readLocked: true });
    expect((await emulatedDriveInfo(victimDevice.slice(4))).lockedOutAuthorities).toEqual([]);
  });

  it('refuses a shallow rekey in direct mode, and one without --shallow', async () => {
    const a = new TestAppliance();
    appliances.push(a);
    a.setup();
    expect(a.cli(['rekey']).json.error).toMatchObject({ code: 'REKEY_KIND_MISSING' });
    expect(a.cli(['rekey', '--shallow']).json.error).toMatchObject({ code: 'KEY_MODE_NOT_ENVELOPE' });
  });
});

describe('a shallow rekey that crashed resumes (PyKMIP)', () => {
  const crash = () => Object.assign(new Error('power lost'), { code: 'TEST_CRASH' });
  type Stage = 'after-create' | 'before-rewrap' | 'before-activate';

  /**
   * Envelope state over the run's PyKMIP: two keys wrapped by a first master key. `rekey(stage)` runs a
   * shallow rekey that dies at `stage` (an injected failure where the process would stop), or completes.
   */
  async function enveloped() {
    const a = new TestAppliance();
    appliances.push(a);
    mkdirSync(a.dirs.state, { recursive: true, mode: 0o700 });
    const state = new StateStore({ dir: a.dirs.state });
    await state.load();
    const kmip = a.provider();
    const inner = new KmipKeySource(kmip);
    const real = new KmipMasterKeyServer(kmip);
    const source = (stage?: Stage) => {
      let created: string | undefined;
      const server: MasterKeyServer = {
        ...real,
        findActive: (n) => real.findActive(n),
        findPreActive: (n) => real.findPreActive(n),
        retire: (u) => real.retire(u),
        destroy: (u) => real.destroy(u),
        createMasterKey: async (n, g, o) => {
          created = await real.createMasterKey(n, g, o);
          if (stage === 'after-create') throw crash();
          return created;
        },
        activate: async (u) => {
          if (stage === 'before-activate') throw crash();
          await real.activate(u);
        },
      };
      const keys: KeySource = {
        fetch: async (uids) => {
          // The first Get of the new master key (to wrap with it): the process dies before the write.
          if (stage === 'before-rewrap' && created !== undefined && uids.includes(created)) throw crash();
          return inner.fetch(uids);
        },
        findByName: (n) => inner.findByName(n),
        findByGroup: (g) => inner.findByGroup(g),
        createKey: (n, g) => inner.createKey(n, g),
      };
      return new EnvelopeKeySource({
        applianceId: a.id,
        inner: keys,
        server,
        state,
        clock: new FakeClock(),
        newJobId: () => `rekey-${randomBytes(4).toString('hex')}`,
      });
    };
    const plain = new Map<string, Buffer>();
    for (const id of ['d1', 'd2']) {
      const made = await source().createKey(`kmip-agent/${a.id}/${id}`, `kmip-agent/${a.id}`);
      plain.set(made.uid, Buffer.from(made.key));
      made.key.fill(0);
      await state.update((s) => {
        s.drives.push({
          id,
          device: `emu:/${id}`,
          key: { uid: made.uid, name: `kmip-agent/${a.id}/${id}`, provider: 'default', ...made.record },
          enrolledAt: new Date(0).toISOString(),
          unlockAtBoot: true,
        });
      });
    }
    const first = state.snapshot().masterKeyUid!;
    const named = async (st: number) =>
      (await kmip.locate({ name: masterKeyNameFor(a.id), state: st })).uniqueIdentifiers.sort();
    /** Every key still comes back as it was, through whatever master key the state names. */
    const keysIntact = async () => {
      const fetched = await source().fetch([...plain.keys()]);
      for (const [uid, key] of plain) expect(fetched.get(uid)).toEqual({ ok: true, key });
    };
    return { state, source, first, named, keysIntact, kmip, id: a.id };
  }

  it('a crash between Create and its journal entry: one Active master key; the rerun adopts the Pre-Active one', async () => {
    const t = await enveloped();
    await expect(t.source('after-create').rekeyShallow()).rejects.toMatchObject({ code: 'TEST_CRASH' });
    // Another such crash left one more (a rerun adopts rather than creates, so made here as it would be).
    await new KmipMasterKeyServer(t.kmip).createMasterKey(masterKeyNameFor(t.id), `kmip-agent/${t.id}`, {
      preActive: true,
    });
    // Not two Active keys: the new ones are Pre-Active and unrecorded; boot and enrollment see one master key.
    expect(await t.named(State.Active)).toEqual([t.first]);
    const orphans = await t.named(State.PreActive);
    expect(orphans).toHaveLength(2);
    expect(t.state.snapshot().masterKeyUid).toBe(t.first);
    await t.keysIntact();

    const rerun = await t.source().rekeyShallow();
    expect(rerun).toMatchObject({ previousMasterKeyUid: t.first, previousRevoked: true });
    // One of them adopted (no new Create), the other destroyed.
    expect(orphans).toContain(rerun.masterKeyUid);
    const extra = orphans.find((u) => u !== rerun.masterKeyUid);
    expect(await t.named(State.Active)).toEqual([rerun.masterKeyUid]);
    // The other never wrapped anything: destroyed, not left behind.
    expect(await t.named(State.PreActive)).toEqual([]);
    expect((await t.kmip.locate({ name: masterKeyNameFor(t.id) })).uniqueIdentifiers).not.toContain(extra);
    expect(await t.named(State.Deactivated)).toEqual([t.first]);
    expect(
      t.state
        .snapshot()
        .jobs.at(-1)!
        .steps.map((s) => s.name),
    ).toEqual(['master-key-adopted', 'orphan-destroyed', 'rewrapped', 'master-key-activated', 'previous-revoked']);
    await t.keysIntact();
  });

  it.each(['before-rewrap', 'before-activate'] as const)(
    'a crash %s: the rerun resumes the same job with the same new key',
    async (stage) => {
      const t = await enveloped();
      await expect(t.source(stage).rekeyShallow()).rejects.toMatchObject({ code: 'TEST_CRASH' });
      const job = t.state.snapshot().jobs.at(-1)!;
      const created = job.steps.find((s) => s.name === 'master-key-created')!.detail!.uid as string;
      expect(await t.named(State.Active)).toEqual([t.first]);
      expect(await t.named(State.PreActive)).toEqual([created]);
      // Before the write the old master key is current; after it the new (Pre-Active) one, and boot still works.
      expect(t.state.snapshot().masterKeyUid).toBe(stage === 'before-rewrap' ? t.first : created);
      await t.keysIntact();

      const rerun = await t.source().rekeyShallow();
      expect(rerun).toMatchObject({ masterKeyUid: created, previousMasterKeyUid: t.first, previousRevoked: true });
      expect(rerun.rewrapped.sort()).toEqual(['d1', 'd2']);
      const after = t.state.snapshot();
      expect(after.jobs.filter((j) => j.kind === 'rekey-shallow').map((j) => [j.id, j.status])).toEqual([
        [job.id, 'done'],
      ]);
      expect(await t.named(State.Active)).toEqual([created]);
      expect(await t.named(State.Deactivated)).toEqual([t.first]);
      expect(after.masterKeyUid).toBe(created);
      await t.keysIntact();
      // A later rekey starts a new job (the finished one is not resumed).
      const next = await t.source().rekeyShallow();
      expect(next.previousMasterKeyUid).toBe(created);
      expect(await t.named(State.Active)).toEqual([next.masterKeyUid]);
    },
  );
});
