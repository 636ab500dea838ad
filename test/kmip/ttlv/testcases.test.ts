/**
 * Every message of every OASIS KMIP test-case file (v1.0-1.4 from the shared folder, XML encoding) converts
 * XML -> item -> binary TTLV -> item -> XML -> item (and -> JSON -> item) without loss, and every tag, type and
 * enumeration name the files use resolves in the registry.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import {
  Placeholders,
  decode,
  encode,
  fromJson,
  fromXml,
  toJson,
  toText,
  toXmlDocument,
} from '../../../src/kmip/ttlv/index.js';
import { sharedDir } from '../../support/shared.js';

const root = join(sharedDir(), 'kmip-testcases');
const versions = readdirSync(root).filter((v) => /^v1\.\d$/.test(v));

/** XML -> item -> binary -> item -> XML -> item, and item -> JSON -> item, all equal. */
function roundTrip(text: string): void {
  const placeholders = new Placeholders();
  const messages = fromXml(text, { placeholders });
  expect(messages.length).toBeGreaterThan(0);
  const wire = messages.map((m) => encode(m));
  const decoded = wire.map((b) => decode(b));
  expect(decoded).toEqual(messages);
  const again = fromXml(toXmlDocument(decoded, { placeholders }), { placeholders });
  expect(again).toEqual(messages);
  expect(again.map((m) => encode(m))).toEqual(wire);
  // The JSON form of the same messages reads back identically; the text dump opens with the message's tag.
  expect(decoded.map((m) => fromJson(JSON.stringify(toJson(m))))).toEqual(messages);
  for (const m of decoded) expect(toText(m).split('\n')[0]).toMatch(/^(RequestMessage|ResponseMessage) \(Structure\)/);
}

describe.each(versions)('OASIS test cases %s', (version) => {
  const files = readdirSync(join(root, version)).filter((f) => f.endsWith('.xml'));
  test('has files', () => expect(files.length).toBeGreaterThan(0));

  test.each(files)('%s round-trips XML -> binary -> XML', (file) => {
    roundTrip(readFileSync(join(root, version, file), 'utf8'));
  });
});
