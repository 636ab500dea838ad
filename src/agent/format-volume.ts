/**
 * Formatting a new LUKS2 volume whose only keyslot holds a KMIP key. The key is named after the volume's
 * LUKS UUID, so the UUID is chosen first and handed to the format. Order and journal as in enroll.ts: the
 * device is checked (nothing on it, unless forced) before the key server is contacted; the key exists on
 * the server, named and grouped, before the header is written; a crash after the format leaves a volume
 * whose key `recover` finds by name, a crash before it a named key and an untouched device.
 */
import { KmipAgentError } from '../errors.js';
import { keyGroupFor, keyNameFor, type EnrollOptions, type VolumeEnrollResult } from './enroll.js';
import type { KeySource } from './key-source.js';
import type { Job } from './state.js';

/** The LUKS operations formatting needs. */
export interface VolumeFormatPort {
  /** What the device holds (a filesystem, LUKS, a partition table), or undefined when blank. */
  signature(device: string): Promise<string | undefined>;
  /** A new LUKS2 header with `uuid` and one keyslot for `key`; returns the slot. */
  format(device: string, key: Buffer, options: { uuid: string; force: boolean }): Promise<number>;
}

export interface FormatOptions extends EnrollOptions {
  newUuid: () => string;
  /** Format over whatever the device holds. */
  force?: boolean;
}

export async function formatLuksVolume(
  device: string,
  port: VolumeFormatPort,
  options: FormatOptions,
): Promise<VolumeEnrollResult> {
  const { state, clock } = options;
  const force = options.force === true;
  if (state.snapshot().volumes.some((v) => v.device === device))
    throw new KmipAgentError(`${device} is an enrolled volume: refusing to format it`, 'VOLUME_ALREADY_ENROLLED');
  if (!force) {
    const found = await port.signature(device);
    if (found !== undefined)
      throw new KmipAgentError(
        `${device} already holds ${found}: formatting would destroy it (--force formats anyway)`,
        'VOLUME_NOT_EMPTY',
        { details: { device, signature: found } },
      );
  }
  const id = options.newUuid();
  const name = keyNameFor(options.applianceId, id);
  const jobId = options.newJobId();
  const at = () => clock.now().toISOString();
  const journal = (change: (job: Job) => void) =>
    state.update((s) => {
      const job = s.jobs.find((j) => j.id === jobId);
      if (job) change(job);
    });
  await state.update((s) => {
    s.jobs.push({
      id: jobId,
      kind: 'format-volume',
      target: id,
      status: 'running',
      startedAt: at(),
      steps: [{ name: 'uuid-chosen', at: at(), detail: { device, force } }],
    });
  });
  let created: Awaited<ReturnType<KeySource['createKey']>> | undefined;
  try {
    created = await options.keys.createKey(name, keyGroupFor(options.applianceId));
    const { uid, key } = created;
    await journal((j) => j.steps.push({ name: 'key-created', at: at(), detail: { uid, name } }));
    const keyslot = await port.format(device, key, { uuid: id, force });
    await state.update((s) => {
      s.volumes.push({
        id,
        device,
        // Envelope mode: the wrapped key and its master key's UID (nothing extra in direct mode).
        key: { uid, name, provider: options.provider, ...created!.record },
        keyslot,
        enrolledAt: at(),
        unlockAtBoot: true,
      });
      const job = s.jobs.find((j) => j.id === jobId)!;
      job.steps.push({ name: 'formatted', at: at(), detail: { keyslot } });
      job.status = 'done';
      job.endedAt = at();
    });
    return { id, device, keyUid: uid, keyName: name, keyslot };
  } catch (error) {
    await journal((j) => {
      j.status = 'failed';
      j.endedAt = at();
      j.error = { code: (error as { code?: string }).code ?? 'INTERNAL', message: (error as Error).message };
    }).catch(() => undefined);
    throw error;
  } finally {
    created?.key.fill(0);
  }
}
