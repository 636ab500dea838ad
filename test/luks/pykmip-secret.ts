/**
 * Test fixture: stores and fetches a volume key in the real PyKMIP server with PyKMIP's own Python
 * client (ProxyKmipClient), as Secret Data of type Password named like the agent's key model
 * (`kmip-agent/<applianceId>/<volumeId>`). Stand-in until kmip-agent's own KMIP client is merged:
 * then the LUKS tests should fetch keys through it instead.
 */
import { execFile } from 'node:child_process';
import type { PykmipServerInfo } from '../support/pykmip.js';
import { PYKMIP_PYTHON } from '../support/pykmip.js';

const SCRIPT = `
import binascii, json, sys, warnings
warnings.simplefilter('ignore')
from kmip.core import enums
from kmip.pie import objects
from kmip.pie.client import ProxyKmipClient
host, port, cert, key, ca, op, arg = sys.argv[1:8]
client = ProxyKmipClient(hostname=host, port=int(port), cert=cert, key=key, ca=ca,
                         ssl_version='PROTOCOL_TLSv1_2', config_file='/dev/null',
                         kmip_version=enums.KMIPVersion.KMIP_1_2)
with client:
    if op == 'register':
        value = binascii.unhexlify(sys.stdin.read().strip())
        secret = objects.SecretData(value, enums.SecretDataType.PASSWORD, name=arg)
        uid = client.register(secret)
        client.activate(uid)
        print(json.dumps({'uid': uid}))
    elif op == 'get':
        secret = client.get(arg)
        print(json.dumps({'value': binascii.hexlify(secret.value).decode()}))
`;

/** Runs the client; a secret value goes through stdin (never argv, where `ps` would show it). */
function run(
  server: PykmipServerInfo,
  op: 'register' | 'get',
  arg: string,
  input = '',
): Promise<Record<string, string>> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      PYKMIP_PYTHON,
      ['-c', SCRIPT, server.host, String(server.port), server.clientCert, server.clientKey, server.ca, op, arg],
      { timeout: 30_000 },
      (error, stdout, stderr) => {
        if (error) reject(new Error(`PyKMIP client ${op} failed: ${error.message}\n${stderr}`));
        else resolve(JSON.parse(stdout.trim().split('\n').pop() ?? '{}') as Record<string, string>);
      },
    );
    child.stdin?.end(input);
  });
}

/** Registers `value` as Secret Data (Password) named `name`; returns its Unique Identifier. */
export async function registerSecret(server: PykmipServerInfo, name: string, value: Buffer): Promise<string> {
  return (await run(server, 'register', name, value.toString('hex'))).uid;
}

/** Fetches a secret's bytes by Unique Identifier. */
export async function getSecret(server: PykmipServerInfo, uid: string): Promise<Buffer> {
  return Buffer.from((await run(server, 'get', uid)).value, 'hex');
}
