/**
 * The rotation policy (src/agent/rotation-policy.ts) with the fake clock: which keys are due when (the
 * appliance's everyDays, a drive's override, the spread), and the scheduler: one rotation at a time with
 * the gap between them, RotationFailed from a failed attempt to the next success, RotationOverdue past the
 * grace period, a busy rekey lane that only defers. No sleeps: time moves when the test says.
 */
import { describe, expect, it } from 'vitest';
import { FaultRegistry } from '../../src/agent/faults.js';
import { RotationPlan, RotationScheduler, type RotationKind } from '../../src/agent/rotation-policy.js';
import { emptyState, type StateBody } from '../../src/agent/state.js';
import { KmipAgentError } from '../../src/errors.js';
import { FakeClock } from '../support/fake-clock.js';

const DAY = 86_400_000;
const HOUR = 3_600_000;

type Policy = { everyDays?: number; graceDays: number; spreadHours: number; gapMinutes: number; retryHours: number };

function appliance(clock: FakeClock, rotation: Partial<Policy>, drives = ['d1', 'd2', 'd3']) {
  const enrolledAt = clock.now().toISOString();
  const state: StateBody = emptyState(() => Buffer.alloc(32));
  for (const id of drives)
    state.drives.push({
      id,
      device: `emu:/${id}.img`,
      key: { uid: `uid-${id}`, name: `kmip-agent/app/${id}`, provider: 'default' },
      enrolledAt,
      unlockAtBoot: true,
    });
  const config = {
    rotation: { graceDays: 7, spreadHours: 0, gapMinutes: 10, retryHours: 6, ...rotation },
    drives: drives.map((id) => ({ device: `emu:/${id}.img`, unlockAtBoot: true })) as {
      device: string;
      unlockAtBoot: boolean;
      rotateEveryDays?: number;
    }[],
    volumes: [],
  };
  return { state, config };
}

describe('RotationPlan', () => {
  it('is due everyDays after the key was made; a drive entry overrides it; no policy, no date', () => {
    const clock = new FakeClock();
    const { state, config } = appliance(clock, { everyDays: 30 });
    config.drives[1]!.rotateEveryDays = 7;
    // d3's key was made by a rotation 2 days after enrollment: counted from then.
    state.drives[2]!.key.createdAt = new Date(clock.now().getTime() + 2 * DAY).toISOString();
    const plan = new RotationPlan(
      () => config,
      () => state,
      () => 0,
    );
    const t0 = clock.now().getTime();
    expect(plan.nextRotation('d1')?.getTime()).toBe(t0 + 30 * DAY);
    expect(plan.nextRotation('d2')?.getTime()).toBe(t0 + 7 * DAY);
    expect(plan.nextRotation('d3')?.getTime()).toBe(t0 + 32 * DAY);
    expect(plan.targets().map((t) => t.id)).toEqual(['d2', 'd1', 'd3']);

    const none = appliance(clock, {});
    const unplanned = new RotationPlan(
      () => none.config,
      () => none.state,
      () => 0,
    );
    expect(unplanned.nextRotation('d1')).toBeUndefined();
    none.config.drives[0]!.rotateEveryDays = 90;
    expect(unplanned.nextRotation('d1')?.getTime()).toBe(t0 + 90 * DAY);
    expect(unplanned.targets().map((t) => t.id)).toEqual(['d1']);
  });

  it('spreads targets that were enrolled together by a random part of spreadHours, drawn once per target', () => {
    const clock = new FakeClock();
    const { state, config } = appliance(clock, { everyDays: 30, spreadHours: 6 });
    const draws = [0.5, 0.25, 0.75];
    const plan = new RotationPlan(
      () => config,
      () => state,
      () => draws.shift() ?? 0,
    );
    const t0 = clock.now().getTime() + 30 * DAY;
    const due = plan.targets().map((t) => [t.id, t.due.getTime() - t0]);
    expect(due).toEqual([
      ['d2', 1.5 * HOUR],
      ['d1', 3 * HOUR],
      ['d3', 4.5 * HOUR],
    ]);
    // The same dates on every later look (the spread is not drawn again).
    expect(plan.nextRotation('d1')?.getTime()).toBe(t0 + 3 * HOUR);
  });
});

/** A scheduler over a fake rotation whose attempts the test settles one by one. */
function scheduled(rotation: Partial<Policy>, drives?: string[]) {
  const clock = new FakeClock();
  const { state, config } = appliance(clock, rotation, drives);
  const faults = new FaultRegistry(() => clock.now());
  const calls: { id: string; at: number; settle: (error?: Error) => void }[] = [];
  const plan = new RotationPlan(
    () => config,
    () => state,
    () => 0,
  );
  const scheduler = new RotationScheduler({
    plan,
    config: () => config,
    clock,
    faults,
    rotate: (_kind: RotationKind, id: string) =>
      new Promise<void>((resolve, reject) => {
        calls.push({
          id,
          at: clock.now().getTime(),
          settle: (error) => {
            if (error) return reject(error);
            // A done rotation records a new key made now.
            state.drives.find((d) => d.id === id)!.key.createdAt = clock.now().toISOString();
            resolve();
          },
        });
      }),
  });
  return { clock, state, config, faults, calls, scheduler, t0: clock.now().getTime() };
}

