/**
 * The key socket's fetch (src/agent/socket-key.ts), for the VM's held-back key server boot: systemd-cryptsetup
 * asks right after a degraded READY, while the server is still down, and asks only once (before, the request
 * was refused at once and the crypttab volume stayed closed). A server that does not answer is now waited
 * for within a bound; one that answers without the key fails at once.
 * Time is a FakeClock; the key source is a table whose server is down for the first few fetches.
 */
import { describe, expect, it } from 'vitest';
import type { FetchedKey, KeySource } from '../../src/agent/key-source.js';
import { fetchSocketKey, throttledRetries } from '../../src/agent/socket-key.js';
import { FakeClock } from '../support/fake-clock.js';

class FlakyKeySource implements KeySource {
  fetches = 0;
  constructor(
    private readonly downFor: number,
    private readonly answer: FetchedKey,
    /** How the server is down: timing out by default, or refusing (nothing listens). */
    private readonly downCode = 'KMIP_CONNECTION_FAILED',
  ) {}
  async fetch(uids: string[]): Promise<Map<string, FetchedKey>> {
    this.fetches += 1;
    if (this.fetches <= this.downFor)
      throw Object.assign(new Error(`127.0.0.1:5696: ${this.downCode}`), { code: this.downCode });
    return new Map(uids.map((u) => [u, this.answer]));
  }
  findByName = () => Promise.resolve([]);
  findByGroup = () => Promise.resolve([]);
  createKey = () => Promise.reject(new Error('not used'));
}

const KEY = Buffer.alloc(32, 7);
const options = (keys: KeySource, clock: FakeClock, retries: string[] = []) => ({
  keys,
  clock,
  random: () => 0.5,
  waitMs: 60_000,
  retryCapMs: 5_000,
  refusedRetryCapMs: 1_000,
  onRetry: (code: string, attempt: number) => retries.push(`${attempt}:${code}`),
});

describe('the key socket waits for a key server that is not up yet', () => {
  it('hands out the key once the server answers, after bounded retries', async () => {
    const clock = new FakeClock();
    const keys = new FlakyKeySource(3, { ok: true, key: Buffer.from(KEY) });
    const retries: string[] = [];
    let got: Buffer | undefined;
    const pending = fetchSocketKey('uid-1', options(keys, clock, retries)).then((k) => (got = k));
    await clock.advance(30_000);
    await pending;
    expect(got?.equals(KEY)).toBe(true);
    expect(keys.fetches).toBe(4);
    expect(retries).toEqual(['1:KMIP_CONNECTION_FAILED', '2:KMIP_CONNECTION_FAILED', '3:KMIP_CONNECTION_FAILED']);
    // Jittered backoff within the cap, never a spin.
    expect(clock.delays.every((d) => d >= 100 && d <= 5_000)).toBe(true);
  });

  it('a server refusing connections is retried within the refused cap (the boot policy), then answers', async () => {
    const clock = new FakeClock();
    const keys = new FlakyKeySource(6, { ok: true, key: Buffer.from(KEY) }, 'KMIP_CONNECTION_REFUSED');
    const pending = fetchSocketKey('uid-1', { ...options(keys, clock), random: () => 0.999 });
    await clock.advance(10_000);
    expect((await pending).equals(KEY)).toBe(true);
    // At the highest draw: 999 ms every time, where a timing-out server would wait 1, 2, 4, then 5 s.
    expect(clock.delays).toEqual(Array(6).fill(999));
  });

  it('gives up at the wait bound with the code of the last failure', async () => {
    const clock = new FakeClock();
    const keys = new FlakyKeySource(Number.MAX_SAFE_INTEGER, { ok: true, key: Buffer.from(KEY) });
    const outcome = fetchSocketKey('uid-1', options(keys, clock)).catch((e: unknown) => e);
    await clock.advance(61_000);
    const error = (await outcome) as { code?: string; message?: string };
    expect(error.code).toBe('KMIP_CONNECTION_FAILED');
    expect(error.message).toMatch(/no key for the key socket: 127.0.0.1:5696: KMIP_CONNECTION_FAILED/);
    expect(clock.monotonicMs()).toBeGreaterThanOrEqual(60_000);
    // One last try at the bound itself, none after it.
    const fetchesAtBound = keys.fetches;
    await clock.advance(60_000);
    expect(keys.fetches).toBe(fetchesAtBound);
  });

  it('stops waiting when the agent stops', async () => {
    const clock = new FakeClock();
    const keys = new FlakyKeySource(Number.MAX_SAFE_INTEGER, { ok: true, key: Buffer.from(KEY) });
    const stopping = new AbortController();
    const outcome = fetchSocketKey('uid-1', { ...options(keys, clock), signal: stopping.signal }).catch(
      (e: unknown) => e,
    );
    await clock.advance(3_000);
    const fetches = keys.fetches;
    stopping.abort();
    const error = (await outcome) as { code?: string };
    expect(error.code).toBe('KMIP_CONNECTION_FAILED');
    expect(clock.monotonicMs()).toBe(3_000);
    await clock.advance(60_000);
    expect(keys.fetches).toBe(fetches);
  });

  it('fails at once, without waiting, when the server answers that the key is not there', async () => {
    const clock = new FakeClock();
    const keys = new FlakyKeySource(0, {
      ok: false,
      error: { code: 'KMIP_ITEM_NOT_FOUND', message: 'Item Not Found', notFound: true },
    });
    const error = (await fetchSocketKey('uid-1', options(keys, clock)).catch((e: unknown) => e)) as { code?: string };
    expect(error.code).toBe('KMIP_ITEM_NOT_FOUND');
    expect(keys.fetches).toBe(1);
    expect(clock.delays).toEqual([]);
  });
});

describe('throttledRetries (the keysocket.waiting log line)', () => {
  it('passes on the first failure, a change of failure, then one per interval of the same failure', async () => {
    const clock = new FakeClock();
    const lines: string[] = [];
    const onRetry = throttledRetries(clock, 15_000, (code, attempt) => lines.push(`${attempt}:${code}`));
    for (let attempt = 1; attempt <= 40; attempt++) {
      // A refusing server retried every second, then timing out from attempt 31.
      onRetry(attempt <= 30 ? 'KMIP_CONNECTION_REFUSED' : 'KMIP_CONNECTION_FAILED', attempt);
      await clock.advance(1_000);
    }
    expect(lines).toEqual(['1:KMIP_CONNECTION_REFUSED', '16:KMIP_CONNECTION_REFUSED', '31:KMIP_CONNECTION_FAILED']);
  });
});
