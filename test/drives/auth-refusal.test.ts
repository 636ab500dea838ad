/**
 * Typed refusals: the addon marks a refused authentication (`authRefused: true` beside the TCG
 * status code) exactly where StartSession with a HostChallenge or Authenticate is refused, and the
 * lockout guard in OpalDrive trusts that mark, never the message text. A refused PIN is remembered
 * and not sent again; a NOT_AUTHORIZED from a method the authority may not run (a Set) is not a
 * refused PIN; a locked-out authority says nothing about the PIN. Scripted TPer answers show what
 * is sent; the emulated drive shows the Authenticate-method path.
 */
import { describe, expect, it } from 'vitest';
import { OpalError } from '../../src/drives/errors.js';
import { OpalDrive } from '../../src/drives/opal.js';
import { ADMIN1, type OpalBackend } from '../../src/drives/types.js';
import { NativeError } from '../../src/errors.js';
import { testSeams } from '../support/addon.js';
import {
  closed,
  discovery,
  FIRST_HSN,
  methodStatus,
  propertiesOk,
  startRefused,
  syncSession,
  tcg,
} from '../support/scripted-tper.js';
import { useOwnedDrive } from './emulated-support.js';

const seams = testSeams();
const NOT_AUTHORIZED = 0x01;
const AUTHORITY_LOCKED_OUT = 0x12;

/** The payloads (token bytes) the scripted TPer received, in order. */
function payloads(backend: { sent(): Buffer[] }): Buffer[] {
  return backend.sent().map((b) => tcg.parseComPacket(b).packets[0].subpackets[0].payload);
}
const carries = (payload: Buffer, pin: Buffer) => payload.includes(pin);

async function failure(promise: Promise<unknown>): Promise<OpalError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(OpalError);
  return error as OpalError;
}

describe('StartSession with a HostChallenge refused: a refused PIN', () => {
  it('NOT_AUTHORIZED is marked authRefused, remembered, and the PIN is never sent again', async () => {
    const backend = seams.openScriptedDrive(discovery, [propertiesOk, startRefused(NOT_AUTHORIZED)]);
    const drive = OpalDrive.fromBackend('scripted:refused-pin', backend);
    const wrong = Buffer.from('the wrong admin pin');
    const error = await failure(drive.unlock(wrong));
    expect(error).toMatchObject({ code: 'TCG_NOT_AUTHORIZED', status: NOT_AUTHORIZED, authRefused: true });
    // The mark comes from the addon itself, on the NativeError the OpalError wraps.
    expect(error.cause).toBeInstanceOf(NativeError);
    expect((error.cause as NativeError).authRefused).toBe(true);
    expect(error.toJSON()).toMatchObject({ code: 'TCG_NOT_AUTHORIZED', status: 1, authRefused: true });
    expect(await drive.isKnownWrong(ADMIN1, wrong)).toBe(true);
    const sentBefore = backend.sent().length;
    expect(payloads(backend).filter((p) => carries(p, wrong))).toHaveLength(1);

    await expect(drive.unlock(wrong, { range: 0 })).rejects.toMatchObject({ code: 'TCG_PIN_KNOWN_WRONG' });
    await expect(drive.verify(wrong)).rejects.toMatchObject({ code: 'TCG_PIN_KNOWN_WRONG' });
    expect(backend.sent()).toHaveLength(sentBefore);
    await drive.forgetRefusedPins();
  });

  it('AUTHORITY_LOCKED_OUT is marked authRefused but does not brand the PIN wrong (it was not checked)', async () => {
    const backend = seams.openScriptedDrive(discovery, [
      propertiesOk,
      startRefused(AUTHORITY_LOCKED_OUT),
      startRefused(AUTHORITY_LOCKED_OUT),
    ]);
    const drive = OpalDrive.fromBackend('scripted:locked-out', backend);
    const pin = Buffer.from('maybe the right pin');
    const error = await failure(drive.unlock(pin));
    expect(error).toMatchObject({ code: 'TCG_AUTHORITY_LOCKED_OUT', authRefused: true });
    expect(await drive.isKnownWrong(ADMIN1, pin)).toBe(false);
    // After a power cycle it may be right: it is sent again when asked.
    await expect(drive.unlock(pin)).rejects.toMatchObject({ code: 'TCG_AUTHORITY_LOCKED_OUT' });
    expect(payloads(backend).filter((p) => carries(p, pin))).toHaveLength(2);
  });

  it('a refusal without a HostChallenge (an anonymous session) is not marked', async () => {
    const backend = seams.openScriptedDrive(discovery, [propertiesOk, startRefused(NOT_AUTHORIZED)]);
    const error = await failure(OpalDrive.fromBackend('scripted:anonymous', backend).readMsid());
    expect(error).toMatchObject({ code: 'TCG_NOT_AUTHORIZED', authRefused: false });
  });
});

