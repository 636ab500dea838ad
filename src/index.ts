/**
 * kmip-agent as a library. The KMIP client (`kmip-agent/kmip`) knows nothing of drives and is the
 * part most useful on its own; the drives layer (`kmip-agent/drives`) needs the native addon.
 */
export * from './kmip/index.js';
export { KmipAgentError, NativeError, isKmipAgentError } from './errors.js';
