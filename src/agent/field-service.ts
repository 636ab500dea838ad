/**
 * The field workflows (field-workflows.ts) as the runtime offers them: bad input is refused before a job
 * starts (unknown ids, the last keyslot, a replacement drive that is managed or owned), then remove and
 * replace run as jobs of one lane (JobRunner: handle, progress, journal), readd and the key audit answer
 * at once. daemon.ts hands in what touches drives, volumes and the key server.
 */
import { loadConfig, saveConfig, type AgentConfig } from './config.js';
import type { EnrollResult } from './enroll.js';
import {
  checkDriveRemovable,
  checkReplaceable,
  checkVolumeRemovable,
  FIELD_LANE,
  readdDrive,
  REMOVE_DRIVE_JOB,
  REMOVE_VOLUME_JOB,
  removeDrive,
  removeVolume,
  REPLACE_DRIVE_JOB,
  replaceDrive,
  type FieldPorts,
  type KeyRetirement,
  type ReaddResult,
  type RemovableDrive,
} from './field-workflows.js';
import type { JobRunner } from './jobs.js';
import { auditKeys, type AuditedProvider, type KeyAuditReport } from './key-audit.js';
import type { KeySource } from './key-source.js';
import type { StateStore } from './state.js';
import type { UnlockOutcome } from './unlock.js';

export interface FieldService {
  /** `force`: a drive that cannot be reached is not erased, its key retired anyway (else DRIVE_UNREACHABLE). */
  removeDrive(id: string, options?: { force?: boolean }): Promise<{ asyncHandle: string }>;
  removeVolume(id: string, options: { destroyData: boolean }): Promise<{ asyncHandle: string }>;
  replaceDrive(oldId: string, newDevice: string, options: { keepKey: boolean }): Promise<{ asyncHandle: string }>;
  readdDrive(id: string): Promise<ReaddResult>;
  auditKeys(): Promise<KeyAuditReport>;
}

export interface FieldServiceDeps {
  config: AgentConfig;
  configDir: string;
  state: StateStore;
  keys: KeySource;
  jobs: JobRunner;
  retire: KeyRetirement;
  /** Every configured provider, the default one first (asked at each audit: a reload may change them). */
  auditedProviders(): AuditedProvider[];
  agent: {
    hold(id: string): Promise<void>;
    release(id: string): void;
    refreshTargets(): void;
    unlockOne(id: string): Promise<UnlockOutcome | undefined>;
  };
  openDrive(device: string): Promise<RemovableDrive>;
  inspect(device: string): Promise<{ id: string; aliases: string[]; factoryFresh: boolean }>;
  prove(device: string, key: Buffer): Promise<void>;
  enroll(device: string): Promise<EnrollResult>;
  keyslots(device: string): Promise<number[]>;
  removeKeyslot(device: string, key: Buffer, slot: number): Promise<void>;
  crashPoint(step: string): void;
}

export function fieldService(deps: FieldServiceDeps): FieldService {
  const { state, jobs, agent, configDir, config } = deps;
  /** Rewrites the config file's device entries (and the running config's, which the agent reads). */
  const editConfig = async (fn: (c: Pick<AgentConfig, 'drives' | 'volumes'>) => void) => {
    const fresh = await loadConfig(configDir);
    const entries = { drives: [...fresh.drives], volumes: [...fresh.volumes] };
    fn(entries);
    await saveConfig(configDir, { ...fresh, ...entries });
    const live = { drives: [...config.drives], volumes: [...config.volumes] };
    fn(live);
    config.drives.splice(0, config.drives.length, ...live.drives);
    config.volumes.splice(0, config.volumes.length, ...live.volumes);
  };
  const ports: FieldPorts = {
    state,
    keys: deps.keys,
    retire: deps.retire,
    openDrive: deps.openDrive,
    hold: (id) => agent.hold(id),
    release: (id) => agent.release(id),
    changed: () => agent.refreshTargets(),
    dropDriveConfig: (device) =>
      editConfig((c) => {
        c.drives = c.drives.filter((d) => d.device !== device);
      }),
    dropVolumeConfig: (device) =>
      editConfig((c) => {
        c.volumes = c.volumes.filter((v) => v.device !== device);
      }),
    crashPoint: deps.crashPoint,
  };
  const volumePorts = { ...ports, keyslots: deps.keyslots, removeKeyslot: deps.removeKeyslot };
  const replacePorts = {
    ...ports,
    inspect: deps.inspect,
    enroll: deps.enroll,
    prove: deps.prove,
    takeRole: (oldDevice: string, newDevice: string, unlockAtBoot: boolean) =>
      editConfig((c) => {
        const others = c.drives.filter((d) => d.device !== oldDevice && d.device !== newDevice);
        const had = c.drives.some((d) => d.device === oldDevice || d.device === newDevice);
        c.drives = had ? [...others, { device: newDevice, unlockAtBoot }] : others;
      }),
  };
  return {
    removeDrive: async (id, options = {}) => {
      await checkDriveRemovable(ports, id, options);
      return jobs.start(REMOVE_DRIVE_JOB, (job) => removeDrive(job, ports, id, options), { lane: FIELD_LANE });
    },
    removeVolume: async (id, options) => {
      await checkVolumeRemovable(volumePorts, id, options);
      return jobs.start(REMOVE_VOLUME_JOB, (job) => removeVolume(job, volumePorts, id, options), {
        lane: FIELD_LANE,
      });
    },
    replaceDrive: async (oldId, newDevice, options) => {
      await checkReplaceable(replacePorts, oldId, newDevice);
      return jobs.start(REPLACE_DRIVE_JOB, (job) => replaceDrive(job, replacePorts, oldId, newDevice, options), {
        lane: FIELD_LANE,
      });
    },
    readdDrive: (id) => readdDrive({ state, keys: deps.keys, unlockOne: (i) => agent.unlockOne(i) }, id),
    auditKeys: () => auditKeys(config.applianceId, state.snapshot(), deps.auditedProviders()),
  };
}
