/**
 * `kmip-agent cert generate|csr|import|replace|export|delete|status`: the appliance's KMIP client
 * certificate (see agent/client-certificate.ts). The files live in the configuration directory, which the
 * daemon does not lock: these commands work whether it runs or not, and tell a running one to reload.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ApiClient, isDaemonAbsent } from '../../api/client.js';
import { API_SOCKET_NAME } from '../../api/server.js';
import {
  clientCertificateStatus,
  deleteClientCertificate,
  exportClientCertificate,
  exportWithPrivateKey,
  generatePendingKeyPair,
  importClientCertificate,
  pendingRequest,
  prepareImport,
  refuseIfInstalled,
  replaceClientCertificate,
  testClientIdentity,
  type ClientCertificateStatus,
  type InstallResult,
  type ProviderTest,
} from '../../agent/client-certificate.js';
import { loadConfig } from '../../agent/config.js';
import type { AgentDirs } from '../../agent/paths.js';
import { KmipAgentError } from '../../errors.js';
import {
  KEY_TYPE_NAMES,
  MAX_DAYS,
  parseSubjectAltName,
  type CertificateInfo,
  type KeyTypeName,
} from '../../pki/index.js';
import {
  command,
  emit,
  group,
  note,
  printable,
  UsageError,
  withSecrets,
  type CommandContext,
  type SecretKind,
} from '../framework.js';
import { DIR_OPTIONS, dirsFrom } from './agent.js';

/** A private key's passphrase, typed text. */
const PASSPHRASE_SECRET: SecretKind = { form: 'text', maxBytes: 1024 };

function readPem(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    throw new UsageError(`cannot read the ${what} ${path}: ${(error as Error).message}`, 'USAGE_FILE');
  }
}

/**
 * The one place the CLI tells a running daemon that the client certificate changed: ReloadConfig makes it
 * use the new files (and recheck their expiry). No daemon: nothing to tell; a daemon without ReloadConfig
 * picks the change up when restarted.
 */
async function tellDaemon(dirs: AgentDirs): Promise<'reloaded' | 'no-daemon' | 'restart-needed'> {
  try {
    await new ApiClient(join(dirs.runtime, API_SOCKET_NAME)).call('ReloadConfig');
    return 'reloaded';
  } catch (error) {
    if (isDaemonAbsent(error)) return 'no-daemon';
    if ((error as { code?: string }).code === 'API_METHOD_NOT_FOUND') return 'restart-needed';
    throw error;
  }
}

const DAEMON_NOTE = {
  reloaded: 'the running daemon reloaded its configuration',
  'no-daemon': '',
  'restart-needed': 'restart the daemon (systemctl restart kmip-agent) for it to use the new certificate',
} as const;

function certificateLines(c: CertificateInfo): string[] {
  return [
    `subject:      ${printable(c.subject)}`,
    `issuer:       ${printable(c.issuer)}`,
    `serial:       ${c.serial}`,
    `valid:        ${c.notBefore} .. ${c.notAfter} (${c.daysLeft} days left)`,
    `sha256:       ${c.fingerprintSha256}`,
    `key:          ${c.keyType}, signed ${c.signatureAlgorithm}`,
    `EKU:          ${c.extendedKeyUsage.join(', ') || '(none)'}`,
    ...(c.subjectAltNames.length ? [`SAN:          ${printable(c.subjectAltNames.join(', '))}`] : []),
  ];
}

function testLines(tests: ProviderTest[]): string[] {
  return tests.flatMap((p) =>
    p.servers.map((t) =>
      t.ok
        ? `  ${p.provider}/${t.server} (${t.endpoint}): ok, KMIP ${t.protocolVersion}, ${t.latencyMs.toFixed(0)} ms`
        : `  ${p.provider}/${t.server} (${t.endpoint}): FAILED ${printable(t.error?.message ?? '')} [${t.error?.code}]` +
          (t.error?.hint ? `\n    ${printable(t.error.hint)}` : ''),
    ),
  );
}

const failures = (tests: ProviderTest[]) => tests.flatMap((p) => p.servers.filter((s) => !s.ok));

const IMPORT_OPTIONS = {
  cert: { type: 'string', value: 'FILE', help: 'the certificate (PEM; may be followed by its intermediates)' },
  key: { type: 'string', value: 'FILE', help: 'its private key (PEM; default: the pending key of `cert generate`)' },
  chain: { type: 'string', value: 'FILE', help: 'intermediate CA certificates (PEM)' },
  'passphrase-file': { type: 'string', value: 'FILE|-', help: 'passphrase of an encrypted --key' },
  force: {
    type: 'boolean',
    help: 'accept what validation refuses but a server might take (no clientAuth, dates, weak algorithms)',
  },
  ...DIR_OPTIONS,
} as const;

