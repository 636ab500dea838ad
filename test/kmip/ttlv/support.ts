import { join } from 'node:path';
import { packageRoot } from '../../../src/native/addon.js';

/** The shared data folder (KMIP test cases), overridable like the product code. */
export function sharedDir(): string {
  return process.env.KMIP_AGENT_SHARED ?? join(packageRoot(), '..', 'shared');
}
