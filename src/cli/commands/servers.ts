/**
 * `kmip-agent server ...` and `kmip-agent provider ...`: key servers and the failover groups (providers)
 * unlock uses. Changes go through the running daemon (which then reloads its configuration) when there is
 * one, else they are made here under the state lock; the work itself is key-servers.ts either way.
 */
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline/promises';
import {
  inspectServer,
  KeyAdmin,
  type KeyProviderView,
  type KeyServerFields,
  type KeyServerView,
} from '../../agent/key-servers.js';
import type { ServerTest } from '../../agent/connection-test.js';
import { acquireStateLock } from '../../agent/state-lock.js';
import { StateStore } from '../../agent/state.js';
import type { AgentDirs } from '../../agent/paths.js';
import type { ConnectionResult } from '../../agent/state.js';
import type { PresentedChain } from '../../kmip/index.js';
import { KmipAgentError } from '../../errors.js';
import { command, emit, ExitCode, group, printable, textTable, UsageError, type CommandContext } from '../framework.js';
import { DIR_OPTIONS, dirsFrom, fromDaemon } from './agent.js';

/** Through the daemon's API method when a daemon runs, else `local` with the state to ourselves. */
async function adminCall<T>(
  dirs: AgentDirs,
  method: string,
  params: Record<string, unknown>,
  local: (admin: KeyAdmin) => Promise<unknown>,
): Promise<T> {
  const answer = await fromDaemon<T>(dirs, method, params);
  if (answer !== undefined) return answer;
  const lock = await acquireStateLock(dirs.state, 'cli');
  try {
    const state = new StateStore({ dir: dirs.state });
    await state.load();
    const admin = new KeyAdmin({ configDir: dirs.config, state, now: () => new Date() });
    // The same JSON as the API answers.
    return JSON.parse(JSON.stringify(await local(admin))) as T;
  } finally {
    await lock.release();
  }
}

function readPem(path: string, option: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    throw new UsageError(`cannot read ${option} ${path}: ${(error as Error).message}`, 'USAGE_FILE');
  }
}

function integer(value: string | undefined, option: string): number | undefined {
  if (value === undefined) return undefined;
  if (!/^-?\d+$/.test(value)) throw new UsageError(`${option} must be a whole number, not '${value}'`);
  return Number(value);
}

const SERVER_OPTIONS = {
  host: { type: 'string', value: 'HOST', help: 'hostname or IP address of the key server' },
  port: { type: 'string', value: 'PORT', help: 'TCP port (default 5696)' },
  label: { type: 'string', value: 'TEXT', help: 'a description (at most 50 characters)' },
  ca: { type: 'string', value: 'FILE', help: 'CA certificate(s) the server chain must end in (PEM; copied)' },
  servername: { type: 'string', value: 'NAME', help: 'name to verify in the server certificate (default: host)' },
  'connect-timeout': { type: 'string', value: 'MS', help: 'TLS connection timeout in ms (default 10000)' },
  'request-timeout': { type: 'string', value: 'MS', help: 'answer timeout in ms (default 15000)' },
} as const;

type ServerValues = { [K in keyof typeof SERVER_OPTIONS]?: string };

function serverParams(values: ServerValues): KeyServerFields {
  const fields: KeyServerFields = {};
  const port = integer(values.port, '--port');
  const connect = integer(values['connect-timeout'], '--connect-timeout');
  const request = integer(values['request-timeout'], '--request-timeout');
  if (values.host !== undefined) fields.host = values.host;
  if (port !== undefined) fields.port = port;
  if (values.label !== undefined) fields.label = values.label;
  if (values.servername !== undefined) fields.servername = values.servername;
  if (values.ca !== undefined) fields.caPem = readPem(values.ca, '--ca');
  if (connect !== undefined) fields.connectTimeoutMs = connect;
  if (request !== undefined) fields.requestTimeoutMs = request;
  return fields;
}

function lastResult(c: ConnectionResult | undefined): string {
  if (!c) return 'never tested';
  const what = c.ok
    ? `ok${c.latencyMs !== undefined ? ` ${c.latencyMs} ms` : ''}`
    : `FAILED [${c.error?.code ?? '?'}] ${c.error?.message ?? ''}`;
  const extra = [c.vendor ? `vendor ${c.vendor}` : '', c.kmipVersions ? `KMIP ${c.kmipVersions.join(', ')}` : '']
    .filter(Boolean)
    .join(', ');
  return `${c.at}: ${what}${extra ? ` (${extra})` : ''}`;
}

