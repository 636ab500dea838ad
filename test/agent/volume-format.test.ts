/**
 * `kmip-agent volume format` against the run's PyKMIP server and image files checked with the cryptsetup
 * CLI: one keyslot, the KMIP key's, under a UUID chosen before the key was named; a device holding a
 * filesystem or LUKS header is refused before the key server is contacted, unless --force.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { KmipKeySource } from '../../src/agent/key-source.js';
import { decodeState } from '../../src/agent/state.js';
import { luks } from '../../src/drives/index.js';
import { addonModule } from '../../src/native/addon.js';
import { cryptsetupAccepts, luksDumpJson, luksFormat, luksUuid, makeImage, sha256 } from '../luks/images.js';
import { appliancesForEachTest, TestAppliance } from './appliance.js';

const appliance = appliancesForEachTest();

const state = (a: TestAppliance) => decodeState(readFileSync(a.statePath, 'utf8'), a.statePath).body;
const keysInGroup = async (a: TestAppliance) => new KmipKeySource(a.provider()).findByGroup(`kmip-agent/${a.id}`);

describe('volume format', () => {
  it('a blank image becomes LUKS2 whose only keyslot is the KMIP key named after its UUID', async () => {
    const a = appliance();
    const path = join(a.work, 'new.img');
    makeImage(path);
    const result = a.ok(['volume', 'format', path, '--name', 'fresh', '--yes']);

    const uuid = luksUuid(path);
    expect(result).toMatchObject({ id: uuid, device: path, keyName: `kmip-agent/${a.id}/${uuid}`, keyslot: 0 });
    const dump = luksDumpJson(path);
    expect(Object.keys(dump.keyslots)).toEqual(['0']);
    expect(dump.keyslots['0']!.kdf).toMatchObject({ type: 'pbkdf2', hash: 'sha256', iterations: 1000 });
    expect(dump.keyslots['0']!.key_size).toBe(64);
    expect(dump.segments['0']!.encryption).toBe('aes-xts-plain64');

    const fetched = (await new KmipKeySource(a.provider()).fetch([result.keyUid as string])).get(
      result.keyUid as string,
    );
    expect(fetched?.ok).toBe(true);
    const key = fetched!.ok ? fetched!.key : Buffer.alloc(0);
    expect(cryptsetupAccepts(path, key, 0)).toBe(true);
    expect(cryptsetupAccepts(path, randomBytes(32))).toBe(false);
    const names = await new KmipKeySource(a.provider()).namesOf([result.keyUid as string]);
    expect(names.get(result.keyUid as string)).toEqual([`kmip-agent/${a.id}/${uuid}`]);

    const s = state(a);
    expect(s.volumes).toEqual([expect.objectContaining({ id: uuid, device: path, keyslot: 0 })]);
    const job = s.jobs.find((j) => j.kind === 'format-volume')!;
    expect(job).toMatchObject({ status: 'done', target: uuid });
    expect(job.steps.map((st) => st.name)).toEqual(['uuid-chosen', 'key-created', 'formatted']);
    const config = JSON.parse(readFileSync(join(a.dirs.config, 'config.json'), 'utf8')) as {
      volumes: { device: string; name: string }[];
    };
    expect(config.volumes).toEqual([expect.objectContaining({ device: path, name: 'fresh' })]);

    // Formatting it again is refused: it is enrolled.
    const again = a.cli(['volume', 'format', path, '--name', 'fresh', '--yes', '--force']);
    expect(again.code).toBe(1);
    expect(again.json.error).toMatchObject({ code: 'VOLUME_ALREADY_ENROLLED' });
  });

  it('refuses a filesystem or a LUKS header before contacting the key server; --force formats anyway', async () => {
    const a = appliance();
    const ext4 = join(a.work, 'ext4.img');
    makeImage(ext4);
    execFileSync('mkfs.ext4', ['-q', '-F', ext4]);
    const existing = join(a.work, 'luks.img');
    luksFormat(existing, randomBytes(32));
    const before = [sha256(ext4), sha256(existing)];
    const stateBefore = readFileSync(a.statePath, 'utf8'); // setup's connection test

    for (const [path, signature] of [
      [ext4, 'ext4'],
      [existing, 'crypto_LUKS'],
    ] as const) {
      const r = a.cli(['volume', 'format', path, '--name', 'x', '--yes']);
      expect(r.code).toBe(1);
      expect(r.json.error).toMatchObject({ code: 'VOLUME_NOT_EMPTY', signature });
    }
    expect([sha256(ext4), sha256(existing)]).toEqual(before);
    expect(await keysInGroup(a)).toEqual([]);
    expect(readFileSync(a.statePath, 'utf8')).toBe(stateBefore); // refused before the journal was written

    const forced = a.ok(['volume', 'format', ext4, '--name', 'x', '--yes', '--force']);
    expect(forced.id).toBe(luksUuid(ext4));
    expect(await keysInGroup(a)).toEqual([forced.keyUid]);
  });

  it('without --yes nothing happens (usage error before any device or server)', () => {
    const a = appliance();
    const path = join(a.work, 'blank.img');
    makeImage(path);
    const before = sha256(path);
    const r = a.cli(['volume', 'format', path, '--name', 'x']);
    expect(r.code).toBe(2);
    expect(r.json.error).toMatchObject({ code: 'USAGE_CONFIRM' });
    expect(sha256(path)).toBe(before);
  });
});

describe('luks.format (addon)', () => {
  const work = () => appliance({ setup: false }).work;

  it('refuses a bad UUID, a missing device and (in the addon itself) a LUKS header unless forced', async () => {
    const dir = work();
    const key = randomBytes(32);
    const blank = join(dir, 'blank.img');
    makeImage(blank);
    await expect(luks.format(blank, key, { uuid: 'not-a-uuid' })).rejects.toMatchObject({
      code: 'LUKS_INVALID_ARGUMENT',
    });
    await expect(luks.format(join(dir, 'missing.img'), key, { uuid: randomUUID(), force: true })).rejects.toMatchObject(
      { code: 'LUKS_DEVICE_NOT_FOUND' },
    );
    const existing = join(dir, 'luks.img');
    luksFormat(existing, randomBytes(32));
    await expect(luks.format(existing, key, { uuid: randomUUID() })).rejects.toMatchObject({
      code: 'LUKS_DEVICE_IN_USE',
    });
    // The addon's own check, without the blkid probe in front of it.
    const native = addonModule<{ format(p: string, k: Buffer, u: string, f: boolean): Promise<unknown> }>('luks');
    const hash = sha256(existing);
    await expect(native.format(existing, key, randomUUID(), false)).rejects.toMatchObject({
      code: 'LUKS_DEVICE_IN_USE',
    });
    expect(sha256(existing)).toBe(hash);

    const uuid = randomUUID();
    expect(await luks.format(existing, key, { uuid, force: true })).toEqual({ slot: 0 });
    expect(luksUuid(existing)).toBe(uuid);
    expect(await luks.checkKey(existing, key)).toEqual({ slot: 0 });
    expect(Object.keys(luksDumpJson(existing).keyslots)).toEqual(['0']);
  });

  it('a file too small for a LUKS2 header is refused with a typed error', async () => {
    const small = join(work(), 'small.img');
    makeImage(small, 4 * 1024 * 1024);
    await expect(luks.format(small, randomBytes(32), { uuid: randomUUID() })).rejects.toMatchObject({
      code: 'LUKS_INVALID_ARGUMENT',
      message: expect.stringMatching(/too small/),
    });
    expect(statSync(small).size).toBe(4 * 1024 * 1024);
  });
});
