/**
 * The API's methods (Element style names) over the agent. Only JSON goes out: dates as ISO text.
 * The API knows the agent's interface, nothing of drives or KMIP.
 */
import { KmipAgentError } from '../errors.js';
import type { AgentStatus } from '../agent/agent.js';
import type { AuditEvent, AuditQuery } from '../agent/audit.js';
import { driveListing, encryptionAtRestInfo, type InventoryItem } from '../agent/inventory.js';
import type { JobView } from '../agent/jobs.js';
import type { ClientCertificateService } from '../agent/client-certificate.js';
import type { KeyServerFields } from '../agent/key-servers.js';
import type { FieldService } from '../agent/field-service.js';
import { fieldMethods } from './field-methods.js';
import type { RpcMethod } from './server.js';

/** What the API needs of the agent. */
export interface AgentApi {
  status(): AgentStatus;
  unlockNow(options?: { all?: boolean }): Promise<unknown>;
  enrollDrives(devices: string[]): Promise<unknown>;
  auditEvents(query: AuditQuery): Promise<AuditEvent[]>;
  /** What is attached (drives, emulated drives, volumes); without it the listing has managed ones only. */
  inventory?(): Promise<InventoryItem[]>;
  /** Async work with handles (jobs.ts); without it the job methods answer API_NOT_SUPPORTED. */
  jobs?: { get(asyncHandle: string): JobView; list(): JobView[] };
  enableEncryptionAtRest?(): Promise<{ asyncHandle: string }>;
  disableEncryptionAtRest?(): Promise<{ asyncHandle: string }>;
  /** Field-engineer workflows (RemoveDrive, RemoveVolume, ReplaceDrive, ReaddDrive, AuditKeys). */
  field?: FieldService;
  /** Key rotation (rotation.ts): one drive's or volume's key, or every one (deep rekey), as jobs. */
  startRotation?(kind: 'drive' | 'volume', id: string): Promise<{ asyncHandle: string }>;
  startDeepRekey?(): Promise<{ asyncHandle: string }>;
  /**
   * The master rekey (envelope mode) as a job: keyManagementType internal|external, keyProviderID (a
   * configured provider), deep (then every drive's and volume's key rotated too). Input checked before it starts.
   */
  startMasterRekey?(request: {
    keyManagementType?: unknown;
    keyProviderID?: unknown;
    deep?: boolean;
  }): Promise<{ asyncHandle: string }>;
  /** GetSoftwareEncryptionAtRestInfo: key mode, current master key (keyID, keyManagementType, keyProviderID, keyCreatedTime). */
  softwareEncryptionAtRestInfo?(): unknown;
  /** The client certificate (pending key pair, import, status, delete); without it those methods answer API_NOT_SUPPORTED. */
  clientCertificate?: ClientCertificateService;
  /** The KMIP client switch (kmip-client-admin.ts); each change is followed by a configuration reload. */
  kmipClient?: {
    status(): Promise<unknown>;
    enable(): Promise<unknown>;
    disable(options: { force: boolean }): Promise<unknown>;
    /** Without `confirm`, what a reset would make unreachable; nothing changes. */
    reset(options: { confirm: boolean }): Promise<unknown>;
  };
}

/** ListAuditEvents params: since (ISO time), limit (1..100000; default 1000, the most recent). */
function auditQuery(params: Record<string, unknown>): AuditQuery {
  const { since, limit } = params;
  const at = typeof since === 'string' ? Date.parse(since) : NaN;
  if (since !== undefined && Number.isNaN(at))
    throw new KmipAgentError('ListAuditEvents: params.since must be an ISO time', 'API_INVALID_PARAMS');
  if (limit !== undefined && !(Number.isInteger(limit) && (limit as number) >= 1 && (limit as number) <= 100_000))
    throw new KmipAgentError(
      'ListAuditEvents: params.limit must be a whole number from 1 to 100000',
      'API_INVALID_PARAMS',
    );
  return {
    ...(since !== undefined ? { since: new Date(at) } : {}),
    ...(limit !== undefined ? { limit: limit as number } : {}),
  };
}

