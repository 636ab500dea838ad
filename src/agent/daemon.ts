/**
 * `kmip-agent daemon`: the boot-unlock service systemd runs (Type=notify). The only place that
 * constructs the real things (KMIP provider, Opal drives, LUKS activation, the key socket, the API
 * server, the systemd notifier) and wires them into the Agent; everything else takes interfaces.
 *
 * Start: take the state lock (a second daemon is refused), load config and state (a corrupt state is
 * kept aside and the daemon runs degraded with StateCorrupt), serve the API, boot-unlock (READY=1 when
 * everything is unlocked or at the deadline, EXTEND_TIMEOUT_USEC while waiting), keep retrying in the
 * background; SIGTERM/SIGINT stop it cleanly (STOPPING=1).
 */
import { randomUUID } from 'node:crypto';
import { KmipAgentError } from '../errors.js';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { KmipProvider, RevocationReasonCode, type ServerAttempt } from '../kmip/index.js';
import {
  ADMIN1,
  isAuthRefusal,
  listSystemDisks,
  luks,
  OpalDrive,
  SID,
  type OpalDriveOptions,
} from '../drives/index.js';
import { ApiServer, API_SOCKET_NAME, type RpcMethod } from '../api/server.js';
import { agentMethods, keyAdminMethods } from '../api/methods.js';
import { Agent } from './agent.js';
import { clientCertificateService, watchClientCertificateExpiry } from './client-certificate.js';
import {
  AuditLog,
  auditedEnroll,
  auditedFetch,
  auditedKeySource,
  auditedMasterKeyServer,
  auditedUnlockers,
  processActor,
  runAsActor,
  type AuditActor,
} from './audit.js';
import { systemClock, type Clock, type Random } from './clock.js';
import { loadConfig, providerConnection, saveConfig, type AgentConfig } from './config.js';
import {
  enrollLuksVolume,
  enrollOpalDrive,
  type EnrollDrive,
  type EnrollResult,
  type VolumeEnrollResult,
} from './enroll.js';
import { adoptOpalDrive, type AdoptDrive, type AdoptPins, type AdoptResult } from './adopt.js';
import { ConnectionRecorder, type ConnectionAttempt } from './connections.js';
import {
  DISABLE_JOB,
  disableEncryptionAtRest,
  ENABLE_JOB,
  enableEncryptionAtRest,
  ENCRYPTION_LANE,
  handedBackDrives,
  kmipKeyState,
  type DisableDrive,
} from './encryption-at-rest.js';
import { JobRunner, type JobContext } from './jobs.js';
import { fieldService, type FieldService } from './field-service.js';
import type { KeyAuditPorts } from './key-audit.js';
import { revertedDrives, type RemovableDrive } from './field-workflows.js';
import {
  EnvelopeKeySource,
  KmipMasterKeyServer,
  unfinishedRekey,
  type MasterKeyServer,
  type ShallowRekeyResult,
} from './envelope.js';
import {
  currentMasterKey,
  DEFAULT_MASTER_LOCATION,
  InternalMasterKeyStore,
  locationOf,
  parseLocation,
  systemdCredsSealer,
  type MasterKeyHolder,
  type MasterKeyHolders,
  type MasterKeyInfo,
  type MasterKeyLocation,
} from './master-key.js';
import { formatLuksVolume } from './format-volume.js';
import { FaultRegistry } from './faults.js';
import { KeyAdmin } from './key-servers.js';
import { clientStatus, disableClient, enableClient, planReset, resetClient } from './kmip-client-admin.js';
import { ReloadableProvider } from './reloadable-provider.js';
import { driveIdentifier, takeInventory, type InventoryItem, type InventoryPorts } from './inventory.js';
import { KmipKeySource, type KeySource } from './key-source.js';
import { KeySocketServer } from './keysocket/server.js';
import { fetchSocketKey, throttledRetries } from './socket-key.js';
import { journalError } from './journal.js';
import { agentLogger } from './log.js';
import { AgentMetrics, TextfileExporter } from './metrics.js';
import type { AgentDirs } from './paths.js';
import { RefusedKeyFile } from './refused-keys.js';
import { packageVersion } from '../native/addon.js';
import { recoverState, syncRecoveryFault, type RecoveryReport, type RecoveryVerifier } from './recovery.js';
import { acquireStateLock } from './state-lock.js';
import { StateCorruptError, StateStore } from './state.js';
import { SystemdNotifier } from './systemd-notify.js';
import { LuksUnlocker, OpalUnlocker, type OpalUnlockDrive } from './unlockers.js';
import { crashHook } from './crash-hook.js';
import { RotationPlan, RotationScheduler } from './rotation-policy.js';
import {
  deepRekey,
  DEEP_REKEY_JOB,
  NotManagedError,
  REKEY_LANE,
  ROTATE_KEY_JOB,
  rotateKey,
  rotatedByUnfinishedDeepRekey,
  unfinishedRotations,
  type DeepRekeyResult,
  type RotateOpalDrive,
  type RotationResult,
} from './rotation.js';

export const KEY_SOCKET_NAME = 'luks.sock';
/** How long a key-socket request waits for a key server that does not answer (see socket-key.ts). */
export const KEY_SOCKET_WAIT_MS = 90_000;
/** While the key socket waits: one `keysocket.waiting` line per this long for an unchanged failure. */
export const KEY_SOCKET_WAIT_LOG_MS = 15_000;

export interface DaemonOptions {
  dirs: AgentDirs;
  /** Overrides the config's boot deadline. */
  bootDeadlineSeconds?: number;
  /** Overrides the config's retry cap. */
  retryCapSeconds?: number;
  env?: NodeJS.ProcessEnv;
  log?: Logger;
  clock?: Clock;
  random?: Random;
}

/** JSON logs on stdout, journald priorities, secrets redacted: see log.ts. */
export { agentLogger };

/** A provider's side of `audit keys`: Locate through `located` (audited), Names and State asked directly. */
function auditPortsOf(located: KeySource, names: KmipKeySource, kmip: KmipProvider): KeyAuditPorts {
  return {
    findByGroup: (g) => located.findByGroup(g),
    namesOf: (u) => names.namesOf(u),
    keyState: kmipKeyState(kmip),
  };
}

/**
 * The provider of a disabled client (`kmip-agent client disable`): every request fails with
 * KMIP_CLIENT_DISABLED and no server is contacted, so the daemon still starts, serves its API and reports
 * the KmipClientDisabled fault instead of restarting in a loop.
 */
function disabledProvider(): KmipProvider {
  const refusal = () =>
    new KmipAgentError(
      'the KMIP client is disabled: no key server is contacted (`kmip-agent client enable`)',
      'KMIP_CLIENT_DISABLED',
    );
  const fixed: Record<PropertyKey, unknown> = {
    health: () => [],
    activeEndpoint: 'none (client disabled)',
    close: () => undefined,
    then: undefined,
  };
  return new Proxy({} as KmipProvider, {
    get: (_target, property) => (property in fixed ? fixed[property] : () => Promise.reject(refusal())),
  });
}

