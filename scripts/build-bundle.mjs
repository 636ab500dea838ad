#!/usr/bin/env node
/**
 * Builds the shipped CLI and daemon, dist/kmip-agent.mjs: one ES module bundled by esbuild from the tsc
 * output (dist/src/cli/main.js and everything it imports, dependencies included). Node's module loader
 * resolving, reading and linking ~300 files was over half of a CLI start; one file is read and compiled
 * once. What stays outside: the C++ addon (loaded from packageRoot()/build/Release, as from dist/src) and
 * what the code loads with createRequire on purpose (fast-xml-parser, an optional peer of the KMIP library).
 *
 *   node scripts/build-bundle.mjs              build (run by `npm run build:bundle`, `npm run build`, setup.sh)
 *   node scripts/build-bundle.mjs --if-stale   build only if an input changed since the last build (tests)
 *
 * Names are kept (--keep-names: error names and stack frames read as in dist/src) and the code is not
 * minified, so a stack trace names the function and its source module (esbuild's `// dist/src/...` markers).
 * The source map (dist/kmip-agent.mjs.map, back to src/*.ts through tsc's maps) is for debugging only:
 * `node --enable-source-maps dist/kmip-agent.mjs ...`; Node reads it only with that flag, which would cost
 * every start.
 */
import { build } from 'esbuild';
import { chmodSync, existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const entry = join(root, 'dist', 'src', 'cli', 'main.js');
const bundlePath = join(root, 'dist', 'kmip-agent.mjs');
/** The inputs of the last build (paths relative to the root), to tell whether it is stale. */
const inputsPath = join(root, 'dist', 'kmip-agent.inputs.json');

/** True when the bundle is missing or one of its last inputs (or the entry) is newer than it, or gone. */
function stale() {
  if (!existsSync(bundlePath) || !existsSync(inputsPath)) return true;
  const built = statSync(bundlePath).mtimeMs;
  const inputs = JSON.parse(readFileSync(inputsPath, 'utf8'));
  return [entry, ...inputs.map((p) => join(root, p))].some((p) => !existsSync(p) || statSync(p).mtimeMs > built);
}

/**
 * V8 keeps a script's source for its lifetime, one byte per character only if every character is Latin-1:
 * one em dash in a comment would make the daemon hold the whole bundle as UTF-16 (6 MB instead of 3).
 * esbuild escapes strings but keeps comments and regular expressions as written, so what is left beyond
 * U+00FF is escaped here (\uXXXX means the same in all of those; positions in the map move on that line only).
 */
function latin1Only(path) {
  const text = readFileSync(path, 'utf8');
  const escaped = text.replace(/[^\u0000-\u00ff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  if (escaped !== text) writeFileSync(path, escaped);
}

/**
 * prom-client's index also loads its cluster aggregator, push gateway and default metrics (Node's cluster,
 * http, zlib, perf_hooks): 4.5 MiB of the daemon's RSS for nothing it uses. The bundle takes the four classes
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
  const result = await build({
    absWorkingDir: root,
    entryPoints: [entry],
    outfile: bundlePath,
    bundle: true,
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
  latin1Only(bundlePath);
  chmodSync(bundlePath, 0o755);
  writeFileSync(inputsPath, JSON.stringify(Object.keys(result.metafile.inputs)) + '\n');
}
