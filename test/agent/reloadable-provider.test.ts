/**
 * The daemon's replaceable provider: calls go to the current provider; a replaced one is closed only once
 * the calls already running on it have finished (a reload never cuts a request in half).
 */
import { describe, expect, it } from 'vitest';
import type { KmipProvider } from '../../src/kmip/index.js';
import { ReloadableProvider } from '../../src/agent/reloadable-provider.js';

/** TEST FIXTURE: a provider whose `get` answers when the test says so, and which counts closes. */
function fakeProvider(name: string) {
  const waiting: (() => void)[] = [];
  const fake = {
    name,
    closed: 0,
    get activeEndpoint() {
      return `${name}:5696`;
    },
    get: () => new Promise<string>((resolve) => waiting.push(() => resolve(name))),
    close() {
      fake.closed++;
    },
    answer: () => waiting.shift()!(),
  };
  return fake;
}

describe('ReloadableProvider', () => {
  it('sends new calls to the replacement and closes the old one after its running call', async () => {
    const first = fakeProvider('first');
    const second = fakeProvider('second');
    const reloadable = new ReloadableProvider(first as unknown as KmipProvider);
    const stand = reloadable.provider as unknown as typeof first;
    const running = stand.get();
    expect(stand.activeEndpoint).toBe('first:5696');
    reloadable.replace(second as unknown as KmipProvider);
    expect(stand.activeEndpoint).toBe('second:5696');
    expect(first.closed).toBe(0);
    const next = stand.get();
    first.answer();
    await expect(running).resolves.toBe('first');
    expect(first.closed).toBe(1);
    second.answer();
    await expect(next).resolves.toBe('second');
    expect(second.closed).toBe(0);
    reloadable.close();
    expect(second.closed).toBe(1);
  });

  it('closes an idle replaced provider at once', () => {
    const first = fakeProvider('first');
    const reloadable = new ReloadableProvider(first as unknown as KmipProvider);
    reloadable.replace(fakeProvider('second') as unknown as KmipProvider);
    expect(first.closed).toBe(1);
  });
});
