/**
 * The operations every KMIP endpoint object offers (one connection: KmipClient; a failover group:
 * KmipProvider): `batch` is the primitive, the rest are typed one-operation conveniences.
 */
import type { KmipError } from './errors.js';
import type { Attribute } from './attributes.js';
import type { ProtocolVersion } from './fields.js';
import * as ops from './operations.js';
import type { BatchRequest } from './operations.js';

export type ItemResult<T> = { ok: true; value: T } | { ok: false; error: KmipError };
export type Results<R extends readonly BatchRequest[]> = {
  [K in keyof R]: R[K] extends BatchRequest<infer T> ? ItemResult<T> : never;
};

export interface CallOptions {
  /** Timeout for this message's answer, instead of the client's `requestTimeoutMs`. */
  timeoutMs?: number;
}

export abstract class KmipOperationsApi {
  /** Runs several operations in one message; every item gets its own result. */
  abstract batch<const R extends readonly BatchRequest[]>(requests: R, options?: CallOptions): Promise<Results<R>>;

  /** Runs one operation; a server refusal throws KmipOperationError. */
  async call<T>(request: BatchRequest<T>, options?: CallOptions): Promise<T> {
    const [result] = await this.batch([request] as const, options);
    if (!result.ok) throw result.error;
    return result.value as T;
  }

  // Convenience methods, one per operation.
  discoverVersions(versions: ProtocolVersion[] = []) {
    return this.call(ops.discoverVersions({ versions }));
  }
  query(functions: number[]) {
    return this.call(ops.query({ functions }));
  }
  create(request: ops.CreateSymmetricKeyRequest) {
    return this.call(ops.create(request));
  }
  register(request: ops.RegisterRequest) {
    return this.call(ops.register(request));
  }
  get(uniqueIdentifier: string, options: Omit<ops.GetRequest, 'uniqueIdentifier'> = {}) {
    return this.call(ops.get({ uniqueIdentifier, ...options }));
  }
  locate(request: ops.LocateRequest) {
    return this.call(ops.locate(request));
  }
  getAttributes(uniqueIdentifier: string, names?: string[]) {
    return this.call(ops.getAttributes(names ? { uniqueIdentifier, names } : { uniqueIdentifier }));
  }
  getAttributeList(uniqueIdentifier: string) {
    return this.call(ops.getAttributeList({ uniqueIdentifier }));
  }
  addAttribute(uniqueIdentifier: string, attribute: Attribute) {
    return this.call(ops.addAttribute({ uniqueIdentifier, attribute }));
  }
  modifyAttribute(uniqueIdentifier: string, attribute: Attribute) {
    return this.call(ops.modifyAttribute({ uniqueIdentifier, attribute }));
  }
  setAttribute(uniqueIdentifier: string, attribute: Attribute) {
    return this.call(ops.setAttribute({ uniqueIdentifier, attribute }));
  }
  deleteAttribute(uniqueIdentifier: string, name: string, index?: number) {
    return this.call(
      ops.deleteAttribute(index === undefined ? { uniqueIdentifier, name } : { uniqueIdentifier, name, index }),
    );
  }
  activate(uniqueIdentifier: string) {
    return this.call(ops.activate({ uniqueIdentifier }));
  }
  revoke(request: ops.RevokeRequest) {
    return this.call(ops.revoke(request));
  }
  destroy(uniqueIdentifier: string) {
    return this.call(ops.destroy({ uniqueIdentifier }));
  }
  reKey(uniqueIdentifier: string, offsetSeconds?: number) {
    return this.call(
      ops.reKey(offsetSeconds === undefined ? { uniqueIdentifier } : { uniqueIdentifier, offsetSeconds }),
    );
  }
}
