import { expect } from 'vitest';
import { TtlvError } from '../../../src/kmip/ttlv/index.js';

/** Runs `fn`, expecting a TtlvError; returns it for field checks. */
export function ttlvError(fn: () => unknown): TtlvError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(TtlvError);
    return e as TtlvError;
  }
  throw new Error('expected a TtlvError');
}
