/**
 * LUKS2 volumes with keys that live on a real KMIP server (PyKMIP): images made by the cryptsetup
 * CLI, every change made by the addon confirmed by the cryptsetup CLI.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest';
import {
  addKey,
  checkKey,
  close,
  deviceMapperStatus,
  luksInfo,
  LuksError,
  open,
  removeKey,
  agentKeyslotPbkdf,
} from '../../src/drives/luks.js';
import {
  attachLoop,
  cryptsetupAccepts,
  detachLoop,
  importToken,
  luksDumpJson,
  luksDumpText,
  luksFormat,
  luksUuid,
  sha256,
} from './images.js';
import { KmipClient } from '../../src/kmip/client.js';
import { pykmipClientOptions } from '../support/pykmip.js';

async function rejection(promise: Promise<unknown>): Promise<LuksError> {
  try {
    await promise;
  } catch (e) {
    if (e instanceof LuksError) return e;
    throw e;
  }
  throw new Error('expected a LuksError, the call succeeded');
}

describe('LUKS2 volumes with keys from PyKMIP', () => {
  const server = inject('pykmip');
  // Keys as the agent holds them: fetched from the key server, never generated locally by the test.
  let volumeKey: Buffer;
  let rotatedKey: Buffer;
  let dir: string;
  let image: string;
  const loops: string[] = [];

  /** Stores a new volume key on PyKMIP and fetches it back by name, with kmip-agent's own KMIP client. */
  async function keyFromServer(baseName: string): Promise<Buffer> {
    const name = `${baseName}-${process.pid}-${Date.now().toString(36)}`;
    const client = new KmipClient(pykmipClientOptions(server));
    try {
      const stored = randomBytes(32);
      await client.register({ kind: 'secret-data', secret: stored, name, objectGroup: 'kmip-agent/test-appliance' });
      const { uniqueIdentifiers } = await client.locate({ name });
      expect(uniqueIdentifiers).toHaveLength(1);
      const fetched = (await client.get(uniqueIdentifiers[0])).value;
      expect(fetched.equals(stored)).toBe(true);
      stored.fill(0);
      return fetched;
    } finally {
      client.close();
    }
  }

  beforeAll(async () => {
    volumeKey = await keyFromServer('kmip-agent/test-appliance/volume-data');
    rotatedKey = await keyFromServer('kmip-agent/test-appliance/volume-data-rotated');
  });

  afterAll(() => {
    volumeKey.fill(0);
    rotatedKey.fill(0);
  });

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'kmip-agent-luks-'));
    image = join(dir, 'volume.img');
    luksFormat(image, volumeKey);
  });

  afterEach(() => {
    for (const loop of loops.splice(0)) detachLoop(loop);
    rmSync(dir, { recursive: true, force: true });
  });

  it('info matches cryptsetup luksDump', async () => {
    importToken(image, { type: 'kmip-agent', keyslots: ['0'], uid: '42' });
    const info = await luksInfo(image);
    const dump = luksDumpJson(image);
    const text = luksDumpText(image);

    expect(info.format).toBe('LUKS2');
    expect(text).toMatch(/^Version:\s+2$/m);
    expect(info.uuid).toBe(luksUuid(image));
    const segment = dump.segments['0'];
    expect(`${info.cipher}-${info.cipherMode}`).toBe(segment.encryption);
    expect(info.sectorSize).toBe(segment.sector_size);
    expect(info.dataOffset).toBe(Number(segment.offset));
    expect(info.keySize).toBe(dump.keyslots['0'].key_size);
    expect(info.segments).toEqual([
      {
        segment: 0,
        type: segment.type,
        offset: Number(segment.offset),
        size: 'dynamic',
        encryption: segment.encryption,
        sectorSize: segment.sector_size,
      },
    ]);
    expect(info.keyslots.map((k) => k.slot)).toEqual(Object.keys(dump.keyslots).map(Number));
    const [slot0] = info.keyslots;
    expect(slot0).toMatchObject({ slot: 0, state: 'active', priority: 'normal', keySize: dump.keyslots['0'].key_size });
    expect(slot0.pbkdf).toEqual({
      type: dump.keyslots['0'].kdf.type,
      hash: dump.keyslots['0'].kdf.hash,
      iterations: dump.keyslots['0'].kdf.iterations,
    });
    expect(info.tokens).toEqual([{ token: 0, type: 'kmip-agent', kind: 'external-unknown', keyslots: [0] }]);
    expect(Object.values(dump.tokens)[0].type).toBe('kmip-agent');
  });

  it('reads the same header through a loop device', async () => {
    const loop = attachLoop(image);
    loops.push(loop);
    const viaLoop = await luksInfo(loop);
    const viaFile = await luksInfo(image);
    expect({ ...viaLoop, device: image }).toEqual(viaFile);
    expect(await checkKey(loop, volumeKey)).toEqual({ slot: 0 });
  });

  it('checks the right key and refuses a wrong one, changing nothing', async () => {
    const before = sha256(image);
    expect(await checkKey(image, volumeKey)).toEqual({ slot: 0 });
    const wrong = await rejection(checkKey(image, rotatedKey));
    expect(wrong.code).toBe('LUKS_WRONG_KEY');
    expect(sha256(image)).toBe(before);
  });

  it('open activates where device-mapper exists, and reports LUKS_DM_NOT_AVAILABLE where it does not', async () => {
    const dm = deviceMapperStatus();
    const hasControl = existsSync('/dev/mapper/control');
    if (!dm.available) {
      const error = await rejection(open(image, 'kmip-agent-test', volumeKey, { readOnly: true }));
      expect(error.code).toBe('LUKS_DM_NOT_AVAILABLE');
      expect(error.message).toMatch(/^device-mapper not available: cannot activate/);
      expect(existsSync('/dev/mapper/kmip-agent-test')).toBe(false);
      // close needs device-mapper too.
      expect((await rejection(close('kmip-agent-test'))).code).toBe('LUKS_DM_NOT_AVAILABLE');
      if (!hasControl) expect(dm.reason).toBeDefined();
      return;
    }
    const name = `kmip-agent-test-${process.pid}`;
    expect(await open(image, name, volumeKey, { readOnly: true })).toEqual({ slot: 0 });
    try {
      expect(existsSync(`/dev/mapper/${name}`)).toBe(true);
      expect((await rejection(open(image, name, volumeKey))).code).toMatch(/^LUKS_(ALREADY_ACTIVE|BUSY)$/);
    } finally {
      await close(name);
    }
    expect(existsSync(`/dev/mapper/${name}`)).toBe(false);
  });

  it('adds a keyslot for a rotated key, confirmed by cryptsetup', async () => {
    const { slot } = await addKey(image, volumeKey, rotatedKey);
    expect(slot).toBe(1);
    const dump = luksDumpJson(image);
    const pbkdf = agentKeyslotPbkdf();
    expect(dump.keyslots['1'].kdf).toMatchObject({ type: pbkdf.type, hash: pbkdf.hash, iterations: pbkdf.iterations });
    expect(pbkdf).toEqual({ type: 'pbkdf2', hash: 'sha256', iterations: 1000 });
    expect(cryptsetupAccepts(image, rotatedKey, 1)).toBe(true);
    expect(cryptsetupAccepts(image, volumeKey, 0)).toBe(true);
    expect(await checkKey(image, rotatedKey)).toEqual({ slot: 1 });
  });

  it('adds a keyslot into a chosen slot', async () => {
    expect(await addKey(image, volumeKey, rotatedKey, { slot: 7 })).toEqual({ slot: 7 });
    expect(Object.keys(luksDumpJson(image).keyslots).sort()).toEqual(['0', '7']);
    expect(cryptsetupAccepts(image, rotatedKey, 7)).toBe(true);
  });

  it('rotates: add the new key, remove the old slot authorized by the new key', async () => {
    await addKey(image, volumeKey, rotatedKey);
    expect(await removeKey(image, rotatedKey, { slot: 0 })).toEqual({ slot: 0 });
    expect(Object.keys(luksDumpJson(image).keyslots)).toEqual(['1']);
    expect(cryptsetupAccepts(image, volumeKey)).toBe(false);
    expect(cryptsetupAccepts(image, rotatedKey)).toBe(true);
  });

  it('removes the keyslot a given key opens', async () => {
    await addKey(image, volumeKey, rotatedKey);
    expect(await removeKey(image, volumeKey, { key: rotatedKey })).toEqual({ slot: 1 });
    expect(Object.keys(luksDumpJson(image).keyslots)).toEqual(['0']);
    expect(cryptsetupAccepts(image, rotatedKey)).toBe(false);
  });

  it('never locks a volume out unless forced', async () => {
    // The last keyslot.
    let before = sha256(image);
    let error = await rejection(removeKey(image, volumeKey, { slot: 0 }));
    expect(error.code).toBe('LUKS_KEYSLOT_LAST');
    expect(error.message).toContain('last keyslot');
    expect(sha256(image)).toBe(before);

    // A slot whose key is the only one the caller proves: removing it would leave the caller without a key.
    await addKey(image, volumeKey, rotatedKey);
    before = sha256(image);
    error = await rejection(removeKey(image, volumeKey, { slot: 0 }));
    expect(error.code).toBe('LUKS_KEYSLOT_LAST');
    expect(error.message).toContain('opens no other keyslot');
    expect(sha256(image)).toBe(before);
    expect(cryptsetupAccepts(image, volumeKey, 0)).toBe(true);

    // Forced: allowed, and cryptsetup sees the slot gone.
    expect(await removeKey(image, volumeKey, { slot: 0 }, { force: true })).toEqual({ slot: 0 });
    expect(cryptsetupAccepts(image, volumeKey)).toBe(false);
    expect(cryptsetupAccepts(image, rotatedKey)).toBe(true);
  });

  it('a key present in two slots may remove one of them', async () => {
    await addKey(image, volumeKey, volumeKey);
    expect(await removeKey(image, volumeKey, { slot: 0 })).toEqual({ slot: 0 });
    expect(Object.keys(luksDumpJson(image).keyslots)).toEqual(['1']);
    expect(cryptsetupAccepts(image, volumeKey, 1)).toBe(true);
  });

  it('adds and removes keyslots on a loop device', async () => {
    const loop = attachLoop(image);
    loops.push(loop);
    expect(await addKey(loop, volumeKey, rotatedKey)).toEqual({ slot: 1 });
    expect(cryptsetupAccepts(loop, rotatedKey, 1)).toBe(true);
    expect(await removeKey(loop, rotatedKey, { slot: 0 })).toEqual({ slot: 0 });
    expect(cryptsetupAccepts(loop, volumeKey)).toBe(false);
    expect(Object.keys(luksDumpJson(image).keyslots)).toEqual(['1']);
  });
});
