/**
 * Bench: client Get throughput against a fast in-process KMIP fixture server (test/support/
 * kmip-fixture-server.ts; PyKMIP's server tops out near 200 Get/s and would measure itself), at
 * CONCURRENCY connections with one Get in flight on each:
 * - vs raw TLS request/response round trips of the same byte sizes on the same number of connections
 *   (a TLS echo of the recorded Get request and response: the floor for any client on this machine);
 * - vs PyKMIP's own client (ProxyKmipClient, one connection) against the same fixture server.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { connect, createServer, type TLSSocket } from 'node:tls';
import { KmipClient } from '../../src/kmip/client.js';
import { PYKMIP_PYTHON } from '../../test/support/pykmip.js';
import { KmipFixtureServer } from '../../test/support/kmip-fixture-server.js';
import type { BenchOptions, BenchReport } from '../run.js';

const CONCURRENCY = 4;
/** Slices each contender's window is cut into (see interleaved). */
const SLICES = 6;

/**
 * Runs `worker` on `count` lanes for `seconds`, lane i always on connection i (one exchange in flight on
 * each: a lane that took whichever connection came next could queue behind another lane's exchange, or,
 * on the raw sockets, read another lane's answer as its own); returns completed operations per second.
 */
async function lanes(seconds: number, worker: (lane: number) => Promise<void>, count = CONCURRENCY): Promise<Tally> {
  const end = performance.now() + seconds * 1000;
  let done = 0;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: count }, async (_, lane) => {
      while (performance.now() < end) {
        await worker(lane);
        done++;
      }
    }),
  );
  return { done, seconds: (performance.now() - start) / 1000 };
}

interface Tally {
  done: number;
  seconds: number;
}

/**
 * Rates of several contenders, each run for SLICES alternating slices (a contender runs one slice per call):
 * the machine is shared and its load moves within seconds; alternating gives every contender the same
 * mix of quiet and busy moments.
 */
async function interleaved(contenders: (() => Promise<Tally>)[]): Promise<number[]> {
  const totals = contenders.map(() => ({ done: 0, seconds: 0 }));
  for (let slice = 0; slice < SLICES; slice++)
    for (const [i, contender] of contenders.entries()) {
      const t = await contender();
      totals[i]!.done += t.done;
      totals[i]!.seconds += t.seconds;
    }
  return totals.map((t) => t.done / t.seconds);
}

