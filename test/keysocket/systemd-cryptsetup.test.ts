/**
 * The real peer: systemd's own systemd-cryptsetup, pointed at the key socket as crypttab would point
 * it (`<volume> <device> <socket path> headless=true`). It binds its abstract
 * "\0<random>/cryptsetup/<volume>" name, reads the key and tries to activate. Where there is no
 * device-mapper (these test machines) activation then fails, but the key exchange has happened.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { KeySocketServer } from '../../src/agent/keysocket/server.js';
import { deviceMapperStatus } from '../../src/drives/luks.js';
import { luksFormat } from '../luks/images.js';

const SYSTEMD_CRYPTSETUP = '/lib/systemd/systemd-cryptsetup';

interface Attach {
  pid: number;
  code: number | null;
  stderr: string;
}

function systemdCryptsetup(args: string[]): Promise<Attach> {
  return new Promise((resolve) => {
    const child = execFile(SYSTEMD_CRYPTSETUP, args, { timeout: 30_000 }, (error, _stdout, stderr) => {
      const code = error ? ((error as { code?: unknown }).code as number | null) : 0;
      resolve({ pid: child.pid ?? -1, code: typeof code === 'number' ? code : null, stderr });
    });
  });
}

describe.skipIf(!existsSync(SYSTEMD_CRYPTSETUP))('systemd-cryptsetup reads keys from the key socket', () => {
  let dir: string;
  let image: string;
  let socketPath: string;
  let server: KeySocketServer;
  let lines: string[];
  const key = randomBytes(32);
  const dm = deviceMapperStatus();

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'kmip-agent-systemd-cryptsetup-'));
    image = join(dir, 'volume.img');
    luksFormat(image, key);
    socketPath = join(dir, 'run', 'luks.sock');
    lines = [];
    const stream = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(chunk.toString('utf8'));
        done();
      },
    });
    server = new KeySocketServer({
      path: socketPath,
      logger: pino({ level: 'info' }, stream),
      lookup: (volume) => Promise.resolve(volume === 'kmipdata' ? Buffer.from(key) : undefined),
    });
    await server.start();
  });

  afterEach(async () => {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const events = () =>
    lines
      .join('')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((e) => e.event === 'keysocket.key');

  it('hands the key to systemd-cryptsetup for a known volume', async () => {
    const attach = await systemdCryptsetup(['attach', 'kmipdata', image, socketPath, 'headless=true,tries=1']);
    expect(events()).toEqual([
      expect.objectContaining({
        outcome: 'handed-out',
        volume: 'kmipdata',
        peerPid: attach.pid,
        peerUid: 0,
        keyBytes: 32,
      }),
    ]);
    if (dm.available) {
      expect(attach.code).toBe(0);
      expect(existsSync('/dev/mapper/kmipdata')).toBe(true);
      await systemdCryptsetup(['detach', 'kmipdata']);
    } else {
      // The key arrived; activation is what this machine cannot do.
      expect(attach.code).not.toBe(0);
      expect(attach.stderr).toMatch(/device-mapper/);
    }
    const log = lines.join('');
    for (const form of [key.toString('hex'), key.toString('base64'), key.toString('latin1')])
      expect(log).not.toContain(form);
  });

  it('gives systemd-cryptsetup nothing for a volume the agent does not know', async () => {
    const attach = await systemdCryptsetup(['attach', 'othervol', image, socketPath, 'headless=true,tries=1']);
    expect(attach.code).not.toBe(0);
    expect(events()).toEqual([
      expect.objectContaining({
        outcome: 'refused',
        reason: 'unknown-volume',
        volume: 'othervol',
        peerPid: attach.pid,
      }),
    ]);
    expect(existsSync('/dev/mapper/othervol')).toBe(false);
  });
});
