/**
 * The agent's unlock logic on its own: one batched fetch, bounded parallel unlocks, keys zeroed, faults
 * raised and cleared with their causes, the boot deadline, and retries with capped jittered backoff.
 * Time is a FakeClock; the key source is an in-memory table and the unlockers record what they are given
 * (the same logic runs against PyKMIP and emulated drives in the end-to-end suites).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Agent, type AgentLog } from '../../src/agent/agent.js';
import { backoffDelayMs } from '../../src/agent/clock.js';
import { parseConfig } from '../../src/agent/config.js';
import { FaultRegistry } from '../../src/agent/faults.js';
import type { FetchedKey, KeySource } from '../../src/agent/key-source.js';
import { StateStore } from '../../src/agent/state.js';
import { mapBounded, unlockTargets, type UnlockTarget, type Unlocker } from '../../src/agent/unlock.js';
import { FakeClock, settle } from '../support/fake-clock.js';
import { mulberry32 } from '../support/seeded-random.js';

const dirs: string[] = [];
afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));

/**
 * An in-memory key table standing in for the key server; `down` makes every fetch fail like a dead server
 * (nothing listening: refused, unless `downCode` says otherwise, e.g. a loaded server timing out).
 */
class TableKeySource implements KeySource {
  readonly keys = new Map<string, Buffer>();
  readonly fetchCalls: string[][] = [];
  readonly handedOut: Buffer[] = [];
  down = false;
  downCode = 'KMIP_CONNECTION_REFUSED';

  async fetch(uids: string[]): Promise<Map<string, FetchedKey>> {
    this.fetchCalls.push(uids);
    if (this.down) throw Object.assign(new Error(`server down (${this.downCode})`), { code: this.downCode });
    const out = new Map<string, FetchedKey>();
    for (const uid of uids) {
      const key = this.keys.get(uid);
      if (!key)
        out.set(uid, {
          ok: false,
          error: { code: 'KMIP_OPERATION_FAILED', message: 'Item Not Found', notFound: true },
        });
      else {
        const copy = Buffer.from(key);
        this.handedOut.push(copy);
        out.set(uid, { ok: true, key: copy });
      }
    }
    return out;
  }
  async findByName(): Promise<string[]> {
    return [];
  }
  async findByGroup(): Promise<string[]> {
    return [];
  }
  async createKey(): Promise<{ uid: string; key: Buffer }> {
    throw new Error('not used');
  }
}

/** Unlocks when given the expected key; else refuses with the drives layer's typed code. */
class RecordingUnlocker implements Unlocker {
  readonly expected = new Map<string, Buffer>();
  readonly calls: { id: string; key: string }[] = [];
  running = 0;
  maxRunning = 0;
  failWith = new Map<string, string>();

  async unlock(target: UnlockTarget, key: Buffer) {
    this.running++;
    this.maxRunning = Math.max(this.maxRunning, this.running);
    try {
      await settle();
      this.calls.push({ id: target.id, key: key.toString('hex') });
      const code = this.failWith.get(target.id);
      if (code) throw Object.assign(new Error(`${target.id}: ${code}`), { code });
      if (!this.expected.get(target.id)?.equals(key))
        throw Object.assign(new Error('refused'), { code: 'DRIVE_PIN_REFUSED' });
      return 'unlocked' as const;
    } finally {
      this.running--;
    }
  }
}

const silentLog: AgentLog & { lines: string[] } = {
  lines: [],
  info(_o, m) {
    silentLog.lines.push(`info ${m}`);
  },
  warn(_o, m) {
    silentLog.lines.push(`warn ${m}`);
  },
  error(_o, m) {
    silentLog.lines.push(`error ${m}`);
  },
};

async function setup(
  count: number,
  overrides: {
    concurrency?: number;
    retryCapSeconds?: number;
    refusedRetryCapSeconds?: number;
    clock?: FakeClock;
    random?: () => number;
  } = {},
) {
  const dir = mkdtempSync(join(tmpdir(), 'kmip-agent-core-'));
  dirs.push(dir);
  const clock = overrides.clock ?? new FakeClock();
  const state = new StateStore({ dir, now: () => clock.now() });
  await state.load();
  const keys = new TableKeySource();
  const opal = new RecordingUnlocker();
  await state.update((s) => {
    for (let i = 0; i < count; i++) {
      const id = `EMU-${i}`;
      const key = Buffer.alloc(32, i + 1);
      keys.keys.set(`uid-${i}`, key);
      opal.expected.set(id, key);
      s.drives.push({
        id,
        device: `emu:/tmp/${id}.img`,
        key: { uid: `uid-${i}`, name: `kmip-agent/nas1/${id}`, provider: 'default' },
        enrolledAt: clock.now().toISOString(),
        unlockAtBoot: true,
      });
    }
  });
  const config = parseConfig({
    schemaVersion: 1,
    applianceId: 'nas1',
    providers: { default: { servers: [{ host: 'kms' }], ca: 'ca', cert: 'c', key: 'k' } },
    boot: {
      concurrency: overrides.concurrency ?? 16,
      retryCapSeconds: overrides.retryCapSeconds ?? 60,
      ...(overrides.refusedRetryCapSeconds === undefined
        ? {}
        : { refusedRetryCapSeconds: overrides.refusedRetryCapSeconds }),
    },
  });
  const faults = new FaultRegistry(() => clock.now());
  let draws = 0;
  const agent = new Agent({
    config,
    state,
    keys,
    unlockers: { opal, luks: opal },
    clock,
    random: overrides.random ?? (() => [0.5, 0.25, 0.75, 0.999][draws++ % 4]!),
    log: silentLog,
    faults,
  });
  return { agent, clock, keys, opal, state, faults };
}

