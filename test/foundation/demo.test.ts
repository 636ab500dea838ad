/** The README's main job stays true: the demo runs end to end against a real PyKMIP server. */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { packageRoot } from '../../src/native/addon.js';

describe('the boot-unlock demo (scripts/demo.sh runs this after setup)', () => {
  it('sets up, enrolls, reboots and boot-unlocks every drive through the daemon', { timeout: 180_000 }, () => {
    const run = spawnSync(process.execPath, [join(packageRoot(), 'dist', 'scripts', 'demo.js')], {
      encoding: 'utf8',
      timeout: 170_000,
    });
    expect(run.stderr).not.toContain('demo: failed');
    expect(run.status).toBe(0);
    const out = run.stdout;
    expect(out).toMatch(/key server \S+: KMIP 2\.0 over TLSv1\.2/);
    for (const n of [1, 2, 3, 4]) {
      expect(out).toMatch(
        new RegExp(`EMU-000${n}: enrolled, locking enabled with key kmip-agent/demo-appliance/EMU-000${n}`),
      );
      expect(out).toMatch(new RegExp(`EMU-000${n}: read after power-on refused \\[EMU_DATA_PROTECT\\]`));
      expect(out).toMatch(new RegExp(`EMU-000${n}\\s+opal\\s+\\S+\\s+unlocked`));
      expect(out).toMatch(new RegExp(`EMU-000${n}: LBA 0 reads "data on EMU-000${n}"`));
    }
    expect(out).toMatch(/LUKS2 volume \S+: enrolled, keyslot 1 opens with key kmip-agent\/demo-appliance\//);
    // The volume opens where device-mapper exists; here its state says it cannot be activated.
    expect(out).toMatch(/\s+luks\s+\S+\s+(unlocked|not-supported)/);
    expect(out).toMatch(/systemd got READY=1 after \d+ ms .*STATUS="4\/4 drives unlocked/);
    expect(out).toMatch(/kmip-agent health: healthy \(exit 0\)/);
    expect(out).toMatch(/daemon stopped \(STOPPING=1, exit 0\)/);
    expect(out).toContain('PyKMIP stopped');
  });
});
