/**
 * Test-only glue for the test addon (build/Release/kmip_agent_native_test.node, native/test/): the
 * production addon plus the seams tests drive the native code through (the `testSeams` module
 * typed here, and the `passthrough` module). Global setup points KMIP_AGENT_ADDON at it, so
 * `loadAddon()` in tests (and in the CLI processes they spawn) loads it.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { KernelOpalHandle } from '../../src/drives/kernel-opal.js';
import type { OpalBackend } from '../../src/drives/types.js';
import { addonModule, packageRoot } from '../../src/native/addon.js';

/** The shipped addon, which must carry no test seams. */
export function productionAddonPath(): string {
  return join(packageRoot(), 'build', 'Release', 'kmip_agent_native.node');
}

export function testAddonPath(): string {
  return join(packageRoot(), 'build', 'Release', 'kmip_agent_native_test.node');
}

/** The test addon's path, or an error that says how to build it. */
export function requireTestAddon(): string {
  const path = testAddonPath();
  if (!existsSync(path)) {
    throw new Error(
      `the test addon is not built (${path} is missing): run \`npm run build:addon\`, which builds both ` +
        'kmip_agent_native and kmip_agent_native_test',
    );
  }
  return path;
}

/** One scripted answer of the recording ioctl port: the return value, and bytes written back. */
export interface ScriptedAnswer {
  ret: number;
  structOut?: Buffer;
  bufferOut?: Buffer;
}

export interface RecordedIoctl {
  request: number;
  name: string | null;
  struct: Buffer;
}

type PassthroughKind = 'scsi' | 'ata' | 'nvme';

/** The test addon's `testSeams` module (native/test/*_seams.cc). */
export interface TestSeams {
  /** The tcg drive handle over a TPer answering from canned responses (after `discovery`). */
  openScriptedDrive(discovery: Buffer, responses: Buffer[]): OpalBackend & { sent(): Buffer[] };
  /** The tcg drive handle over pass-through to the fixture device in front of an emulated image. */
  openPassthroughFixture(kind: PassthroughKind, image: string): OpalBackend & { commands(): Record<string, number> };
  /** The kernelOpal handle over the recording ioctl port. */
  openScriptedKernelOpal(answers: ScriptedAnswer[]): KernelOpalHandle & { calls(): RecordedIoctl[] };
}

export function testSeams(): TestSeams {
  return addonModule<TestSeams>('testSeams');
}

/**
 * The scripted kernelOpal handle with a `calls` array that is brought up to date whenever an
 * operation settles (the recording is read between calls, when no worker runs).
 */
export function recordingKernelOpal(answers: ScriptedAnswer[]): { handle: KernelOpalHandle; calls: RecordedIoctl[] } {
  const scripted = testSeams().openScriptedKernelOpal(answers);
  const calls: RecordedIoctl[] = [];
  const refresh = () => calls.splice(0, calls.length, ...scripted.calls());
  const handle = new Proxy(scripted, {
    get(target, name, receiver) {
      const value: unknown = Reflect.get(target, name, receiver);
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        const result: unknown = (value as (...a: unknown[]) => unknown).apply(target, args);
        return result instanceof Promise ? result.finally(refresh) : result;
      };
    },
  });
  return { handle, calls };
}

/** Runs one operation on a scripted kernelOpal handle: what it returned or threw, and its ioctls. */
export async function runScriptedKernelOpal(
  run: (k: KernelOpalHandle) => Promise<unknown>,
  answers: ScriptedAnswer[] = [{ ret: 0 }],
): Promise<{ result?: unknown; error?: unknown; calls: RecordedIoctl[] }> {
  const handle = testSeams().openScriptedKernelOpal(answers);
  try {
    return { result: await run(handle), calls: handle.calls() };
  } catch (error) {
    return { error, calls: handle.calls() };
  }
}
