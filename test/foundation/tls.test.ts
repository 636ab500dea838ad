import { readFileSync } from 'node:fs';
import { connect, type ConnectionOptions, type TLSSocket } from 'node:tls';
import { describe, expect, inject, it } from 'vitest';

function handshake(options: ConnectionOptions): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = connect(options);
    socket.once('secureConnect', () => resolve(socket));
    socket.once('error', reject);
  });
}

describe('PyKMIP fixture over mutual TLS', () => {
  const server = inject('pykmip');

  it('accepts a handshake with the client certificate and verifies the server name and chain', async () => {
    const socket = await handshake({
      host: server.host,
      port: server.port,
      servername: 'localhost',
      ca: readFileSync(server.ca),
      cert: readFileSync(server.clientCert),
      key: readFileSync(server.clientKey),
    });
    expect(socket.authorized).toBe(true);
    expect(socket.getProtocol()).toBe('TLSv1.2');
    expect(socket.getPeerCertificate().subject.CN).toBe('localhost');
    socket.destroy();
  });

  it('refuses the server when the CA is not trusted', async () => {
    await expect(
      handshake({
        host: server.host,
        port: server.port,
        servername: 'localhost',
        cert: readFileSync(server.clientCert),
        key: readFileSync(server.clientKey),
      }),
    ).rejects.toMatchObject({
      code: expect.stringMatching(
        /^(SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT_LOCALLY)$/,
      ),
    });
  });

  it('refuses a server name the certificate does not carry', async () => {
    await expect(
      handshake({
        host: server.host,
        port: server.port,
        servername: 'kms.example.com',
        ca: readFileSync(server.ca),
        cert: readFileSync(server.clientCert),
        key: readFileSync(server.clientKey),
      }),
    ).rejects.toMatchObject({ code: 'ERR_TLS_CERT_ALTNAME_INVALID' });
  });
});