describe('RotationScheduler', () => {
  it('rotates due keys one at a time, gapMinutes apart, never two at once', async () => {
    const s = scheduled({ everyDays: 30 });
    s.scheduler.start();
    await s.clock.advance(29 * DAY);
    expect(s.calls).toEqual([]);
    await s.clock.advance(1 * DAY);
    // All three are due now: only one rotation is started.
    expect(s.calls.map((c) => c.id)).toEqual(['d1']);
    await s.clock.advance(HOUR);
    expect(s.calls).toHaveLength(1);
    s.calls[0]!.settle();
    await s.clock.advance(9 * 60_000);
    expect(s.calls).toHaveLength(1);
    await s.clock.advance(60_000);
    expect(s.calls.map((c) => c.id)).toEqual(['d1', 'd2']);
    s.calls[1]!.settle();
    await s.clock.advance(10 * 60_000);
    expect(s.calls.map((c) => c.id)).toEqual(['d1', 'd2', 'd3']);
    s.calls[2]!.settle();
    // Each next due date counts from its rotation.
    await s.clock.advance(29 * DAY);
    expect(s.calls).toHaveLength(3);
    expect(s.faults.list()).toEqual([]);
    await s.scheduler.stop();
    expect(s.clock.waiting).toBe(0);
  });

  it('raises RotationFailed on a failed attempt, retries retryHours later, clears it on success', async () => {
    const s = scheduled({ everyDays: 30 }, ['d1']);
    s.scheduler.start();
    await s.clock.advance(30 * DAY);
    s.calls[0]!.settle(new KmipAgentError('the key server is gone', 'KMIP_UNREACHABLE'));
    await s.clock.advance(0);
    expect(s.faults.list().map((f) => [f.code, f.subject, f.details.code])).toEqual([
      ['RotationFailed', 'd1', 'KMIP_UNREACHABLE'],
    ]);
    await s.clock.advance(6 * HOUR - 1);
    expect(s.calls).toHaveLength(1);
    await s.clock.advance(1);
    expect(s.calls).toHaveLength(2);
    s.calls[1]!.settle();
    await s.clock.advance(0);
    expect(s.faults.list()).toEqual([]);
    await s.scheduler.stop();
  });

  it('raises RotationOverdue once due + graceDays has passed, cleared when the key is rotated', async () => {
    const s = scheduled({ everyDays: 30, graceDays: 2, retryHours: 24 }, ['d1']);
    s.scheduler.start();
    await s.clock.advance(30 * DAY);
    s.calls[0]!.settle(new KmipAgentError('refused', 'KMIP_PERMISSION_DENIED'));
    await s.clock.advance(DAY);
    s.calls[1]!.settle(new KmipAgentError('refused', 'KMIP_PERMISSION_DENIED'));
    await s.clock.advance(0);
    expect(s.faults.has('RotationOverdue', 'd1')).toBe(false);
    await s.clock.advance(DAY);
    // The third attempt runs at due + 2 days exactly: not yet overdue; a moment later it is.
    s.calls[2]!.settle(new KmipAgentError('refused', 'KMIP_PERMISSION_DENIED'));
    await s.clock.advance(HOUR);
    expect(
      s.faults
        .list()
        .map((f) => f.code)
        .sort(),
    ).toEqual(['RotationFailed', 'RotationOverdue']);
    expect(s.faults.list().find((f) => f.code === 'RotationOverdue')?.affects).toEqual(['d1']);
    await s.clock.advance(23 * HOUR);
    s.calls[3]!.settle();
    await s.clock.advance(0);
    expect(s.faults.list()).toEqual([]);
    await s.scheduler.stop();
  });

  it('a busy rekey lane defers the rotation without a fault', async () => {
    const s = scheduled({ everyDays: 30 }, ['d1']);
    s.scheduler.start();
    await s.clock.advance(30 * DAY);
    s.calls[0]!.settle(new KmipAgentError('a RekeyDeep job is already running', 'JOB_ALREADY_RUNNING'));
    await s.clock.advance(10 * 60_000);
    expect(s.faults.list()).toEqual([]);
    expect(s.calls.map((c) => c.at - s.t0)).toEqual([30 * DAY, 30 * DAY + 10 * 60_000]);
    s.calls[1]!.settle();
    await s.scheduler.stop();
  });
});
