/**
 * Last connection results in the state: per endpoint, written when the outcome changes and not on every
 * request, through the runtime's real provider (a dead first server, then the run's PyKMIP).
 */
import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig, saveConfig } from '../../src/agent/config.js';
import { openAgentRuntime } from '../../src/agent/daemon.js';
import { decodeState } from '../../src/agent/state.js';
import { freePort } from '../support/pykmip.js';
import { TestAppliance } from './appliance.js';

const appliances: TestAppliance[] = [];
afterEach(() => appliances.splice(0).forEach((a) => a.close()));

const quiet = { level: 'silent' } as const;

describe('state.connections', () => {
  it('records each endpoint once per change of outcome, with latency and protocol version', async () => {
    const a = new TestAppliance();
    appliances.push(a);
    a.setup();
    const config = await loadConfig(a.dirs.config);
    const liveName = config.providers.default!.servers[0]!;
    const live = config.servers[liveName]!;
    const dead = { ...live, host: '127.0.0.1', port: await freePort() };
    await saveConfig(a.dirs.config, {
      ...config,
      servers: { ...config.servers, dead },
      providers: { default: { ...config.providers.default!, servers: ['dead', liveName] } },
    });
    const { pino } = await import('pino');
    const runtime = await openAgentRuntime({ dirs: a.dirs, role: 'cli', log: pino(quiet) });
    const read = () => decodeState(readFileSync(a.statePath, 'utf8'), a.statePath);
    try {
      await runtime.keys.findByGroup(`kmip-agent/${a.id}`);
      await runtime.state.update(() => undefined); // waits for the recorder's queued writes
      const first = read();
      const byEndpoint = new Map(first.body.connections.map((c) => [c.endpoint, c]));
      expect(byEndpoint.get(`${dead.host}:${dead.port}`)).toMatchObject({
        ok: false,
        error: { code: 'KMIP_CONNECTION_REFUSED' },
      });
      expect(byEndpoint.get(`${live.host}:${live.port}`)).toMatchObject({ ok: true, protocolVersion: /^\d+\.\d+$/ });
      expect(byEndpoint.get(`${live.host}:${live.port}`)!.latencyMs).toBeGreaterThanOrEqual(0);

      // Same outcomes again: nothing rewritten (the live server answers; the dead one waits out its cooldown).
      for (let i = 0; i < 3; i++) await runtime.keys.findByGroup(`kmip-agent/${a.id}`);
      await runtime.state.update(() => undefined);
      expect(read().generation).toBe(first.generation + 1);
    } finally {
      await runtime.close();
    }
  });
});