/** Dates become ISO strings so every answer is plain JSON. */
function plain<T>(value: T): unknown {
  return JSON.parse(JSON.stringify(value)) as unknown;
}

function supported<T>(what: T | undefined, method: string): T {
  if (what === undefined) throw new KmipAgentError(`${method} is not available here`, 'API_NOT_SUPPORTED');
  return what;
}

// --------------------------------------------------------------------------- client certificate

const KEY_TYPES = ['rsa2048', 'rsa3072', 'rsa4096', 'p256', 'p384'] as const;

function invalid(method: string, what: string): KmipAgentError {
  return new KmipAgentError(`${method}: ${what}`, 'API_INVALID_PARAMS');
}

/**
 * CreatePublicPrivateKeyPair, GetClientCertificateSignRequest, ImportClientCertificate, GetClientCertificate,
 * DeleteClientCertificate. PEM travels as text; a private key never comes back.
 */
function clientCertificateMethods(service: () => ClientCertificateService): Record<string, RpcMethod> {
  return {
    CreatePublicPrivateKeyPair: async (params) => {
      const m = 'CreatePublicPrivateKeyPair';
      const keyType = params.keyType ?? 'rsa2048';
      if (!KEY_TYPES.includes(keyType as (typeof KEY_TYPES)[number]))
        throw invalid(m, `params.keyType must be one of ${KEY_TYPES.join(', ')}`);
      const subject = params.subject as Record<string, unknown> | undefined;
      if (typeof subject !== 'object' || subject === null || typeof subject.cn !== 'string')
        throw invalid(m, 'params.subject.cn (the common name) is required');
      const sans = params.subjectAltNames ?? [];
      if (!Array.isArray(sans) || !sans.every((s) => typeof s === 'string'))
        throw invalid(m, 'params.subjectAltNames must be strings such as "DNS:nas.example" or "IP:192.0.2.1"');
      const days = params.selfSignedDays;
      if (days !== undefined && !Number.isInteger(days))
        throw invalid(m, 'params.selfSignedDays must be a whole number');
      const result = await service().createKeyPair({
        keyType: keyType as (typeof KEY_TYPES)[number],
        subject: {
          cn: subject.cn,
          ...(['o', 'ou', 'c'] as const).reduce(
            (o, k) => (subject[k] === undefined ? o : { ...o, [k]: text(subject, k, m) }),
            {},
          ),
        },
        subjectAltNames: sans as string[],
        ...(days !== undefined ? { selfSignedDays: days as number } : {}),
      });
      return plain(result);
    },
    GetClientCertificateSignRequest: async () => plain(await service().signRequest()),
    ImportClientCertificate: async (params) => {
      const m = 'ImportClientCertificate';
      const certPem = text(params, 'certPem', m);
      if (!certPem) throw invalid(m, 'params.certPem (the certificate, PEM) is required');
      const keyPem = text(params, 'keyPem', m);
      const chainPem = text(params, 'chainPem', m);
      const result = await service().importCertificate(
        {
          certPem,
          ...(keyPem !== undefined ? { keyPem } : {}),
          ...(chainPem !== undefined ? { chainPem } : {}),
          force: params.force === true,
        },
        { replace: params.replace === true },
      );
      if (!result.replaced && 'tests' in result)
        throw new KmipAgentError(
          `${m}: the connection test with the new certificate failed; the old certificate stays in use`,
          'CERT_TEST_FAILED',
          { details: { tests: plain(result.tests) } },
        );
      return plain(result);
    },
    GetClientCertificate: async () => plain(await service().status()),
    DeleteClientCertificate: async (params) => {
      if (params.confirm !== true)
        throw new KmipAgentError(
          'DeleteClientCertificate destroys the private key: it needs params.confirm: true',
          'API_CONFIRM_REQUIRED',
        );
      return plain(await service().delete());
    },
  };
}

