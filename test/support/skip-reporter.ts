/**
 * A vitest reporter for CI's closing lines: every skipped test with the reason it gave, written as JSON to
 * the file named by KMIP_AGENT_SKIP_REPORT. The project's convention for a reason: `ctx.skip(reason)`, or
 * for a static `skipIf` a title (of the test or its describe) that says `(skipped: reason)`. vitest's own
 * JSON report drops the reason; scripts/test.sh prints these and fails the run on a skip without one.
 */
import { writeFileSync } from 'node:fs';
import type { Reporter, TestModule } from 'vitest/node';

export interface SkipRecord {
  file: string;
  test: string;
  /** The reason given to ctx.skip; undefined for a skip that gave none (or a filtered-out test). */
  reason?: string;
}

const REASON_IN_TITLE = /\(skipped: (.*)\)/;

export default class SkipReporter implements Reporter {
  onTestRunEnd(modules: ReadonlyArray<TestModule>): void {
    const out = process.env.KMIP_AGENT_SKIP_REPORT;
    if (!out) return;
    const skips: SkipRecord[] = [];
    for (const module of modules)
      for (const test of module.children.allTests()) {
        const result = test.result();
        if (result.state !== 'skipped') continue;
        const reason = result.note ?? REASON_IN_TITLE.exec(test.fullName)?.[1];
        skips.push({ file: module.relativeModuleId, test: test.fullName, ...(reason ? { reason } : {}) });
      }
    writeFileSync(out, JSON.stringify(skips));
  }
}