describe('unlock planning', () => {
  it('fetches every key in one call, unlocks in parallel within the bound, and zeroes the keys', async () => {
    const { agent, keys, opal } = await setup(8, { concurrency: 3 });
    const outcomes = await agent.unlockNow();
    expect(keys.fetchCalls).toHaveLength(1);
    expect(keys.fetchCalls[0]).toHaveLength(8);
    expect(outcomes.map((o) => o.state)).toEqual(Array(8).fill('unlocked'));
    expect(opal.maxRunning).toBe(3);
    expect(keys.handedOut.every((k) => k.every((b) => b === 0))).toBe(true);
    expect(agent.status().drives.every((d) => d.state === 'unlocked')).toBe(true);
  });

  it('zeroes a key shared by two targets only after both used it', async () => {
    const keys = new TableKeySource();
    keys.keys.set('u', Buffer.alloc(32, 9));
    const seen: string[] = [];
    const unlocker: Unlocker = {
      async unlock(_t, key) {
        await settle();
        seen.push(key.toString('hex'));
        return 'unlocked';
      },
    };
    const targets: UnlockTarget[] = ['a', 'b'].map((id) => ({ id, kind: 'opal', device: id, keyUid: 'u' }));
    await unlockTargets(targets, keys, { opal: unlocker, luks: unlocker }, { concurrency: 2, clock: new FakeClock() });
    expect(seen).toEqual([Buffer.alloc(32, 9).toString('hex'), Buffer.alloc(32, 9).toString('hex')]);
    expect(keys.handedOut[0]!.every((b) => b === 0)).toBe(true);
  });

  it('mapBounded keeps order and never exceeds the limit', async () => {
    let running = 0;
    let max = 0;
    const out = await mapBounded([1, 2, 3, 4, 5], 2, async (n) => {
      running++;
      max = Math.max(max, running);
      await settle();
      running--;
      return n * 10;
    });
    expect(out).toEqual([10, 20, 30, 40, 50]);
    expect(max).toBe(2);
  });
});

describe('faults from outcomes', () => {
  it('a destroyed key faults only its drive, and the fault clears when the key is back', async () => {
    const { agent, keys } = await setup(3);
    const saved = keys.keys.get('uid-1')!;
    keys.keys.delete('uid-1');
    await agent.unlockNow();
    const status = agent.status();
    expect(status.drives.map((d) => d.state)).toEqual(['unlocked', 'key-not-found', 'unlocked']);
    expect(status.faults.map((f) => [f.code, f.subject])).toEqual([['KeyNotFound', 'EMU-1']]);
    expect(status.health).toBe('degraded');
    keys.keys.set('uid-1', saved);
    await agent.unlockNow();
    expect(agent.status().faults).toEqual([]);
    expect(agent.status().health).toBe('healthy');
  });

  it('a dead key server raises KmipServerFault for every drive and tries no drive', async () => {
    const { agent, keys, opal } = await setup(2);
    keys.down = true;
    await agent.unlockNow();
    expect(opal.calls).toEqual([]);
    const [fault] = agent.status().faults;
    expect(fault).toMatchObject({ code: 'KmipServerFault', severity: 'critical', affects: ['EMU-0', 'EMU-1'] });
    expect(agent.status().health).toBe('faulted');
    keys.down = false;
    await agent.unlockNow();
    expect(agent.faults.has('KmipServerFault')).toBe(false);
  });

  it('a refused key is parked: not retried on its own, so no further try is spent', async () => {
    const { agent, opal } = await setup(2);
    opal.expected.set('EMU-0', Buffer.alloc(32, 0xee));
    await agent.unlockNow();
    expect(agent.status().drives[0]!.state).toBe('key-refused');
    expect(agent.faults.has('DriveUnlockFailed', 'EMU-0')).toBe(true);
    await agent.unlockNow();
    expect(opal.calls.filter((c) => c.id === 'EMU-0')).toHaveLength(1);
  });

  it('a missing drive is retried and its fault clears when it comes back', async () => {
    const { agent, opal } = await setup(1);
    opal.failWith.set('EMU-0', 'DRIVE_NOT_FOUND');
    await agent.unlockNow();
    expect(agent.status().drives[0]!.state).toBe('missing');
    expect(agent.faults.has('DriveMissing', 'EMU-0')).toBe(true);
    opal.failWith.clear();
    await agent.unlockNow();
    expect(agent.status().drives[0]!.state).toBe('unlocked');
    expect(agent.faults.has('DriveMissing')).toBe(false);
  });
});