function serverText(s: KeyServerView): string {
  return [
    `key server ${s.name}: ${s.endpoint}${s.label ? ` (${s.label})` : ''}`,
    `  servername: ${s.servername ?? s.host}`,
    `  CA: ${s.ca}${s.pinnedSha256 ? `; pinned SHA-256 ${s.pinnedSha256}` : ''}`,
    `  timeouts: connect ${s.connectTimeoutMs} ms, request ${s.requestTimeoutMs} ms`,
    `  providers: ${s.providers.join(', ') || 'none'}`,
    `  last connection: ${lastResult(s.lastConnection)}`,
  ]
    .map(printable)
    .join('\n');
}

function testText(t: ServerTest): string {
  const hint = t.error?.hint ? `\n    ${t.error.hint}` : '';
  return t.ok
    ? `  ${t.server} (${t.endpoint}): ok, KMIP ${t.protocolVersion} over ${t.tlsVersion}, ${t.latencyMs.toFixed(0)} ms` +
        `${t.vendor ? `, vendor ${printable(t.vendor)}` : ''}${t.kmipVersions ? `, offers ${t.kmipVersions.join(' ')}` : ''}`
    : `  ${t.server} (${t.endpoint}): FAILED ${printable(t.error?.message ?? '')} [${t.error?.code}]${printable(hint)}`;
}

function providerText(p: KeyProviderView): string {
  const used = [
    ...p.usedBy.drives.map((d) => `drive ${d}`),
    ...p.usedBy.volumes.map((v) => `volume ${v}`),
    ...p.usedBy.masterKeys.map((k) => `master key ${k}`),
  ];
  return [
    `key provider ${p.name}${p.label ? ` (${p.label})` : ''}${p.untested ? ' [untested]' : ''}`,
    ...p.servers.map((s, i) => `  ${i + 1}. ${s.name} ${s.endpoint}: ${lastResult(s.lastConnection)}`),
    `  used by: ${used.join(', ') || 'nothing enrolled'}`,
  ]
    .map(printable)
    .join('\n');
}

function chainText(chain: PresentedChain): string {
  return [
    `${chain.endpoint} presents ${chain.certificates.length} certificate(s):`,
    ...chain.certificates.flatMap((c, i) => [
      `  [${i}] subject: ${c.subject}`,
      `      issuer:  ${c.issuer}${c.selfSigned ? ' (self-signed)' : ''}`,
      `      valid:   ${c.validFrom} to ${c.validTo}`,
      `      SHA-256: ${c.sha256}`,
    ]),
  ]
    .map(printable)
    .join('\n');
}

/** `delete` removes configuration: only with --yes. */
function confirm(yes: boolean | undefined, what: string): void {
  if (yes !== true) throw new UsageError(`${what}: add --yes to confirm`, 'USAGE_CONFIRM');
}

// ------------------------------------------------------------------------------------------ server

const serverCreate = command({
  name: 'create',
  usage: '<name> --host HOST --ca FILE [--port PORT] [--label TEXT] [--servername NAME] [--provider NAME]',
  summary: 'define a key server (its CA copied to <config-dir>/servers/<name>.ca.pem)',
  options: {
    ...SERVER_OPTIONS,
    provider: { type: 'string', value: 'NAME', help: "append it to this provider's failover order" },
    ...DIR_OPTIONS,
  },
  positionals: 1,
  async run({ values, positionals }, ctx) {
    const name = positionals[0]!;
    if (values.host === undefined) throw new UsageError('--host is required');
    if (values.ca === undefined) throw new UsageError('--ca is required (the CA the server chain must end in)');
    const params = { ...serverParams(values), ...(values.provider !== undefined ? { provider: values.provider } : {}) };
    const { server } = await adminCall<{ server: KeyServerView }>(
      dirsFrom(values),
      'CreateKeyServerKmip',
      { name, ...params },
      async (a) => ({ server: await a.createServer(name, params) }),
    );
    emit(ctx, { server }, serverText(server));
  },
});

