/** `kmip-agent kmip <command> --provider NAME`: the agent's configured servers and credentials, not options. */
import { afterEach, describe, expect, it } from 'vitest';
import { TestAppliance } from './appliance.js';

const appliances: TestAppliance[] = [];
afterEach(() => appliances.splice(0).forEach((a) => a.close()));

describe('kmip --provider', () => {
  it('talks to the configured provider; an unknown one or mixed connection options are usage errors', () => {
    const a = new TestAppliance();
    appliances.push(a);
    a.setup();
    const server = a.ok(['kmip', 'discover', '--provider', 'default']);
    expect(server.attempts).toEqual([expect.objectContaining({ outcome: 'answered' })]);

    const unknown = a.cli(['kmip', 'discover', '--provider', 'backup']);
    expect(unknown.code).toBe(2);
    expect(unknown.json.error).toMatchObject({
      code: 'USAGE_PROVIDER_UNKNOWN',
      message: expect.stringContaining('default'),
    });
    const mixed = a.cli(['kmip', 'discover', '--provider', 'default', '--server', 'localhost:1']);
    expect(mixed.code).toBe(2);
    expect(mixed.json.error).toMatchObject({ code: 'USAGE', message: expect.stringContaining('drop --server') });
  });
});
