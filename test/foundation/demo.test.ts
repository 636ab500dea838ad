/** The README's main job stays true: the demo runs end to end against a real PyKMIP server. */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { packageRoot } from '../../src/native/addon.js';

describe('the boot-unlock demo (scripts/demo.sh runs this after setup)', () => {
  it('provisions, power-cycles and unlocks every drive with keys from KMIP', { timeout: 180_000 }, () => {
    const run = spawnSync(process.execPath, [join(packageRoot(), 'dist', 'scripts', 'demo.js')], {
      encoding: 'utf8',
      timeout: 170_000,
    });
    expect(run.stderr).not.toContain('demo: failed');
    expect(run.status).toBe(0);
    const out = run.stdout;
    expect(out).toMatch(/EMU-0001: read after power-on -> EMU_DATA_PROTECT/);
    expect(out).toMatch(/EMU-0001: unlocked with KMIP object \S+; LBA 0 reads "data on EMU-0001"/);
    expect(out).toMatch(/EMU-0002: unlocked with KMIP object \S+; LBA 0 reads "data on EMU-0002"/);
    expect(out).toMatch(/volume-data: key from KMIP object \S+ opens LUKS2 keyslot 0/);
    expect(out).toMatch(/volume-data: (activated|not activated here: device-mapper not available)/);
    expect(out).toContain('PyKMIP stopped');
  });
});
