/**
 * Talking to systemd as a Type=notify service: READY=1 once the agent serves, STATUS= one line for
 * `systemctl status`, EXTEND_TIMEOUT_USEC= while waiting for a key server at boot, WATCHDOG=1 every
 * half WATCHDOG_USEC when WATCHDOG_PID names this process, STOPPING=1 on the way out.
 * Outside systemd (no NOTIFY_SOCKET) every call is a no-op.
 */
import { addonModule } from '../native/addon.js';

interface NotifyNative {
  send(socketPath: string, message: string): void;
}

export interface NotifierEnvironment {
  NOTIFY_SOCKET?: string;
  WATCHDOG_USEC?: string;
  WATCHDOG_PID?: string;
}

export class SystemdNotifier {
  readonly socketPath: string | undefined;
  /** The watchdog interval systemd expects pings within, when it applies to this process. */
  readonly watchdogMicros: number | undefined;
  private watchdogTimer: NodeJS.Timeout | undefined;

  constructor(
    env: NotifierEnvironment = process.env,
    private readonly native: NotifyNative | undefined = env.NOTIFY_SOCKET
      ? addonModule<NotifyNative>('notify')
      : undefined,
    pid: number = process.pid,
  ) {
    this.socketPath = env.NOTIFY_SOCKET || undefined;
    const usec = Number(env.WATCHDOG_USEC);
    const forUs = env.WATCHDOG_PID === undefined || Number(env.WATCHDOG_PID) === pid;
    this.watchdogMicros = Number.isSafeInteger(usec) && usec > 0 && forUs ? usec : undefined;
  }

  get enabled(): boolean {
    return this.socketPath !== undefined;
  }

  /** Sends raw assignments (e.g. ['READY=1', 'STATUS=...']); no-op outside systemd. */
  send(assignments: string[]): void {
    if (!this.socketPath || !this.native) return;
    this.native.send(this.socketPath, assignments.join('\n'));
  }

  ready(status?: string): void {
    this.send(status === undefined ? ['READY=1'] : ['READY=1', statusLine(status)]);
  }

  /** A reload begins (systemctl reload waits for the READY=1 that ends it). */
  reloading(): void {
    // CLOCK_MONOTONIC, which Node's hrtime reads on Linux: systemd relates the two messages with it.
    this.send(['RELOADING=1', `MONOTONIC_USEC=${process.hrtime.bigint() / 1000n}`]);
  }

  status(text: string): void {
    this.send([statusLine(text)]);
  }

  /** Asks systemd for more start-up (or stop) time: `micros` from now. */
  extendTimeout(micros: number): void {
    this.send([`EXTEND_TIMEOUT_USEC=${Math.max(0, Math.floor(micros))}`]);
  }

  stopping(status?: string): void {
    this.stopWatchdog();
    this.send(status === undefined ? ['STOPPING=1'] : ['STOPPING=1', statusLine(status)]);
  }

  /** Pings the watchdog at half its interval until stopped; the timer never keeps the process alive. */
  startWatchdog(): void {
    if (this.watchdogMicros === undefined || this.watchdogTimer) return;
    const everyMs = Math.max(1, Math.floor(this.watchdogMicros / 2000));
    this.send(['WATCHDOG=1']);
    this.watchdogTimer = setInterval(() => this.send(['WATCHDOG=1']), everyMs);
    this.watchdogTimer.unref();
  }

  stopWatchdog(): void {
    if (this.watchdogTimer) clearInterval(this.watchdogTimer);
    this.watchdogTimer = undefined;
  }
}

/** STATUS= is one line: newlines would end the assignment early. */
function statusLine(text: string): string {
  return `STATUS=${text.replace(/[\r\n]+/g, ' ').trim()}`;
}
