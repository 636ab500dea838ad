/**
 * The fault registry: what is wrong right now, for operators (status, health, the API) and for systemd's
 * STATUS line. A fault has a stable code, a severity, the drives or volumes it affects, when it was first
 * and last seen and how often, and a hint an operator can follow. Faults clear themselves when their cause
 * goes away (whoever raised one clears it on the next success); raising and clearing are reported to a
 * listener, which logs them, so an alert never outlives its cause silently.
 */
export const FAULT_DEFINITIONS = {
  KmipServerFault: {
    severity: 'critical',
    summary: 'no key server of the provider is reachable',
    hint: 'check the network path and that the key servers are up (`kmip-agent kmip discover --provider default`); the agent keeps retrying',
  },
  KmipAuthFault: {
    severity: 'critical',
    summary: 'the key server refused the TLS or KMIP authentication',
    hint: 'check the client certificate (valid, EKU clientAuth, issued by a CA the server trusts) and the trusted CA of the server',
  },
  KmipClientDisabled: {
    severity: 'error',
    summary: 'the KMIP client is disabled: drives and volumes that need a key server stay locked',
    hint: 'enable it with `kmip-agent client enable` (after `kmip-agent setup` if it was reset); the agent then unlocks them',
  },
  KeyNotFound: {
    severity: 'error',
    summary: 'the key recorded for a drive or volume is not on the key server',
    hint: 'restore the key on the key server, or run `kmip-agent recover` to find it by name; do not erase the drive',
  },
  DriveUnlockFailed: {
    severity: 'error',
    summary: 'a drive or volume did not unlock',
    hint: 'see the details; `kmip-agent unlock` retries now',
  },
  DriveLockoutRisk: {
    severity: 'critical',
    summary: 'a drive is near its authentication try limit; the agent stopped trying',
    hint: 'power-cycle the drive to reset its try counter; if the key is lost, a PSID revert (label on the drive) erases it and makes it usable again',
  },
  DriveMissing: {
    severity: 'error',
    summary: 'a managed drive or volume is not present',
    hint: 'check cabling and the enclosure; a replaced drive is enrolled with `kmip-agent drive enroll`',
  },
  StateRecovered: {
    severity: 'warning',
    summary: 'the local state was rebuilt from the key server',
    hint: 'check `kmip-agent status` that every drive is recorded as expected',
  },
  StateCorrupt: {
    severity: 'critical',
    summary: 'the local state file is corrupt; it was kept aside untouched',
    hint: 'run `kmip-agent recover` to rebuild the state from the key server',
  },
  CertificateExpiring: {
    severity: 'warning',
    summary: 'the client certificate expires soon',
    hint: 'have a new client certificate issued and install it with `kmip-agent cert replace`',
  },
  CertificateExpired: {
    severity: 'critical',
    summary: 'the client certificate has expired; key servers will refuse it',
    hint: 'have a new client certificate issued and install it with `kmip-agent cert replace --force`',
  },
  RotationOverdue: {
    severity: 'warning',
    summary: "a drive's or volume's key is past its rotation date (rotation policy) and its grace period",
    hint: 'see `kmip-agent faults` for why (a failed rotation, a busy rekey lane); `kmip-agent drive rotate <id>` rotates it now',
  },
  RotationFailed: {
    severity: 'error',
    summary: "the last scheduled rotation of a drive's or volume's key failed",
    hint: 'see the details and the rotation journal (`kmip-agent jobs`); the agent tries again later, or run `kmip-agent drive rotate <id>`',
  },
} as const satisfies Record<string, { severity: Severity; summary: string; hint: string }>;

export type Severity = 'info' | 'warning' | 'error' | 'critical';
export type FaultCode = keyof typeof FAULT_DEFINITIONS;

export interface Fault {
  code: FaultCode;
  severity: Severity;
  summary: string;
  hint: string;
  /** What it is about: a drive or volume id, a server endpoint, or "agent" for the agent as a whole. */
  subject: string;
  /** Drives and volumes it affects (ids). */
  affects: string[];
  firstSeen: Date;
  lastSeen: Date;
  count: number;
  details: Record<string, unknown>;
}

export type FaultEvent = { type: 'raised' | 'cleared'; fault: Fault };

/** Health as `kmip-agent health` reports it: exit 0 healthy, 1 degraded, 2 faulted. */
export type Health = 'healthy' | 'degraded' | 'faulted';

export class FaultRegistry {
  private readonly active = new Map<string, Fault>();

  constructor(
    private readonly now: () => Date = () => new Date(),
    private readonly listener: (event: FaultEvent) => void = () => undefined,
  ) {}

  /** Raises (or refreshes) a fault about `subject`. */
  raise(
    code: FaultCode,
    subject: string,
    options: { affects?: string[]; details?: Record<string, unknown> } = {},
  ): Fault {
    const key = `${code}\0${subject}`;
    const at = this.now();
    const existing = this.active.get(key);
    if (existing) {
      existing.lastSeen = at;
      existing.count += 1;
      if (options.details) existing.details = options.details;
      if (options.affects) existing.affects = [...new Set([...existing.affects, ...options.affects])];
      return { ...existing };
    }
    const definition = FAULT_DEFINITIONS[code];
    const fault: Fault = {
      code,
      severity: definition.severity,
      summary: definition.summary,
      hint: definition.hint,
      subject,
      affects: options.affects ?? [],
      firstSeen: at,
      lastSeen: at,
      count: 1,
      details: options.details ?? {},
    };
    this.active.set(key, fault);
    this.listener({ type: 'raised', fault: { ...fault } });
    return { ...fault };
  }

  /** Clears the fault `code` about `subject` (every subject when omitted); returns how many cleared. */
  clear(code: FaultCode, subject?: string): number {
    let cleared = 0;
    for (const [key, fault] of this.active) {
      if (fault.code !== code || (subject !== undefined && fault.subject !== subject)) continue;
      this.active.delete(key);
      cleared += 1;
      this.listener({ type: 'cleared', fault: { ...fault } });
    }
    return cleared;
  }

  has(code: FaultCode, subject?: string): boolean {
    return this.list().some((f) => f.code === code && (subject === undefined || f.subject === subject));
  }

  /** Active faults, most severe first, then oldest first. */
  list(): Fault[] {
    const rank: Record<Severity, number> = { critical: 0, error: 1, warning: 2, info: 3 };
    return [...this.active.values()]
      .map((f) => ({ ...f, affects: [...f.affects] }))
      .sort((a, b) => rank[a.severity] - rank[b.severity] || a.firstSeen.getTime() - b.firstSeen.getTime());
  }

  /** faulted: a critical fault or a failed drive; degraded: anything but info; healthy: nothing else. */
  health(): Health {
    const faults = this.list();
    if (faults.some((f) => f.severity === 'critical')) return 'faulted';
    if (faults.some((f) => f.severity === 'error' || f.severity === 'warning')) return 'degraded';
    return 'healthy';
  }
}