function providerFor(
  config: AgentConfig,
  configDir: string,
  log: Logger,
  observe: (a: ServerAttempt) => void,
  onAttempt: (a: ConnectionAttempt) => void = () => undefined,
  providerName = 'default',
): KmipProvider {
  if (!config.client.enabled) return disabledProvider();
  return new KmipProvider({
    ...providerConnection(config, configDir, providerName),
    onAttempt: (a) => {
      observe(a);
      if (a.outcome === 'failed')
        log.warn({ event: 'kmip_attempt', ...a }, `key server ${a.endpoint} passed over: ${a.code}`);
      onAttempt(a);
    },
  });
}

/**
 * Opens drives for unlocking, with the agent's refused-key memory and tries reserve; a drive's identity is
 * the one it is remembered by (the options' identify: inventory's driveIdentifier in the daemon).
 */
export function opalOpener(options: OpalDriveOptions): (device: string) => Promise<OpalUnlockDrive> {
  return async (device) => {
    const drive = await OpalDrive.open(device, options);
    return {
      identity: () => drive.identity(),
      aliases: () => drive.identityAliases(),
      unlock: (pin) => drive.unlock(pin),
      close: () => drive.close(),
    };
  };
}

/** Opens a drive for enrollment (factory-fresh check, ownership, Locking SP, global range locked). */
async function openForEnroll(device: string, options: OpalDriveOptions): Promise<EnrollDrive> {
  const drive = await OpalDrive.open(device, options);
  return {
    identity: () => drive.identity(),
    aliases: () => drive.identityAliases(),
    isFactoryFresh: async () => {
      const s = await drive.status();
      return !s.lockingEnabled && s.sidIsMsid !== false;
    },
    takeOwnership: (pin) => drive.takeOwnership(pin),
    activateLockingSp: (pin) => drive.activate(pin),
    enableGlobalRangeLocking: (pin) =>
      drive.setupRange(pin, { range: 0, readLockEnabled: true, writeLockEnabled: true }),
    close: () => drive.close(),
  };
}

/**
 * Opens a managed drive for DisableEncryptionAtRest (see encryption-at-rest.ts for the order). The SID
 * is found already reset (a rerun) only by authenticating with the MSID, after the key was refused.
 */
async function openForDisable(device: string, options: OpalDriveOptions): Promise<DisableDrive> {
  const drive = await OpalDrive.open(device, options);
  return {
    lockingSpActive: async () => (await drive.status()).lockingEnabled,
    unlock: (pin) => drive.unlock(pin),
    disableGlobalRangeLocking: (pin) =>
      drive.setupRange(pin, { range: 0, readLockEnabled: false, writeLockEnabled: false }),
    revertLockingSpKeepingData: (pin) => drive.revertLockingSp(pin, { keepGlobalRangeKey: true }),
    resetSidToMsid: async (pin) => {
      const msid = await drive.readMsid();
      try {
        await drive.setPin({ authority: SID, pin, target: SID, newPin: msid });
      } catch (error) {
        const refused = isAuthRefusal(error) || (error as { code?: string }).code === 'TCG_PIN_KNOWN_WRONG';
        if (!refused || (await drive.status({ probeSid: true })).sidIsMsid !== true) throw error;
      } finally {
        msid.fill(0);
      }
    },
    close: () => drive.close(),
  };
}

/** Opens a managed drive for `drive remove`: crypto erase as Admin1, then the TPer revert as SID. */
async function openForRemoval(device: string, options: OpalDriveOptions): Promise<RemovableDrive> {
  const drive = await OpalDrive.open(device, options);
  return {
    isFactoryFresh: async () => {
      const s = await drive.status();
      return !s.lockingEnabled && s.sidIsMsid !== false;
    },
    eraseGlobalRange: (pin) => drive.erase(pin, { range: 0 }),
    revertToFactory: (pin) => drive.revert(pin),
    close: () => drive.close(),
  };
}

/** Opens an owned drive for adoption: PINs checked and changed as SID or Admin1, through the lockout guard. */
async function openForAdopt(device: string, options: OpalDriveOptions): Promise<AdoptDrive> {
  const drive = await OpalDrive.open(device, options);
  const authority = (a: 'sid' | 'admin1') => (a === 'sid' ? SID : ADMIN1);
  return {
    identity: () => drive.identity(),
    aliases: () => drive.identityAliases(),
    // As enrollment judges it (openForEnroll): PINs are then not what the drive needs.
    isFactoryFresh: async () => {
      const s = await drive.status();
      return !s.lockingEnabled && s.sidIsMsid !== false;
    },
    lockingSpActive: async () => (await drive.status()).lockingEnabled,
    verify: (a, pin) => drive.verify(pin, authority(a)),
    activateLockingSp: (pin) => drive.activate(pin),
    setPin: (a, pin, newPin) => drive.setPin({ authority: authority(a), pin, newPin }),
    enableGlobalRangeLocking: (pin) =>
      drive.setupRange(pin, { range: 0, readLockEnabled: true, writeLockEnabled: true }),
    close: () => drive.close(),
  };
}

/** Opens a managed drive for key rotation: PINs verified and changed through the lockout guard. */
async function openForRotation(device: string, options: OpalDriveOptions): Promise<RotateOpalDrive> {
  const drive = await OpalDrive.open(device, options);
  const authority = (a: 'sid' | 'admin1') => (a === 'sid' ? SID : ADMIN1);
  return {
    verify: async (a, pin) => {
      try {
        await drive.verify(pin, authority(a));
        return true;
      } catch (error) {
        // Refused now, or refused before and withheld by the guard: either way not this PIN.
        if (isAuthRefusal(error) || (error as { code?: string }).code === 'TCG_PIN_KNOWN_WRONG') return false;
        throw error;
      }
    },
    setPin: (a, pin, newPin) => drive.setPin({ authority: authority(a), pin, newPin }),
    close: () => drive.close(),
  };
}

/** Inventory over systeminformation, sysfs and Level 0 discovery (a disk without Opal says why). */
const inventoryPorts: InventoryPorts = {
  listDisks: listSystemDisks,
  probeOpal: async (device) => {
    const drive = await OpalDrive.open(device);
    try {
      const d = await drive.discover();
      return {
        serial: drive.serial(),
        opal: Boolean(d.opal1 ?? d.opal2 ?? d.enterprise),
        lockingEnabled: d.locking?.lockingEnabled ?? false,
        locked: d.locking?.locked ?? false,
      };
    } finally {
      await drive.close();
    }
  },
  luksUuid: async (device) => (await luks.luksInfo(device)).uuid,
};

/**
 * Recovery's checks: LUKS against the header, Opal by one Admin1 authentication (lock state untouched),
 * through the same refused-key memory and tries reserve as every unlock.
 */
const recoveryVerifier = (guard: OpalDriveOptions): RecoveryVerifier => ({
  luksCheck: async (device, key) => (await luks.checkKey(device, key)).slot,
  opalTriesLeft: async (device) => {
    const drive = await OpalDrive.open(device, guard);
    try {
      const t = await drive.tries(ADMIN1).catch(() => null);
      return t && t.tryLimit > 0 ? t.tryLimit - t.tries : null;
    } finally {
      await drive.close();
    }
  },
  opalVerify: async (device, key) => {
    const drive = await OpalDrive.open(device, guard);
    try {
      await drive.verify(key, ADMIN1);
    } finally {
      await drive.close();
    }
  },
});

