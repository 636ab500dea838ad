/**
 * Canned TPer answers for suites that drive the host session layer through a scripted drive
 * (testSeams().openScriptedDrive, native/transport/scripted.h), built with the addon's codec.
 * Core Spec 2.01: 3.2.4 (methods), 3.3.7 (sessions).
 */
import { tcgNative } from '../../src/drives/backend.js';
import { discoveryFixture } from './shared.js';

export const tcg = tcgNative();
// A real Opal 2 drive's discovery (Samsung EVO 860, base ComID 0x1004).
export const discovery = discoveryFixture('Samsung EVO 860');
export const COM_ID = 0x1004;
// The host numbers sessions from 0x4B42 upward (native/tcg/session.h), one per StartSession.
export const FIRST_HSN = 0x4b42;
export const TSN = 0x1001;
export const SMUID = { uid: '00000000000000ff' };
export const EOD = { token: 'EOD' };

export function packet(tsn: number, hsn: number, values: unknown[]): Buffer {
  return tcg.buildComPacket({ comId: COM_ID, tperSession: tsn, hostSession: hsn, payload: tcg.encodeTokens(values) });
}
/** The answer to Properties: MaxComPacketSize 2048. */
export const propertiesOk = packet(0, 0, [
  { token: 'CALL' },
  SMUID,
  { uid: '000000000000ff01' },
  [[{ name: 'MaxComPacketSize', value: 2048 }], { name: 0, value: [] }],
  EOD,
  [0, 0, 0],
]);
/** SyncSession: the TPer accepts StartSession `hsn` as TPer session `tsn`. */
export const syncSession = (hsn: number, tsn = TSN): Buffer =>
  packet(0, 0, [{ token: 'CALL' }, SMUID, { uid: '000000000000ff03' }, [hsn, tsn], EOD, [0, 0, 0]]);
export const startRefused = (status: number): Buffer => packet(0, 0, [[], EOD, [status, 0, 0]]);
export const getResult = (hsn: number, columns: { name: number; value: unknown }[]): Buffer =>
  packet(TSN, hsn, [[columns], EOD, [0, 0, 0]]);
export const methodStatus = (hsn: number, status: number): Buffer => packet(TSN, hsn, [[], EOD, [status, 0, 0]]);
export const closed = (hsn: number): Buffer => packet(TSN, hsn, [{ token: 'EOS' }]);
