/**
 * The minimal scripts the boot-unlock bench (bench/parts/boot-unlock.ts) measures the daemon against,
 * run as their own process (node start included, as for the daemon):
 * - `batched`: one TLS connection, one batched Get of every key, then the drives unlocked with the
 *   known keys by a plain loop at the daemon's concurrency: the floor for a boot unlock;
 * - `per-key`: one drive at a time, a fresh TLS connection and one Get per key, then its unlock: the
 *   pattern of a loop over a one-shot key fetch.
 *
 *   node dist/bench/floor-unlock.js batched|per-key <pykmip-info.json> <device=keyUid>...
 */
import { readFileSync } from 'node:fs';
import { mapBounded } from '../src/agent/unlock.js';
import { OpalDrive } from '../src/drives/opal.js';
import { KmipClient } from '../src/kmip/client.js';
import * as ops from '../src/kmip/operations.js';
import { pykmipClientOptions, type PykmipServerInfo } from '../test/support/pykmip.js';

/** The daemon's default boot concurrency (boot.concurrency). */
const CONCURRENCY = 16;

async function unlock(device: string, key: Buffer): Promise<void> {
  const drive = await OpalDrive.open(device);
  try {
    await drive.unlock(key);
  } finally {
    key.fill(0);
    await drive.close();
  }
}

const [mode, infoFile, ...pairs] = process.argv.slice(2);
const info = JSON.parse(readFileSync(infoFile!, 'utf8')) as PykmipServerInfo;
const drives = pairs.map((p) => {
  const at = p.lastIndexOf('=');
  return { device: p.slice(0, at), keyUid: p.slice(at + 1) };
});
// The version is fixed: no Discover Versions round trip.
const options = pykmipClientOptions(info, { version: { major: 1, minor: 2 } });

if (mode === 'batched') {
  const client = new KmipClient(options);
  const results = await client.batch(drives.map((d) => ops.get({ uniqueIdentifier: d.keyUid })));
  client.close();
  const keys = results.map((r, i) => {
    if (!r.ok) throw r.error;
    return { device: drives[i]!.device, key: Buffer.from(r.value.value) };
  });
  await mapBounded(keys, CONCURRENCY, (k) => unlock(k.device, k.key));
} else if (mode === 'per-key') {
  for (const d of drives) {
    const client = new KmipClient(options);
    const got = await client.get(d.keyUid);
    client.close();
    await unlock(d.device, Buffer.from(got.value));
  }
} else {
  throw new Error(`unknown mode ${mode}: batched or per-key`);
}
