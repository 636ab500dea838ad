/**
 * Host side of a VM boot's report: one vitest test per check the boot's steps promise
 * (test/vm/scenarios.ts), passing or failing with the guest's own evidence. A check the guest never
 * reported fails with the tail of the serial log, and so does every check of a boot that failed.
 */
import { expect, it } from 'vitest';
import type { BootResult } from './qemu.js';
import { STEP_CHECKS, type StepName } from './scenarios.js';

export interface BootOutcome {
  result?: BootResult;
  /** Why the boot itself failed (image, qemu, deadline), with the serial log's tail. */
  error?: string;
}

/** Declares the tests of one boot; `outcome()` is read when they run (after the boot in beforeAll). */
export function itReportsChecks(steps: StepName[], outcome: () => BootOutcome): void {
  for (const step of steps) {
    for (const name of STEP_CHECKS[step]) {
      it(`${step}: ${name}`, () => {
        const { result, error } = outcome();
        if (!result) throw new Error(`the VM boot failed: ${error ?? 'it did not run'}`);
        const seen = result.checks.find((c) => c.step === step && c.check === name);
        if (!seen) {
          const tail = result.serial.trim().split('\n').slice(-30).join('\n');
          throw new Error(`the guest never reported this check; serial log tail:\n${tail}`);
        }
        // The evidence is the message either way: on failure it says what the guest saw.
        expect(seen.ok, seen.evidence).toBe(true);
      });
    }
  }
}
