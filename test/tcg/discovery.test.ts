/**
 * Level 0 discovery (Core Spec 2.01 3.3.6; Opal SSC 2.01 3.1.1): every real drive response in
 * ../shared/tcg-fixtures/level0-discovery.tsv is parsed, with the features each drive reports.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { tcgNative } from '../../src/drives/backend.js';
import { discoveryFixtures } from '../support/shared.js';

const tcg = tcgNative();
const fixtures = discoveryFixtures();

/** What each fixture drive reports (read by hand from the bytes, Opal SSC 3.1.1 layouts). */
const expected: Record<string, { features: string[]; ssc: string; baseComId: number; lockingEnabled: boolean }> = {
  'Samsung EVO 860': {
    features: ['TPer', 'Locking', 'Geometry', 'DataStore', 'Opal2'],
    ssc: 'opal2',
    baseComId: 0x1004,
    lockingEnabled: true,
  },
  'Samsung SSD 970 EVO Plus 500GB (NVMe)': {
    features: ['TPer', 'Locking', 'Geometry', 'DataStore', 'Opal2', 'BlockSID', 'NamespaceLocking'],
    ssc: 'opal2',
    baseComId: 0x1004,
    lockingEnabled: false,
  },
  'Sabrent Rocket 4.0 2TB': {
    features: ['TPer', 'Locking', 'Pyrite1', 'BlockSID'],
    ssc: 'otherSsc',
    baseComId: 0x07fe,
    lockingEnabled: false,
  },
  'SAMSUNG MZ1LB1T9HALS-00007': {
    features: ['TPer', 'Locking', 'Geometry', 'DataStore', 'Opal2', 'BlockSID', 'NamespaceLocking'],
    ssc: 'opal2',
    baseComId: 0x1004,
    lockingEnabled: false,
  },
};

describe('real drives', () => {
  it('has fixtures', () => {
    expect(fixtures.length).toBeGreaterThanOrEqual(4);
  });

  for (const { model, data } of fixtures) {
    it(`parses ${model}`, () => {
      const d = tcg.parseDiscovery(data);
      expect(d.revision).toBe(1);
      expect(d.tper?.sync).toBe(true);
      expect(d.locking?.lockingSupported).toBe(true);
      const want = expected[model];
      if (want) {
        expect(d.features.map((f) => f.name)).toEqual(want.features);
        const ssc = d[want.ssc as 'opal2' | 'otherSsc'];
        expect(ssc?.baseComId).toBe(want.baseComId);
        expect(ssc?.numComIds).toBe(1);
        expect(d.locking?.lockingEnabled).toBe(want.lockingEnabled);
      }
      if (d.opal2) {
        expect(d.opal2).toMatchObject({ numLockingAdmins: 4, numLockingUsers: 9, initialCPinSidIndicator: 0 });
        expect(d.geometry?.logicalBlockSize).toBe(512);
        expect(d.dataStore).toMatchObject({ maxTables: 9, maxTotalSize: 0xa00000, tableSizeAlignment: 1 });
      }
    });
  }

  it('keeps unknown features raw and reports quirks as warnings, not errors', () => {
    const mz = fixtures.find((f) => f.model === 'SAMSUNG MZ1LB1T9HALS-00007');
    expect(mz).toBeDefined();
    const d = tcg.parseDiscovery(mz!.data);
    const ns = d.features.find((f) => f.name === 'NamespaceLocking');
    expect(ns?.truncated).toBe(true);
    expect(ns?.data.length).toBe(12);
    expect(d.warnings.join('\n')).toMatch(/declares 16 bytes but only 12/);
    const blockSid = d.features.find((f) => f.name === 'BlockSID');
    expect(blockSid?.data.toString('hex')).toBe('020100000000000000000000');
  });

  it('reads the Locking feature flags bit by bit (EVO 860: supported, enabled, locked, encrypting, MBR enabled)', () => {
    const evo = fixtures.find((f) => f.model === 'Samsung EVO 860')!;
    expect(tcg.parseDiscovery(evo.data).locking).toEqual({
      lockingSupported: true,
      lockingEnabled: true,
      locked: true,
      mediaEncryption: true,
      mbrEnabled: true,
      mbrDone: false,
      mbrShadowingNotSupported: false,
    });
  });
});

