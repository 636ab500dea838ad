/**
 * `kmip-agent audit [--since ISO|30m|1h|2d] [--limit N]`: the key operations the agent did (fetches,
 * registrations, unlocks, refusals, key-socket hand-outs, enrollments), from the running daemon's API, or
 * from the state directory's audit file when no daemon runs (reading needs no lock).
 */
import { join } from 'node:path';
import { ApiClient, isDaemonAbsent } from '../../api/client.js';
import { API_SOCKET_NAME } from '../../api/server.js';
import { parseSince, readAuditEvents, type AuditEvent } from '../../agent/audit.js';
import { command, emit, printable, UsageError } from '../framework.js';
import { DIR_OPTIONS, dirsFrom } from './agent.js';
import { auditKeysCommand } from './field.js';

function line(e: AuditEvent): string {
  const what = [e.target, e.keyUid && `key ${e.keyUid}`, e.keyName && e.keyName, e.server && `via ${e.server}`]
    .filter(Boolean)
    .join(' ');
  const result = e.code ? `${e.result} ${e.code}` : e.result;
  const ms = e.durationMs !== undefined ? ` ${e.durationMs} ms` : '';
  const actor = `${e.actor.kind} uid ${e.actor.uid} pid ${e.actor.pid}`;
  return printable(`${e.time}  ${e.operation.padEnd(8)} ${result.padEnd(10)} ${what}${ms}  (${actor})`);
}

export const auditCommand = command({
  name: 'audit',
  usage: '[--since ISO|30m|1h|2d] [--limit N] | keys',
  summary: 'the audit trail of key operations (fetch, register, unlock, refusal, enroll), oldest first',
  description: `Every key operation is one event: operation, result and code, KMIP UID, drive or volume, key server,
duration and who asked (daemon, cli, or an API caller's uid/pid). Never a key. Read from the running daemon,
or from <state-dir>/audit.log (and its rotated files) when none runs.
\`audit keys\`: the appliance's keys on the key server against its records (orphans, missing keys); exit 1 unless clean.`,
  options: {
    since: {
      type: 'string',
      value: 'ISO|AGE',
      help: 'only events at or after this time, or this long ago (30m, 1h, 2d)',
    },
    limit: { type: 'string', value: 'N', help: 'the most recent N events (default 1000)' },
    ...DIR_OPTIONS,
  },
  positionals: [0, 1],
  async run({ values, positionals, path }, ctx) {
    if (positionals[0] === 'keys') return auditKeysCommand.run({ values, positionals: [], path: `${path} keys` }, ctx);
    if (positionals.length > 0) throw new UsageError(`audit takes no argument but keys, not '${positionals[0]}'`);
    const since = values.since === undefined ? undefined : parseSince(values.since, new Date());
    if (values.limit !== undefined && !/^[1-9]\d{0,5}$/.test(values.limit))
      throw new UsageError(`--limit must be a whole number from 1 to 999999, not '${values.limit}'`);
    const limit = values.limit === undefined ? undefined : Number(values.limit);
    const dirs = dirsFrom(values);
    let events: AuditEvent[];
    let daemon = true;
    try {
      const answer = await new ApiClient(join(dirs.runtime, API_SOCKET_NAME)).call<{ events: AuditEvent[] }>(
        'ListAuditEvents',
        { ...(since ? { since: since.toISOString() } : {}), ...(limit !== undefined ? { limit } : {}) },
      );
      events = answer.events;
    } catch (error) {
      if (!isDaemonAbsent(error)) throw error;
      daemon = false;
      events = await readAuditEvents(dirs.state, {
        ...(since ? { since } : {}),
        ...(limit !== undefined ? { limit } : {}),
      });
    }
    emit(ctx, { daemon, events }, events.length ? events.map(line).join('\n') : 'no audit events');
  },
});
