/**
 * Real dm-crypt in a VM (issue 13, item 2): boot 1 enrolls two LUKS2 disks and the daemon activates one
 * through libcryptsetup; boot 2 brings both up at boot, the second by systemd-cryptsetup from
 * /etc/crypttab with the agent's key socket as its key file, before the mount units that need them.
 * Part of `npm run vm-test` (test/vm/vitest.config.ts).
 */
import { afterAll, beforeAll, describe } from 'vitest';
import { itReportsChecks, type BootOutcome } from './guest-report.js';
import { VmRun, ensureImage } from './qemu.js';

const BOOT_TIMEOUT_MS = 420_000;
const first: BootOutcome = {};
const second: BootOutcome = {};
let vm: VmRun | undefined;

describe('LUKS2 on a real kernel: daemon activation, then systemd-cryptsetup from crypttab at boot', () => {
  beforeAll(async () => {
    try {
      vm = new VmRun(ensureImage(), [64, 64]);
      first.result = await vm.boot(['luks-first'], BOOT_TIMEOUT_MS);
      console.log(`vm boot 1 (luks-first): ${first.result.wallMs} ms`);
    } catch (error) {
      first.error = String(error instanceof Error ? error.message : error);
      second.error = `boot 1 failed first: ${first.error}`;
      return;
    }
    try {
      second.result = await vm.boot(['luks-second'], BOOT_TIMEOUT_MS);
      console.log(`vm boot 2 (luks-second): ${second.result.wallMs} ms`);
    } catch (error) {
      second.error = String(error instanceof Error ? error.message : error);
    }
  }, 2 * BOOT_TIMEOUT_MS + 600_000);
  afterAll(() => vm?.cleanup());

  describe('boot 1', () => itReportsChecks(['luks-first'], () => first));
  describe('boot 2', () => itReportsChecks(['luks-second'], () => second));
});
