/**
 * `node dist/test/vm/prepare.js`: what the VM suite needs before it can boot, made ahead of it. scripts/test.sh
 * starts this in the background (niced) before the main suite, so the image build (mostly download and disk
 * writes) and the TCMU handler's compile overlap it and the VM suite after it only boots. Prints what it
 * did and how long it took; when it fails, the VM suite tries again itself and fails with the reason.
 */
import { existsSync } from 'node:fs';
import { ensureImage, imageDir } from './qemu.js';
import { ensureTcmuHandler } from './tcmu.js';

const started = Date.now();
const seconds = () => ((Date.now() - started) / 1000).toFixed(0);
try {
  ensureTcmuHandler();
  console.log(`vm-prepare: TCMU handler ready after ${seconds()} s`);
  const cached = existsSync(imageDir());
  ensureImage();
  console.log(`vm-prepare: image ${imageDir()} ${cached ? 'was cached' : 'built'}; ready after ${seconds()} s`);
} catch (error) {
  console.log(`vm-prepare: failed after ${seconds()} s: ${error instanceof Error ? error.message : String(error)}`);
  process.exitCode = 1;
}
