/** Whether a certificate is still fine, about to expire, or expired: pure, on injected time. */
import type { CertificateInfo } from './certificate-info.js';

export type ExpiryStatus = 'ok' | 'expiring' | 'expired';

export interface ExpiryVerdict {
  status: ExpiryStatus;
  /** Whole days left (negative once expired). */
  daysLeft: number;
  notAfter: string;
}

const DAY_MS = 86_400_000;

/** 'expired' after notAfter (RFC 5280: valid through it), 'expiring' within `warnDays` days of it, else 'ok'. */
export function checkExpiry(info: Pick<CertificateInfo, 'notAfter'>, now: Date, warnDays: number): ExpiryVerdict {
  const remainingMs = Date.parse(info.notAfter) - now.getTime();
  const daysLeft = Math.floor(remainingMs / DAY_MS);
  const status: ExpiryStatus = remainingMs < 0 ? 'expired' : remainingMs <= warnDays * DAY_MS ? 'expiring' : 'ok';
  return { status, daysLeft, notAfter: info.notAfter };
}