const serverModify = command({
  name: 'modify',
  usage: '<name> [--host HOST] [--port PORT] [--label TEXT] [--ca FILE] [--servername NAME] ...',
  summary: 'change a key server (a new host or CA drops its pinned certificate)',
  options: { ...SERVER_OPTIONS, ...DIR_OPTIONS },
  positionals: 1,
  async run({ values, positionals }, ctx) {
    const name = positionals[0]!;
    const params = serverParams(values);
    if (Object.keys(params).length === 0) throw new UsageError('nothing to change: give at least one option');
    const { server } = await adminCall<{ server: KeyServerView }>(
      dirsFrom(values),
      'ModifyKeyServerKmip',
      { name, ...params },
      async (a) => ({ server: await a.modifyServer(name, params) }),
    );
    emit(ctx, { server }, serverText(server));
  },
});

const serverDelete = command({
  name: 'delete',
  usage: '<name> --yes',
  summary: 'remove a key server (refused while enrolled drives or volumes use a provider listing it)',
  options: { yes: { type: 'boolean', help: 'confirm' }, ...DIR_OPTIONS },
  positionals: 1,
  async run({ values, positionals }, ctx) {
    const name = positionals[0]!;
    confirm(values.yes, `server delete ${name} removes it from the configuration`);
    const result = await adminCall<{ name: string; removedFrom: string[] }>(
      dirsFrom(values),
      'DeleteKeyServerKmip',
      { name },
      (a) => a.deleteServer(name),
    );
    emit(
      ctx,
      result,
      `key server ${name} deleted${result.removedFrom.length ? ` (removed from ${result.removedFrom.join(', ')})` : ''}`,
    );
  },
});

const serverGet = command({
  name: 'get',
  usage: '<name>',
  summary: 'a key server and its last connection result',
  options: { ...DIR_OPTIONS },
  positionals: 1,
  async run({ values, positionals }, ctx) {
    const name = positionals[0]!;
    const { server } = await adminCall<{ server: KeyServerView }>(
      dirsFrom(values),
      'GetKeyServerKmip',
      { name },
      async (a) => ({ server: await a.getServer(name) }),
    );
    emit(ctx, { server }, serverText(server));
  },
});

const serverList = command({
  name: 'list',
  usage: '',
  summary: 'the key servers, each with its last connection result',
  options: { ...DIR_OPTIONS },
  async run({ values }, ctx) {
    const { servers } = await adminCall<{ servers: KeyServerView[] }>(
      dirsFrom(values),
      'ListKeyServersKmip',
      {},
      async (a) => ({ servers: await a.listServers() }),
    );
    const rows = [
      ['NAME', 'ENDPOINT', 'LABEL', 'PROVIDERS', 'PINNED', 'LAST TEST', 'RESULT', 'VENDOR', 'KMIP', 'LATENCY'],
      ...servers.map((s) => {
        const c = s.lastConnection;
        return [
          s.name,
          s.endpoint,
          s.label,
          s.providers.join(','),
          s.pinnedSha256 ? 'yes' : 'no',
          c?.at ?? 'never',
          c ? (c.ok ? 'ok' : (c.error?.code ?? 'failed')) : '',
          c?.vendor ?? '',
          c?.kmipVersions?.join(',') ?? '',
          c?.latencyMs !== undefined ? `${c.latencyMs} ms` : '',
        ];
      }),
    ];
    emit(ctx, { servers }, servers.length ? textTable(rows) : 'no key servers (`kmip-agent server create`)');
  },
});

const serverTest = command({
  name: 'test',
  usage: '<name>',
  summary: 'TLS, Discover Versions and Query against a key server; kept as its last connection result',
  options: { ...DIR_OPTIONS },
  positionals: 1,
  async run({ values, positionals }, ctx) {
    const name = positionals[0]!;
    const { test } = await adminCall<{ test: ServerTest }>(
      dirsFrom(values),
      'TestKeyServerKmip',
      { name },
      async (a) => ({ test: await a.testServer(name) }),
    );
    emit(ctx, { test }, testText(test));
    return test.ok ? ExitCode.Ok : ExitCode.Failed;
  },
});

/** "yes" typed on a terminal; refused when stdin or stdout is not one. */
async function askOnTerminal(ctx: CommandContext, question: string): Promise<boolean> {
  if (ctx.json || !process.stdin.isTTY || !process.stdout.isTTY)
    throw new KmipAgentError(
      'trusting a server certificate needs confirmation: add --yes (no terminal to ask on)',
      'TRUST_CONFIRMATION_REQUIRED',
    );
  const rl = createInterface({ input: process.stdin, output: process.stdout });
  try {
    return (await rl.question(question)).trim().toLowerCase() === 'yes';
  } finally {
    rl.close();
  }
}

