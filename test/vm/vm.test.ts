/**
 * The agent on a real kernel (issue 13): a Debian VM under QEMU/TCG (test/vm/qemu.ts), checks run by the
 * guest (test/vm/guest/main.ts) and reported here one test each, with the guest's evidence.
 *
 * Boot 1 (CI and `npm run vm-test`): PyKMIP on the guest loopback, `setup`, two LUKS2 disks enrolled and
 * one activated by the daemon through libcryptsetup (item 2); then the emulated Opal drive served as a
 * SCSI disk by the TCMU handler, enrolled and unlocked through kernel sed-opal and SG_IO (item 3).
 * Boot 2 (`npm run vm-test` only, KMIP_AGENT_VM_FULL=1): both volumes come up at boot, one by
 * systemd-cryptsetup from crypttab with the agent's key socket, before their mount units.
 * When QEMU or the image cannot be had, every test fails with the reason.
 */
import { afterAll, beforeAll, describe } from 'vitest';
import { itReportsChecks, type BootOutcome } from './guest-report.js';
import { VmRun, ensureImage } from './qemu.js';
import { ensureTcmuHandler } from './tcmu.js';

/** TCG on two shared cores: boot 1 takes minutes even on an idle machine, several times that under load. */
const BOOT_TIMEOUT_MS = Number(process.env.KMIP_AGENT_VM_BOOT_TIMEOUT_MS ?? 1_500_000);
const FULL = process.env.KMIP_AGENT_VM_FULL === '1';
const first: BootOutcome = {};
const second: BootOutcome = {};
let vm: VmRun | undefined;

const message = (error: unknown) => (error instanceof Error ? error.message : String(error));

describe('the agent on a real kernel, in a VM', () => {
  beforeAll(
    async () => {
      try {
        ensureTcmuHandler();
        vm = new VmRun(ensureImage(), [64, 64]);
        first.result = await vm.boot(['luks-first', 'tcmu'], BOOT_TIMEOUT_MS);
        console.log(`vm boot 1 (luks-first, tcmu): ${first.result.wallMs} ms\n${first.result.breakdown}`);
      } catch (error) {
        first.error = message(error);
        second.error = `boot 1 failed first: ${first.error}`;
        return;
      }
      if (!FULL) return;
      try {
        second.result = await vm.boot(['luks-second'], BOOT_TIMEOUT_MS);
        console.log(`vm boot 2 (luks-second): ${second.result.wallMs} ms\n${second.result.breakdown}`);
      } catch (error) {
        second.error = message(error);
      }
    },
    2 * BOOT_TIMEOUT_MS + 900_000,
  );
  afterAll(() => vm?.cleanup());

  describe('boot 1', () => itReportsChecks(['luks-first', 'tcmu'], () => first));
  describe.skipIf(!FULL)(
    `boot 2${FULL ? '' : ' (skipped: a second boot runs in `npm run vm-test` only, CI runs one)'}`,
    () => itReportsChecks(['luks-second'], () => second),
  );
});
