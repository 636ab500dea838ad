/**
 * sd_notify over a real AF_UNIX datagram socket: a Python receiver binds the socket the way
 * systemd does (a path, or an abstract name) and prints every datagram it gets.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { SystemdNotifier } from '../../src/agent/systemd-notify.js';

const RECEIVER = `
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
addr = sys.argv[1]
s.bind("\\0" + addr[1:] if addr.startswith("@") else addr)
print("listening", flush=True)
while True:
    data = s.recv(4096)
    print(json.dumps(data.decode()), flush=True)
`;

class Receiver {
  readonly messages: string[] = [];
  private constructor(private readonly child: ChildProcessWithoutNullStreams) {}

  static start(address: string): Promise<Receiver> {
    const child = spawn('/usr/bin/python3', ['-c', RECEIVER, address]);
    const receiver = new Receiver(child);
    return new Promise((resolve, reject) => {
      let buffered = '';
      child.stdout.on('data', (chunk: Buffer) => {
        buffered += chunk.toString();
        let newline: number;
        while ((newline = buffered.indexOf('\n')) >= 0) {
          const line = buffered.slice(0, newline);
          buffered = buffered.slice(newline + 1);
          if (line === 'listening') resolve(receiver);
          else receiver.messages.push(JSON.parse(line) as string);
        }
      });
      child.once('exit', (code) => reject(new Error(`receiver exited with ${code}`)));
    });
  }

  async waitFor(count: number): Promise<string[]> {
    for (let i = 0; i < 100 && this.messages.length < count; i++) await new Promise((r) => setTimeout(r, 20));
    return this.messages;
  }

  stop(): void {
    this.child.kill('SIGKILL');
  }
}

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