const serverTrust = command({
  name: 'trust',
  usage: '<name> [--yes] [--ca FILE]',
  summary: "trust on first use: show the server's chain and, confirmed, trust its root and pin its certificate",
  description: `Connects without verifying (only to read the chain: no KMIP request is sent on that connection),
shows subject, issuer, validity and SHA-256 fingerprint of each certificate, and, confirmed with --yes or
by typing "yes" on a terminal, writes the chain's self-signed root as the server's CA and pins the server
certificate's fingerprint. From then on any other server certificate is refused (both fingerprints shown)
until trusted again. A server that does not send its root needs --ca FILE (which must have issued the
chain). A certificate that does not name the host (or --servername) is never trusted.`,
  options: {
    yes: { type: 'boolean', help: 'trust without asking' },
    ca: { type: 'string', value: 'FILE', help: 'the CA to trust when the server does not send its root (PEM)' },
    ...DIR_OPTIONS,
  },
  positionals: 1,
  async run({ values, positionals }, ctx) {
    const name = positionals[0]!;
    const dirs = dirsFrom(values);
    const given = values.ca === undefined ? undefined : readPem(values.ca, '--ca');
    const seen = await inspectServer(dirs.config, name, given);
    if (!ctx.json) ctx.io.stdout(chainText(seen.chain) + '\n');
    if (values.yes !== true) {
      const trusted = await askOnTerminal(
        ctx,
        `Trust ${seen.chain.endpoint} with SHA-256 ${seen.pinnedSha256}? Type "yes" to trust: `,
      );
      if (!trusted) throw new KmipAgentError('not trusted: nothing changed', 'TRUST_DECLINED');
    }
    const params = { caPem: seen.caPem, pinnedSha256: seen.pinnedSha256 };
    const { server } = await adminCall<{ server: KeyServerView }>(
      dirs,
      'ModifyKeyServerKmip',
      { name, ...params },
      async (a) => ({ server: await a.modifyServer(name, params) }),
    );
    const { test } = await adminCall<{ test: ServerTest }>(dirs, 'TestKeyServerKmip', { name }, async (a) => ({
      test: await a.testServer(name),
    }));
    emit(
      ctx,
      { server, chain: seen.chain, test },
      `trusted: ${server.ca} written, SHA-256 ${seen.pinnedSha256} pinned\n${testText(test)}`,
    );
    return test.ok ? ExitCode.Ok : ExitCode.Failed;
  },
});

export const serverCommand = group({
  name: 'server',
  summary: 'key servers: create, modify, delete, get, list, test, trust',
  commands: [serverCreate, serverModify, serverDelete, serverGet, serverList, serverTest, serverTrust],
});

// ---------------------------------------------------------------------------------------- provider

const providerCreate = command({
  name: 'create',
  usage: '<name> --server NAME [--server NAME ...] [--label TEXT]',
  summary: 'define a key provider: key servers in failover order',
  options: {
    server: { type: 'string', multiple: true, value: 'NAME', help: 'a key server; repeat for failover order' },
    label: { type: 'string', value: 'TEXT', help: 'a description (at most 50 characters)' },
    ...DIR_OPTIONS,
  },
  positionals: 1,
  async run({ values, positionals }, ctx) {
    const name = positionals[0]!;
    const fields = { servers: values.server ?? [], ...(values.label !== undefined ? { label: values.label } : {}) };
    const { provider } = await adminCall<{ provider: KeyProviderView }>(
      dirsFrom(values),
      'CreateKeyProviderKmip',
      { name, ...fields },
      async (a) => ({ provider: await a.createProvider(name, fields) }),
    );
    emit(ctx, { provider }, providerText(provider));
  },
});

const providerDelete = command({
  name: 'delete',
  usage: '<name> --yes',
  summary: 'remove a key provider (refused while enrolled drives or volumes use it)',
  options: { yes: { type: 'boolean', help: 'confirm' }, ...DIR_OPTIONS },
  positionals: 1,
  async run({ values, positionals }, ctx) {
    const name = positionals[0]!;
    confirm(values.yes, `provider delete ${name} removes it from the configuration`);
    const result = await adminCall<{ name: string }>(dirsFrom(values), 'DeleteKeyProviderKmip', { name }, (a) =>
      a.deleteProvider(name),
    );
    emit(ctx, result, `key provider ${name} deleted`);
  },
});

