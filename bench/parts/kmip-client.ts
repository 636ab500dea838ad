/**
 * Bench: Get throughput against one real PyKMIP server started for this run: kmip-agent's client vs
 * PyKMIP's own Python client (ProxyKmipClient) on the same server, and batched Gets (N per message)
 * vs one Get per message. The server is the bottleneck for both clients; the ratios say how much
 * client overhead and round trips cost on top of it.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { KmipClient } from '../../src/kmip/client.js';
import * as ops from '../../src/kmip/operations.js';
import { PYKMIP_PYTHON, pykmipClientOptions, startPykmip, type PykmipServer } from '../../test/support/pykmip.js';
import type { BenchReport } from '../run.js';

const GETS = 200;
const BATCH = 20;

function pythonGetsPerSecond(server: PykmipServer, uid: string, count: number): number {
  const script = [
    'import sys, time',
    'from kmip.pie.client import ProxyKmipClient',
    `c = ProxyKmipClient(hostname='${server.host}', port=${server.port}, cert='${server.clientCert}', key='${server.clientKey}', ca='${server.ca}', config_file='/dev/null')`,
    'with c:',
    '    c.get(sys.argv[1])',
    '    start = time.perf_counter()',
    `    for _ in range(${count}):`,
    '        c.get(sys.argv[1])',
    '    print(time.perf_counter() - start)',
  ].join('\n');
  const seconds = Number(
    execFileSync(PYKMIP_PYTHON, ['-c', script, uid], { encoding: 'utf8', timeout: 300_000 }).trim(),
  );
  return count / seconds;
}

export async function run(): Promise<BenchReport> {
  const server = await startPykmip();
  const client = new KmipClient(
    // The same protocol version PyKMIP's client speaks, so both ask the server for the same work.
    pykmipClientOptions(server, { versions: [{ major: 1, minor: 2 }] }),
  );
  try {
    const { uniqueIdentifier } = await client.register({ kind: 'secret-data', secret: randomBytes(32) });
    await client.get(uniqueIdentifier);

    let start = performance.now();
    for (let i = 0; i < GETS; i++) (await client.get(uniqueIdentifier)).value.fill(0);
    const sequential = GETS / ((performance.now() - start) / 1000);

    start = performance.now();
    for (let i = 0; i < GETS / BATCH; i++) {
      const results = await client.batch(Array.from({ length: BATCH }, () => ops.get({ uniqueIdentifier })));
      for (const r of results) if (r.ok) r.value.value.fill(0);
    }
    const batched = GETS / ((performance.now() - start) / 1000);

    const python = pythonGetsPerSecond(server, uniqueIdentifier, GETS);
    return {
      part: 'kmip-client',
      lines: [
        {
          name: `kmip-agent Get, one per message (${GETS})`,
          value: sequential,
          unit: 'Get/s',
          baseline: { name: 'PyKMIP ProxyKmipClient Get', value: python },
        },
        {
          name: `kmip-agent Get, ${BATCH} per message`,
          value: batched,
          unit: 'Get/s',
          baseline: { name: 'kmip-agent one per message', value: sequential },
        },
      ],
      notes: [`PyKMIP 0.10 on loopback, KMIP 1.2, TLS 1.2, Secret Data of 32 bytes`],
    };
  } finally {
    client.close();
    await server.stop();
  }
}
