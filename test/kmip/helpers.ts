/** Shared helpers for the KMIP suites: client options from the PyKMIP fixture's certificate files. */
import { readFileSync } from 'node:fs';
import type { PykmipServerInfo } from '../support/pykmip.js';
import type { KmipClientOptions } from '../../src/kmip/client.js';

export function clientOptions(info: PykmipServerInfo, extra: Partial<KmipClientOptions> = {}): KmipClientOptions {
  return {
    host: info.host,
    port: info.port,
    ca: readFileSync(info.ca),
    cert: readFileSync(info.clientCert),
    key: readFileSync(info.clientKey),
    requestTimeoutMs: 20_000,
    ...extra,
  };
}

/** A name no other test (or earlier run against the same server) uses. */
export function uniqueName(prefix: string): string {
  return `${prefix}-${process.pid}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
}