const providerGet = command({
  name: 'get',
  usage: '<name>',
  summary: 'a key provider: its servers in order with their last results, and what uses it',
  options: { ...DIR_OPTIONS },
  positionals: 1,
  async run({ values, positionals }, ctx) {
    const name = positionals[0]!;
    const { provider } = await adminCall<{ provider: KeyProviderView }>(
      dirsFrom(values),
      'GetKeyProviderKmip',
      { name },
      async (a) => ({ provider: await a.getProvider(name) }),
    );
    emit(ctx, { provider }, providerText(provider));
  },
});

const providerList = command({
  name: 'list',
  usage: '',
  summary: 'the key providers',
  options: { ...DIR_OPTIONS },
  async run({ values }, ctx) {
    const { providers } = await adminCall<{ providers: KeyProviderView[] }>(
      dirsFrom(values),
      'ListKeyProvidersKmip',
      {},
      async (a) => ({ providers: await a.listProviders() }),
    );
    const rows = [
      ['NAME', 'LABEL', 'SERVERS', 'DRIVES', 'VOLUMES', 'MASTER KEY'],
      ...providers.map((p) => [
        p.name,
        p.label ?? '',
        p.servers.map((s) => s.name).join(','),
        String(p.usedBy.drives.length),
        String(p.usedBy.volumes.length),
        p.usedBy.masterKeys.length ? 'yes' : '',
      ]),
    ];
    emit(ctx, { providers }, providers.length ? textTable(rows) : 'no key providers (`kmip-agent provider create`)');
  },
});

const providerTest = command({
  name: 'test',
  usage: '<name>',
  summary: 'test every server of a key provider, each on its own connection',
  options: { ...DIR_OPTIONS },
  positionals: 1,
  async run({ values, positionals }, ctx) {
    const name = positionals[0]!;
    const result = await adminCall<{ name: string; servers: ServerTest[] }>(
      dirsFrom(values),
      'TestKeyProviderKmip',
      { name },
      (a) => a.testProvider(name),
    );
    emit(ctx, result, [`key provider ${name}:`, ...result.servers.map(testText)].join('\n'));
    return result.servers.some((t) => t.ok) ? ExitCode.Ok : ExitCode.Failed;
  },
});

const providerAddServer = command({
  name: 'add-server',
  usage: '<provider> <server> [--position N]',
  summary: "add a key server to a provider's failover order (default: last)",
  options: { position: { type: 'string', value: 'N', help: '0-based place in the order' }, ...DIR_OPTIONS },
  positionals: 2,
  async run({ values, positionals }, ctx) {
    const [name, server] = positionals as [string, string];
    const position = integer(values.position, '--position');
    const { provider } = await adminCall<{ provider: KeyProviderView }>(
      dirsFrom(values),
      'AddKeyServerToProviderKmip',
      { name, server, ...(position !== undefined ? { position } : {}) },
      async (a) => ({ provider: await a.addServerToProvider(name, server, position) }),
    );
    emit(ctx, { provider }, providerText(provider));
  },
});

const providerRemoveServer = command({
  name: 'remove-server',
  usage: '<provider> <server>',
  summary: 'take a key server out of a provider (refused if an in-use provider would be left empty)',
  options: { ...DIR_OPTIONS },
  positionals: 2,
  async run({ values, positionals }, ctx) {
    const [name, server] = positionals as [string, string];
    const { provider } = await adminCall<{ provider: KeyProviderView }>(
      dirsFrom(values),
      'RemoveKeyServerFromProviderKmip',
      { name, server },
      async (a) => ({ provider: await a.removeServerFromProvider(name, server) }),
    );
    emit(ctx, { provider }, providerText(provider));
  },
});

export const providerCommand = group({
  name: 'provider',
  summary: 'key providers (failover groups of key servers): create, delete, get, list, test, add-server, remove-server',
  commands: [
    providerCreate,
    providerDelete,
    providerGet,
    providerList,
    providerTest,
    providerAddServer,
    providerRemoveServer,
  ],
});
