/**
 * The real peer: systemd's own systemd-cryptsetup, pointed at the key socket as crypttab would point
 * it (`<volume> <device> <socket path> headless=true`). It binds its abstract
 * "\0<random>/cryptsetup/<volume>" name, reads the key and tries to activate. Where there is no
 * device-mapper (these test machines) activation then fails, but the key exchange has happened; its
 * output is then the same for the right key and a wrong one, so the test checks what the socket served
 * against the LUKS header (cryptsetup --test-passphrase). The binary ships with Debian's systemd package:
 * its absence fails the suite.
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
import { cryptsetupAccepts, luksFormat } from '../luks/images.js';

const SYSTEMD_CRYPTSETUP = '/usr/lib/systemd/systemd-cryptsetup';

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

describe('systemd-cryptsetup reads keys from the key socket', () => {
  it(`${SYSTEMD_CRYPTSETUP} is installed (Debian's systemd package ships it)`, () => {
    expect(existsSync(SYSTEMD_CRYPTSETUP), `${SYSTEMD_CRYPTSETUP} is missing: install systemd`).toBe(true);
  });

  let dir: string;
  let image: string;
  let socketPath: string;
  let server: KeySocketServer;
  let lines: string[];
  const key = randomBytes(32);
  const dm = deviceMapperStatus();
  /** What the socket serves for kmipdata (the volume's key, or a stand-in), and copies of what it served. */
  let serving: Buffer;
  let served: Buffer[];

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'kmip-agent-systemd-cryptsetup-'));
    image = join(dir, 'volume.img');
    luksFormat(image, key);
    socketPath = join(dir, 'run', 'luks.sock');
    lines = [];
    serving = key;
    served = [];
    const stream = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(chunk.toString('utf8'));
        done();
      },
    });
    server = new KeySocketServer({
      path: socketPath,
      logger: pino({ level: 'info' }, stream),
      lookup: (volume) => {
        if (volume !== 'kmipdata') return Promise.resolve(undefined);
        served.push(Buffer.from(serving));
        return Promise.resolve(Buffer.from(serving));
      },
    });
    await server.start();
  });

  afterEach(async () => {
    for (const b of served) b.fill(0);
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
    // What systemd-cryptsetup was handed opens this volume's LUKS header (a random key would not).
    expect(served).toHaveLength(1);
    expect(cryptsetupAccepts(image, served[0]!)).toBe(true);
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

  it('a wrong key served is told apart: it does not open the header, and activation fails', async () => {
    serving = randomBytes(32);
    const attach = await systemdCryptsetup(['attach', 'kmipdata', image, socketPath, 'headless=true,tries=1']);
    expect(events()).toEqual([expect.objectContaining({ outcome: 'handed-out', volume: 'kmipdata', keyBytes: 32 })]);
    expect(served).toHaveLength(1);
    expect(cryptsetupAccepts(image, served[0]!)).toBe(false);
    expect(attach.code).not.toBe(0);
    expect(existsSync('/dev/mapper/kmipdata')).toBe(false);
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
