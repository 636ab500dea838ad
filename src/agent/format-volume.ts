/**
 * Formatting a new LUKS2 volume whose only keyslot holds a KMIP key. The key is named after the volume's
 * LUKS UUID, so the UUID is chosen first and handed to the format. Order and journal as in enroll.ts: the
 * device is checked (nothing on it, unless forced) before the key server is contacted; the key exists on
 * the server, named and grouped, before the header is written; a crash after the format leaves a volume
 * whose key `recover` finds by name, a crash before it a named key and an untouched device.
 */
import { KmipAgentError } from '../errors.js';
import { keyGroupFor, keyNameFor, volumeRecord, type EnrollOptions, type VolumeEnrollResult } from './enroll.js';
import type { KeySource } from './key-source.js';
import { JobJournal } from './journal.js';

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
  const journal = new JobJournal(state, clock, options.newJobId());
  await journal.begin('format-volume', { target: id, steps: [journal.stepEntry('uuid-chosen', { device, force })] });
  let created: Awaited<ReturnType<KeySource['createKey']>> | undefined;
  try {
    created = await options.keys.createKey(name, keyGroupFor(options.applianceId));
    const { uid, key } = created;
    await journal.step('key-created', { uid, name });
    const keyslot = await port.format(device, key, { uuid: id, force });
    await journal.done([{ name: 'formatted', detail: { keyslot } }], (s) => {
      s.volumes.push(volumeRecord(id, device, keyslot, created!, name, options));
    });
    return { id, device, keyUid: uid, keyName: name, keyslot };
  } catch (error) {
    await journal.fail(error);
    throw error;
  } finally {
    created?.key.fill(0);
  }
}
