/**
 * sd_notify over a real AF_UNIX datagram socket (test/support/notify-receiver.ts binds it the way
 * systemd does: a path, or an abstract name).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { SystemdNotifier } from '../../src/agent/systemd-notify.js';
import { NotifyReceiver as Receiver } from '../support/notify-receiver.js';

describe('systemd notifications', () => {
  const cleanups: (() => void)[] = [];
  afterEach(() => cleanups.splice(0).forEach((c) => c()));

  async function receiverAt(address: string): Promise<Receiver> {
    const receiver = await Receiver.start(address);
    cleanups.push(() => receiver.stop());
    return receiver;
  }

  function socketPath(): string {
    const dir = mkdtempSync(join(tmpdir(), 'kmip-agent-notify-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    return join(dir, 'notify.sock');
  }

  it('READY=1 with a one-line STATUS, EXTEND_TIMEOUT_USEC and STOPPING=1 reach a path socket', async () => {
    const path = socketPath();
    const receiver = await receiverAt(path);
    const notifier = new SystemdNotifier({ NOTIFY_SOCKET: path });
    expect(notifier.enabled).toBe(true);
    notifier.extendTimeout(30_000_000);
    notifier.ready('unlocked 3 of 3 drives\nall keys from kms1');
    notifier.stopping();
    expect(await receiver.waitFor(3)).toEqual([
      'EXTEND_TIMEOUT_USEC=30000000',
      'READY=1\nSTATUS=unlocked 3 of 3 drives all keys from kms1',
      'STOPPING=1',
    ]);
  });

  it('abstract sockets (@name) work as systemd hands them out', async () => {
    const name = `@kmip-agent-test-${process.pid}-${Date.now()}`;
    const receiver = await receiverAt(name);
    new SystemdNotifier({ NOTIFY_SOCKET: name }).status('waiting for key server');
    expect(await receiver.waitFor(1)).toEqual(['STATUS=waiting for key server']);
  });

  it('the watchdog pings at half its interval when WATCHDOG_PID is this process', async () => {
    const path = socketPath();
    const receiver = await receiverAt(path);
    const notifier = new SystemdNotifier({
      NOTIFY_SOCKET: path,
      WATCHDOG_USEC: '100000',
      WATCHDOG_PID: String(process.pid),
    });
    expect(notifier.watchdogMicros).toBe(100_000);
    notifier.startWatchdog();
    const messages = await receiver.waitFor(3);
    notifier.stopWatchdog();
    expect(messages.slice(0, 3)).toEqual(['WATCHDOG=1', 'WATCHDOG=1', 'WATCHDOG=1']);
  });

  it('the watchdog interval is half of WATCHDOG_USEC, to the millisecond (fake timers, a recording socket)', () => {
    vi.useFakeTimers();
    try {
      const sent: { at: number; message: string }[] = [];
      const notifier = new SystemdNotifier(
        { NOTIFY_SOCKET: '/run/x', WATCHDOG_USEC: '100000', WATCHDOG_PID: String(process.pid) },
        { send: (_path: string, message: string) => void sent.push({ at: Date.now(), message }) },
      );
      const start = Date.now();
      notifier.startWatchdog();
      expect(sent.map((s) => s.message)).toEqual(['WATCHDOG=1']);
      vi.advanceTimersByTime(49);
      expect(sent).toHaveLength(1);
      vi.advanceTimersByTime(1);
      expect(sent).toHaveLength(2);
      vi.advanceTimersByTime(150);
      expect(sent.map((s) => s.at - start)).toEqual([0, 50, 100, 150, 200]);
      notifier.stopWatchdog();
      vi.advanceTimersByTime(500);
      expect(sent).toHaveLength(5);
    } finally {
      vi.useRealTimers();
    }
  });

  it('a watchdog meant for another process is ignored', () => {
    const notifier = new SystemdNotifier(
      { NOTIFY_SOCKET: '/run/x', WATCHDOG_USEC: '100000', WATCHDOG_PID: '1' },
      undefined,
      4242,
    );
    expect(notifier.watchdogMicros).toBeUndefined();
  });

  it('outside systemd every call is a no-op', () => {
    const notifier = new SystemdNotifier({});
    expect(notifier.enabled).toBe(false);
    expect(() => notifier.ready('x')).not.toThrow();
  });

  it('a socket nobody listens on is a typed error', () => {
    const notifier = new SystemdNotifier({ NOTIFY_SOCKET: join(tmpdir(), 'kmip-agent-no-such-notify.sock') });
    expect(() => notifier.ready()).toThrow(expect.objectContaining({ code: 'NOTIFY_FAILED' }));
    expect(() => new SystemdNotifier({ NOTIFY_SOCKET: 'relative/path' }).ready()).toThrow(
      expect.objectContaining({ code: 'NOTIFY_BAD_SOCKET' }),
    );
  });
});
