/**
 * Captures the KMIP fuzz corpus (test/fuzz/corpus/kmip-responses.json) from a real PyKMIP server:
 * starts one (test/support/pykmip.ts), runs a spread of operations through kmip-agent's client and
 * records every response frame exactly as it arrived, with the request that asked for it, so the
 * fuzzer can replay mutated frames through the same response handling. Run it again with
 * `npm run fuzz:capture` when the client learns new operations; the keys in it are throwaway keys
 * of a server that existed for this run only.
 */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { KmipClient } from '../../src/kmip/client.js';
import { KmipConnection } from '../../src/kmip/connection.js';
import { CryptographicAlgorithm, QueryFunction, RevocationReasonCode, UsageMask } from '../../src/kmip/spec.js';
import { pykmipClientOptions, startPykmip } from '../support/pykmip.js';
import { CORPUS_DIR, toBatchRequest, type CorpusRequest, type KmipCorpusEntry } from './targets.js';

const CORPUS_FILE = join(CORPUS_DIR, 'kmip-responses.json');

async function capture(): Promise<KmipCorpusEntry[]> {
  const server = await startPykmip();
  const frames: Buffer[] = [];
  const exchange = KmipConnection.prototype.exchange;
  KmipConnection.prototype.exchange = async function (this: KmipConnection, request, timeoutMs) {
    const answer = await exchange.call(this, request, timeoutMs);
    frames.push(Buffer.from(answer)); // the client wipes its copy after use
    return answer;
  };
  const client = new KmipClient(pykmipClientOptions(server, { versions: [{ major: 1, minor: 2 }] }));
  const internals = client as unknown as { batchCounter: number };
  const entries: KmipCorpusEntry[] = [];
  const record = async (name: string, requests: CorpusRequest[]) => {
    const batchBase = internals.batchCounter;
    frames.length = 0;
    await client.batch(requests.map(toBatchRequest));
    if (frames.length !== 1) throw new Error(`${name}: expected one exchange, saw ${frames.length}`);
    entries.push({ name, version: client.protocolVersion!, batchBase, requests, response: frames[0]!.toString('hex') });
  };
  try {
    frames.length = 0;
    await client.connect();
    entries.push({
      name: 'DiscoverVersions',
      version: { major: 1, minor: 2 },
      batchBase: 0,
      requests: [{ op: 'discoverVersions', request: { versions: [{ major: 1, minor: 2 }] } }],
      response: frames[0]!.toString('hex'),
    });
    await record('Query', [
      { op: 'query', request: { functions: [QueryFunction.QueryOperations, QueryFunction.QueryObjects] } },
    ]);
    const createRequest = {
      algorithm: CryptographicAlgorithm.AES,
      length: 256,
      usageMask: UsageMask.Encrypt | UsageMask.Decrypt,
      name: 'kmip-agent/fuzz/aes',
      objectGroup: 'kmip-agent/fuzz',
    };
    await record('Create', [{ op: 'create', request: createRequest }]);
    const created = await client.create(createRequest);
    const keyId = created.uniqueIdentifier;
    const secret = await client.register({ kind: 'secret-data', secret: randomBytes(32), name: 'kmip-agent/fuzz/pin' });
    const secretId = secret.uniqueIdentifier;
    await record('Get symmetric key', [{ op: 'get', request: { uniqueIdentifier: keyId } }]);
    await record('Get secret data', [{ op: 'get', request: { uniqueIdentifier: secretId } }]);
    await record('Get unknown UID', [{ op: 'get', request: { uniqueIdentifier: '999999' } }]);
    await record('GetAttributes', [{ op: 'getAttributes', request: { uniqueIdentifier: keyId } }]);
    await record('GetAttributeList', [{ op: 'getAttributeList', request: { uniqueIdentifier: keyId } }]);
    await record('Locate by group', [{ op: 'locate', request: { objectGroup: 'kmip-agent/fuzz' } }]);
    await record('Activate', [{ op: 'activate', request: { uniqueIdentifier: keyId } }]);
    await record('Batch of 3 Gets', [
      { op: 'get', request: { uniqueIdentifier: keyId } },
      { op: 'get', request: { uniqueIdentifier: secretId } },
      { op: 'get', request: { uniqueIdentifier: '999999' } },
    ]);
    await record('Revoke', [
      { op: 'revoke', request: { uniqueIdentifier: keyId, reason: RevocationReasonCode.CessationOfOperation } },
    ]);
    await record('Destroy', [{ op: 'destroy', request: { uniqueIdentifier: keyId } }]);
    return entries;
  } finally {
    KmipConnection.prototype.exchange = exchange;
    client.close();
    await server.stop();
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const entries = await capture();
  writeFileSync(
    CORPUS_FILE,
    JSON.stringify({ capturedFrom: 'PyKMIP 0.10 (pykmip-server), KMIP 1.2', entries }, null, 2) + '\n',
  );
  console.log(`captured ${entries.length} PyKMIP response frames into ${CORPUS_FILE}`);
}