type ImportValues = {
  cert?: string;
  key?: string;
  chain?: string;
  'passphrase-file'?: string;
  force?: boolean;
};

/** Reads and validates what `import`/`replace` were given; `work` runs with the validated import. */
async function withImport<T>(
  values: ImportValues,
  ctx: CommandContext,
  dirs: AgentDirs,
  work: (prepared: Awaited<ReturnType<typeof prepareImport>>) => Promise<T>,
): Promise<T> {
  if (!values.cert) throw new UsageError('--cert FILE is required');
  const certPem = readPem(values.cert, 'certificate');
  const keyPem = values.key === undefined ? undefined : readPem(values.key, 'private key');
  const chainPem = values.chain === undefined ? undefined : readPem(values.chain, 'chain');
  const source = {
    path: values['passphrase-file'],
    option: '--passphrase-file',
    what: 'the passphrase of the private key',
    kind: PASSPHRASE_SECRET,
    optional: true,
  };
  return withSecrets(ctx, [source], 'auto', async ([passphrase]) => {
    const prepared = await prepareImport(dirs.config, {
      certPem,
      ...(keyPem !== undefined ? { keyPem } : {}),
      ...(chainPem !== undefined ? { chainPem } : {}),
      ...(passphrase ? { passphrase } : {}),
      force: values.force === true,
      now: new Date(),
    });
    for (const w of prepared.warnings) note(ctx, `accepted with --force: ${w.message} [${w.code}]`);
    return work(prepared);
  });
}

function installedLines(install: InstallResult): string[] {
  return [
    ...certificateLines(install.certificate),
    `files:        ${install.files.cert}, ${install.files.key}${install.files.chain ? `, ${install.files.chain}` : ''}`,
    ...(install.previous.length ? [`kept:         ${install.previous.join(', ')}`] : []),
  ];
}

// ---------------------------------------------------------------------------------------- commands

const generateCommand = command({
  name: 'generate',
  usage: '--cn NAME [--key-type rsa2048|rsa3072|rsa4096|p256|p384] [--san DNS:NAME|IP:ADDR ...] [--self-signed]',
  summary: 'make a new key pair (pending until its certificate is imported) and print its CSR',
  description: `The key is written to <config-dir>/pki/pending.key (0600; a previous pending key is kept as .prev)
and never leaves the appliance. The CSR asks for EKU clientAuth (KMIP servers refuse clients without it) and
key usage digitalSignature + keyEncipherment (RSA) or digitalSignature + keyAgreement (EC), signed with
SHA-256 (RSA, P-256) or SHA-384 (P-384). Have the key server's CA sign it, then \`kmip-agent cert import
--cert FILE\` (first certificate) or \`cert replace --cert FILE\`. --self-signed prints a self-signed
certificate instead (pki/pending.crt), for servers that trust client certificates one by one.`,
  options: {
    cn: { type: 'string', value: 'NAME', help: "subject common name (PyKMIP takes it as the client's identity)" },
    o: { type: 'string', value: 'ORG', help: 'subject organization' },
    ou: { type: 'string', value: 'UNIT', help: 'subject organizational unit' },
    c: { type: 'string', value: 'CC', help: 'subject country (two letters)' },
    'key-type': { type: 'string', value: 'TYPE', help: `${KEY_TYPE_NAMES.join(', ')} (default rsa2048)` },
    san: { type: 'string', multiple: true, value: 'DNS:NAME|IP:ADDR', help: 'subject alternative name; repeatable' },
    'self-signed': { type: 'boolean', help: 'also make a self-signed certificate and print it instead of the CSR' },
    days: {
      type: 'string',
      value: 'N',
      help: `validity of the self-signed certificate (default 365, at most ${MAX_DAYS})`,
    },
    ...DIR_OPTIONS,
  },
  async run({ values }, ctx) {
    if (!values.cn) throw new UsageError('--cn NAME is required (the subject common name)');
    const keyType = (values['key-type'] ?? 'rsa2048') as KeyTypeName;
    if (!KEY_TYPE_NAMES.includes(keyType))
      throw new UsageError(`--key-type must be one of ${KEY_TYPE_NAMES.join(', ')}, not '${values['key-type']}'`);
    if (values.days !== undefined && !values['self-signed'])
      throw new UsageError(
        '--days is the validity of a self-signed certificate: give --self-signed too (a CA decides for a CSR)',
      );
    const days = values.days === undefined ? 365 : Number(values.days);
    if (!/^\d+$/.test(values.days ?? '365') || days < 1 || days > MAX_DAYS)
      throw new UsageError(`--days must be a whole number from 1 to ${MAX_DAYS}, not '${values.days}'`);
    const sans = (values.san ?? []).map(parseSubjectAltName);
    const subject = {
      cn: values.cn,
      ...(values.o !== undefined ? { o: values.o } : {}),
      ...(values.ou !== undefined ? { ou: values.ou } : {}),
      ...(values.c !== undefined ? { c: values.c } : {}),
    };
    const dirs = dirsFrom(values);
    const pending = await generatePendingKeyPair(dirs.config, {
      keyType,
      subject,
      sans,
      now: new Date(),
      ...(values['self-signed'] ? { selfSignedDays: days } : {}),
    });
    const keyFile = join(dirs.config, pending.keyFile);
    note(ctx, `new ${pending.keyType} key pair pending in ${keyFile} (0600)`);
    if (pending.certPem) {
      note(
        ctx,
        `self-signed certificate in ${join(dirs.config, pending.certFile!)}: install it with \`kmip-agent cert import --cert ${join(dirs.config, pending.certFile!)}\``,
      );
      emit(ctx, { ...pending, keyFile, certFile: join(dirs.config, pending.certFile!) }, pending.certPem);
    } else {
      note(ctx, 'have the CA sign this request, then `kmip-agent cert import --cert FILE` (or `cert replace`)');
      emit(ctx, { ...pending, keyFile }, pending.csrPem);
    }
  },
});

