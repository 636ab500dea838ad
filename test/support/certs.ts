/**
 * Test fixture: a throwaway PKI made with the openssl CLI for each test run: a CA, a server
 * certificate (SAN IP:127.0.0.1 + DNS:localhost, EKU serverAuth) and client certificates (EKU
 * clientAuth, or deliberately without it). EC P-256 keys, which PyKMIP's TLS 1.2 suites accept.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface Issued {
  cert: string;
  key: string;
  certPem: string;
  keyPem: string;
}

export interface CertOptions {
  /** Subject CN; PyKMIP uses it as the client's identity. */
  cn: string;
  /** extendedKeyUsage values, e.g. ['clientAuth']; empty for none. */
  eku?: string[];
  /** subjectAltName entries, e.g. ['IP:127.0.0.1', 'DNS:localhost']. */
  san?: string[];
  days?: number;
  /** Make a CA certificate (for intermediates). */
  isCa?: boolean;
  /** The key: EC P-256 by default; `{ rsa: bits }` or `{ curve: 'secp224r1' }` (weak-chain tests). */
  keyType?: KeyType;
  /** Signature digest, default sha256 (sha1 for weak-signature tests). */
  digest?: 'sha256' | 'sha1';
  /** Validity start, `YYYYMMDDHHMMSSZ` (e.g. in the future); issued with `openssl ca`, which can set it. */
  notBefore?: string;
}

export type KeyType = { rsa: number } | { curve: string };

