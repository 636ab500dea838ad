/**
 * A real sd_notify listener: a Python receiver binds an AF_UNIX datagram socket the way systemd does (a
 * path, or an abstract @name) and prints every datagram it gets as a JSON string on its stdout. Waits are
 * driven by arriving datagrams and bounded by a timeout (no polling).
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { onLines } from './lines.js';

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

export class NotifyReceiver {
  readonly messages: string[] = [];
  /** When each message arrived here (performance.now(), ms), same index as `messages`. */
  readonly arrivals: number[] = [];
  private readonly waiters = new Set<() => void>();

  private constructor(
    readonly address: string,
    private readonly child: ChildProcessWithoutNullStreams,
  ) {}

  /** Binds `address` (a socket path, or @name for an abstract socket); resolves once it listens. */
  static start(address: string): Promise<NotifyReceiver> {
    const child = spawn('/usr/bin/python3', ['-c', RECEIVER, address]);
    const receiver = new NotifyReceiver(address, child);
    return new Promise((resolve, reject) => {
      onLines(child.stdout, (line) => {
        if (line === 'listening') resolve(receiver);
        else {
          receiver.messages.push(JSON.parse(line) as string);
          receiver.arrivals.push(performance.now());
          for (const wake of [...receiver.waiters]) wake();
        }
      });
      child.once('exit', (code) => reject(new Error(`notify receiver exited with ${code}`)));
    });
  }

  /** Resolves with the first datagram (from index `from` on) that `match` accepts; rejects after `timeoutMs`. */
  waitForMessage(match: (message: string) => boolean, timeoutMs = 20_000, from = 0): Promise<string> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const found = this.messages.slice(from).find(match);
        if (found === undefined) return;
        done();
        resolve(found);
      };
      const timer = setTimeout(() => {
        done();
        reject(
          new Error(`no matching sd_notify datagram within ${timeoutMs} ms; got ${JSON.stringify(this.messages)}`),
        );
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
      check();
    });
  }

  /** Resolves with all datagrams once at least `count` arrived (or with what arrived after `timeoutMs`). */
  async waitFor(count: number, timeoutMs = 2_000): Promise<string[]> {
    await this.waitForMessage(() => this.messages.length >= count, timeoutMs).catch(() => undefined);
    return this.messages;
  }

  stop(): void {
    this.child.kill('SIGKILL');
  }
}

/** The value of `name=` in a datagram, if it carries one. */
export function notifyField(message: string, name: string): string | undefined {
  return message
    .split('\n')
    .find((l) => l.startsWith(`${name}=`))
    ?.slice(name.length + 1);
}
