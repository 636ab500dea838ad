/** Shared helpers for the KMIP suites. */
import { pykmipClientOptions } from '../support/pykmip.js';

/** kmip-agent client options for the PyKMIP fixture (see test/support/pykmip.ts). */
export const clientOptions = pykmipClientOptions;

/** A name no other test (or earlier run against the same server) uses. */
export function uniqueName(prefix: string): string {
  return `${prefix}-${process.pid}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
}