export function agentMethods(agent: AgentApi): Record<string, RpcMethod> {
  /** The managed targets joined with the inventory: unmanaged drives too, each with what the agent knows. */
  const listing = async () => {
    const { drives } = agent.status();
    return driveListing((await agent.inventory?.()) ?? [], drives);
  };
  return {
    GetStatus: () => plain(agent.status()),
    ListDrives: async () => plain({ drives: agent.status().drives, inventory: await listing() }),
    GetDrive: async (params) => {
      const id = params.id;
      if (typeof id !== 'string')
        throw new KmipAgentError('GetDrive needs params.id (a drive or volume id)', 'API_INVALID_PARAMS');
      const drive = agent.status().drives.find((d) => d.id === id || d.device === id);
      const seen = (await listing()).find((d) => d.id === id || d.device === id || d.aliases.includes(id));
      if (!drive && !seen) throw new KmipAgentError(`no drive or volume ${id}`, 'DRIVE_UNKNOWN');
      return plain({ ...(drive ?? {}), ...(seen ? { managed: seen.managed, inventory: seen } : { managed: true }) });
    },
    GetEncryptionAtRestInfo: async () => plain(encryptionAtRestInfo(await listing(), agent.status().keyMode)),
    ListFaults: () => plain({ faults: agent.status().faults }),
    EnrollDrives: async (params) => {
      const devices = params.devices;
      if (!Array.isArray(devices) || devices.length === 0 || !devices.every((d) => typeof d === 'string'))
        throw new KmipAgentError(
          'EnrollDrives needs params.devices (drive paths or emu:/image paths)',
          'API_INVALID_PARAMS',
        );
      return plain({ enrolled: await agent.enrollDrives(devices as string[]) });
    },
    ListAuditEvents: async (params) => plain({ events: await agent.auditEvents(auditQuery(params)) }),
    EnableEncryptionAtRest: async () =>
      plain(await supported(agent.enableEncryptionAtRest, 'EnableEncryptionAtRest').call(agent)),
    DisableEncryptionAtRest: async (params) => {
      if (params.confirm !== true)
        throw new KmipAgentError(
          'DisableEncryptionAtRest hands every managed Opal drive back unlocked and revokes its key (LUKS volumes are left as they are): it needs params.confirm: true',
          'API_CONFIRM_REQUIRED',
        );
      return plain(await supported(agent.disableEncryptionAtRest, 'DisableEncryptionAtRest').call(agent));
    },
    RotateDriveKey: async (params) => {
      const { id, kind } = params;
      if (typeof id !== 'string' || id === '' || (kind !== undefined && kind !== 'drive' && kind !== 'volume'))
        throw new KmipAgentError(
          'RotateDriveKey needs params.id (a managed drive or volume id) and optionally params.kind (drive|volume)',
          'API_INVALID_PARAMS',
        );
      const isVolume =
        kind === 'volume' ||
        (kind === undefined && agent.status().drives.some((d) => d.id === id && d.kind === 'luks'));
      return plain(
        await supported(agent.startRotation, 'RotateDriveKey').call(agent, isVolume ? 'volume' : 'drive', id),
      );
    },
    RekeySoftwareEncryptionAtRestMasterKey: async (params) => {
      // Shallow (default): a new master key, keys rewrapped; deep alone: every drive's key rotated.
      const m = 'RekeySoftwareEncryptionAtRestMasterKey';
      const { deep, keyManagementType, keyProviderID } = params;
      if (deep !== undefined && typeof deep !== 'boolean') throw invalid(m, 'params.deep must be true or false');
      if (keyManagementType !== undefined && keyManagementType !== 'internal' && keyManagementType !== 'external')
        throw invalid(m, 'params.keyManagementType must be "internal" or "external"');
      if (keyProviderID !== undefined && (typeof keyProviderID !== 'string' || keyProviderID === ''))
        throw invalid(m, 'params.keyProviderID must be the name of a configured key provider');
      return plain(
        await supported(agent.startMasterRekey, m).call(agent, {
          ...(keyManagementType !== undefined ? { keyManagementType } : {}),
          ...(keyProviderID !== undefined ? { keyProviderID } : {}),
          deep: deep === true,
        }),
      );
    },
    GetSoftwareEncryptionAtRestInfo: () =>
      plain(supported(agent.softwareEncryptionAtRestInfo, 'GetSoftwareEncryptionAtRestInfo').call(agent)),
    GetAsyncResult: (params) => {
      const handle = params.asyncHandle;
      if (typeof handle !== 'string' || handle === '')
        throw new KmipAgentError('GetAsyncResult needs params.asyncHandle', 'API_INVALID_PARAMS');
      return plain(supported(agent.jobs, 'GetAsyncResult').get(handle));
    },
    ListJobs: () => plain({ jobs: supported(agent.jobs, 'ListJobs').list() }),
    GetKmipClient: async () => plain(await supported(agent.kmipClient, 'GetKmipClient').status()),
    EnableKmipClient: async () => plain(await supported(agent.kmipClient, 'EnableKmipClient').enable()),
    DisableKmipClient: async (params) =>
      plain(await supported(agent.kmipClient, 'DisableKmipClient').disable({ force: params.force === true })),
    ResetKmipClient: async (params) =>
      plain(await supported(agent.kmipClient, 'ResetKmipClient').reset({ confirm: params.confirm === true })),
    UnlockDrives: async (params) => {
      await agent.unlockNow({ all: params.all === true });
      return plain(agent.status());
    },
    ...fieldMethods(() => supported(agent.field, 'the field workflows')),
    ...clientCertificateMethods(() => supported(agent.clientCertificate, 'the client certificate API')),
  };
}

