/**
 * Test fixture: a client that asks for a key the way systemd-cryptsetup does (crypttab(5), "AF_UNIX
 * key files"): bind an AF_UNIX stream socket to the abstract name "\0<random>/cryptsetup/<volume>",
 * connect to the key socket, read until EOF. Python's socket module can bind abstract names; Node's
 * cannot. Runs asynchronously so the server under test, in this process, can answer.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';

const CLIENT = `
import json, os, socket, sys
path, source, uid, half_close = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == '1'
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
if source.startswith('/'):
    s.bind(source)
elif source:
    s.bind('\\0' + source)
if uid >= 0:
    os.setgid(uid)
    os.setuid(uid)
try:
    s.connect(path)
except OSError as e:
    print(json.dumps({"pid": os.getpid(), "error": e.errno}))
    sys.exit(0)
if half_close:
    s.shutdown(socket.SHUT_WR)
data = b''
while True:
    chunk = s.recv(4096)
    if not chunk:
        break
    data += chunk
print(json.dumps({"pid": os.getpid(), "key": data.hex()}))
`;

export interface ClientResult {
  pid: number;
  /** What the server sent before EOF. */
  key?: Buffer;
  /** errno of a failed connect. */
  error?: number;
}

export interface ClientOptions {
  /** The part after "/" in the abstract name: "cryptsetup" (default), "cryptsetup-pkcs11", ... */
  requestType?: string;
  /** Connect without binding a name first (an anonymous peer). */
  unnamed?: boolean;
  /** Bind to this filesystem path instead of an abstract name. */
  bindPath?: string;
  /** Drop to this uid (and gid) after binding, before connecting. */
  uid?: number;
  /** Shut down the sending side right after connecting, as systemd-cryptsetup (252) does. */
  halfClose?: boolean;
}

export async function requestKey(
  socketPath: string,
  volume: string,
  options: ClientOptions = {},
): Promise<ClientResult> {
  const random = randomBytes(8).toString('hex');
  const source =
    options.bindPath ?? (options.unnamed ? '' : `${random}/${options.requestType ?? 'cryptsetup'}/${volume}`);
  const stdout = await new Promise<string>((resolve, reject) =>
    execFile(
      '/usr/bin/python3',
      ['-c', CLIENT, socketPath, source, String(options.uid ?? -1), options.halfClose ? '1' : '0'],
      { timeout: 20_000 },
      (error, out) => (error ? reject(error) : resolve(out)),
    ),
  );
  const parsed = JSON.parse(stdout) as { pid: number; key?: string; error?: number };
  return {
    pid: parsed.pid,
    ...(parsed.key !== undefined ? { key: Buffer.from(parsed.key, 'hex') } : {}),
    ...(parsed.error !== undefined ? { error: parsed.error } : {}),
  };
}
