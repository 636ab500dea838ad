/**
 * The internal master key store (master-key.ts) with the real systemd-creds: sealed 0600 files that are
 * not the key, a blob renamed to another id refused, activation a rename (idempotent), retire deleting;
 * and the location input checks the API and CLI share.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  DEFAULT_MASTER_LOCATION,
  InternalMasterKeyStore,
  parseLocation,
  systemdCredsSealer,
} from '../../src/agent/master-key.js';

/** Skipped only where systemd-creds is not installed (Debian's systemd ships it). */
const hasSystemdCreds = spawnSync('systemd-creds', ['--version']).status === 0;

describe.skipIf(!hasSystemdCreds)('internal master keys sealed with systemd-creds', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'kmip-agent-master-key-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('seals a key into a 0600 file that does not hold it; activates, fetches, retires', async () => {
    const key = Buffer.alloc(32, 0x5a);
    const store = new InternalMasterKeyStore(join(dir, 'mk'), systemdCredsSealer(), () => Buffer.from(key));
    const uid = await store.createMasterKey('ignored', 'ignored', { preActive: true });
    expect(await store.findPreActive()).toEqual([uid]);
    expect(await store.findActive()).toEqual([]);
    const file = join(dir, 'mk', `${uid}.pre-active.cred`);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const blob = readFileSync(file);
    expect(blob.includes(key)).toBe(false);
    expect(blob.includes(Buffer.from(key.toString('hex')))).toBe(false);

    await store.activate(uid);
    // A rerun after a crash that followed the rename: already active is fine.
    await store.activate(uid);
    expect(await store.findActive()).toEqual([uid]);
    const got = (await store.fetch([uid])).get(uid)!;
    expect(got).toEqual({ ok: true, key });

    await store.retire(uid);
    expect(await store.findActive()).toEqual([]);
    expect((await store.fetch([uid])).get(uid)).toMatchObject({ ok: false, error: { code: 'MASTER_KEY_NOT_FOUND' } });
  });

  it('refuses a sealed blob renamed to another key id (the id is bound into the credential)', async () => {
    const store = new InternalMasterKeyStore(dir, systemdCredsSealer());
    const a = await store.createMasterKey('n', 'g');
    const b = await store.createMasterKey('n', 'g');
    renameSync(join(dir, `${a}.cred`), join(dir, `${b}.cred`));
    expect((await store.fetch([b])).get(b)).toMatchObject({
      ok: false,
      error: { code: 'MASTER_KEY_SEAL_FAILED', unusable: true },
    });
  });
});

describe('master key location input', () => {
  const providers = ['default', 'second'];
  it('defaults to where the key is, names a provider, refuses nonsense before anything is contacted', () => {
    expect(parseLocation({}, providers, DEFAULT_MASTER_LOCATION)).toEqual(DEFAULT_MASTER_LOCATION);
    expect(parseLocation({}, providers, { keyManagementType: 'internal' })).toEqual({ keyManagementType: 'internal' });
    expect(parseLocation({ keyProviderID: 'second' }, providers, { keyManagementType: 'internal' })).toEqual({
      keyManagementType: 'external',
      keyProviderID: 'second',
    });
    expect(parseLocation({ keyManagementType: 'external' }, providers, { keyManagementType: 'internal' })).toEqual(
      DEFAULT_MASTER_LOCATION,
    );
    expect(() => parseLocation({ keyProviderID: 'nowhere' }, providers, DEFAULT_MASTER_LOCATION)).toThrow(
      expect.objectContaining({ code: 'CONFIG_PROVIDER_UNKNOWN' }),
    );
    expect(() =>
      parseLocation({ keyManagementType: 'internal', keyProviderID: 'second' }, providers, DEFAULT_MASTER_LOCATION),
    ).toThrow(expect.objectContaining({ code: 'REKEY_INVALID_KEY_MANAGEMENT' }));
    expect(() => parseLocation({ keyManagementType: 'tpm' }, providers, DEFAULT_MASTER_LOCATION)).toThrow(
      expect.objectContaining({ code: 'REKEY_INVALID_KEY_MANAGEMENT' }),
    );
  });
});
