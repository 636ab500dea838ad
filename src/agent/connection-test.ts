/**
 * The connection test of setup, key server and provider tests and certificate replacement: per key server,
 * TLS (name and chain verified), Discover Versions and Query, with the server's vendor, the KMIP versions
 * it speaks and the latency. Each server is tested on its own connection so one slow server does not
 * colour another's figures. The results are what state.connections keeps (see `recordTests`).
 */
import { formatVersion, KmipProvider, QueryFunction, type ConnectionTest } from '../kmip/index.js';
import type { ProviderConnection } from './config.js';
import type { ConnectionResult, StateStore } from './state.js';

export interface ServerTest extends ConnectionTest {
  /** The key server's name in the configuration. */
  server: string;
  vendor?: string;
  /** Every KMIP version the server offers, newest first. */
  kmipVersions?: string[];
}

/** Tests every server of `connection` in parallel; never throws for a server's failure (see `ok`). */
export async function testServers(connection: ProviderConnection): Promise<ServerTest[]> {
  return Promise.all(
    connection.servers.map(async (server): Promise<ServerTest> => {
      const provider = new KmipProvider({
        servers: [server],
        cert: connection.cert,
        key: connection.key,
        ...(connection.version ? { version: connection.version } : {}),
      });
      try {
        const [test] = await provider.testConnection();
        const result: ServerTest = { server: server.name, ...test! };
        if (!test!.ok) return result;
        // Extras for the operator; a server that does not answer them still passed the test.
        const info = await provider.query([QueryFunction.QueryServerInformation]).catch(() => undefined);
        if (info?.vendorIdentification) result.vendor = info.vendorIdentification;
        const offered = await provider.discoverVersions().catch(() => undefined);
        if (offered?.versions.length) result.kmipVersions = offered.versions.map(formatVersion);
        return result;
      } finally {
        provider.close();
      }
    }),
  );
}

/** A test as state.connections keeps it. */
export function connectionResult(test: ServerTest, at: Date): ConnectionResult {
  return {
    endpoint: test.endpoint,
    server: test.server,
    at: at.toISOString(),
    ok: test.ok,
    latencyMs: Math.round(test.latencyMs),
    ...(test.protocolVersion ? { protocolVersion: test.protocolVersion } : {}),
    ...(test.kmipVersions ? { kmipVersions: test.kmipVersions } : {}),
    ...(test.vendor ? { vendor: test.vendor } : {}),
    ...(test.error ? { error: { code: test.error.code, message: test.error.message } } : {}),
  };
}

/** Keeps the tests as the last connection result of each endpoint. */
export async function recordTests(state: StateStore, tests: ServerTest[], at: Date): Promise<void> {
  const endpoints = new Set(tests.map((t) => t.endpoint));
  await state.update((s) => {
    s.connections = [
      ...s.connections.filter((c) => !endpoints.has(c.endpoint)),
      ...tests.map((t) => connectionResult(t, at)),
    ];
  });
}