describe('synthetic responses', () => {
  /** A discovery response from feature descriptors [code, version, data] (Core 3.3.6.1, Table 39). */
  function response(features: [number, number, Buffer][]): Buffer {
    const body = Buffer.concat(
      features.map(([code, version, data]) =>
        Buffer.concat([Buffer.from([code >> 8, code & 0xff, version << 4, data.length]), data]),
      ),
    );
    const header = Buffer.alloc(48);
    header.writeUInt32BE(44 + body.length, 0);
    header.writeUInt32BE(1, 4);
    return Buffer.concat([header, body, Buffer.alloc(64)]);
  }

  it('keeps vendor-specific and unknown features raw, in order, and ignores transfer padding', () => {
    const d = tcg.parseDiscovery(
      response([
        [0x0001, 1, Buffer.from('110000000000000000000000', 'hex')],
        [0xc001, 2, Buffer.from('deadbeef', 'hex')],
        [0x0203, 1, Buffer.from('07fe0002000004000800ff0000000000', 'hex')],
        [0x0555, 1, Buffer.from('01', 'hex')],
      ]),
    );
    expect(d.features.map((f) => [f.code, f.name, f.version, f.data.toString('hex')])).toEqual([
      [0x0001, 'TPer', 1, '110000000000000000000000'],
      [0xc001, 'Vendor', 2, 'deadbeef'],
      [0x0203, 'Opal2', 1, '07fe0002000004000800ff0000000000'],
      [0x0555, 'Unknown', 1, '01'],
    ]);
    expect(d.opal2).toMatchObject({
      baseComId: 0x07fe,
      numComIds: 2,
      numLockingAdmins: 4,
      numLockingUsers: 8,
      initialCPinSidIndicator: 0,
      cPinSidRevertBehavior: 0xff,
    });
    expect(d.warnings).toEqual([]);
  });

  it('reads Opal 1, Single User Mode and DataStore layouts (Opal SSC 3.1.1.4-3.1.1.6)', () => {
    const d = tcg.parseDiscovery(
      response([
        [0x0200, 1, Buffer.from('100000040100000000000000', 'hex')],
        [0x0201, 1, Buffer.from('000000090300000000000000', 'hex')],
        [0x0202, 1, Buffer.from('0000000a0010000000000200', 'hex')],
      ]),
    );
    expect(d.opal1).toMatchObject({ baseComId: 0x1000, numComIds: 4, rangeCrossing: true });
    expect(d.singleUserMode).toEqual({ numLockingObjects: 9, any: true, all: true, policy: false });
    expect(d.dataStore).toEqual({ maxTables: 10, maxTotalSize: 0x100000, tableSizeAlignment: 0x200 });
  });
});

describe('malformed responses', () => {
  it('shorter than the header: TCG_MALFORMED_DISCOVERY', () => {
    expect(() => tcg.parseDiscovery(Buffer.alloc(47))).toThrow(
      expect.objectContaining({ code: 'TCG_MALFORMED_DISCOVERY' }),
    );
  });

  it('random tails after a valid header never crash', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.nat(400), (tail, length) => {
        const header = Buffer.alloc(48);
        header.writeUInt32BE(length, 0);
        header.writeUInt32BE(1, 4);
        try {
          tcg.parseDiscovery(Buffer.concat([header, Buffer.from(tail)]));
        } catch (e) {
          return (e as { code?: string }).code === 'TCG_MALFORMED_DISCOVERY';
        }
        return true;
      }),
      { numRuns: 300 },
    );
  });
});