/** A TLS server that answers every frame with `response`, and CONCURRENCY clients sending `request`. */
async function rawTlsRoundTrips(fixture: KmipFixtureServer, request: Buffer, response: Buffer) {
  const pki = fixture.pki;
  const server = createServer(
    { cert: pki.server.certPem, key: pki.server.keyPem, ca: readFileSync(pki.ca.cert), requestCert: true },
    (socket) => {
      let pending = 0;
      socket.on('data', (chunk: Buffer) => {
        pending += chunk.length;
        while (pending >= request.length) {
          pending -= request.length;
          socket.write(response);
        }
      });
      socket.on('error', () => socket.destroy());
    },
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  const sockets: TLSSocket[] = await Promise.all(
    Array.from(
      { length: CONCURRENCY },
      () =>
        new Promise<TLSSocket>((resolve, reject) => {
          const s = connect(
            {
              host: '127.0.0.1',
              port,
              ca: readFileSync(pki.ca.cert),
              cert: pki.client.certPem,
              key: pki.client.keyPem,
            },
            () => resolve(s),
          );
          s.once('error', reject);
        }),
    ),
  );
  const exchange = (socket: TLSSocket) =>
    new Promise<void>((resolve) => {
      let got = 0;
      const onData = (chunk: Buffer) => {
        got += chunk.length;
        if (got >= response.length) {
          socket.off('data', onData);
          resolve();
        }
      };
      socket.on('data', onData);
      socket.write(request);
    });
  return {
    run: (seconds: number) => lanes(seconds, (lane) => exchange(sockets[lane]!)),
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Asynchronous: the fixture server answering it runs on this process's event loop. */
async function pythonGetsPerSecond(fixture: KmipFixtureServer, uid: string, seconds: number): Promise<number> {
  const pki = fixture.pki;
  const script = [
    'import sys, time',
    'from kmip.pie.client import ProxyKmipClient',
    `c = ProxyKmipClient(hostname='${fixture.host}', port=${fixture.port}, cert='${pki.client.cert}', key='${pki.client.key}', ca='${pki.ca.cert}', config_file='/dev/null')`,
    'with c:',
    '    c.get(sys.argv[1])',
    '    n = 0',
    '    start = time.perf_counter()',
    `    while time.perf_counter() - start < ${seconds}:`,
    '        c.get(sys.argv[1])',
    '        n += 1',
    '    print(n / (time.perf_counter() - start))',
  ].join('\n');
  const { stdout } = await promisify(execFile)(PYKMIP_PYTHON, ['-c', script, uid], {
    encoding: 'utf8',
    timeout: 300_000,
  });
  return Number(stdout.trim());
}

export async function run(options: BenchOptions): Promise<BenchReport> {
  const seconds = options.quick ? 0.3 : 3;
  const fixture = await KmipFixtureServer.start({ versions: [{ major: 1, minor: 2 }] });
  const clientOptions = {
    host: fixture.host,
    port: fixture.port,
    ca: readFileSync(fixture.pki.ca.cert),
    cert: fixture.pki.client.certPem,
    key: fixture.pki.client.keyPem,
    version: { major: 1, minor: 2 },
  };
  const clients = Array.from({ length: CONCURRENCY }, () => new KmipClient(clientOptions));
  try {
    const { uniqueIdentifier } = await clients[0]!.register({ kind: 'secret-data', secret: randomBytes(32) });
    await Promise.all(clients.map(async (c) => (await c.get(uniqueIdentifier)).value.fill(0)));
    // The sizes the raw baseline sends and answers: this Get exactly as it went over the wire.
    const recorded = fixture.requests.at(-1)!;
    const responseBytes = fixture.respond(recorded).bytes;

    const get = async (client: KmipClient) => {
      (await client.get(uniqueIdentifier)).value.fill(0);
      // The fixture logs every request for tests to inspect: emptied here, so that it serves as a server
      // would instead of holding hundreds of thousands of requests (and their GC) by the end of a run.
      fixture.requests.length = 0;
    };
    const raw = await rawTlsRoundTrips(fixture, recorded.raw, responseBytes);
    let ours: number, single: number, rawRate: number;
    try {
      const slice = seconds / SLICES;
      // Warm-up of both (the JIT), then the measured slices.
      await lanes(Math.min(seconds, 0.5), (lane) => get(clients[lane]!));
      await raw.run(Math.min(seconds, 0.5));
      [ours, rawRate, single] = (await interleaved([
        () => lanes(slice, (lane) => get(clients[lane]!)),
        () => raw.run(slice),
        () => lanes(slice, () => get(clients[0]!), 1),
      ])) as [number, number, number];
    } finally {
      await raw.close();
    }
    const python = await pythonGetsPerSecond(fixture, uniqueIdentifier, seconds);
    return {
      part: 'kmip-client',
      lines: [
        {
          name: `kmip-agent Get throughput, ${CONCURRENCY} connections, in-process fixture server`,
          value: ours,
          unit: 'Get/s',
          better: 'higher',
          baseline: {
            name: `raw TLS round trips (${recorded.raw.length} B out, ${responseBytes.length} B back)`,
            value: rawRate,
          },
          target: 0.5,
        },
        {
          name: 'kmip-agent Get throughput, one connection, same fixture server',
          value: single,
          unit: 'Get/s',
          better: 'higher',
          baseline: { name: 'PyKMIP 0.10 ProxyKmipClient Get, one connection', value: python },
          target: 30,
        },
      ],
      notes: [
        'the fixture server runs in the same process as our client (one event loop for both); the raw TLS server does too',
        'PyKMIP ProxyKmipClient is synchronous: one connection, one Get at a time',
        `ours and the raw round trips are measured in ${SLICES} alternating slices each (the machine's load moves); each lane keeps its own connection`,
      ],
    };
  } finally {
    for (const c of clients) c.close();
    await fixture.stop();
  }
}