// ------------------------------------------------------------------- key servers and key providers

/**
 * What the key-server methods need: the agent's admin operations (key-servers.ts) and a reload.
 * Params (JSON, camelCase): `name` (the key server or provider), and for servers `host`, `port`, `label`,
 * `servername` (null clears it), `caPem` (PEM text of the CA certificates), `connectTimeoutMs`,
 * `requestTimeoutMs`, `pinnedSha256` (null clears it), `provider` (CreateKeyServerKmip: append it there);
 * for providers `label`, `servers` (names in failover order); AddKeyServerToProviderKmip and
 * RemoveKeyServerFromProviderKmip take `name` (the provider), `server` and `position` (0-based, default last).
 */
export interface KeyAdminApi {
  listServers(): Promise<unknown>;
  getServer(name: string): Promise<unknown>;
  createServer(name: string, fields: KeyServerFields & { provider?: string }): Promise<unknown>;
  modifyServer(name: string, fields: KeyServerFields): Promise<unknown>;
  deleteServer(name: string): Promise<unknown>;
  testServer(name: string): Promise<unknown>;
  listProviders(): Promise<unknown>;
  getProvider(name: string): Promise<unknown>;
  createProvider(name: string, fields: { label?: string; servers: string[] }): Promise<unknown>;
  deleteProvider(name: string): Promise<unknown>;
  addServerToProvider(provider: string, server: string, position?: number): Promise<unknown>;
  removeServerFromProvider(provider: string, server: string): Promise<unknown>;
  testProvider(name: string): Promise<unknown>;
}

function text(params: Record<string, unknown>, key: string, method: string, required = false): string | undefined {
  const v = params[key];
  if (v === undefined && !required) return undefined;
  if (typeof v !== 'string') throw invalid(method, `params.${key} must be a string`);
  return v;
}

function whole(params: Record<string, unknown>, key: string, method: string): number | undefined {
  const v = params[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v)) throw invalid(method, `params.${key} must be a whole number`);
  return v;
}

function clearable(params: Record<string, unknown>, key: string, method: string): string | null | undefined {
  return params[key] === null ? null : text(params, key, method);
}

