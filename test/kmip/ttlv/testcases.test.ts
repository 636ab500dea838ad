/**
 * Every message of every OASIS KMIP test-case file (v1.0-1.4 from the shared folder, v2.1 from
 * fixtures/kmip-v2.1, XML encoding) converts
 * XML -> item -> binary TTLV -> item -> XML -> item (and -> JSON -> item) without loss, and every tag, type and
 * enumeration name the files use resolves in the registry.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
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
import { sharedDir } from './support.js';

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
  // The JSON form of the same messages reads back identically; the text dump renders them.
  expect(decoded.map((m) => fromJson(JSON.stringify(toJson(m))))).toEqual(messages);
  for (const m of decoded) expect(toText(m).length).toBeGreaterThan(0);
}

describe.each(versions)('OASIS test cases %s', (version) => {
  const files = readdirSync(join(root, version)).filter((f) => f.endsWith('.xml'));
  test('has files', () => expect(files.length).toBeGreaterThan(0));

  test.each(files)('%s round-trips XML -> binary -> XML', (file) => {
    roundTrip(readFileSync(join(root, version, file), 'utf8'));
  });
});

describe('OASIS test cases v2.1', () => {
  const dir = join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'kmip-v2.1');
  const files = ['mandatory', 'optional'].flatMap((kind) =>
    readdirSync(join(dir, kind))
      .filter((f) => f.endsWith('.xml'))
      .map((f) => join(kind, f)),
  );
  // PKCS#11 Function and Return Code values come from the PKCS#11 standard, which the registry does not hold.
  const needsPkcs11Names = 'mandatory/PKCS11-M-1-21.xml';

  test('has the 93 files', () => expect(files).toHaveLength(93));

  test.each(files.filter((f) => f !== needsPkcs11Names))('%s round-trips XML -> binary -> XML', (file) => {
    roundTrip(readFileSync(join(dir, file), 'utf8'));
  });

  test(`${needsPkcs11Names} stops only at the PKCS#11 function name`, () => {
    const text = readFileSync(join(dir, needsPkcs11Names), 'utf8');
    expect(() => fromXml(text, { placeholders: new Placeholders() })).toThrow(
      /PKCS_11Function: unknown enumeration name 'C_Initialize'/,
    );
    // With those names (and the PKCS#11 return code OK) given as hex, everything else round-trips.
    const hexed = text
      .replace(
        /value="C_(Initialize|Finalize|GetInfo)"/g,
        (_, f: string) => `value="0x0000000${'IFG'.indexOf(f[0]) + 1}"`,
      )
      .replace(/(<PKCS_11ReturnCode type="Enumeration") value="OK"/g, '$1 value="0x00000000"');
    roundTrip(hexed);
  });
});
