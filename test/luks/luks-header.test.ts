/** The header check and info accept every LUKS2 layout cryptsetup makes, not only its defaults. */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { addKey, checkKey, luksInfo } from '../../src/drives/luks.js';
import { cryptsetupAccepts, luksDumpJson, luksFormat, luksUuid, sha256 } from './images.js';

describe('LUKS2 layouts', () => {
  let dir: string;
  const key = randomBytes(32);

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'kmip-agent-luks-layouts-'));
  });

  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it.each([
    ['64 KiB metadata areas', ['--luks2-metadata-size', '64k', '--luks2-keyslots-size', '1m']],
    ['4 MiB metadata areas', ['--luks2-metadata-size', '4m', '--luks2-keyslots-size', '2m']],
    [
      'aes-cbc-essiv with 256-bit keys and 512-byte sectors',
      ['--cipher', 'aes-cbc-essiv:sha256', '--key-size', '256', '--sector-size', '512'],
    ],
  ])('%s', async (_what, options) => {
    const image = join(dir, 'volume.img');
    luksFormat(image, key, 'luks2', options);
    const before = sha256(image);
    const info = await luksInfo(image);
    const dump = luksDumpJson(image);
    const segment = dump.segments['0'];
    expect(info.uuid).toBe(luksUuid(image));
    expect(`${info.cipher}-${info.cipherMode}`).toBe(segment.encryption);
    expect(info.keySize).toBe(dump.keyslots['0'].key_size);
    expect(info.sectorSize).toBe(segment.sector_size);
    expect(info.dataOffset).toBe(Number(segment.offset));
    expect(await checkKey(image, key)).toEqual({ slot: 0 });
    expect(sha256(image)).toBe(before);
    const newKey = randomBytes(32);
    expect(await addKey(image, key, newKey)).toEqual({ slot: 1 });
    expect(cryptsetupAccepts(image, newKey, 1)).toBe(true);
  });

  it('reports label and subsystem', async () => {
    const image = join(dir, 'labelled.img');
    luksFormat(image, key, 'luks2', ['--label', 'appliance-data', '--subsystem', 'kmip-agent']);
    expect(await luksInfo(image)).toMatchObject({ label: 'appliance-data', subsystem: 'kmip-agent' });
  });
});
