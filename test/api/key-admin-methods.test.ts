/**
 * The key-server and key-provider API methods: params are checked (API_INVALID_PARAMS naming the field)
 * before the admin operation runs, and are handed to it as the agent layer takes them.
 */
import { describe, expect, it } from 'vitest';
import { keyAdminMethods, type KeyAdminApi } from '../../src/api/methods.js';

/** TEST FIXTURE: an admin that records what it was asked. */
function recordingAdmin() {
  const calls: unknown[][] = [];
  const record =
    (name: string) =>
    async (...args: unknown[]) => {
      calls.push([name, ...args]);
      return { name: args[0] };
    };
  const admin = Object.fromEntries(
    [
      'listServers',
      'getServer',
      'createServer',
      'modifyServer',
      'deleteServer',
      'testServer',
      'listProviders',
      'getProvider',
      'createProvider',
      'deleteProvider',
      'addServerToProvider',
      'removeServerFromProvider',
      'testProvider',
    ].map((m) => [m, record(m)]),
  ) as unknown as KeyAdminApi;
  return { admin, calls };
}

const caller = { pid: 1, uid: 0, gid: 0 };

describe('key-server API methods', () => {
  it('hand the params to the admin operations', async () => {
    const { admin, calls } = recordingAdmin();
    let reloads = 0;
    const m = keyAdminMethods(admin, async () => ({ reloaded: ++reloads }));
    await m.CreateKeyServerKmip!(
      { name: 'kms', host: 'kms.example', port: 5697, caPem: 'PEM', servername: null, provider: 'default' },
      caller,
    );
    await m.ModifyKeyServerKmip!({ name: 'kms', pinnedSha256: null, label: 'x' }, caller);
    await m.AddKeyServerToProviderKmip!({ name: 'default', server: 'kms', position: 0 }, caller);
    await m.CreateKeyProviderKmip!({ name: 'p', servers: ['kms'], label: 'l' }, caller);
    expect(await m.ReloadConfig!({}, caller)).toEqual({ reloaded: 1 });
    expect(calls).toEqual([
      ['createServer', 'kms', { host: 'kms.example', port: 5697, caPem: 'PEM', servername: null, provider: 'default' }],
      ['modifyServer', 'kms', { label: 'x', pinnedSha256: null }],
      ['addServerToProvider', 'default', 'kms', 0],
      ['createProvider', 'p', { servers: ['kms'], label: 'l' }],
    ]);
  });

  it('refuse params of the wrong type, naming them, before anything runs', async () => {
    const { admin, calls } = recordingAdmin();
    const m = keyAdminMethods(admin, async () => ({}));
    const cases: [string, Record<string, unknown>, RegExp][] = [
      ['GetKeyServerKmip', {}, /params\.name must be a string/],
      ['CreateKeyServerKmip', { name: 'kms', port: '5696' }, /params\.port must be a whole number/],
      ['ModifyKeyServerKmip', { name: 'kms', caPem: 42 }, /params\.caPem must be a string/],
      ['CreateKeyProviderKmip', { name: 'p', servers: 'kms' }, /params\.servers must be a list/],
      ['AddKeyServerToProviderKmip', { name: 'p', server: 'kms', position: 1.5 }, /params\.position/],
      ['RemoveKeyServerFromProviderKmip', { name: 'p' }, /params\.server must be a string/],
    ];
    for (const [method, params, message] of cases)
      await expect(m[method]!(params, caller), method).rejects.toMatchObject({
        code: 'API_INVALID_PARAMS',
        message: expect.stringMatching(message),
      });
    expect(calls).toEqual([]);
  });
});
