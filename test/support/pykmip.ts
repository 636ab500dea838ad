/**
 * Test fixture: the real PyKMIP server (Debian python3-pykmip) on a free loopback port, with its own
 * throwaway PKI, config and database. Logging stays at INFO: at DEBUG PyKMIP logs key material.
 * Stopped with SIGKILL to its whole process group (it takes ~10 s to honour SIGTERM, and forks
 * multiprocessing helpers) and its directory removed.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { connect } from 'node:tls';
import { makeTestPki, type TestCa, type TestPki } from './certs.js';
import { recordPykmipDatabase, removeTestDir } from './test-run.js';
import type { KmipClientOptions } from '../../src/kmip/client.js';

/** What tests need to talk to the server (plain data, so it can cross from global setup). */
export interface PykmipServerInfo {
  host: string;
  port: number;
  /** PEM file paths. */
  ca: string;
  clientCert: string;
  clientKey: string;
  /** The fixture's directory (certificates, server.conf, server.log, database). */
  dir: string;
  logPath: string;
}

export interface PykmipServer extends PykmipServerInfo {
  pki: TestPki;
  stop(): Promise<void>;
}

const SETUP_HINT = 'run `sudo bash scripts/setup.sh` (it installs python3-pykmip from Debian)';
/** Overridable so the fixture's own "not installed" message can be tested. */
export const PYKMIP_SERVER_BIN = process.env.KMIP_AGENT_PYKMIP_SERVER ?? '/usr/bin/pykmip-server';
/** Debian's python (the first python3 on PATH may be a separate build without PyKMIP). */
export const PYKMIP_PYTHON = '/usr/bin/python3';

export function assertPykmipInstalled(): void {
  if (!existsSync(PYKMIP_SERVER_BIN)) {
    throw new Error(`pykmip-server is not installed (${PYKMIP_SERVER_BIN} missing): ${SETUP_HINT}`);
  }
  const probe = spawnSync(PYKMIP_PYTHON, ['-c', 'import kmip'], { encoding: 'utf8' });
  if (probe.status !== 0)
    throw new Error(`PyKMIP's Python package is not importable by ${PYKMIP_PYTHON}: ${SETUP_HINT}`);
}

/** A free TCP port on 127.0.0.1 (bound, then released). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() =>
        typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port')),
      );
    });
  });
}

function portIsTaken(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(true));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(false)));
  });
}

/** Whether the server completes a mutual TLS handshake now (its "up" signal). */
export function tryHandshake(
  info: Pick<PykmipServerInfo, 'host' | 'port' | 'ca' | 'clientCert' | 'clientKey'>,
): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({
      host: info.host,
      port: info.port,
      ca: readFileSync(info.ca),
      cert: readFileSync(info.clientCert),
      key: readFileSync(info.clientKey),
      servername: 'localhost',
      maxVersion: 'TLSv1.2',
    });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(2000, () => done(false));
    socket.once('secureConnect', () => done(true));
    socket.once('error', () => done(false));
  });
}

export interface StartOptions {
  /** Use this port instead of a free one (fails clearly if taken). */
  port?: number;
  /** Parent directory for the fixture's temp dir. */
  parentDir?: string;
  /** How long to wait for the first successful handshake. */
  startTimeoutMs?: number;
  /** Issue the server and client certificates from this CA (another server of the same PKI) instead of a new one. */
  ca?: TestCa;
}

/** pykmip-server's config file (mutual TLS 1.2 on 127.0.0.1; paths as the server will see them). */
export function pykmipServerConf(o: {
  port: number;
  cert: string;
  key: string;
  ca: string;
  policyDir: string;
  database: string;
}): string {
  return [
    '[server]',
    'hostname=127.0.0.1',
    `port=${o.port}`,
    `certificate_path=${o.cert}`,
    `key_path=${o.key}`,
    `ca_path=${o.ca}`,
    'auth_suite=TLS1.2',
    `policy_path=${o.policyDir}`,
    'enable_tls_client_auth=True',
    `database_path=${o.database}`,
    'logging_level=INFO',
    '',
  ].join('\n');
}