describe('boot', () => {
  it('is ready at once when everything unlocks', async () => {
    const { agent } = await setup(2);
    const status = await agent.boot({ deadlineMs: 120_000 });
    expect(status).toMatchObject({ ready: true, mode: 'normal', health: 'healthy' });
    expect(agent.progressLine()).toBe('2/2 drives unlocked');
  });

  it('with the server down: degraded READY at the deadline, then unlocked by a background retry', async () => {
    const { agent, keys, clock } = await setup(2, { retryCapSeconds: 8 });
    keys.down = true;
    const waits: number[] = [];
    let finished = false;
    const boot = agent.boot({ deadlineMs: 20_000, onWaiting: (r) => waits.push(r) }).then((s) => {
      finished = true;
      return s;
    });
    await clock.advance(19_000);
    expect(finished).toBe(false);
    await clock.advance(1_000);
    const status = await boot;
    expect(status).toMatchObject({ ready: true, mode: 'degraded', health: 'faulted' });
    expect(waits.length).toBeGreaterThan(1);
    // Nothing listens at the server: retries stay within the refused-connection cap (1 s by default).
    expect(clock.delays.length).toBeGreaterThan(10);
    expect(clock.delays.every((d) => d <= 1_000)).toBe(true);
    expect(agent.progressLine()).toMatch(/^degraded: 0\/2 drives unlocked; 1 fault\(s\): KmipServerFault$/);
    keys.down = false;
    await clock.fireNext();
    await settle();
    expect(agent.status()).toMatchObject({ mode: 'normal', health: 'healthy' });
    expect(clock.waiting).toBe(0);
    agent.stop();
  });

  it('a held drive (being disabled) is left out of boot, the retry loop and unlockNow until released', async () => {
    const { agent, opal, clock } = await setup(2, { retryCapSeconds: 8 });
    opal.failWith.set('EMU-0', 'DRIVE_NOT_FOUND');
    await agent.boot({ deadlineMs: 0 });
    expect(agent.status().drives.map((d) => d.state)).toEqual(['missing', 'unlocked']);
    expect(clock.waiting).toBe(1);
    // A run in flight when the hold comes: hold resolves only once it has ended.
    let held = false;
    const inFlight = agent.unlockNow();
    const holding = agent.hold('EMU-0').then(() => (held = true));
    await settle();
    expect(held).toBe(false);
    await inFlight;
    await holding;
    opal.failWith.clear();
    const before = opal.calls.length;
    await clock.fireNext();
    await settle();
    await agent.unlockNow();
    expect(opal.calls.slice(before).map((c) => c.id)).toEqual([]);
    expect(agent.status().drives[0]!.state).toBe('missing');
    // Nothing else to retry: the loop stops instead of spinning on the held drive.
    expect(clock.waiting).toBe(0);
    agent.release('EMU-0');
    expect(clock.waiting).toBe(1);
    await clock.fireNext();
    await settle();
    expect(agent.status().drives[0]!.state).toBe('unlocked');
    agent.stop();
  });

  it('a server that refuses is retried within the refused cap; one that times out backs off to the full cap', async () => {
    const delaysWhile = async (downCode: string) => {
      const { agent, keys, clock } = await setup(1, {
        retryCapSeconds: 8,
        refusedRetryCapSeconds: 2,
        random: () => 0.999,
      });
      keys.down = true;
      keys.downCode = downCode;
      const boot = agent.boot({ deadlineMs: 60_000 });
      await clock.advance(60_000);
      await boot;
      agent.stop();
      return clock.delays.slice(0, 6);
    };
    // Full jitter's ceiling per attempt, min(cap, 1 s * 2^n), at the highest draw.
    expect(await delaysWhile('KMIP_CONNECTION_REFUSED')).toEqual([999, 1998, 1998, 1998, 1998, 1998]);
    expect(await delaysWhile('KMIP_CONNECTION_TIMEOUT')).toEqual([999, 1998, 3996, 7992, 7992, 7992]);
    expect(await delaysWhile('KMIP_TLS_HANDSHAKE_FAILED')).toEqual([999, 1998, 3996, 7992, 7992, 7992]);
  });

  it('after the refusals end in timeouts (the server is up but loaded), the backoff grows from where it was', async () => {
    const { agent, keys, clock } = await setup(1, { retryCapSeconds: 60, random: () => 0.999 });
    keys.down = true;
    const boot = agent.boot({ deadlineMs: 120_000 });
    await clock.advance(10_000);
    const refusedRounds = clock.delays.length;
    expect(clock.delays.every((d) => d <= 1_000)).toBe(true);
    keys.downCode = 'KMIP_CONNECTION_TIMEOUT';
    await clock.advance(110_000);
    await boot;
    agent.stop();
    // The attempt count kept growing through the refusals: the first wait after a timeout is already at the cap.
    expect(clock.delays[refusedRounds]).toBe(59_940);
  });

  it('a fleet that failed together does not retry together: each retry round spreads over its window', async () => {
    // 100 appliances on one clock, the key server up but timing out (a refusal is retried within 1 s
    // by design); each agent draws its own jitter.
    const clock = new FakeClock();
    const roundsOf = async (random: (i: number) => () => number) => {
      const fleet = await Promise.all(
        Array.from({ length: 100 }, (_, i) => setup(1, { clock, retryCapSeconds: 60, random: random(i) })),
      );
      const fetchedAt: number[][] = fleet.map(() => []);
      fleet.forEach(({ keys }, i) => {
        keys.down = true;
        keys.downCode = 'KMIP_CONNECTION_TIMEOUT';
        const fetch = keys.fetch.bind(keys);
        keys.fetch = (uids) => (fetchedAt[i]!.push(clock.monotonicMs()), fetch(uids));
      });
      const start = clock.monotonicMs();
      const boots = fleet.map(({ agent }) => agent.boot({ deadlineMs: 60_000 }));
      await clock.advance(60_000);
      await Promise.all(boots);
      fleet.forEach(({ agent }) => agent.stop());
      // Per round, the most appliances whose attempt fell in one and the same second.
      // Rounds 0 and 1 (power-on, then the 0-1 s window) are together by nature.
      return [3, 4, 5].map((round) => {
        const seconds = fetchedAt.map((times) => Math.floor((times[round]! - start) / 1000));
        const counts = new Map<number, number>();
        for (const s of seconds) counts.set(s, (counts.get(s) ?? 0) + 1);
        return Math.max(...counts.values());
      });
    };
    // Full jitter: round r is spread over a window of 2^r seconds.
    const jittered = await roundsOf((i) => mulberry32(i + 1));
    expect(jittered.every((most) => most <= 50)).toBe(true);
    // The same fleet with the jitter taken out (every draw the same) retries in lock-step.
    const lockStep = await roundsOf(() => () => 0.5);
    expect(lockStep).toEqual([100, 100, 100]);
  });

  it('backoff is capped exponential with full jitter', () => {
    const at = (attempt: number, r: number) =>
      backoffDelayMs(attempt, { baseMs: 1000, capMs: 60_000, random: () => r });
    expect([0, 1, 2, 3].map((n) => at(n, 0.999))).toEqual([999, 1998, 3996, 7992]);
    expect(at(20, 0.5)).toBe(30_000);
    expect(at(20, 0)).toBe(0);
  });
});

describe('unlockOne (drive readd)', () => {
  it('unlocks one parked target now, whatever parked it, and clears its faults', async () => {
    const { agent, opal, faults } = await setup(2);
    opal.failWith.set('EMU-0', 'DRIVE_NOT_FOUND');
    opal.failWith.set('EMU-1', 'DRIVE_PIN_REFUSED');
    await agent.unlockNow();
    expect(faults.has('DriveMissing', 'EMU-0')).toBe(true);
    expect(faults.has('DriveUnlockFailed', 'EMU-1')).toBe(true);
    opal.failWith.clear();
    // A refused key is parked: the agent's own runs leave it alone, an operator's readd does not.
    expect((await agent.unlockNow()).map((o) => o.target.id)).toEqual(['EMU-0']);
    const outcome = await agent.unlockOne('EMU-1');
    expect(outcome?.state).toBe('unlocked');
    expect(faults.has('DriveUnlockFailed', 'EMU-1')).toBe(false);
    expect(faults.has('DriveMissing', 'EMU-0')).toBe(false);
    expect(agent.status().drives.map((d) => d.state)).toEqual(['unlocked', 'unlocked']);
    expect(await agent.unlockOne('no-such')).toBeUndefined();
  });
});
