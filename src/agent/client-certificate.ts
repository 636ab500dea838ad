/**
 * The appliance's KMIP client certificate in the configuration directory: a pending key pair (with its CSR,
 * or a self-signed certificate) made by `cert generate`, the installed certificate, key and chain that
 * config.client names, their replacement (only after every key server accepted the new one), export,
 * deletion, status and the expiry faults. The PKI work itself is src/pki's; this module owns the files.
 *
 * Installed files are named after the certificate (pki/client-<fingerprint>.crt/.key/.chain.pem), so the
 * config change that switches to a new certificate is one atomic write: a crash leaves the old set or the
 * new one in use, never a certificate with the other's key. The replaced files are kept as `<file>.prev`.
 */
import { constants, promises as fs } from 'node:fs';
import { join } from 'node:path';
import { KmipAgentError } from '../errors.js';
import type {
  CertificateInfo,
  ExpiryVerdict,
  KeyTypeName,
  SubjectAltName,
  SubjectInput,
  ValidatedClientCertificate,
} from '../pki/index.js';
import { checkExpiry } from '../pki/expiry.js';
import { certificateValidities } from '../pki/validity.js';
import type { Clock, Timer } from './clock.js';
import {
  configPath,
  loadConfig,
  providerConnection,
  saveConfig,
  type AgentConfig,
  type ClientConfig,
} from './config.js';
import { testServers, type ServerTest } from './connection-test.js';
import { writeDurably } from './durable-file.js';
import type { FaultRegistry } from './faults.js';

export const PKI_DIR = 'pki';
const PENDING_KEY = `${PKI_DIR}/pending.key`;
const PENDING_CSR = `${PKI_DIR}/pending.csr`;
const PENDING_CERT = `${PKI_DIR}/pending.crt`;

/** The fault subject of the client certificate's expiry faults. */
export const CLIENT_CERTIFICATE_SUBJECT = 'client-certificate';

const DAY_MS = 86_400_000;

/**
 * The pki layer, loaded on first use: it brings @peculiar/x509 (two hundred CommonJS modules), which the
 * daemon's start and boot unlock have no use for.
 */
const pki = () => import('../pki/index.js');