function serverFields(params: Record<string, unknown>, method: string): KeyServerFields {
  const fields: KeyServerFields = {};
  const host = text(params, 'host', method);
  const label = text(params, 'label', method);
  const caPem = text(params, 'caPem', method);
  const port = whole(params, 'port', method);
  const connectTimeoutMs = whole(params, 'connectTimeoutMs', method);
  const requestTimeoutMs = whole(params, 'requestTimeoutMs', method);
  const servername = clearable(params, 'servername', method);
  const pinnedSha256 = clearable(params, 'pinnedSha256', method);
  if (host !== undefined) fields.host = host;
  if (label !== undefined) fields.label = label;
  if (caPem !== undefined) fields.caPem = caPem;
  if (port !== undefined) fields.port = port;
  if (connectTimeoutMs !== undefined) fields.connectTimeoutMs = connectTimeoutMs;
  if (requestTimeoutMs !== undefined) fields.requestTimeoutMs = requestTimeoutMs;
  if (servername !== undefined) fields.servername = servername;
  if (pinnedSha256 !== undefined) fields.pinnedSha256 = pinnedSha256;
  return fields;
}

/** CreateKeyServerKmip ... TestKeyProviderKmip and ReloadConfig (see KeyAdminApi for the params). */
export function keyAdminMethods(admin: KeyAdminApi, reload: () => Promise<unknown>): Record<string, RpcMethod> {
  const name = (params: Record<string, unknown>, method: string) => text(params, 'name', method, true)!;
  return {
    CreateKeyServerKmip: async (p) => {
      const provider = text(p, 'provider', 'CreateKeyServerKmip');
      return plain({
        server: await admin.createServer(name(p, 'CreateKeyServerKmip'), {
          ...serverFields(p, 'CreateKeyServerKmip'),
          ...(provider !== undefined ? { provider } : {}),
        }),
      });
    },
    ModifyKeyServerKmip: async (p) =>
      plain({
        server: await admin.modifyServer(name(p, 'ModifyKeyServerKmip'), serverFields(p, 'ModifyKeyServerKmip')),
      }),
    DeleteKeyServerKmip: async (p) => plain(await admin.deleteServer(name(p, 'DeleteKeyServerKmip'))),
    GetKeyServerKmip: async (p) => plain({ server: await admin.getServer(name(p, 'GetKeyServerKmip')) }),
    ListKeyServersKmip: async () => plain({ servers: await admin.listServers() }),
    TestKeyServerKmip: async (p) => plain({ test: await admin.testServer(name(p, 'TestKeyServerKmip')) }),
    CreateKeyProviderKmip: async (p) => {
      const servers = p.servers;
      if (!Array.isArray(servers) || !servers.every((s) => typeof s === 'string'))
        throw invalid('CreateKeyProviderKmip', 'params.servers must be a list of key server names');
      const label = text(p, 'label', 'CreateKeyProviderKmip');
      return plain({
        provider: await admin.createProvider(name(p, 'CreateKeyProviderKmip'), {
          servers: servers as string[],
          ...(label !== undefined ? { label } : {}),
        }),
      });
    },
    DeleteKeyProviderKmip: async (p) => plain(await admin.deleteProvider(name(p, 'DeleteKeyProviderKmip'))),
    AddKeyServerToProviderKmip: async (p) => {
      const m = 'AddKeyServerToProviderKmip';
      return plain({
        provider: await admin.addServerToProvider(name(p, m), text(p, 'server', m, true)!, whole(p, 'position', m)),
      });
    },
    RemoveKeyServerFromProviderKmip: async (p) => {
      const m = 'RemoveKeyServerFromProviderKmip';
      return plain({ provider: await admin.removeServerFromProvider(name(p, m), text(p, 'server', m, true)!) });
    },
    GetKeyProviderKmip: async (p) => plain({ provider: await admin.getProvider(name(p, 'GetKeyProviderKmip')) }),
    ListKeyProvidersKmip: async () => plain({ providers: await admin.listProviders() }),
    TestKeyProviderKmip: async (p) => plain(await admin.testProvider(name(p, 'TestKeyProviderKmip'))),
    ReloadConfig: async () => plain(await reload()),
  };
}
