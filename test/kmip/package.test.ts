/**
 * The standalone KMIP package (@kmip-agent/kmip-client): built from src/kmip by the build script, packed
 * with `npm pack`, installed from the tarball into an empty directory with `--ignore-scripts --offline`
 * (no compiler, no dependency), then its README example runs there as a script against the real PyKMIP
 * server. A script that forgets close() must still exit.
 */
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import { execFile, execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, sep } from 'node:path';
import { packageRoot } from '../../src/native/addon.js';

const server = inject('pykmip');
const PACKAGE = '@kmip-agent/kmip-client';

let dir: string;
let app: string;
let tarball: string;

/** npm without network, audit, funding or update checks (the registry is not reachable from tests). */
const NPM_ENV = {
  ...process.env,
  npm_config_audit: 'false',
  npm_config_fund: 'false',
  npm_config_update_notifier: 'false',
};

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'kmip-agent-package-'));
  const staging = join(dir, 'staging');
  execFileSync(process.execPath, [join(packageRoot(), 'scripts', 'build-kmip-package.mjs'), '--out', staging], {
    stdio: 'pipe',
  });
  execFileSync('npm', ['pack', '--pack-destination', dir], { cwd: staging, env: NPM_ENV, stdio: 'pipe' });
  tarball = join(
    dir,
    readdirSync(dir).find((f) => f.endsWith('.tgz'))!,
  );
  app = join(dir, 'app');
  mkdirSync(app);
  execFileSync('npm', ['install', '--ignore-scripts', '--offline', tarball], { cwd: app, env: NPM_ENV, stdio: 'pipe' });
}, 120_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Runs `node file` in the app directory with the PyKMIP fixture's address and credentials. */
function run(file: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(
      process.execPath,
      [file],
      {
        cwd: app,
        env: {
          ...process.env,
          KMIP_HOST: server.host,
          KMIP_PORT: String(server.port),
          KMIP_CA: server.ca,
          KMIP_CERT: server.clientCert,
          KMIP_KEY: server.clientKey,
        },
      },
      (_error, stdout, stderr) => resolve({ code: child.exitCode, stdout, stderr }),
    );
  });
}

/** The first ```js block after the README's "## Example" heading. */
function readmeExample(readme: string): string {
  const section = readme.slice(readme.indexOf('## Example'));
  const match = /```js\n([\s\S]*?)```/.exec(section);
  if (!match) throw new Error('the README has no js example');
  return match[1]!;
}

describe('the standalone KMIP package', () => {
  test('src/kmip imports nothing outside itself but node: modules (and the optional XML parser, lazily)', () => {
    const library = join(packageRoot(), 'src', 'kmip');
    const outside: string[] = [];
    const walk = (folder: string): void => {
      for (const entry of readdirSync(folder, { withFileTypes: true })) {
        const path = join(folder, entry.name);
        if (entry.isDirectory()) walk(path);
        else if (entry.name.endsWith('.ts'))
          for (const [, specifier] of readFileSync(path, 'utf8').matchAll(/(?:from|import)\s*\(?\s*'([^']+)'/g)) {
            const inside = specifier!.startsWith('.') && resolve(folder, specifier!).startsWith(library + sep);
            if (!inside && !specifier!.startsWith('node:') && specifier !== 'fast-xml-parser')
              outside.push(`${path}: ${specifier}`);
          }
      }
    };
    walk(library);
    expect(outside).toEqual([]);
  });

  test('the tarball holds compiled JS, typings, README and manifest: no native code, no scripts, no dependencies', () => {
    const files = execFileSync('tar', ['-tzf', tarball], { encoding: 'utf8' }).trim().split('\n');
    expect(files).toEqual(expect.arrayContaining(['package/package.json', 'package/README.md']));
    expect(files).toEqual(expect.arrayContaining(['package/dist/index.js', 'package/dist/index.d.ts']));
    expect(files.filter((f) => !/^package\/(package\.json|README\.md|dist\/.+\.(js|d\.ts))$/.test(f))).toEqual([]);
    expect(files.some((f) => f.endsWith('.node') || f.includes('binding.gyp'))).toBe(false);
    const manifest = JSON.parse(readFileSync(join(app, 'node_modules', PACKAGE, 'package.json'), 'utf8'));
    expect(manifest).toMatchObject({ name: PACKAGE, type: 'module' });
    expect(manifest.version).toBe(JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')).version);
    expect(manifest.dependencies).toBeUndefined();
    expect(manifest.scripts).toBeUndefined();
    expect(manifest.gypfile).toBeUndefined();
    // Only the package itself was installed.
    expect(readdirSync(join(app, 'node_modules')).filter((d) => !d.startsWith('.'))).toEqual(['@kmip-agent']);
  });

  test('the README example runs against PyKMIP and closes the client', async () => {
    const readme = readFileSync(join(app, 'node_modules', PACKAGE, 'README.md'), 'utf8');
    expect(readme).toBe(readFileSync(join(packageRoot(), 'src', 'kmip', 'README.md'), 'utf8'));
    const example = readmeExample(readme);
    expect(example).toContain('client.close()');
    writeFileSync(join(app, 'example.mjs'), example);
    const result = await run('example.mjs');
    expect(result.stderr).toBe('');
    expect(result.stdout).toMatch(/^\S+ SecretData 28\n$/);
    expect(result.code).toBe(0);
  });

  test('a script that forgets close() still exits (idle sockets do not hold the process)', async () => {
    writeFileSync(
      join(app, 'forgets-close.mjs'),
      [
        "import { readFileSync } from 'node:fs';",
        `import { KmipClient, KmipProvider } from '${PACKAGE}';`,
        'const env = process.env;',
        'const tls = { ca: readFileSync(env.KMIP_CA), cert: readFileSync(env.KMIP_CERT), key: readFileSync(env.KMIP_KEY) };',
        'const client = new KmipClient({ host: env.KMIP_HOST, port: Number(env.KMIP_PORT), ...tls });',
        'const provider = new KmipProvider({ servers: [{ host: env.KMIP_HOST, port: Number(env.KMIP_PORT) }], ...tls });',
        'const [a, b] = await Promise.all([client.query([1]), provider.query([1])]);',
        "console.log(a.operationNames.includes('Get'), b.operationNames.includes('Get'));",
        '// no close(): the process must exit by itself',
        '',
      ].join('\n'),
    );
    // A hang shows as this test's timeout, not as a timing assertion.
    const result = await run('forgets-close.mjs');
    expect(result.stderr).toBe('');
    expect(result.stdout).toBe('true true\n');
    expect(result.code).toBe(0);
  });

  test('the XML reader is optional: without fast-xml-parser installed it says what to install', async () => {
    writeFileSync(
      join(app, 'xml.mjs'),
      [
        `import { ttlv } from '${PACKAGE}';`,
        'const item = { tag: ttlv.Tag.ObjectType, type: ttlv.ItemType.Enumeration, value: 2 };',
        'console.log(ttlv.toXml(item));',
        'try { ttlv.fromXml(\'<ObjectType type="Enumeration" value="SymmetricKey"/>\'); } catch (e) { console.log(e.code); }',
        '',
      ].join('\n'),
    );
    const result = await run('xml.mjs');
    expect(result.stdout).toBe(
      '<ObjectType type="Enumeration" value="SymmetricKey"/>\n\nKMIP_TTLV_XML_PARSER_MISSING\n',
    );
    expect(result.code).toBe(0);
  });
});