async function readOptional(path: string): Promise<string | undefined> {
  try {
    return await fs.readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

async function readInstalled(configDir: string, what: string, path: string): Promise<string> {
  try {
    return await fs.readFile(configPath(configDir, path), 'utf8');
  } catch (error) {
    throw new KmipAgentError(
      `cannot read the client ${what} ${path}: ${(error as Error).message}`,
      'CONFIG_FILE_UNREADABLE',
    );
  }
}

async function pkiDir(configDir: string): Promise<void> {
  await fs.mkdir(join(configDir, PKI_DIR), { recursive: true, mode: 0o700 });
}

// ------------------------------------------------------------------------------------- pending key

export interface GenerateOptions {
  keyType: KeyTypeName;
  subject: SubjectInput;
  sans: SubjectAltName[];
  /** Make a self-signed certificate of this many days besides the CSR. */
  selfSignedDays?: number;
  now: Date;
}

export interface PendingKeyPair {
  keyType: string;
  /** The pending key file (0600), relative to the configuration directory. */
  keyFile: string;
  csrPem: string;
  /** With `selfSignedDays`: the pending self-signed certificate, to import with `cert import --cert`. */
  certPem?: string;
  certFile?: string;
  certificate?: CertificateInfo;
}

/**
 * A new key pair, kept as the pending pair (pki/pending.key, 0600; the previous one as .prev) with its CSR,
 * until a certificate for it is imported. Nothing is written when the subject or SANs are refused.
 */
export async function generatePendingKeyPair(configDir: string, options: GenerateOptions): Promise<PendingKeyPair> {
  const { createCertificateRequest, createSelfSignedCertificate, describeCertificatePem, generateKeyPair } =
    await pki();
  const pair = await generateKeyPair(options.keyType);
  const request = { privateKey: pair.privateKey, subject: options.subject, sans: options.sans };
  const csrPem = await createCertificateRequest(request);
  const certPem =
    options.selfSignedDays === undefined
      ? undefined
      : await createSelfSignedCertificate({ ...request, now: options.now, days: options.selfSignedDays });
  await pkiDir(configDir);
  await writeDurably(join(configDir, PENDING_KEY), pair.privateKeyPem, { mode: 0o600, keepPrevious: true });
  await writeDurably(join(configDir, PENDING_CSR), csrPem, { mode: 0o644 });
  if (certPem) await writeDurably(join(configDir, PENDING_CERT), certPem, { mode: 0o644 });
  else await fs.rm(join(configDir, PENDING_CERT), { force: true });
  return {
    keyType: pair.keyType,
    keyFile: PENDING_KEY,
    csrPem,
    ...(certPem ? { certPem, certFile: PENDING_CERT, certificate: describeCertificatePem(certPem, options.now) } : {}),
  };
}

/** The CSR of the pending key (CERT_NO_PENDING_KEY when `cert generate` has not made one). */
export async function pendingRequest(configDir: string): Promise<{ csrPem: string; keyFile: string }> {
  const csrPem = await readOptional(join(configDir, PENDING_CSR));
  const key = await readOptional(join(configDir, PENDING_KEY));
  if (csrPem === undefined || key === undefined) throw noPendingKey();
  return { csrPem, keyFile: PENDING_KEY };
}

function noPendingKey(): KmipAgentError {
  return new KmipAgentError(
    'there is no pending key pair: run `kmip-agent cert generate` first, or give the key with --key',
    'CERT_NO_PENDING_KEY',
  );
}

// ------------------------------------------------------------------------------------------ import

export interface ImportInput {
  certPem: string;
  /** The private key; the pending key when omitted. */
  keyPem?: string;
  chainPem?: string;
  passphrase?: Buffer;
  /** Accept what validation can override (no clientAuth, dates, weak algorithms, a broken chain). */
  force?: boolean;
  now: Date;
}

export interface PreparedImport extends ValidatedClientCertificate {
  /** The pending key was used (it is consumed by the install). */
  pendingKey: boolean;
}

/** Validates an import against the pending key or the given one (see pki/validate.ts); writes nothing. */
export async function prepareImport(configDir: string, input: ImportInput): Promise<PreparedImport> {
  let keyPem = input.keyPem;
  const pendingKey = keyPem === undefined;
  if (keyPem === undefined) {
    keyPem = await readOptional(join(configDir, PENDING_KEY));
    if (keyPem === undefined) throw noPendingKey();
  }
  const { validateClientCertificate } = await pki();
  const validated = validateClientCertificate(
    { certPem: input.certPem, keyPem, ...(input.chainPem !== undefined ? { chainPem: input.chainPem } : {}) },
    {
      now: input.now,
      ...(input.passphrase ? { passphrase: input.passphrase } : {}),
      ...(input.force ? { force: true } : {}),
    },
  );
  return { ...validated, pendingKey };
}

/** Where a certificate's files go, named after its fingerprint (relative to the configuration directory). */
function installedNames(prepared: PreparedImport): Required<Pick<ClientConfig, 'cert' | 'key'>> & { chain?: string } {
  const stamp = prepared.certificate.fingerprintSha256.replace(/:/g, '').slice(0, 16).toLowerCase();
  const base = `${PKI_DIR}/client-${stamp}`;
  return { cert: `${base}.crt`, key: `${base}.key`, ...(prepared.chainPem ? { chain: `${base}.chain.pem` } : {}) };
}

async function writeFiles(configDir: string, prepared: PreparedImport, names: ReturnType<typeof installedNames>) {
  await pkiDir(configDir);
  await writeDurably(join(configDir, names.key), prepared.keyPem, { mode: 0o600 });
  await writeDurably(join(configDir, names.cert), prepared.certPem, { mode: 0o644 });
  if (names.chain) await writeDurably(join(configDir, names.chain), prepared.chainPem, { mode: 0o644 });
}

async function removeFiles(configDir: string, paths: (string | undefined)[]): Promise<void> {
  for (const path of paths) if (path !== undefined) await fs.rm(configPath(configDir, path), { force: true });
}

/** One generation back only: older replaced client files in pki/ (private keys among them) are removed. */
async function sweepPrevious(configDir: string, keep: string[]): Promise<void> {
  const kept = new Set(keep);
  let names: string[];
  try {
    names = await fs.readdir(join(configDir, PKI_DIR));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw error;
  }
  const older = names
    .map((n) => `${PKI_DIR}/${n}`)
    .filter((p) => /\/client-[0-9a-f]{16}\..*\.prev$/.test(p) && !kept.has(p));
  await removeFiles(configDir, older);
}

/** The client's files as config.client names them. */
function clientFiles(client: ClientConfig): string[] {
  return [client.cert, client.key, client.chain].filter((p): p is string => p !== undefined);
}

export interface InstallResult {
  certificate: CertificateInfo;
  chain: CertificateInfo[];
  files: { cert: string; key: string; chain?: string };
  /** The replaced files, now `<file>.prev`. */
  previous: string[];
  /** Problems accepted with `force` (code and message). */
  warnings: { code: string; message: string }[];
}

/**
 * Switches config.client to the new files (one atomic config write), then keeps the old files as .prev
 * and drops the consumed pending key. The new files must already be written.
 */
async function switchTo(
  configDir: string,
  prepared: PreparedImport,
  names: ReturnType<typeof installedNames>,
): Promise<InstallResult> {
  const config = await loadConfig(configDir);
  const old = config.client;
  const { chain: _chain, ...rest } = old;
  await saveConfig(configDir, { ...config, client: { ...rest, ...names } });
  const kept = new Set(Object.values(names));
  const previous: string[] = [];
  for (const path of clientFiles(old).filter((p) => !kept.has(p))) {
    const full = configPath(configDir, path);
    try {
      await fs.rename(full, `${full}.prev`);
      previous.push(`${path}.prev`);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
  }
  await sweepPrevious(configDir, previous);
  if (prepared.pendingKey) await removeFiles(configDir, [PENDING_KEY, PENDING_CSR, PENDING_CERT]);
  return {
    certificate: prepared.certificate,
    chain: prepared.chain,
    files: names,
    previous,
    warnings: prepared.warnings.map((w) => ({ code: w.code, message: w.message })),
  };
}

/** CERT_EXISTS when a client certificate is installed (import is for the first one). */
export async function refuseIfInstalled(configDir: string): Promise<void> {
  const config = await loadConfig(configDir);
  if (config.client.cert !== undefined)
    throw new KmipAgentError(
      `a client certificate is installed already (${config.client.cert}): \`kmip-agent cert replace\` installs a new ` +
        'one after testing it against every key server',
      'CERT_EXISTS',
    );
}

/**
 * Installs a validated certificate as the client certificate when there is none yet (CERT_EXISTS
 * otherwise: `cert replace` tests the new one first).
 */
export async function importClientCertificate(configDir: string, prepared: PreparedImport): Promise<InstallResult> {
  await refuseIfInstalled(configDir);
  const names = installedNames(prepared);
  await writeFiles(configDir, prepared, names);
  return switchTo(configDir, prepared, names);
}

export interface ProviderTest {
  provider: string;
  servers: ServerTest[];
}

export interface ReplaceResult {
  /** Whether the new certificate is now the client certificate. */
  replaced: boolean;
  forced: boolean;
  tests: ProviderTest[];
  install?: InstallResult;
}

/**
 * Connection tests (TLS, Discover Versions, Query) of every server of every provider with `client` as the
 * identity; a provider whose files cannot be read counts as failed.
 */
export async function testClientIdentity(
  config: AgentConfig,
  configDir: string,
  client: ClientConfig,
): Promise<ProviderTest[]> {
  const results: ProviderTest[] = [];
  for (const provider of Object.keys(config.providers)) {
    const connection = providerConnection(config, configDir, provider, { ...client, enabled: true });
    try {
      results.push({ provider, servers: await testServers(connection) });
    } finally {
      connection.key.fill(0);
    }
  }
  return results;
}

/**
 * Replaces the client certificate: the new files are written beside the old ones, every server of every
 * provider is tested with them, and only when all pass (or with `force`) does config.client switch to them.
 * On failure without force the new files are removed and nothing else changes.
 */
export async function replaceClientCertificate(
  configDir: string,
  prepared: PreparedImport,
  options: { force?: boolean } = {},
): Promise<ReplaceResult> {
  const config = await loadConfig(configDir);
  const names = installedNames(prepared);
  const current = new Set(clientFiles(config.client));
  if (current.has(names.cert))
    throw new KmipAgentError('this certificate is the installed client certificate already', 'CERT_ALREADY_INSTALLED');
  await writeFiles(configDir, prepared, names);
  let tests: ProviderTest[];
  try {
    tests = await testClientIdentity(config, configDir, { ...config.client, ...names, chain: names.chain });
  } catch (error) {
    await removeFiles(configDir, Object.values(names));
    throw error;
  }
  const passed = tests.every((p) => p.servers.every((s) => s.ok));
  if (!passed && !options.force) {
    await removeFiles(configDir, Object.values(names));
    return { replaced: false, forced: false, tests };
  }
  const install = await switchTo(configDir, prepared, names);
  return { replaced: true, forced: !passed, tests, install };
}

// ------------------------------------------------------------------------------ export and delete

/** The installed certificate followed by its chain (PEM). */
export async function exportClientCertificate(configDir: string, config: AgentConfig): Promise<string> {
  const cert = config.client.cert;
  if (cert === undefined) throw notInstalled();
  const chain = config.client.chain;
  return (
    (await readInstalled(configDir, 'certificate', cert)) +
    (chain === undefined ? '' : await readInstalled(configDir, 'certificate chain', chain))
  );
}

/**
 * Writes the installed certificate, its chain and its private key to a new file `out` (0600, O_EXCL: an
 * existing file is never overwritten, so the key cannot land in a file others can already read).
 */
export async function exportWithPrivateKey(configDir: string, config: AgentConfig, out: string): Promise<void> {
  const key = config.client.key;
  if (key === undefined) throw notInstalled();
  const certificates = Buffer.from(await exportClientCertificate(configDir, config));
  const data = await fs.readFile(configPath(configDir, key));
  try {
    let handle: fs.FileHandle;
    try {
      handle = await fs.open(out, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST')
        throw new KmipAgentError(`${out} exists: the private key is only written to a new file`, 'CERT_EXPORT_EXISTS');
      throw error;
    }
    try {
      await handle.chmod(0o600);
      const bundle = Buffer.concat([certificates, data]);
      try {
        await handle.writeFile(bundle);
        await handle.sync();
      } finally {
        bundle.fill(0);
      }
    } finally {
      await handle.close();
    }
  } finally {
    data.fill(0);
  }
}

function notInstalled(): KmipAgentError {
  return new KmipAgentError(
    'no client certificate is installed (`kmip-agent cert generate`, then `cert import`)',
    'CERT_NOT_INSTALLED',
  );
}

/**
 * Removes the client certificate, key and chain (and their .prev copies). Refused while the client is
 * enabled (CLIENT_ENABLED): the key servers would be unreachable.
 */
export async function deleteClientCertificate(configDir: string): Promise<{ removed: string[] }> {
  const config = await loadConfig(configDir);
  if (config.client.enabled)
    throw new KmipAgentError(
      'the KMIP client is enabled: deleting its certificate would cut the appliance off its key servers; ' +
        'disable the client first (`kmip-agent client disable`)',
      'CLIENT_ENABLED',
    );
  const files = clientFiles(config.client);
  if (files.length === 0) throw notInstalled();
  const { cert: _c, key: _k, chain: _ch, ...rest } = config.client;
  await saveConfig(configDir, { ...config, client: rest });
  await removeFiles(configDir, [...files, ...files.map((f) => `${f}.prev`)]);
  await sweepPrevious(configDir, []);
  return { removed: files };
}

// -------------------------------------------------------------------------------- status, expiry

export interface ClientCertificateStatus {
  enabled: boolean;
  installed: boolean;
  certificate?: CertificateInfo;
  chain?: CertificateInfo[];
  expiry?: ExpiryVerdict & { warningDays: number };
  files?: { cert: string; key?: string; chain?: string };
  /** A key pair made by `cert generate` that waits for its certificate. */
  pending?: { keyFile: string; keyType: string; csr: boolean; selfSignedCertFile?: string };
}

/** What is installed and pending, with the expiry verdict at `now`. */
export async function clientCertificateStatus(
  configDir: string,
  config: AgentConfig,
  now: Date,
): Promise<ClientCertificateStatus> {
  const client = config.client;
  const status: ClientCertificateStatus = { enabled: client.enabled, installed: client.cert !== undefined };
  const { describeCertificate, describeCertificatePem, parseCertificates } = await pki();
  if (client.cert !== undefined) {
    const certificate = describeCertificatePem(await readInstalled(configDir, 'certificate', client.cert), now);
    status.certificate = certificate;
    status.chain =
      client.chain === undefined
        ? []
        : parseCertificates(await readInstalled(configDir, 'certificate chain', client.chain), client.chain).map((c) =>
            describeCertificate(c, now),
          );
    status.expiry = {
      ...checkExpiry(certificate, now, client.expiryWarningDays),
      warningDays: client.expiryWarningDays,
    };
    status.files = {
      cert: client.cert,
      ...(client.key ? { key: client.key } : {}),
      ...(client.chain ? { chain: client.chain } : {}),
    };
  }
  const pendingKey = await readOptional(join(configDir, PENDING_KEY));
  if (pendingKey !== undefined) {
    const selfSigned = (await readOptional(join(configDir, PENDING_CERT))) !== undefined;
    status.pending = {
      keyFile: PENDING_KEY,
      keyType: await describePendingKey(pendingKey),
      csr: (await readOptional(join(configDir, PENDING_CSR))) !== undefined,
      ...(selfSigned ? { selfSignedCertFile: PENDING_CERT } : {}),
    };
  }
  return status;
}

async function describePendingKey(pem: string): Promise<string> {
  const { describeKey, loadPrivateKey } = await pki();
  try {
    return describeKey(loadPrivateKey(pem, { what: 'the pending key' })).label;
  } catch (error) {
    return `unreadable (${(error as { code?: string }).code ?? 'error'})`;
  }
}

/**
 * Syncs CertificateExpiring / CertificateExpired with the installed client certificate at `now`: raised
 * within config.client.expiryWarningDays of notAfter and after it, cleared once a certificate that is fine
 * replaced it (or none is installed). Returns the verdict, undefined without a certificate.
 */
export async function checkClientCertificateExpiry(
  configDir: string,
  faults: FaultRegistry,
  now: Date,
): Promise<ExpiryVerdict | undefined> {
  const config = await loadConfig(configDir);
  const client = config.client;
  // The validity dates by Node's parser (clientCertificateStatus's x509 library only for a fault's subject).
  let pem: string | undefined;
  let verdict: (ExpiryVerdict & { warningDays: number }) | undefined;
  if (client.cert !== undefined) {
    pem = await readInstalled(configDir, 'certificate', client.cert);
    const [validity] = certificateValidities(pem, 'the certificate');
    if (client.chain !== undefined)
      certificateValidities(await readInstalled(configDir, 'certificate chain', client.chain), client.chain);
    verdict = { ...checkExpiry(validity!, now, client.expiryWarningDays), warningDays: client.expiryWarningDays };
  }
  const subject = CLIENT_CERTIFICATE_SUBJECT;
  if (verdict?.status !== 'expired') faults.clear('CertificateExpired', subject);
  if (verdict?.status !== 'expiring') faults.clear('CertificateExpiring', subject);
  if (verdict && verdict.status !== 'ok') {
    const certificate = (await pki()).describeCertificatePem(pem!, now);
    const details = {
      subject: certificate.subject,
      notAfter: verdict.notAfter,
      daysLeft: verdict.daysLeft,
      fingerprintSha256: certificate.fingerprintSha256,
    };
    faults.raise(verdict.status === 'expired' ? 'CertificateExpired' : 'CertificateExpiring', subject, { details });
  }
  await checkServerChainsExpiry(configDir, config, faults, now);
  return verdict;
}

/** Fault subject of a key server's trusted chain (its CA file). */
export const serverChainSubject = (server: string) => `server:${server}`;

/**
 * The same watch over each key server's trusted CA certificates: the earliest to expire decides, so an
 * operator hears of a CA that runs out before the server's chain stops verifying. A server removed from the
 * configuration takes its faults with it.
 */
async function checkServerChainsExpiry(
  configDir: string,
  config: AgentConfig,
  faults: FaultRegistry,
  now: Date,
): Promise<void> {
  const seen = new Set<string>();
  for (const [name, server] of Object.entries(config.servers)) {
    const subject = serverChainSubject(name);
    seen.add(subject);
    let earliest: { verdict: ExpiryVerdict; pem: string; index: number } | undefined;
    try {
      const pem = await fs.readFile(configPath(configDir, server.ca), 'utf8');
      certificateValidities(pem, `the CA file of key server "${name}"`).forEach((validity, index) => {
        const verdict = checkExpiry(validity, now, config.client.expiryWarningDays);
        if (!earliest || Date.parse(verdict.notAfter) < Date.parse(earliest.verdict.notAfter))
          earliest = { verdict, pem, index };
      });
    } catch {
      continue; // an unreadable CA file fails the connection itself, with its own error
    }
    const status = earliest?.verdict.status ?? 'ok';
    if (status !== 'expired') faults.clear('CertificateExpired', subject);
    if (status !== 'expiring') faults.clear('CertificateExpiring', subject);
    if (earliest && status !== 'ok') {
      // Described (subject, fingerprint) by the x509 library only when there is a fault to raise.
      const { describeCertificate, parseCertificates } = await pki();
      const certificate = parseCertificates(earliest.pem, `the CA file of key server "${name}"`)[earliest.index]!;
      const info = describeCertificate(certificate, now);
      faults.raise(status === 'expired' ? 'CertificateExpired' : 'CertificateExpiring', subject, {
        details: {
          server: name,
          subject: info.subject,
          notAfter: earliest.verdict.notAfter,
          daysLeft: earliest.verdict.daysLeft,
          fingerprintSha256: info.fingerprintSha256,
          hint: `the key server's trusted CA certificate expires: import its new CA with \`kmip-agent server modify ${name} --ca FILE\` (or \`server trust ${name}\`)`,
        },
      });
    }
  }
  for (const f of faults.list())
    if ((f.code === 'CertificateExpiring' || f.code === 'CertificateExpired') && f.subject.startsWith('server:'))
      if (!seen.has(f.subject)) faults.clear(f.code, f.subject);
}

export interface ExpiryWatch {
  /** Checks now (after a replacement), besides the daily checks. */
  recheck(): Promise<void>;
  /** Resolves when the check under way (if any) is done. */
  settled(): Promise<void>;
  stop(): void;
}

/**
 * Checks the client certificate's expiry at start and then every day on `clock`. A check that fails (an
 * unreadable file) is reported to `onError` and retried the next day.
 */
export function watchClientCertificateExpiry(options: {
  configDir: string;
  faults: FaultRegistry;
  clock: Clock;
  onError: (error: unknown) => void;
  intervalMs?: number;
  /** The first check waits for this (the daemon's: its boot's first unlock round, which it must not slow). */
  firstAfter?: Promise<unknown>;
}): ExpiryWatch {
  const interval = options.intervalMs ?? DAY_MS;
  let timer: Timer | undefined;
  let stopped = false;
  let running: Promise<void> = (options.firstAfter ?? Promise.resolve()).then(
    () => undefined,
    () => undefined,
  );
  const check = () => {
    running = running.then(async () => {
      try {
        await checkClientCertificateExpiry(options.configDir, options.faults, options.clock.now());
      } catch (error) {
        options.onError(error);
      }
    });
    return running;
  };
  // Daily from the start, whatever a check takes (checks queue behind each other).
  const schedule = () => {
    if (stopped) return;
    timer = options.clock.after(interval, () => {
      schedule();
      void check();
    });
  };
  void check();
  schedule();
  return {
    recheck: check,
    settled: () => running,
    stop: () => {
      stopped = true;
      timer?.cancel();
    },
  };
}

// ------------------------------------------------------------------------------------------- API

/** What the API's client-certificate methods call (see api/methods.ts), over the configuration directory. */
export interface ClientCertificateService {
  /** SANs as text ("DNS:host", "IP:addr"), checked here. */
  createKeyPair(
    options: Omit<GenerateOptions, 'now' | 'sans'> & { subjectAltNames: string[] },
  ): Promise<PendingKeyPair>;
  signRequest(): Promise<{ csrPem: string; keyFile: string }>;
  importCertificate(
    input: Omit<ImportInput, 'now'>,
    options: { replace: boolean },
  ): Promise<(InstallResult & { replaced: true }) | ReplaceResult>;
  status(): Promise<ClientCertificateStatus>;
  delete(): Promise<{ removed: string[] }>;
}

/** The service on `configDir` at `clock`'s time; `changed` runs after each change (expiry recheck). */
export function clientCertificateService(
  configDir: string,
  clock: Pick<Clock, 'now'>,
  changed: () => Promise<void> | void,
): ClientCertificateService {
  return {
    createKeyPair: async ({ subjectAltNames, ...options }) => {
      const { parseSubjectAltName } = await pki();
      return generatePendingKeyPair(configDir, {
        ...options,
        sans: subjectAltNames.map(parseSubjectAltName),
        now: clock.now(),
      });
    },
    signRequest: () => pendingRequest(configDir),
    importCertificate: async (input, options) => {
      if (!options.replace) await refuseIfInstalled(configDir);
      const prepared = await prepareImport(configDir, { ...input, now: clock.now() });
      if (!options.replace) {
        const install = await importClientCertificate(configDir, prepared);
        await changed();
        return { ...install, replaced: true as const };
      }
      const result = await replaceClientCertificate(configDir, prepared, { force: input.force === true });
      if (result.replaced) await changed();
      return result;
    },
    status: async () => clientCertificateStatus(configDir, await loadConfig(configDir), clock.now()),
    delete: async () => {
      const result = await deleteClientCertificate(configDir);
      await changed();
      return result;
    },
  };
}