/** Server and client certificates of a new fixture issued by an existing CA. */
function issueFrom(ca: TestCa, dir: string): TestPki {
  const tag = basename(dir);
  return {
    ca,
    server: ca.issue(`server-${tag}`, { cn: 'localhost', eku: ['serverAuth'], san: ['IP:127.0.0.1', 'DNS:localhost'] }),
    client: ca.issue(`client-${tag}`, { cn: 'kmip-agent-test-client', eku: ['clientAuth'] }),
  };
}

export async function startPykmip(options: StartOptions = {}): Promise<PykmipServer> {
  assertPykmipInstalled();
  const dir = mkdtempSync(join(options.parentDir ?? tmpdir(), 'kmip-agent-pykmip-'));
  const pki = options.ca ? issueFrom(options.ca, dir) : makeTestPki(join(dir, 'pki'));
  const port = options.port ?? (await freePort());
  if (options.port !== undefined && (await portIsTaken(port))) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`port ${port} on 127.0.0.1 is already in use: stop whatever listens there or omit the port`);
  }
  const policyDir = join(dir, 'policies');
  mkdirSync(policyDir);
  const logPath = join(dir, 'server.log');
  const confPath = join(dir, 'server.conf');
  writeFileSync(
    confPath,
    pykmipServerConf({
      port,
      cert: pki.server.cert,
      key: pki.server.key,
      ca: pki.ca.cert,
      policyDir,
      database: join(dir, 'pykmip.db'),
    }),
  );
  const child: ChildProcess = spawn(PYKMIP_SERVER_BIN, ['-f', confPath, '-l', logPath], {
    cwd: dir,
    stdio: ['ignore', 'ignore', 'pipe'],
    // Its own process group: PyKMIP forks multiprocessing helpers that must die with it.
    detached: true,
  });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  let exited = false;
  // Never outlive the test process, whatever happens to teardown.
  const killGroup = () => {
    try {
      if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  };
  const killOnExit = killGroup;
  process.once('exit', killOnExit);
  child.once('exit', () => {
    exited = true;
    process.removeListener('exit', killOnExit);
  });
  child.unref();
  (child.stderr as unknown as { unref?: () => void } | null)?.unref?.();

  const info: PykmipServerInfo = {
    host: '127.0.0.1',
    port,
    ca: pki.ca.cert,
    clientCert: pki.client.cert,
    clientKey: pki.client.key,
    dir,
    logPath,
  };
  const stop = async () => {
    if (!exited) {
      child.ref();
      const gone = new Promise((resolve) => child.once('exit', resolve));
      killGroup();
      await gone;
    } else {
      killGroup();
    }
    // The run's secrets hygiene scan looks for every key this server held (test-run.ts).
    recordPykmipDatabase(join(dir, 'pykmip.db'), PYKMIP_PYTHON);
    removeTestDir(dir);
  };

  const deadline = Date.now() + (options.startTimeoutMs ?? 30_000);
  while (!(await tryHandshake(info))) {
    if (exited || Date.now() > deadline) {
      const log = existsSync(logPath) ? readFileSync(logPath, 'utf8').split('\n').slice(-15).join('\n') : '';
      await stop();
      throw new Error(
        `pykmip-server did not accept a TLS handshake on 127.0.0.1:${port}` +
          (exited ? ' (it exited)' : ' within the start timeout') +
          `\n--- stderr ---\n${stderr.slice(-2000)}\n--- server.log ---\n${log}`,
      );
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return { ...info, pki, stop };
}

/** kmip-agent client options for a PyKMIP fixture: its CA, client certificate and key. */
export function pykmipClientOptions(info: PykmipServerInfo, extra: Partial<KmipClientOptions> = {}): KmipClientOptions {
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

/**
 * The kmip-agent CLI's connection options for a PyKMIP fixture (`setup`, `kmip ...`): its address, or
 * `endpoint` when the agent must reach it through something in between, and its CA and client identity.
 */
export function pykmipCliArgs(info: PykmipServerInfo, endpoint: { host: string; port: number } = info): string[] {
  return [
    '--server',
    `${endpoint.host}:${endpoint.port}`,
    '--servername',
    'localhost',
    '--ca',
    info.ca,
    '--cert',
    info.clientCert,
    '--key',
    info.clientKey,
  ];
}