const csrCommand = command({
  name: 'csr',
  usage: '[--out FILE]',
  summary: 'print (or write) the CSR of the pending key pair again',
  options: { out: { type: 'string', value: 'FILE', help: 'write the CSR to FILE instead of stdout' }, ...DIR_OPTIONS },
  async run({ values }, ctx) {
    const dirs = dirsFrom(values);
    const { csrPem, keyFile } = await pendingRequest(dirs.config);
    if (values.out !== undefined) {
      writeFileSync(values.out, csrPem, { mode: 0o644 });
      emit(ctx, { out: values.out, keyFile: join(dirs.config, keyFile) }, `CSR written to ${values.out}`);
    } else emit(ctx, { csrPem, keyFile: join(dirs.config, keyFile) }, csrPem);
  },
});

const importCommand = command({
  name: 'import',
  usage: '--cert FILE [--key FILE] [--chain FILE] [--passphrase-file FILE|-] [--force]',
  summary: 'install the first client certificate (validated; key: the pending one unless --key)',
  description: `Checks that the key matches the certificate, the dates hold, the key and signatures are strong
enough, EKU clientAuth is present (PyKMIP and other servers accept the TLS handshake without it and then
refuse every request with "Authentication Not Successful") and the intermediates chain to it. Then copies
certificate, key (0600, unencrypted) and chain into <config-dir>/pki and points config.client at them, and
tests every key server with it, reporting each one's answer. When a certificate is installed already, use
\`cert replace\`. --force installs what validation refuses (the test then shows what the servers say).`,
  options: IMPORT_OPTIONS,
  async run({ values }, ctx) {
    const dirs = dirsFrom(values);
    await refuseIfInstalled(dirs.config);
    const { install, tests, daemon } = await withImport(values, ctx, dirs, async (prepared) => {
      const install = await importClientCertificate(dirs.config, prepared);
      const config = await loadConfig(dirs.config);
      const tests = config.client.enabled ? await testClientIdentity(config, dirs.config, config.client) : [];
      return { install, tests, daemon: await tellDaemon(dirs) };
    });
    const failed = failures(tests);
    if (failed.length) note(ctx, `installed, but ${failed.length} key server(s) refused it (see below)`);
    if (DAEMON_NOTE[daemon]) note(ctx, DAEMON_NOTE[daemon]);
    emit(
      ctx,
      { installed: true, ...install, tests, tested: tests.length > 0 && failed.length === 0, daemon },
      [
        'client certificate installed',
        ...installedLines(install),
        ...(tests.length ? ['connection test:', ...testLines(tests)] : ['not tested (client disabled)']),
      ].join('\n'),
    );
  },
});

const replaceCommand = command({
  name: 'replace',
  usage: '--cert FILE [--key FILE] [--chain FILE] [--passphrase-file FILE|-] [--force]',
  summary: 'install a new client certificate once every key server of every provider accepts it',
  description: `Validates the new certificate as \`cert import\` does, then tests it (TLS, Discover Versions, Query)
against every server of every key provider while the old one stays in use. Only when all of them accept it
does config.client switch to the new files (the old ones are kept as .prev); otherwise nothing changes and
each server's answer is shown [CERT_TEST_FAILED]. --force switches even when tests fail.`,
  options: IMPORT_OPTIONS,
  async run({ values }, ctx) {
    const dirs = dirsFrom(values);
    const { result, daemon } = await withImport(values, ctx, dirs, async (prepared) => {
      const result = await replaceClientCertificate(dirs.config, prepared, { force: values.force === true });
      return { result, daemon: result.replaced ? await tellDaemon(dirs) : ('no-daemon' as const) };
    });
    if (!result.replaced) {
      const why = failures(result.tests)
        .map((t) => `${t.server} (${t.endpoint}): ${t.error?.message ?? 'failed'} [${t.error?.code}]`)
        .join('; ');
      throw new KmipAgentError(
        `the new certificate was not installed: the connection test failed (${why}); the old certificate stays in use` +
          ' (--force installs it anyway)',
        'CERT_TEST_FAILED',
        { details: { tests: result.tests } },
      );
    }
    if (result.forced) note(ctx, 'installed with --force although key servers refused it');
    if (DAEMON_NOTE[daemon]) note(ctx, DAEMON_NOTE[daemon]);
    emit(
      ctx,
      { ...result, daemon },
      [
        'client certificate replaced',
        ...installedLines(result.install!),
        ...(result.tests.length ? ['connection test:', ...testLines(result.tests)] : ['no key servers to test']),
      ].join('\n'),
    );
  },
});