/** Everything an agent process holds: the daemon adds the API, the key socket and systemd on top. */
export interface AgentRuntime {
  config: AgentConfig;
  state: StateStore;
  faults: FaultRegistry;
  keys: KeySource;
  provider: KmipProvider;
  /** Envelope mode's key source (master key, shallow rekey); undefined in direct mode. */
  envelope?: EnvelopeKeySource;
  /** Every key operation of this process (<state>/audit.log). */
  audit: AuditLog;
  metrics: AgentMetrics;
  agent: Agent;
  log: Logger;
  clock: Clock;
  /** Enrolls factory-fresh Opal drives and records them (state, and the config for emulated drives). */
  enrollDrives(devices: string[]): Promise<EnrollResult[]>;
  /** Adopts an already-owned Opal drive with its current PINs (see adopt.ts) and records it. */
  adoptDrive(device: string, pins: AdoptPins): Promise<AdoptResult>;
  /** Enrolls a LUKS2 volume (a keyslot for a new KMIP key, authorized by `existingKey`), opened as `name`. */
  enrollVolume(device: string, name: string, existingKey: Buffer, keySocket: boolean): Promise<VolumeEnrollResult>;
  /** Formats `device` as a new LUKS2 volume whose only keyslot is a new KMIP key, opened as `name`. */
  formatVolume(
    device: string,
    name: string,
    options: { keySocket: boolean; force: boolean },
  ): Promise<VolumeEnrollResult>;
  /** The drives and volumes this machine has (see inventory.ts); `sysfsRoot` for tests. */
  inventory(options?: { sysfsRoot?: string }): Promise<InventoryItem[]>;
  /** Rebuilds the state from the key server (see recovery.ts) and refreshes the agent's targets. */
  recover(options?: { sysfsRoot?: string }): Promise<RecoveryReport>;
  /** Async work with handles (EnableEncryptionAtRest, DisableEncryptionAtRest). */
  jobs: JobRunner;
  /** Starts enrolling every unmanaged, factory-fresh Opal drive the inventory sees. */
  enableEncryptionAtRest(): Promise<{ asyncHandle: string }>;
  /** Starts handing every managed Opal drive back unlocked, data kept, keys revoked. */
  disableEncryptionAtRest(): Promise<{ asyncHandle: string }>;
  /** Re-reads config.json (ReloadConfig, SIGHUP); throws, keeping the running configuration, when it is invalid. */
  reloadConfig(): Promise<ReloadResult>;
  /** Field-engineer workflows: drive remove/replace/readd, volume remove, audit keys (field-service.ts). */
  field: FieldService;
  /** Rotates one drive's or volume's key now (see rotation.ts); resumes an unfinished rotation of it. */
  rotateKey(kind: 'drive' | 'volume', id: string): Promise<RotationResult>;
  /** The same as a job (RotateDriveKey), in the rekey lane. */
  startRotation(kind: 'drive' | 'volume', id: string): Promise<{ asyncHandle: string }>;
  /** Deep rekey as a job: every drive's and volume's key rotated one by one. */
  startDeepRekey(): Promise<{ asyncHandle: string }>;
  /**
   * RekeySoftwareEncryptionAtRestMasterKey as a job (envelope mode): a new master key where asked
   * (internal, or a provider), every key rewrapped; with `deep`, then every drive's and volume's key
   * rotated too. Bad input is refused before the job starts.
   */
  startMasterRekey(request: MasterRekeyRequest): Promise<{ asyncHandle: string }>;
  /** Finishes a master rekey a previous process left unfinished (at daemon start); its job, if any. */
  resumeMasterRekey(): Promise<string | undefined>;
  /** GetSoftwareEncryptionAtRestInfo: the key mode and the current master key (where, since when). */
  softwareEncryptionAtRestInfo(): SoftwareEncryptionAtRestInfo;
  /** The rotation policy's schedule (the daemon's scheduler runs it). */
  rotationPlan: RotationPlan;
  /** Completes the rotations a previous process left unfinished (at daemon start); what each gave. */
  resumeRotations(): Promise<{ id: string; result?: RotationResult; error?: unknown }[]>;
  close(): Promise<void>;
}

export interface MasterRekeyRequest {
  keyManagementType?: unknown;
  keyProviderID?: unknown;
  deep?: boolean;
}

export interface SoftwareEncryptionAtRestInfo {
  /** enabled: envelope mode (a master key wraps the drive keys); disabled: direct mode (no master key). */
  state: 'enabled' | 'disabled';
  mode: AgentConfig['keyMode'];
  masterKeyInfo: MasterKeyInfo | null;
  /** The newest master rekey job (GetAsyncResult), if any. */
  rekeyMasterKeyAsyncResultID: string | null;
}

/** The master rekey's job kind (the rekey lane: never beside a rotation or a deep rekey). */
export const MASTER_REKEY_JOB = 'RekeyMaster';

/** What a reload changed: the key servers and providers now in use, and what waits for a restart. */
export interface ReloadResult {
  servers: string[];
  providers: string[];
  /** Top-level settings that changed but apply only at the next start (drives, boot, ...). */
  restartNeededFor: string[];
}

export interface RuntimeOptions extends Omit<DaemonOptions, 'env'> {
  /** Who holds the state lock: "daemon" or "cli". */
  role: string;
  onProgress?: (line: string) => void;
}

/**
 * Takes the state lock and assembles the agent: config, state (a corrupt state is kept aside and
 * StateCorrupt raised, never overwritten), the KMIP provider, the unlockers. The only place that
 * constructs KmipProvider, OpalDrive users and LUKS activation.
 */
