/**
 * Builds the test-only TCMU handler (test/vm/tcmu/tcmu_opal.cc with the emulator's and TCG codec's
 * sources) on the host into build/vm/tcmu-opal, where the guest finds it through the 9p-shared checkout
 * (the guest is bookworm like the host, so the binary runs there). Rebuilt when a source is newer.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { packageRoot } from '../../src/native/addon.js';

const ROOT = packageRoot();
export const TCMU_HANDLER = join(ROOT, 'build', 'vm', 'tcmu-opal');
const SOURCES = [
  'test/vm/tcmu/tcmu_opal.cc',
  'test/vm/tcmu/ring_abi.c',
  'native/emulator/drive.cc',
  'native/emulator/drive_state.cc',
  'native/emulator/emu_crypto.cc',
  'native/emulator/tper.cc',
  'native/tcg/discovery.cc',
  'native/tcg/packet.cc',
  'native/tcg/tokens.cc',
  'native/tcg/status.cc',
];

export function ensureTcmuHandler(): string {
  const newest = Math.max(
    ...SOURCES.map((s) => statSync(join(ROOT, s)).mtimeMs),
    ...['native/emulator', 'native/tcg', 'native/core'].flatMap((d) =>
      spawnSync('find', [join(ROOT, d), '-name', '*.h'], { encoding: 'utf8' })
        .stdout.split('\n')
        .filter(Boolean)
        .map((h) => statSync(h).mtimeMs),
    ),
  );
  if (existsSync(TCMU_HANDLER) && statSync(TCMU_HANDLER).mtimeMs > newest) return TCMU_HANDLER;
  mkdirSync(join(ROOT, 'build', 'vm'), { recursive: true });
  const napiInclude = (createRequire(import.meta.url)('node-addon-api') as { include_dir: string }).include_dir;
  // native/core/errors.h declares the addon's N-API helpers; --gc-sections drops them, unused here.
  // The kernel's TCMU header compiles as C only: ring_abi.c is built apart and linked in.
  const abiObject = join(ROOT, 'build', 'vm', 'ring_abi.o');
  const abi = spawnSync('gcc', ['-O1', '-c', join(ROOT, 'test/vm/tcmu/ring_abi.c'), '-o', abiObject], {
    encoding: 'utf8',
  });
  if (abi.status !== 0) throw new Error(`test/vm/tcmu/ring_abi.c did not build:\n${abi.stderr}${abi.error ?? ''}`);
  const args = [
    '-std=c++17',
    '-O1',
    '-Wall',
    '-Wextra',
    '-Wno-unused-parameter',
    '-ffunction-sections',
    '-fdata-sections',
    '-Wl,--gc-sections',
    `-I${join(ROOT, 'native')}`,
    '-I/usr/include/node',
    `-I${napiInclude}`,
    '-DNAPI_VERSION=8',
    '-DNAPI_DISABLE_CPP_EXCEPTIONS',
    ...SOURCES.filter((s) => s.endsWith('.cc')).map((s) => join(ROOT, s)),
    abiObject,
    '-lcrypto',
    '-o',
    TCMU_HANDLER,
  ];
  const built = spawnSync('g++', args, { encoding: 'utf8', timeout: 600_000 });
  if (built.status !== 0)
    throw new Error(`the TCMU handler did not build:\n${`${built.stderr}${built.error ?? ''}`.slice(-3000)}`);
  return TCMU_HANDLER;
}
