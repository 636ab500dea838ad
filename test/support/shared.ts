/**
 * The shared data folder (../shared next to the package) and the fixtures tests read from it.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../../src/native/addon.js';

/** The shared data folder, overridable by KMIP_AGENT_SHARED like the product code. */
export function sharedDir(): string {
  return process.env.KMIP_AGENT_SHARED ?? join(packageRoot(), '..', 'shared');
}

/** Real drives' Level 0 discovery responses (tcg-fixtures/level0-discovery.tsv: model TAB hex), in file order. */
export function discoveryFixtures(): { model: string; data: Buffer }[] {
  return readFileSync(join(sharedDir(), 'tcg-fixtures', 'level0-discovery.tsv'), 'utf8')
    .split('\n')
    .filter((line) => line.includes('\t'))
    .map((line) => {
      const [model, hex] = line.split('\t') as [string, string];
      return { model, data: Buffer.from(hex, 'hex') };
    });
}

/** The discovery response of one fixture drive. */
export function discoveryFixture(model: string): Buffer {
  const found = discoveryFixtures().find((f) => f.model === model);
  if (!found) throw new Error(`no fixture ${model}`);
  return found.data;
}