export async function openAgentRuntime(options: RuntimeOptions): Promise<AgentRuntime> {
  const { dirs } = options;
  const log = options.log ?? agentLogger();
  const clock = options.clock ?? systemClock;
  const lock = await acquireStateLock(dirs.state, options.role);
  const closers: (() => Promise<void> | void)[] = [() => lock.release()];
  const close = async () => {
    for (const c of closers.splice(0).reverse()) await Promise.resolve(c()).catch(() => undefined);
  };
  try {
    const loaded = await loadConfig(dirs.config);
    const config: AgentConfig = {
      ...loaded,
      boot: {
        ...loaded.boot,
        ...(options.bootDeadlineSeconds !== undefined ? { deadlineSeconds: options.bootDeadlineSeconds } : {}),
        ...(options.retryCapSeconds !== undefined ? { retryCapSeconds: options.retryCapSeconds } : {}),
      },
    };
    const faults = new FaultRegistry(
      () => clock.now(),
      (e) =>
        (e.type === 'raised' ? log.warn.bind(log) : log.info.bind(log))(
          { event: `fault_${e.type}`, fault: e.fault.code, subject: e.fault.subject, affects: e.fault.affects },
          `${e.type === 'raised' ? 'fault' : 'fault cleared'}: ${e.fault.code} (${e.fault.subject})`,
        ),
    );
    const state = new StateStore({ dir: dirs.state, now: () => clock.now() });
    try {
      await state.load();
    } catch (error) {
      if (!(error instanceof StateCorruptError)) throw error;
      // Never overwrite what may be the only record of which key is whose: keep it aside, run degraded.
      const aside = await state.quarantine();
      await state.load();
      faults.raise('StateCorrupt', 'agent', { details: { keptAt: aside, reason: error.details()?.reason } });
    }
    // The same memory as the CLI's drive commands: one for every process of the agent.
    const refusedKeys = new RefusedKeyFile({ dir: dirs.state, now: () => clock.now() });
    const guard: OpalDriveOptions = {
      identify: driveIdentifier(),
      refusedKeys,
      triesReserve: config.boot.triesReserve,
    };
    const audit = new AuditLog({
      dir: dirs.state,
      clock,
      actor: processActor(options.role === 'daemon' ? 'daemon' : 'cli'),
      maxBytes: config.audit.maxBytes,
      keep: config.audit.keep,
      onError: (error) => log.error({ event: 'audit_write_failed', err: error }, 'audit event not written'),
    });
    closers.push(() => audit.close());
    const metrics = new AgentMetrics({ version: packageVersion() });
    audit.subscribe((e) => metrics.observeAudit(e));
    syncRecoveryFault(state.snapshot(), faults);
    // No write while StateCorrupt stands: the state directory stays as the corruption left it until recover.
    const connections = new ConnectionRecorder(
      state,
      () => clock.now(),
      () => !faults.has('StateCorrupt'),
    );
    /** A provider of `from` (the default one, or another named one for master keys), observed and recorded. */
    const buildProvider = (from: AgentConfig, name = 'default') =>
      providerFor(
        from,
        dirs.config,
        log,
        (a) => metrics.observeKmipAttempt(a),
        (a) => {
          const active = name === 'default' ? reloadable.active : otherProviders.get(name)?.reloadable.active;
          const protocolVersion = active?.health().find((h) => h.endpoint === a.endpoint)?.protocolVersion;
          connections
            .record({ ...a, ...(protocolVersion ? { protocolVersion } : {}) })
            .catch((error: unknown) => log.warn({ err: error }, 'cannot record the connection result'));
        },
        name,
      );
    // Every holder gets the stand-in: a reloaded configuration replaces the provider behind it.
    const reloadable: ReloadableProvider = new ReloadableProvider(buildProvider(config));
    const provider = reloadable.provider;
    closers.push(() => reloadable.close());
    const kmipKeys = new KmipKeySource(provider);
    const serverKeys = auditedKeySource(kmipKeys, audit, { clock, server: () => provider.activeEndpoint });
    // Master keys (master-key.ts): on the default provider, another configured provider, or internal.
    const defaultMasterServer = auditedMasterKeyServer(new KmipMasterKeyServer(provider), audit, {
      clock,
      server: () => provider.activeEndpoint,
    });
    const internalStore = new InternalMasterKeyStore(join(dirs.state, 'master-keys'), systemdCredsSealer());
    const internalHolder: MasterKeyHolder = {
      server: auditedMasterKeyServer(internalStore, audit, { clock, server: () => 'internal' }),
      fetch: auditedFetch((uids) => internalStore.fetch(uids), audit, { clock, server: () => 'internal' }),
    };
    // Other named providers, made when a master key or the key audit first needs one; a reload replaces them
    // like the default.
    interface NamedProvider {
      reloadable: ReloadableProvider;
      holder: MasterKeyHolder;
      auditPorts: KeyAuditPorts;
    }
    const otherProviders = new Map<string, NamedProvider>();
    closers.push(() => {
      for (const o of otherProviders.values()) o.reloadable.close();
    });
    const namedProvider = (name: string): NamedProvider => {
      let other = otherProviders.get(name);
      if (!other) {
        const named = new ReloadableProvider(buildProvider(config, name));
        const p = named.provider;
        const where = { clock, server: () => p.activeEndpoint };
        const source = new KmipKeySource(p);
        const viaKeys = auditedKeySource(source, audit, where);
        const server: MasterKeyServer = auditedMasterKeyServer(new KmipMasterKeyServer(p), audit, where);
        other = {
          reloadable: named,
          holder: { server, fetch: (uids) => viaKeys.fetch(uids) },
          auditPorts: auditPortsOf(viaKeys, source, p),
        };
        otherProviders.set(name, other);
      }
      return other;
    };
    const masterHolders: MasterKeyHolders = (at) => {
      if (at.keyManagementType === 'internal') return internalHolder;
      const name = at.keyProviderID ?? 'default';
      if (name === 'default') return { server: defaultMasterServer, fetch: (uids) => serverKeys.fetch(uids) };
      return namedProvider(name).holder;
    };
    // Envelope mode: the same server keys, seen through the master key (boot fetches only it).
    const envelope =
      config.keyMode === 'envelope'
        ? new EnvelopeKeySource({
            applianceId: config.applianceId,
            inner: serverKeys,
            server: defaultMasterServer,
            holders: masterHolders,
            state,
            clock,
            newJobId: () => `rekey-${randomUUID()}`,
          })
        : undefined;
    const keys: KeySource = envelope ?? serverKeys;
    const volumeEntry = (device: string) => config.volumes.find((v) => v.device === device);
    const rotationPlan = new RotationPlan(
      () => config,
      () => state.view(),
      options.random ?? Math.random,
    );
    const agent = new Agent({
      nextRotation: (id) => rotationPlan.nextRotation(id),
      config,
      state,
      keys,
      unlockers: auditedUnlockers(audit, clock, {
        opal: new OpalUnlocker({ open: opalOpener(guard) }, refusedKeys),
        luks: new LuksUnlocker(
          {
            activate: async (device, name, key) => {
              await luks.open(device, name, key);
            },
            check: async (device, key) => {
              await luks.checkKey(device, key);
            },
            mappingDevices: (name) => luks.mappingDevices(name),
            kernelName: (device) => luks.kernelName(device),
          },
          {
            nameOf: (t) => volumeEntry(t.device)?.name ?? `kmip-agent-${t.id.slice(0, 8)}`,
            servedBySocket: (t) => volumeEntry(t.device)?.keySocket === true,
          },
        ),
      }),
      clock,
      random: options.random ?? Math.random,
      log,
      faults,
      ...(options.onProgress ? { onProgress: options.onProgress } : {}),
    });
    closers.push(() => agent.stop());
    for (const id of [...handedBackDrives(state.snapshot()), ...revertedDrives(state.snapshot())]) void agent.hold(id);
    metrics.bindStatus(() => agent.status());
    const enrollOpal = auditedEnroll(audit, clock, enrollOpalDrive);
    const enrollLuks = auditedEnroll(audit, clock, enrollLuksVolume);
    const enrollDrives = async (devices: string[]) => {
      const results: EnrollResult[] = [];
      for (const device of devices) {
        const result = await enrollOpal(
          device,
          { open: (d) => openForEnroll(d, guard) },
          {
            applianceId: config.applianceId,
            provider: 'default',
            keys,
            state,
            clock,
            newJobId: () => `enroll-${randomUUID()}`,
          },
        );
        log.info({ event: 'enroll', drive: result.id, keyUid: result.keyUid, device }, `${result.id}: enrolled`);
        results.push(result);
      }
      await drivesEnrolled(results);
      return results;
    };
    const adoptOpal = auditedEnroll(audit, clock, adoptOpalDrive);
    const adoptDrive = async (device: string, pins: AdoptPins) => {
      const result = await adoptOpal(
        device,
        pins,
        { open: (d) => openForAdopt(d, guard) },
        {
          applianceId: config.applianceId,
          provider: 'default',
          keys,
          state,
          clock,
          newJobId: () => `adopt-${randomUUID()}`,
        },
      );
      log.info(
        { event: 'enroll', drive: result.id, keyUid: result.keyUid, device, adopted: true },
        `${result.id}: adopted`,
      );
      await drivesEnrolled([result]);
      return result;
    };
    const drivesEnrolled = async (results: EnrollResult[]) => {
      // Emulated drives are found by path: the next boot knows them without hand editing.
      const fresh = await loadConfig(dirs.config);
      const missing = results.filter((r) => !fresh.drives.some((d) => d.device === r.device));
      if (missing.length > 0) {
        await saveConfig(dirs.config, {
          ...fresh,
          drives: [...fresh.drives, ...missing.map((r) => ({ device: r.device, unlockAtBoot: true }))],
        });
      }
      agent.refreshTargets();
    };
    const enrollVolume = async (device: string, name: string, existingKey: Buffer, keySocket: boolean) => {
      const result = await enrollLuks(
        device,
        existingKey,
        {
          uuid: async (d) => (await luks.luksInfo(d)).uuid,
          addKey: async (d, existing, key) => (await luks.addKey(d, existing, key)).slot,
        },
        {
          applianceId: config.applianceId,
          provider: 'default',
          keys,
          state,
          clock,
          newJobId: () => `enroll-${randomUUID()}`,
        },
      );
      await volumeEnrolled(result, name, keySocket);
      return result;
    };
    /** A volume now under the agent: logged, added to the config (the next boot opens it), a target. */
    const volumeEnrolled = async (result: VolumeEnrollResult, name: string, keySocket: boolean) => {
      const { device } = result;
      log.info(
        { event: 'enroll', volume: result.id, keyUid: result.keyUid, device, keyslot: result.keyslot },
        `${result.id}: enrolled`,
      );
      const fresh = await loadConfig(dirs.config);
      const others = fresh.volumes.filter((v) => v.device !== device && v.name !== name);
      await saveConfig(dirs.config, {
        ...fresh,
        volumes: [...others, { device, name, unlockAtBoot: true, keySocket }],
      });
      config.volumes.splice(0, config.volumes.length, ...others, { device, name, unlockAtBoot: true, keySocket });
      agent.refreshTargets();
    };
    const formatLuks = auditedEnroll(audit, clock, formatLuksVolume);
    const formatVolume = async (device: string, name: string, o: { keySocket: boolean; force: boolean }) => {
      const result = await formatLuks(
        device,
        {
          signature: (d) => luks.probeSignature(d),
          format: async (d, key, f) => (await luks.format(d, key, f)).slot,
        },
        {
          applianceId: config.applianceId,
          provider: 'default',
          keys,
          state,
          clock,
          newJobId: () => `format-${randomUUID()}`,
          newUuid: () => randomUUID(),
          force: o.force,
        },
      );
      await volumeEnrolled(result, name, o.keySocket);
      return result;
    };
    const inventory = (o: { sysfsRoot?: string } = {}) => takeInventory(config, inventoryPorts, o);
    const recover = async (o: { sysfsRoot?: string } = {}) => {
      const report = await recoverState({
        applianceId: config.applianceId,
        provider: 'default',
        inventory: await inventory(o),
        // Locate and Get go through the audited source; reading names is not a key operation.
        keys: {
          findByGroup: (g) => keys.findByGroup(g),
          fetch: (u) => keys.fetch(u),
          namesOf: (u) => kmipKeys.namesOf(u),
        },
        verifier: recoveryVerifier(guard),
        refusedKeys,
        state,
        clock,
        triesReserve: config.boot.triesReserve,
        jobId: `recover-${randomUUID()}`,
      });
      if (report.written) faults.clear('StateCorrupt');
      syncRecoveryFault(state.snapshot(), faults);
      log.info({ event: 'recover', ...report }, 'state recovered from the key server');
      agent.refreshTargets();
      return report;
    };
    const jobs = new JobRunner({
      state,
      clock,
      onError: (error, job) => log.error({ event: 'job_journal_failed', job, err: error }, 'job end not journaled'),
    });
    const enableEncryption = () =>
      jobs.start(
        ENABLE_JOB,
        (job) =>
          enableEncryptionAtRest(job, {
            inventory: () => inventory(),
            state,
            enroll: async (device) => (await enrollDrives([device]))[0]!,
          }),
        { lane: ENCRYPTION_LANE },
      );
    /** One audited key operation on the server (revoke, destroy, activate), named after its drive or volume. */
    const keyCall = async (operation: 'activate' | 'revoke' | 'destroy', uid: string, fn: () => Promise<unknown>) => {
      const started = clock.monotonicMs();
      const record = [...state.snapshot().drives, ...state.snapshot().volumes].find((d) => d.key.uid === uid);
      const event = { operation, keyUid: uid, ...(record ? { target: record.id } : {}) };
      try {
        await fn();
        audit.record({ ...event, result: 'ok', durationMs: Math.round(clock.monotonicMs() - started) });
      } catch (error) {
        audit.record({ ...event, result: 'error', code: (error as { code?: string }).code ?? 'INTERNAL' });
        throw error;
      }
    };
    const revokeKey = (uid: string) =>
      keyCall('revoke', uid, () =>
        provider.revoke({ uniqueIdentifier: uid, reason: RevocationReasonCode.CessationOfOperation }),
      );
    const disableEncryption = () =>
      jobs.start(
        DISABLE_JOB,
        (job) =>
          disableEncryptionAtRest(job, {
            state,
            keys,
            open: (device) => openForDisable(device, guard),
            revokeKey,
            keyState: kmipKeyState(provider),
            hold: (id) => agent.hold(id),
            release: (id) => agent.release(id),
            onRemoved: () => agent.refreshTargets(),
          }),
        { lane: ENCRYPTION_LANE },
      );
    const destroyKey = (uid: string) => keyCall('destroy', uid, () => provider.destroy(uid));
    // The crash tests' hook (crash-hook.ts): undefined, inert, unless a test build of the addon is loaded.
    const afterJournal = crashHook();
    const field = fieldService({
      config,
      configDir: dirs.config,
      state,
      keys,
      jobs,
      retire: {
        revoke: revokeKey,
        destroy: destroyKey,
        keyState: kmipKeyState(provider),
        leftOnServer: (uid, target, e) =>
          log.warn(
            { event: 'key_left_on_server', keyUid: uid, target, code: e.code },
            `${target}: the key server refused to retire key ${uid} (${e.code}): it is left there (kmip-agent audit keys)`,
          ),
      },
      auditedProviders: () => [
        {
          name: 'default',
          ports: auditPortsOf(keys, kmipKeys, provider),
        },
        ...Object.keys(config.providers)
          .filter((name) => name !== 'default')
          // Built at the first call (a provider that cannot be built fails its own part of the audit only).
          .map((name) => ({
            name,
            ports: {
              findByGroup: (g: string) => namedProvider(name).auditPorts.findByGroup(g),
              namesOf: (u: string[]) => namedProvider(name).auditPorts.namesOf(u),
              keyState: (u: string) => namedProvider(name).auditPorts.keyState(u),
            },
          })),
      ],
      agent,
      openDrive: (device) => openForRemoval(device, guard),
      inspect: async (device) => {
        const drive = await OpalDrive.open(device, guard);
        try {
          const s = await drive.status();
          // Not shown without a PIN (no Block SID feature): SID is tried with the MSID, as enrollment would.
          const sidIsMsid =
            s.lockingEnabled || s.sidIsMsid !== null ? s.sidIsMsid : (await drive.status({ probeSid: true })).sidIsMsid;
          return {
            id: drive.identity(),
            aliases: drive.identityAliases(),
            factoryFresh: !s.lockingEnabled && sidIsMsid !== false,
          };
        } finally {
          await drive.close();
        }
      },
      prove: (device, key) => recoveryVerifier(guard).opalVerify(device, key),
      enroll: async (device) => (await enrollDrives([device]))[0]!,
      keyslots: async (device) => (await luks.luksInfo(device)).keyslots.map((k) => k.slot),
      removeKeyslot: async (device, key, slot) => {
        await luks.removeKey(device, key, { slot }, { force: true });
      },
      crashPoint: (step) => afterJournal?.(step),
    });
    // ---- key rotation (rotation.ts): Activate, Revoke and Destroy audited like every key operation (keyCall).
    const rotateOne = async (kind: 'drive' | 'volume', id: string) => {
      // A drive a disable handed back (held for good) has no PINs of ours left to change.
      if (handedBackDrives(state.snapshot()).includes(id))
        throw new KmipAgentError(
          `${id} was handed back by DisableEncryptionAtRest: its key is no longer the drive's`,
          'DRIVE_HANDED_BACK',
        );
      await agent.hold(id);
      try {
        const result = await rotateKey(kind, id, {
          applianceId: config.applianceId,
          provider: 'default',
          keys: {
            createPreActive: (name, group) => keys.createKey(name, group, { preActive: true }),
            fetch: (uids) => keys.fetch(uids),
            activate: (uid) => keyCall('activate', uid, () => provider.activate(uid)),
            revoke: (uid) =>
              keyCall('revoke', uid, () =>
                provider.revoke({
                  uniqueIdentifier: uid,
                  reason: RevocationReasonCode.Superseded,
                  message: 'kmip-agent key rotation',
                }),
              ),
            destroy: (uid) => keyCall('destroy', uid, () => provider.destroy(uid)),
          },
          ports: {
            openOpal: (device) => openForRotation(device, guard),
            luksSlotOf: async (device, key) => (await luks.checkKey(device, key).catch(() => null))?.slot ?? null,
            luksAddKey: async (device, existing, key) => (await luks.addKey(device, existing, key)).slot,
            luksRemoveSlot: async (device, key, slot) => {
              await luks.removeKey(device, key, { slot });
            },
          },
          state,
          clock,
          newJobId: () => `rotate-${randomUUID()}`,
          ...(afterJournal ? { afterJournal } : {}),
        });
        log.info({ event: 'rotate', ...result }, `${id}: key rotated to ${result.keyUid}`);
        return result;
      } finally {
        agent.refreshTargets();
        agent.release(id);
      }
    };
    const startRotation = (kind: 'drive' | 'volume', id: string) => {
      const s = state.snapshot();
      const known = kind === 'drive' ? s.drives.some((d) => d.id === id) : s.volumes.some((v) => v.id === id);
      // Refused before a job is made (nothing contacted): the same error rotateKey gives.
      if (!known) return Promise.reject(new NotManagedError(kind, id));
      return jobs.start(ROTATE_KEY_JOB, (job) => job.step('target', { kind, id }).then(() => rotateOne(kind, id)), {
        lane: REKEY_LANE,
      });
    };
    const startDeepRekey = () => {
      // Read before the new job is journaled: it becomes the newest deep rekey.
      const skip = rotatedByUnfinishedDeepRekey(state.snapshot());
      return jobs.start(DEEP_REKEY_JOB, (job): Promise<DeepRekeyResult> => deepRekey(job, rotateOne, state, skip), {
        lane: REKEY_LANE,
      });
    };
    // ---- master rekey (envelope.ts, master-key.ts): its journal steps relayed to the job, progress 0..3.
    const masterRekeyWork = async (job: JobContext, target?: MasterKeyLocation): Promise<ShallowRekeyResult> => {
      const counted = ['master-key-created', 'master-key-adopted', 'rewrapped', 'master-key-activated'];
      let done = 0;
      await job.progress(0, 3);
      const result = await envelope!.rekeyShallow({
        ...(target ? { target } : {}),
        afterJournal: async (name, detail) => {
          await job.step(name, detail);
          if (counted.includes(name)) await job.progress(++done, 3);
          afterJournal?.(name);
        },
      });
      log.info({ event: 'rekey', ...result }, `master key rekeyed: now ${result.masterKeyUid}`);
      if (result.previousMasterKeyUid !== undefined && !result.previousRevoked)
        throw Object.assign(
          new KmipAgentError(
            `the new master key ${result.masterKeyUid} is in use, but the previous one ${result.previousMasterKeyUid} was not retired (${result.revokeError?.code}: ${result.revokeError?.message}): retire it on its key server`,
            'MASTER_KEY_NOT_RETIRED',
          ),
          { partialResult: result },
        );
      return result;
    };
    const startMasterRekey = (request: MasterRekeyRequest) => {
      const moving = request.keyManagementType !== undefined || request.keyProviderID !== undefined;
      // Deep alone is the per-key rotation of every drive and volume (direct mode too).
      if (request.deep === true && !moving) return startDeepRekey();
      if (!envelope)
        return Promise.reject(
          new KmipAgentError(
            `appliance ${config.applianceId} is in ${config.keyMode} key mode: it has no master key (keyMode "envelope" has one)`,
            'KEY_MODE_NOT_ENVELOPE',
          ),
        );
      const s = state.snapshot();
      let target: MasterKeyLocation;
      try {
        const current = s.masterKeyUid ? locationOf(s, s.masterKeyUid) : DEFAULT_MASTER_LOCATION;
        target = parseLocation(request, Object.keys(config.providers), current);
      } catch (error) {
        return Promise.reject(error);
      }
      const skip = request.deep === true ? rotatedByUnfinishedDeepRekey(s) : undefined;
      return jobs.start(
        MASTER_REKEY_JOB,
        async (job) => {
          await job.step('target', { ...target, deep: request.deep === true });
          const master = await masterRekeyWork(job, target);
          if (request.deep !== true) return master;
          return { ...master, deep: await deepRekey(job, rotateOne, state, skip) };
        },
        { lane: REKEY_LANE },
      );
    };
    const resumeMasterRekey = async () => {
      if (!envelope || !unfinishedRekey(state.snapshot())) return undefined;
      // No target: the journal names where the new key goes.
      const { asyncHandle } = await jobs.start(
        MASTER_REKEY_JOB,
        async (job) => {
          await job.step('resumed');
          return masterRekeyWork(job);
        },
        { lane: REKEY_LANE },
      );
      await jobs.settled(asyncHandle);
      return asyncHandle;
    };
    const softwareEncryptionAtRestInfo = (): SoftwareEncryptionAtRestInfo => {
      const s = state.snapshot();
      return {
        state: config.keyMode === 'envelope' ? 'enabled' : 'disabled',
        mode: config.keyMode,
        masterKeyInfo: currentMasterKey(s) ?? null,
        rekeyMasterKeyAsyncResultID: s.jobs.filter((j) => j.kind === MASTER_REKEY_JOB).at(-1)?.id ?? null,
      };
    };
    const resumeRotations = async () => {
      const out: { id: string; result?: RotationResult; error?: unknown }[] = [];
      for (const t of unfinishedRotations(state.snapshot())) {
        try {
          out.push({ id: t.id, result: await rotateOne(t.kind, t.id) });
        } catch (error) {
          out.push({ id: t.id, error });
        }
      }
      return out;
    };
    closers.push(() => jobs.idle());
    /**
     * Re-reads config.json: key servers, providers and the client identity take effect at once (a new
     * provider; the old one closes after its running requests). An invalid file changes nothing.
     */
    const reloadConfig = async (): Promise<ReloadResult> => {
      let fresh: AgentConfig;
      let next: KmipProvider;
      const nextOthers = new Map<string, KmipProvider>();
      try {
        fresh = await loadConfig(dirs.config);
        // Every provider in use is rebuilt before any is replaced: a reload applies whole or not at all.
        for (const name of otherProviders.keys())
          if (name in fresh.providers) nextOthers.set(name, buildProvider(fresh, name));
        next = buildProvider(fresh);
      } catch (error) {
        for (const p of nextOthers.values()) p.close();
        log.error(
          { event: 'config_reload_refused', err: error, code: (error as { code?: string }).code },
          `configuration not reloaded, the running one is kept: ${(error as Error).message}`,
        );
        throw error;
      }
      reloadable.replace(next);
      for (const [name, other] of otherProviders) {
        const replacement = nextOthers.get(name);
        if (replacement) other.reloadable.replace(replacement);
        else {
          // Removed from the configuration (provider remove refuses one that holds a master key).
          other.reloadable.close();
          otherProviders.delete(name);
        }
      }
      const servers = Object.keys(fresh.servers);
      const applied = ['servers', 'providers', 'client'] as const;
      const later = (Object.keys(fresh) as (keyof AgentConfig)[]).filter(
        (k) => !(applied as readonly string[]).includes(k) && JSON.stringify(fresh[k]) !== JSON.stringify(config[k]),
      );
      for (const k of applied) (config as Record<string, unknown>)[k] = fresh[k];
      log.info(
        { event: 'config_reloaded', servers, providers: Object.keys(fresh.providers), restartNeededFor: later },
        `configuration reloaded: key servers ${servers.join(', ') || 'none'}` +
          (later.length ? `; ${later.join(', ')} apply at the next start` : ''),
      );
      return { servers, providers: Object.keys(fresh.providers), restartNeededFor: later };
    };
    return {
      reloadConfig,
      jobs,
      field,
      rotateKey: rotateOne,
      rotationPlan,
      startRotation,
      startDeepRekey,
      startMasterRekey,
      resumeMasterRekey,
      softwareEncryptionAtRestInfo,
      resumeRotations,
      enableEncryptionAtRest: enableEncryption,
      disableEncryptionAtRest: disableEncryption,
      config,
      state,
      faults,
      keys,
      ...(envelope ? { envelope } : {}),
      provider,
      audit,
      metrics,
      agent,
      log,
      clock,
      enrollDrives,
      adoptDrive,
      enrollVolume,
      formatVolume,
      inventory,
      recover,
      close,
    };
  } catch (error) {
    await close();
    throw error;
  }
}

