/** `ttlv decode` says what is wrong with its input: not hex at all, or an odd number of digits. */
import { describe, expect, it } from 'vitest';
import { runCliCaptured as cli } from '../support/cli.js';

describe('ttlv decode input', () => {
  it.each([
    ['zzzz', /input is not hex: "z" at digit 0/],
    ['4200 78zz', /input is not hex: "z" at digit 6/],
    ['420', /odd number of hex digits \(3\)/],
  ])('%s', async (text, message) => {
    const run = await cli(['--json', 'ttlv', 'decode', text]);
    expect(run.code).toBe(1);
    const { error } = run.json<{ error: { code: string; message: string } }>();
    expect(error.code).toBe('KMIP_TTLV_BAD_SYNTAX');
    expect(error.message).toMatch(message);
    expect(error.message).not.toMatch(text === '420' ? /not hex/ : /odd number/);
  });

  it('stdin is read no further than a TTLV message can be', async () => {
    const reads: number[] = [];
    const run = await cli(['ttlv', 'decode', '-'], Buffer.from('00'), reads);
    expect(run.code).toBe(1);
    expect(reads).toEqual([16 * 1024 * 1024 + 1]);
  });
});