const exportCommand = command({
  name: 'export',
  usage: '[--out FILE] [--with-private-key --out FILE]',
  summary: 'print or write the client certificate and its chain (the private key only when asked)',
  description: `Without options the certificate and its chain go to stdout as PEM. --with-private-key adds the
private key: only to a new file (--out, created 0600; an existing file is refused), never to stdout.`,
  options: {
    out: { type: 'string', value: 'FILE', help: 'write to FILE instead of stdout' },
    'with-private-key': { type: 'boolean', help: 'include the private key (needs --out: a new 0600 file)' },
    ...DIR_OPTIONS,
  },
  async run({ values }, ctx) {
    const dirs = dirsFrom(values);
    const config = await loadConfig(dirs.config);
    if (values['with-private-key']) {
      if (values.out === undefined)
        throw new UsageError('--with-private-key needs --out FILE: the private key is never written to stdout');
      await exportWithPrivateKey(dirs.config, config, values.out);
      emit(
        ctx,
        { out: values.out, privateKey: true },
        `certificate, chain and private key written to ${values.out} (0600)`,
      );
      return;
    }
    const pem = await exportClientCertificate(dirs.config, config);
    if (values.out !== undefined) {
      writeFileSync(values.out, pem, { mode: 0o644 });
      emit(ctx, { out: values.out, privateKey: false }, `certificate and chain written to ${values.out}`);
    } else emit(ctx, { pem }, pem);
  },
});

const deleteCommand = command({
  name: 'delete',
  usage: '--yes',
  summary: 'remove the client certificate and its key (refused while the client is enabled)',
  options: { yes: { type: 'boolean', help: 'confirm: the key is gone for good' }, ...DIR_OPTIONS },
  async run({ values }, ctx) {
    if (values.yes !== true)
      throw new UsageError(
        'deleting the client certificate destroys its private key. Add --yes to confirm.',
        'USAGE_CONFIRM',
      );
    const dirs = dirsFrom(values);
    const result = await deleteClientCertificate(dirs.config);
    await tellDaemon(dirs);
    emit(ctx, { deleted: true, ...result }, `client certificate deleted (${result.removed.join(', ')})`);
  },
});

function statusText(s: ClientCertificateStatus): string {
  const lines = [`client: ${s.enabled ? 'enabled' : 'disabled'}`];
  if (s.certificate) {
    const e = s.expiry!;
    lines.push(...certificateLines(s.certificate));
    for (const c of s.chain ?? []) lines.push(`chain:        ${printable(c.subject)} (until ${c.notAfter})`);
    lines.push(
      `expiry:       ${e.status}${e.status === 'ok' ? '' : e.status === 'expiring' ? ` (warning from ${e.warningDays} days before)` : ' (servers refuse it: `cert replace --force`)'}`,
    );
  } else lines.push('no client certificate installed (`kmip-agent cert generate`, then `cert import`)');
  if (s.pending)
    lines.push(
      `pending:      ${s.pending.keyType} key ${s.pending.keyFile}${s.pending.selfSignedCertFile ? `, self-signed ${s.pending.selfSignedCertFile}` : ''} (waiting for its certificate: \`cert csr\`)`,
    );
  return lines.join('\n');
}

const statusCommand = command({
  name: 'status',
  usage: '',
  summary: 'the client certificate: subject, issuer, serial, validity, days left, fingerprint, key, EKU, expiry',
  options: { ...DIR_OPTIONS },
  async run({ values }, ctx) {
    const dirs = dirsFrom(values);
    const status = await clientCertificateStatus(dirs.config, await loadConfig(dirs.config), new Date());
    emit(ctx, status, statusText(status));
  },
});

export const certCommand = group({
  name: 'cert',
  summary: "the appliance's KMIP client certificate: generate, csr, import, replace, export, delete, status",
  commands: [generateCommand, csrCommand, importCommand, replaceCommand, exportCommand, deleteCommand, statusCommand],
});
