/**
 * A real sd_notify listener, as systemd binds it: an AF_UNIX datagram socket (a path, or an abstract
 * "@name"). Node cannot receive unix datagrams, so Debian's python3 does and prints each one as a JSON
 * line; waiting is on datagrams arriving, bounded, never a fixed sleep.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';

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
  /** Every datagram received, in order. */
  readonly messages: string[] = [];
  private waiters: (() => void)[] = [];

  private constructor(
    readonly address: string,
    private readonly child: ChildProcessWithoutNullStreams,
  ) {}

  static start(address: string): Promise<NotifyReceiver> {
    const child = spawn('/usr/bin/python3', ['-c', RECEIVER, address]);
    const receiver = new NotifyReceiver(address, child);
    return new Promise((resolve, reject) => {
      let buffered = '';
      child.stdout.on('data', (chunk: Buffer) => {
        buffered += chunk.toString();
        let newline: number;
        while ((newline = buffered.indexOf('\n')) >= 0) {
          const line = buffered.slice(0, newline);
          buffered = buffered.slice(newline + 1);
          if (line === 'listening') resolve(receiver);
          else {
            receiver.messages.push(JSON.parse(line) as string);
            for (const wake of receiver.waiters.splice(0)) wake();
          }
        }
      });
      child.once('exit', (code) => reject(new Error(`notify receiver exited with ${code}`)));
    });
  }

  /** Resolves with the first datagram (from index `from`) that `match` accepts; rejects after `timeoutMs`. */
  waitFor(match: (message: string) => boolean, timeoutMs = 30_000, from = 0): Promise<string> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(new Error(`no matching sd_notify message within ${timeoutMs} ms: ${JSON.stringify(this.messages)}`)),
        timeoutMs,
      );
      const check = () => {
        const found = this.messages.slice(from).find(match);
        if (found !== undefined) {
          clearTimeout(timer);
          resolve(found);
        } else this.waiters.push(check);
      };
      check();
    });
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