describe('NOT_AUTHORIZED from a method after a successful authentication: not a refused PIN', () => {
  it('a Set the authority may not do is an access refusal: the PIN stays usable and is sent again', async () => {
    const backend = seams.openScriptedDrive(discovery, [
      propertiesOk,
      syncSession(FIRST_HSN),
      methodStatus(FIRST_HSN, NOT_AUTHORIZED), // Locking_GlobalRange.Set refused
      closed(FIRST_HSN),
      syncSession(FIRST_HSN + 1),
      methodStatus(FIRST_HSN + 1, NOT_AUTHORIZED),
      closed(FIRST_HSN + 1),
    ]);
    const drive = OpalDrive.fromBackend('scripted:set-refused', backend);
    const pin = Buffer.from('a right pin, a forbidden Set');
    const error = await failure(drive.unlock(pin));
    expect(error).toMatchObject({ code: 'TCG_NOT_AUTHORIZED', status: NOT_AUTHORIZED, authRefused: false });
    expect(error.message).toMatch(/Set: /);
    expect(error.toJSON()).not.toHaveProperty('authRefused');
    expect(await drive.isKnownWrong(ADMIN1, pin)).toBe(false);
    await expect(drive.unlock(pin)).rejects.toMatchObject({ code: 'TCG_NOT_AUTHORIZED', authRefused: false });
    expect(payloads(backend).filter((p) => carries(p, pin))).toHaveLength(2);
  });
});

describe('the guard reads the mark, not the message', () => {
  const refusing = (error: Error): OpalBackend =>
    ({
      serial: () => '',
      describe: () => 'refusing backend',
      setLock: () => Promise.reject(error),
      close: () => Promise.resolve(),
    }) as unknown as OpalBackend;

  it('a NOT_AUTHORIZED whose message merely starts "StartSession:" is not taken for a refused PIN', async () => {
    const drive = OpalDrive.fromBackend(
      'fake:unmarked',
      refusing(new OpalError('StartSession: not authorized', 'TCG_NOT_AUTHORIZED', { status: 1 })),
    );
    const pin = Buffer.from('pin');
    await expect(drive.unlock(pin)).rejects.toMatchObject({ code: 'TCG_NOT_AUTHORIZED' });
    expect(await drive.isKnownWrong(ADMIN1, pin)).toBe(false);
  });

  it('a marked refusal is remembered whatever its message says', async () => {
    const drive = OpalDrive.fromBackend(
      'fake:marked',
      refusing(new OpalError('the drive said no', 'TCG_NOT_AUTHORIZED', { status: 1, authRefused: true })),
    );
    const pin = Buffer.from('pin');
    await expect(drive.unlock(pin)).rejects.toMatchObject({ code: 'TCG_NOT_AUTHORIZED', authRefused: true });
    expect(await drive.isKnownWrong(ADMIN1, pin)).toBe(true);
    await drive.forgetRefusedPins();
  });
});

describe('the Authenticate method path on an emulated drive', () => {
  const SID_PIN = Buffer.from('sid pin for auth refusals');
  const ADMIN_PIN = Buffer.from('admin pin for auth refusals');
  const t = useOwnedDrive({ sid: SID_PIN, admin: ADMIN_PIN }, { authenticateWithMethod: true });

  it('a wrong PIN refused by Authenticate is marked and remembered; the right one still works', async () => {
    const wrong = Buffer.from('not the admin pin');
    const error = await failure(t.drive.lock(wrong));
    expect(error).toMatchObject({ code: 'TCG_NOT_AUTHORIZED', authRefused: true });
    expect(await t.drive.isKnownWrong(ADMIN1, wrong)).toBe(true);
    await expect(t.drive.lock(wrong)).rejects.toMatchObject({ code: 'TCG_PIN_KNOWN_WRONG' });
    await t.drive.lock(ADMIN_PIN);
    await t.drive.unlock(ADMIN_PIN);
  });

  it('a User may not Set a range it was not given: NOT_AUTHORIZED, not marked, not remembered', async () => {
    const userPin = Buffer.from('user1 pin');
    await t.drive.enableUser(ADMIN_PIN, 1, { ranges: [1] });
    await t.drive.setPin({ pin: ADMIN_PIN, target: { kind: 'user', index: 1 }, newPin: userPin });
    const user1 = { kind: 'user' as const, index: 1 };
    const error = await failure(t.drive.unlock(userPin, { authority: user1, range: 2 }));
    expect(error).toMatchObject({ code: 'TCG_NOT_AUTHORIZED', authRefused: false });
    expect(await t.drive.isKnownWrong(user1, userPin)).toBe(false);
    await t.drive.unlock(userPin, { authority: user1, range: 1 });
  });
});
