/**
 * The daemon's logger: `<N>` syslog priority prefixes exactly when stdout is the journal (JOURNAL_STREAM
 * names it), plain JSON lines otherwise, and key material censored by name at any depth and by type (byte
 * buffers) whatever its name.
 */
import { closeSync, fstatSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { agentLogger, REDACTED, stdoutIsJournal, SYSLOG_PRIORITY } from '../../src/agent/log.js';

function captured(journal: boolean) {
  const lines: string[] = [];
  const log = agentLogger({ destination: { write: (s: string) => void lines.push(s) }, journal, level: 'trace' });
  return { log, lines };
}

const dirs: string[] = [];
afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));

describe('journald priorities', () => {
  it('prefixes each line with its syslog priority under journald, one line per record', () => {
    const { log, lines } = captured(true);
    log.trace('t');
    log.debug('d');
    log.info('i');
    log.warn('w');
    log.error('e');
    log.fatal('f');
    expect(lines.map((l) => /^<(\d)>\{/.exec(l)?.[1])).toEqual(['7', '7', '6', '4', '3', '2']);
    const record = JSON.parse(lines[3]!.slice(3)) as { level: string; msg: string; service: string };
    expect(record).toMatchObject({ level: 'warn', msg: 'w', service: 'kmip-agent' });
    expect(SYSLOG_PRIORITY.warn).toBe(4);
  });

  it('writes plain JSON lines anywhere else', () => {
    const { log, lines } = captured(false);
    log.warn({ event: 'x' }, 'w');
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0]!)).toMatchObject({ level: 'warn', event: 'x', msg: 'w' });
  });

  it('knows stdout is the journal only when JOURNAL_STREAM names that very file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'kmip-agent-log-'));
    dirs.push(dir);
    const fd = openSync(join(dir, 'stream'), 'w');
    const other = openSync(join(dir, 'other'), 'w');
    try {
      const st = fstatSync(fd);
      const env = { JOURNAL_STREAM: `${st.dev}:${st.ino}` };
      expect(stdoutIsJournal(env, fd)).toBe(true);
      expect(stdoutIsJournal(env, other)).toBe(false);
      expect(stdoutIsJournal({}, fd)).toBe(false);
      expect(stdoutIsJournal({ JOURNAL_STREAM: 'garbage' }, fd)).toBe(false);
    } finally {
      closeSync(fd);
      closeSync(other);
    }
  });
});

describe('key material', () => {
  it('is censored by name at any depth and as bytes under any name; ids and codes stay', () => {
    const { log, lines } = captured(false);
    const key = Buffer.from('00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff', 'hex');
    const hex = key.toString('hex');
    log.info(
      {
        keyUid: 'uid-7',
        key,
        pin: hex,
        drive: { id: 'EMU-1', sidPin: hex, auth: { adminPin: hex, deeper: { passphrase: hex } } },
        outcome: { material: key, list: [key, 'fine'] },
        code: 'DRIVE_PIN_REFUSED',
      },
      'unlock',
    );
    const failure = Object.assign(new Error('refused'), { code: 'X', details: { pinBytes: key } });
    log.error({ err: failure, error: { code: 'Y', got: key } }, 'failed');
    const text = lines.join('');
    expect(text).not.toContain(hex);
    expect(text).not.toContain(key.toString('base64'));
    expect(text).not.toContain('"type":"Buffer"');
    const record = JSON.parse(lines[0]!) as Record<string, unknown>;
    expect(record.key).toBe(REDACTED);
    expect(record.pin).toBe(REDACTED);
    expect(record.drive).toEqual({
      id: 'EMU-1',
      sidPin: REDACTED,
      auth: { adminPin: REDACTED, deeper: { passphrase: REDACTED } },
    });
    expect(record.outcome).toEqual({ material: REDACTED, list: [REDACTED, 'fine'] });
    expect(record.keyUid).toBe('uid-7');
    expect(record.code).toBe('DRIVE_PIN_REFUSED');
    const failed = JSON.parse(lines[1]!) as Record<string, unknown>;
    expect(failed.err).toMatchObject({ message: 'refused', code: 'X', details: { pinBytes: REDACTED } });
    expect(failed.error).toEqual({ code: 'Y', got: REDACTED });
  });
});
