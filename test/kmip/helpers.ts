/** Shared helpers for the KMIP suites: client options from the PyKMIP fixture's certificate files. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { TestCa } from '../support/certs.js';
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

/**
 * The CA of an existing fixture PKI (e.g. the PyKMIP fixture's `<dir>/pki`), to issue more client
 * certificates from it. certs.ts only creates new CAs; its constructor is private at compile time only.
 */
export function openTestCa(dir: string): TestCa {
  const Ctor = TestCa as unknown as new (dir: string, cert: string, key: string) => TestCa;
  return new Ctor(dir, join(dir, 'ca.crt'), join(dir, 'ca.key'));
}
