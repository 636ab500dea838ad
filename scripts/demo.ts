/**
 * The main job, end to end on one machine: a real PyKMIP server with a throwaway PKI, then what
 * kmip-agent can do against it today. It grows into the full boot-unlock demo (keys from KMIP,
 * emulated Opal drives and LUKS2 volumes unlocked) as those parts land; every step printed is real.
 */
import { readFileSync } from 'node:fs';
import { connect } from 'node:tls';
import { startPykmip, type PykmipServer } from '../test/support/pykmip.js';
import { loadAddon } from '../src/native/addon.js';

function step(text: string): void {
  console.log(`demo: ${text}`);
}

async function mutualTlsHandshake(server: PykmipServer): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({
      host: server.host,
      port: server.port,
      servername: 'localhost',
      ca: readFileSync(server.ca),
      cert: readFileSync(server.clientCert),
      key: readFileSync(server.clientKey),
    });
    socket.once('secureConnect', () => {
      const summary = `${socket.getProtocol()} ${socket.getCipher().name}, server ${socket.getPeerCertificate().subject.CN} verified`;
      socket.destroy();
      resolve(summary);
    });
    socket.once('error', reject);
  });
}

async function main(): Promise<void> {
  step(`kmip-agent addon ${loadAddon().version()} loaded`);
  step('starting PyKMIP (Debian python3-pykmip) with a throwaway CA, server and client certificates');
  const server = await startPykmip();
  try {
    step(`PyKMIP listening on ${server.host}:${server.port}`);
    step(`mutual TLS: ${await mutualTlsHandshake(server)}`);
    step('done: the KMIP round trip and boot unlock are added here as they land (see README)');
  } finally {
    await server.stop();
    step('PyKMIP stopped and its temporary files removed');
  }
}

main().catch((error: unknown) => {
  console.error(`demo: failed: ${error instanceof Error ? error.message : String(error)}`);
  process.exitCode = 1;
});