/** Runs the daemon until SIGTERM/SIGINT; resolves with the exit code. */
export async function runDaemon(options: DaemonOptions): Promise<number> {
  const { dirs } = options;
  const env = options.env ?? process.env;
  const log = options.log ?? agentLogger();
  const notifier = new SystemdNotifier(env);
  notifier.startWatchdog();
  let textfile: TextfileExporter | undefined;
  const runtime = await openAgentRuntime({
    ...options,
    log,
    role: 'daemon',
    onProgress: (line) => {
      notifier.status(line);
      textfile?.changed();
    },
  });
  const { config, state, keys, agent, clock, audit, metrics } = runtime;
  const closers: (() => Promise<void> | void)[] = [() => runtime.close()];
  let ready = false;
  try {
    // The state lock is ours: a job still `running` was left by a process that died.
    for (const job of await runtime.jobs.markInterrupted())
      log.warn({ event: 'job_interrupted', job: job.asyncHandle, kind: job.kind }, job.error!.message);
    // A rotation a crash left half done is completed (or rolled back) before anything unlocks with a stale record.
    for (const r of await runtime.resumeRotations())
      if (r.error)
        log.error({ event: 'rotate_resume_failed', target: r.id, err: r.error }, `${r.id}: rotation not resumed`);
    // So is a master rekey: the drives' blobs and the master key in use must agree before unlocking.
    const rekeyed = await runtime.resumeMasterRekey().catch((error: unknown) => {
      log.error({ event: 'rekey_resume_failed', err: error }, 'master rekey not resumed');
      return undefined;
    });
    if (rekeyed) {
      const view = runtime.jobs.get(rekeyed);
      log.info(
        { event: 'rekey_resumed', job: rekeyed, status: view.status },
        `master rekey ${rekeyed}: ${view.status}`,
      );
    }
    if (config.metrics.textfileDir) {
      textfile = new TextfileExporter({
        dir: config.metrics.textfileDir,
        metrics,
        clock,
        intervalMs: config.metrics.textfileIntervalSeconds * 1000,
        onError: (error) => log.warn({ event: 'metrics_textfile_failed', err: error }, 'metrics textfile not written'),
      });
      textfile.start();
      const exporter = textfile;
      closers.push(() => exporter.stop());
    }
    // The client certificate's expiry faults: checked once the boot's first unlock round is through (the
    // check loads the x509 library, which would hold the unlocks back), then daily and after each change
    // through the API.
    let firstRoundDone = () => {};
    const firstRound = new Promise<void>((resolve) => (firstRoundDone = resolve));
    closers.push(() => firstRoundDone());
    const expiry = watchClientCertificateExpiry({
      configDir: dirs.config,
      faults: runtime.faults,
      clock,
      firstAfter: firstRound,
      onError: (error) => log.warn({ event: 'cert_expiry_check_failed', err: error }, 'client certificate not checked'),
    });
    closers.push(() => expiry.stop());
    /** A reload with systemd told (RELOADING=1 ... READY=1), for ReloadConfig, SIGHUP and admin changes. */
    const reload = async () => {
      // Before the boot's READY=1 systemd is not waiting for a reload: nothing to tell it.
      const reloaded = async () => {
        const result = await runtime.reloadConfig();
        await expiry.recheck(); // a replaced certificate clears (or raises) its expiry faults now
        return result;
      };
      if (!ready) return reloaded();
      notifier.reloading();
      try {
        return await reloaded();
      } finally {
        notifier.ready(agent.progressLine());
      }
    };
    // The client switch: the change is made here (one writer of config.json), then taken by a reload.
    const switched = async <T>(change: () => Promise<T>): Promise<T> => {
      const result = await change();
      await reload();
      return result;
    };
    const methods = agentMethods({
      clientCertificate: clientCertificateService(dirs.config, clock, () => expiry.recheck()),
      status: () => agent.status(),
      unlockNow: (o) => agent.unlockNow(o),
      enrollDrives: (devices) => runtime.enrollDrives(devices),
      auditEvents: (query) => audit.read(query),
      inventory: () => runtime.inventory(),
      jobs: runtime.jobs,
      enableEncryptionAtRest: () => runtime.enableEncryptionAtRest(),
      disableEncryptionAtRest: () => runtime.disableEncryptionAtRest(),
      kmipClient: {
        status: async () => clientStatus(await loadConfig(dirs.config), state.snapshot()),
        enable: async () => {
          const enabled = await switched(async () => ({ enabled: (await enableClient(dirs.config)).client.enabled }));
          // What waited for the client unlocks now, not at the next backoff step.
          agent.unlockNow().catch((error: unknown) => log.warn({ err: error }, 'unlock after enabling failed'));
          return enabled;
        },
        disable: ({ force }) =>
          switched(async () => {
            const r = await disableClient(dirs.config, state.snapshot(), { force });
            return { enabled: r.config.client.enabled, stranded: r.stranded };
          }),
        reset: async ({ confirm }) =>
          confirm
            ? switched(() => resetClient(dirs.config, state.snapshot()))
            : planReset(await loadConfig(dirs.config), state.snapshot()),
      },
      field: runtime.field,
      startRotation: (kind, id) => runtime.startRotation(kind, id),
      startDeepRekey: () => runtime.startDeepRekey(),
      startMasterRekey: (request) => runtime.startMasterRekey(request),
      softwareEncryptionAtRestInfo: () => runtime.softwareEncryptionAtRestInfo(),
    });
    // Admin changes run here (one owner of the state), then the daemon takes the new configuration.
    const admin = new KeyAdmin({
      configDir: dirs.config,
      state,
      now: () => clock.now(),
      changed: async () => {
        await reload();
      },
    });
    Object.assign(methods, keyAdminMethods(admin, reload));
    const api = new ApiServer({
      socketPath: join(dirs.runtime, API_SOCKET_NAME),
      // Key operations an API call causes are audited as that caller's (uid/pid from SO_PEERCRED).
      methods: Object.fromEntries(
        Object.entries(methods).map(([name, method]) => [
          name,
          ((params, caller) =>
            runAsActor({ kind: 'api', pid: caller.pid, uid: caller.uid }, () => method(params, caller))) as RpcMethod,
        ]),
      ),
      metrics: () => metrics.text(),
      ...(typeof config.api.group === 'number' ? { groupId: config.api.group } : {}),
      onRequest: (r) => log.info({ event: 'api_call', ...r }, `API ${r.method}`),
    });
    await api.listen();
    closers.push(() => api.close());

    if (config.volumes.some((v) => v.keySocket)) {
      // Requests still waiting for a key server end when the daemon stops (the socket's close waits for them).
      const stopping = new AbortController();
      const keySocket = new KeySocketServer({
        path: join(dirs.runtime, KEY_SOCKET_NAME),
        logger: log,
        lookup: async (volume, peer) => {
          const entry = config.volumes.find((v) => v.name === volume);
          const record = entry && state.snapshot().volumes.find((v) => v.device === entry.device);
          if (!record) return undefined;
          const actor: AuditActor = { kind: 'key-socket', pid: peer.pid, uid: peer.uid };
          const serve = { target: record.id, device: record.device, keyUid: record.key.uid, actor };
          try {
            // A key server not up yet (a boot that reached its deadline) is waited for: systemd-cryptsetup asks once.
            const key = await runAsActor(actor, () =>
              fetchSocketKey(record.key.uid, {
                keys,
                clock,
                random: options.random ?? Math.random,
                waitMs: KEY_SOCKET_WAIT_MS,
                retryCapMs: config.boot.retryCapSeconds * 1000,
                refusedRetryCapMs: config.boot.refusedRetryCapSeconds * 1000,
                onRetry: throttledRetries(clock, KEY_SOCKET_WAIT_LOG_MS, (code, attempt) =>
                  log.warn(
                    { event: 'keysocket.waiting', volume, code, attempt },
                    `key socket: waiting for the key server for ${volume} (${code}, attempt ${attempt})`,
                  ),
                ),
                signal: stopping.signal,
              }),
            );
            audit.record({ operation: 'serve', result: 'ok', ...serve });
            return key;
          } catch (error) {
            audit.record({ operation: 'serve', result: 'error', code: journalError(error).code, ...serve });
            throw error;
          }
        },
        lookupTimeoutMs: KEY_SOCKET_WAIT_MS + 15_000,
      });
      await keySocket.start();
      closers.push(() => keySocket.close());
      closers.push(() => stopping.abort());
    }

    const stopped = new Promise<void>((resolve) => {
      const stop = (signal: string) => {
        log.info({ event: 'stopping', signal }, `stopping on ${signal}`);
        notifier.stopping('stopping');
        resolve();
      };
      process.once('SIGTERM', () => stop('SIGTERM'));
      process.once('SIGINT', () => stop('SIGINT'));
    });
    // systemctl reload (ExecReload=kill -HUP): an invalid configuration is logged and the running one kept.
    const onHangup = () => {
      log.info({ event: 'reloading', signal: 'SIGHUP' }, 'reloading the configuration on SIGHUP');
      reload().catch(() => undefined);
    };
    process.on('SIGHUP', onHangup);
    closers.push(() => void process.removeListener('SIGHUP', onHangup));

    notifier.status('booting: fetching keys');
    log.info({ event: 'boot', drives: agent.status().drives.length }, 'boot unlock');
    const started = clock.monotonicMs();
    const retryCapMs = config.boot.retryCapSeconds * 1000;
    const booted = await Promise.race([
      agent.boot({
        deadlineMs: config.boot.deadlineSeconds * 1000,
        // Ask systemd for time until the next round (plus a margin), within the boot deadline.
        onWaiting: (remainingMs) => {
          firstRoundDone();
          notifier.extendTimeout((Math.min(remainingMs, retryCapMs) + 5_000) * 1000);
        },
      }),
      stopped.then(() => undefined),
    ]);
    firstRoundDone();
    if (booted) {
      const line = agent.progressLine();
      notifier.ready(line);
      ready = true;
      const ms = Math.round(clock.monotonicMs() - started);
      metrics.markReady(ms);
      textfile?.changed();
      log.info({ event: 'ready', mode: booted.mode, health: booted.health, ms }, `ready: ${line}`);
      // The rotation policy: due keys rotated one at a time, as RotateDriveKey jobs (the rekey lane).
      const scheduler = new RotationScheduler({
        plan: runtime.rotationPlan,
        config: () => config,
        clock,
        faults: runtime.faults,
        rotate: async (kind, id) => {
          const { asyncHandle } = await runtime.startRotation(kind, id);
          const job = await runtime.jobs.settled(asyncHandle);
          if (job.status !== 'done')
            throw Object.assign(new Error(job.error?.message ?? `rotation ${job.status}`), {
              code: job.error?.code ?? 'ROTATION_FAILED',
            });
        },
        log: (e) => (e.error ? log.warn.bind(log) : log.info.bind(log))(e, `${e.event}${e.id ? ` ${e.id}` : ''}`),
      });
      scheduler.start();
      closers.push(() => scheduler.stop());
      await stopped;
    }
    return 0;
  } finally {
    notifier.stopWatchdog();
    for (const c of closers.splice(0).reverse()) await Promise.resolve(c()).catch(() => undefined);
  }
}
