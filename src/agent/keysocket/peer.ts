/**
 * Who is asking on the crypttab key socket: the peer's credentials (SO_PEERCRED) and the abstract
 * address systemd-cryptsetup binds before connecting, "\0<random>/cryptsetup/<volume>" (crypttab(5),
 * "AF_UNIX key files"). Node exposes neither, so the addon's `unixsocket` module reads them.
 */
import type { Socket } from 'node:net';
import { KmipAgentError } from '../../errors.js';
import { addonModule } from '../../native/addon.js';

export interface PeerInfo {
  pid: number;
  uid: number;
  gid: number;
  /** sun_path bytes; an abstract address keeps its leading NUL. */
  address: Buffer;
  abstract: boolean;
}

interface UnixSocketNative {
  peerInfo(fd: number): PeerInfo;
}

/** The fd behind a connected net.Socket (libuv keeps it on the handle; Node has no public accessor). */
function socketFd(socket: Socket): number {
  const fd = (socket as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) throw new KmipAgentError('the socket has no file descriptor', 'SOCKET_NO_FD');
  return fd;
}

export function peerInfo(socket: Socket): PeerInfo {
  return addonModule<UnixSocketNative>('unixsocket').peerInfo(socketFd(socket));
}

/** What a peer address asks for: a plain key for `volume`, or a kind of request the agent does not serve. */
export type CryptsetupRequest =
  { kind: 'key'; volume: string } | { kind: 'unsupported'; requestType: string; volume: string } | { kind: 'invalid' };

const REQUEST = /^([A-Za-z0-9]+)\/(cryptsetup(?:-[a-z0-9]+)?)\/([^/\0]{1,127})$/;

/**
 * Parses "\0<random>/cryptsetup/<volume>". The PKCS#11, FIDO2 and TPM2 paths of systemd-cryptsetup
 * ask for encrypted key material under "/cryptsetup-pkcs11/" etc.; the agent serves plain keys only.
 */
export function parseCryptsetupAddress(peer: Pick<PeerInfo, 'address' | 'abstract'>): CryptsetupRequest {
  if (!peer.abstract || peer.address.length < 2) return { kind: 'invalid' };
  const name = peer.address.subarray(1).toString('utf8');
  const match = REQUEST.exec(name);
  if (!match) return { kind: 'invalid' };
  const [, , requestType, volume] = match;
  return requestType === 'cryptsetup' ? { kind: 'key', volume } : { kind: 'unsupported', requestType, volume };
}
