/** `kmip-agent volume format`: a new LUKS2 volume whose only keyslot is a KMIP key (see agent/format-volume.ts). */
import { openAgentRuntime } from '../../agent/daemon.js';
import { command, emit, UsageError } from '../framework.js';
import { DIR_OPTIONS, dirsFrom, quietLog } from './agent.js';

export const volumeFormatCommand = command({
  name: 'format',
  usage: '<device> --name NAME --yes [--key-socket] [--force]',
  summary: 'make a new LUKS2 volume whose only keyslot is a new KMIP key (destroys what the device holds)',
  description: `Chooses the volume's UUID, registers a random 32-byte key on the key server as
kmip-agent/<appliance>/<UUID> (group kmip-agent/<appliance>), then writes a LUKS2 header (aes-xts-plain64,
512-bit volume key) with that UUID and one keyslot for the key: no passphrase exists. The volume is recorded
and added to the configuration: at boot the daemon opens it as /dev/mapper/NAME, or with --key-socket serves
its key to systemd-cryptsetup. A device that holds a filesystem, LUKS header, RAID member or partition table
(blkid -p) is refused [VOLUME_NOT_EMPTY] unless --force. Needs the state to itself: stop the daemon first.`,
  options: {
    name: { type: 'string', value: 'NAME', help: 'device-mapper name to open it as' },
    yes: { type: 'boolean', help: 'confirm: everything on the device is lost' },
    force: { type: 'boolean', help: 'format even over a filesystem or LUKS signature' },
    'key-socket': { type: 'boolean', help: 'serve the key to systemd-cryptsetup instead of opening the volume' },
    ...DIR_OPTIONS,
  },
  positionals: 1,
  async run({ values, positionals }, ctx) {
    if (!values.name) throw new UsageError('--name is required (the /dev/mapper name)');
    const device = positionals[0]!;
    if (values.yes !== true)
      throw new UsageError(`formatting ${device} destroys what it holds. Add --yes to confirm.`, 'USAGE_CONFIRM');
    const runtime = await openAgentRuntime({ dirs: dirsFrom(values), role: 'cli', log: await quietLog() });
    try {
      const result = await runtime.formatVolume(device, values.name, {
        keySocket: values['key-socket'] === true,
        force: values.force === true,
      });
      emit(
        ctx,
        result,
        `${device}: formatted as LUKS2 ${result.id} (keyslot ${result.keyslot}), key ${result.keyName} (KMIP object ${result.keyUid})`,
      );
    } finally {
      await runtime.close();
    }
  },
});
