#!/usr/bin/env node
/**
 * Builds the standalone KMIP npm package (@kmip-agent/kmip-client) from src/kmip: compiles that folder
 * alone with its own tsconfig (an import from outside it fails the build), and adds the manifest
 * template (version from the root package.json) and the library README. No second copy of the code.
 *
 *   node scripts/build-kmip-package.mjs [--out DIR]      default DIR: dist/kmip-package
 *   cd DIR && npm pack                                    -> kmip-agent-kmip-client-<version>.tgz
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const library = join(root, 'src', 'kmip');
const outFlag = process.argv.indexOf('--out');
const out = resolve(outFlag > 0 ? process.argv[outFlag + 1] : join(root, 'dist', 'kmip-package'));

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
execFileSync(process.execPath, [tsc, '-p', join(library, 'tsconfig.package.json'), '--outDir', join(out, 'dist')], {
  stdio: 'inherit',
});

const manifest = JSON.parse(readFileSync(join(library, 'npm-package.json'), 'utf8'));
manifest.version = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version;
writeFileSync(join(out, 'package.json'), JSON.stringify(manifest, null, 2) + '\n');
copyFileSync(join(library, 'README.md'), join(out, 'README.md'));
// The manifest template and tsconfig are build inputs, not package content.
for (const input of ['npm-package.json', 'tsconfig.package.json']) rmSync(join(out, 'dist', input), { force: true });
console.log(out);
