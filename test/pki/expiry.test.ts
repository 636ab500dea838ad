/** The expiry verdict: a pure function of notAfter, the injected time and the warning window. */
import { describe, expect, it } from 'vitest';
import { checkExpiry } from '../../src/pki/index.js';

const notAfter = '2027-01-31T12:00:00.000Z';
const at = (iso: string) => new Date(iso);

describe('checkExpiry', () => {
  it('is ok before the window, expiring inside it, expired after notAfter', () => {
    expect(checkExpiry({ notAfter }, at('2026-12-31T11:59:59Z'), 30)).toEqual({ status: 'ok', daysLeft: 31, notAfter });
    expect(checkExpiry({ notAfter }, at('2027-01-01T12:00:00Z'), 30)).toEqual({
      status: 'expiring',
      daysLeft: 30,
      notAfter,
    });
    expect(checkExpiry({ notAfter }, at('2027-01-31T12:00:00Z'), 30)).toMatchObject({
      status: 'expiring',
      daysLeft: 0,
    });
    expect(checkExpiry({ notAfter }, at('2027-01-31T12:00:01Z'), 30)).toMatchObject({
      status: 'expired',
      daysLeft: -1,
    });
    expect(checkExpiry({ notAfter }, at('2027-03-02T12:00:01Z'), 30)).toMatchObject({
      status: 'expired',
      daysLeft: -31,
    });
  });

  it('takes the window from its argument; 0 warns only at the end', () => {
    expect(checkExpiry({ notAfter }, at('2027-01-10T12:00:00Z'), 7).status).toBe('ok');
    expect(checkExpiry({ notAfter }, at('2027-01-10T12:00:00Z'), 30).status).toBe('expiring');
    expect(checkExpiry({ notAfter }, at('2027-01-31T11:00:00Z'), 0).status).toBe('ok');
  });
});
