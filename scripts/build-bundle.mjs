#!/usr/bin/env node
/**
 * Builds the shipped CLI and daemon, dist/kmip-agent.mjs, bundled by esbuild from the tsc output
 * (dist/src/cli/main.js and everything it imports, dependencies included). Node's module loader resolving,
 * reading and linking ~300 files was over half of a CLI start. The code the CLI imports lazily (each
 * command's module, pino, the x509 stack of `cert`, systeminformation of `drive list`) is split into chunks
 * beside it, dist/kmip-agent/*.mjs, each read only when first imported: a command reads its own few files,
 * and the daemon holds 1.2 MB of source instead of 2.8 MB (V8 keeps a module's source for its lifetime).
 * What stays outside: the C++ addon (loaded from packageRoot()/build/Release, as from dist/src) and what
 * the code loads with createRequire on purpose (fast-xml-parser, an optional peer of the KMIP library).
 *
 *   node scripts/build-bundle.mjs              build (run by `npm run build:bundle`, `npm run build`, setup.sh)
 *   node scripts/build-bundle.mjs --if-stale   build only if an input changed since the last build (tests)
 *
 * Names are kept (--keep-names: error names and stack frames read as in dist/src) and the code is not
 * minified, so a stack trace names the function and its source module (esbuild's `// dist/src/...` markers).
 * The source maps (*.mjs.map, back to src/*.ts through tsc's maps) are for debugging only:
 * `node --enable-source-maps dist/kmip-agent.mjs ...`; Node reads them only with that flag, which would cost
 * every start.
 */
import { chmodSync, existsSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const entry = join(root, 'dist', 'src', 'cli', 'main.js');
const bundlePath = join(root, 'dist', 'kmip-agent.mjs');
const chunksDir = join(root, 'dist', 'kmip-agent');
/** The inputs of the last build (paths relative to the root), to tell whether it is stale. */
const inputsPath = join(chunksDir, 'inputs.json');

/** True when the bundle is missing or one of its last inputs (or this script, or an npm install) is newer than it, or gone. */
function stale() {
  if (!existsSync(bundlePath) || !existsSync(inputsPath)) return true;
  const built = statSync(bundlePath).mtimeMs;
  const inputs = JSON.parse(readFileSync(inputsPath, 'utf8'));
  // npm keeps packages' own mtimes (often 1985): an install shows in its lock file's instead.
  const installed = join(root, 'node_modules', '.package-lock.json');
  const checked = [fileURLToPath(import.meta.url), installed, entry, ...inputs.map((p) => join(root, p))];
  return checked.some((p) => !existsSync(p) || statSync(p).mtimeMs > built);
}

/**
 * V8 keeps a module's source for its lifetime, one byte per character only if every character is Latin-1:
 * one em dash in a comment made the bundle's whole source UTF-16 (twice the memory).
 * esbuild escapes strings but keeps comments and regular expressions as written, so what is left beyond
 * U+00FF is escaped here (\uXXXX means the same in all of those; positions in the map move on that line only).
 */
function latin1Only(path) {
  const text = readFileSync(path, 'utf8');
  const escaped = text.replace(/[\u0100-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  if (escaped !== text) writeFileSync(path, escaped);
}

/**
 * prom-client's index also loads its cluster aggregator, push gateway and default metrics (Node's cluster,
 * http, zlib, perf_hooks): 140 KB of source and, in a process of its own, 4.5 MiB of RSS for nothing the agent
 * uses (0.8 MiB in the daemon, which loads http and perf_hooks itself). The bundle takes the four classes
 * the agent imports from their own modules instead; this is an ES module, so importing any other name
 * from 'prom-client' fails the build rather than being undefined at run time.
 */
const PROM_CLIENT_CLASSES = `
export { default as Registry } from 'prom-client/lib/registry.js';
export { default as Counter } from 'prom-client/lib/counter.js';
export { default as Gauge } from 'prom-client/lib/gauge.js';
export { default as Histogram } from 'prom-client/lib/histogram.js';
`;
const promClientClasses = {
  name: 'prom-client-classes',
  setup(build) {
    build.onResolve({ filter: /^prom-client$/ }, () => ({ path: 'prom-client', namespace: 'prom-client-classes' }));
    build.onLoad({ filter: /.*/, namespace: 'prom-client-classes' }, () => ({
      contents: PROM_CLIENT_CLASSES,
      resolveDir: root,
      loader: 'js',
    }));
  },
};

if (!existsSync(entry)) {
  console.error(`build-bundle: ${entry} is missing: compile the TypeScript first (npm run build:ts)`);
  process.exit(1);
}
if (!process.argv.includes('--if-stale') || stale()) {
  rmSync(chunksDir, { recursive: true, force: true }); // chunk names carry a content hash: no stale ones left
  const { build } = await import('esbuild'); // only when building: the freshness check stays quick
  const result = await build({
    absWorkingDir: root,
    entryPoints: { 'kmip-agent': entry },
    outdir: join(root, 'dist'),
    chunkNames: 'kmip-agent/[name]-[hash]',
    outExtension: { '.js': '.mjs' },
    bundle: true,
    splitting: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    keepNames: true,
    sourcemap: 'linked',
    metafile: true,
    // The addon is a native file found at run time, never bundled.
    external: ['*.node'],
    plugins: [promClientClasses],
    // Dependencies written as CommonJS call require() for Node's builtins; an ES module has none of its own.
    banner: {
      js: "import { createRequire as __kmipAgentCreateRequire } from 'node:module';\nconst require = __kmipAgentCreateRequire(import.meta.url);",
    },
    logLevel: 'warning',
  });
  for (const output of Object.keys(result.metafile.outputs))
    if (output.endsWith('.mjs')) latin1Only(join(root, output));
  chmodSync(bundlePath, 0o755);
  // Files only: the plugin's module (namespace:path) has no file to compare.
  const files = Object.keys(result.metafile.inputs).filter((input) => !/^[\w-]+:/.test(input));
  writeFileSync(inputsPath, JSON.stringify(files) + '\n');
}