function keyArgs(keyType: KeyType | undefined, out: string): string[] {
  if (keyType && 'rsa' in keyType)
    return ['genpkey', '-algorithm', 'RSA', '-pkeyopt', `rsa_keygen_bits:${keyType.rsa}`, '-out', out];
  return ['genpkey', '-algorithm', 'EC', '-pkeyopt', `ec_paramgen_curve:${keyType?.curve ?? 'P-256'}`, '-out', out];
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

export class TestCa {
  readonly dir: string;
  readonly cert: string;
  readonly key: string;
  private serial = 1;

  private constructor(dir: string, cert: string, key: string) {
    this.dir = dir;
    this.cert = cert;
    this.key = key;
  }

  /** The CA an earlier create() left in `dir` (e.g. a PyKMIP fixture's `<dir>/pki`), to issue more from it. */
  static open(dir: string): TestCa {
    return new TestCa(dir, join(dir, 'ca.crt'), join(dir, 'ca.key'));
  }

  /** A CA that signs with `intermediate` (a CA certificate this one issued), writing into the same directory. */
  under(intermediate: Issued): TestCa {
    return new TestCa(this.dir, intermediate.cert, intermediate.key);
  }

  /** A new self-signed root CA in `dir`. */
  static create(dir: string, cn = 'kmip-agent test CA'): TestCa {
    mkdirSync(dir, { recursive: true });
    const key = join(dir, 'ca.key');
    const cert = join(dir, 'ca.crt');
    openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', key], dir);
    openssl(
      [
        'req',
        '-x509',
        '-new',
        '-key',
        key,
        '-sha256',
        '-days',
        '3650',
        '-subj',
        `/CN=${cn}`,
        '-addext',
        'basicConstraints=critical,CA:TRUE',
        '-addext',
        'keyUsage=critical,keyCertSign,cRLSign',
        '-out',
        cert,
      ],
      dir,
    );
    return new TestCa(dir, cert, key);
  }

  /** Issues a certificate signed by this CA; files are named after `name`. */
  issue(name: string, options: CertOptions): Issued {
    const key = join(this.dir, `${name}.key`);
    const csr = join(this.dir, `${name}.csr`);
    openssl(keyArgs(options.keyType, key), this.dir);
    openssl(['req', '-new', '-key', key, '-subj', `/CN=${options.cn}`, '-out', csr], this.dir);
    const cert = this.sign(name, csr, options);
    return { cert, key, certPem: readText(cert), keyPem: readText(key) };
  }

  /**
   * Signs a certificate request made elsewhere (e.g. by `kmip-agent cert generate`) as `openssl x509 -req`
   * does for a CA: the request's own extensions are ignored, `options` (eku, san, days, digest) decide;
   * `options.cn` is unused (the subject is the request's); `keyType` says which key usages to grant.
   * Returns the certificate's path (`<name>.crt`).
   */
  sign(name: string, csr: string, options: Omit<CertOptions, 'cn'> & { cn?: string }): string {
    const cert = join(this.dir, `${name}.crt`);
    const ext = join(this.dir, `${name}.ext`);
    const lines = [options.isCa ? 'basicConstraints=critical,CA:TRUE' : 'basicConstraints=critical,CA:FALSE'];
    const rsa = options.keyType !== undefined && 'rsa' in options.keyType;
    lines.push(
      options.isCa
        ? 'keyUsage=critical,keyCertSign,cRLSign'
        : `keyUsage=critical,digitalSignature,${rsa ? 'keyEncipherment' : 'keyAgreement'}`,
    );
    if (options.eku && options.eku.length > 0) lines.push(`extendedKeyUsage=${options.eku.join(',')}`);
    if (options.san && options.san.length > 0) lines.push(`subjectAltName=${options.san.join(',')}`);
    writeFileSync(ext, lines.join('\n') + '\n');
    if (options.notBefore !== undefined) {
      this.issueWithCa(name, csr, ext, cert, options);
      return cert;
    }
    openssl(
      [
        'x509',
        '-req',
        '-in',
        csr,
        '-CA',
        this.cert,
        '-CAkey',
        this.key,
        '-set_serial',
        String(this.serial++ + 1000),
        '-days',
        String(options.days ?? 30),
        `-${options.digest ?? 'sha256'}`,
        '-extfile',
        ext,
        '-out',
        cert,
      ],
      this.dir,
    );
    return cert;
  }

  /** `openssl x509 -req` (3.0) cannot set the start date; `openssl ca` can, given a minimal database. */
  private issueWithCa(
    name: string,
    csr: string,
    ext: string,
    cert: string,
    options: Pick<CertOptions, 'digest' | 'notBefore'>,
  ): void {
    const db = join(this.dir, `${name}.db`);
    mkdirSync(db, { recursive: true });
    writeFileSync(join(db, 'index.txt'), '');
    writeFileSync(join(db, 'serial'), String(this.serial++ + 1000) + '\n');
    const config = join(db, 'ca.cnf');
    writeFileSync(
      config,
      [
        '[ca]',
        'default_ca = test',
        '[test]',
        `database = ${join(db, 'index.txt')}`,
        `new_certs_dir = ${db}`,
        `serial = ${join(db, 'serial')}`,
        `default_md = ${options.digest ?? 'sha256'}`,
        'policy = any',
        'unique_subject = no',
        '[any]',
        'commonName = supplied',
        '',
      ].join('\n'),
    );
    const start = options.notBefore!;
    const end = `${String(Number(start.slice(0, 4)) + 1)}${start.slice(4)}`;
    openssl(
      [
        'ca',
        '-batch',
        '-notext',
        '-config',
        config,
        '-cert',
        this.cert,
        '-keyfile',
        this.key,
        '-in',
        csr,
        '-out',
        cert,
        '-startdate',
        start,
        '-enddate',
        end,
        '-extfile',
        ext,
      ],
      this.dir,
    );
  }
}

function readText(path: string): string {
  return readFileSync(path, 'utf8');
}

export interface TestPki {
  ca: TestCa;
  server: Issued;
  client: Issued;
}

/**
 * The standard set: CA, server cert for 127.0.0.1/localhost, client cert with clientAuth. Valid for a year,
 * well outside the 30-day expiry warning, so appliances set up with them start without CertificateExpiring.
 */
export function makeTestPki(dir: string, clientCn = 'kmip-agent-test-client'): TestPki {
  const ca = TestCa.create(dir);
  const server = ca.issue('server', {
    cn: 'localhost',
    eku: ['serverAuth'],
    san: ['IP:127.0.0.1', 'DNS:localhost'],
    days: 365,
  });
  const client = ca.issue('client', { cn: clientCn, eku: ['clientAuth'], days: 365 });
  return { ca, server, client };
}
