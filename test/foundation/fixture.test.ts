import { spawnSync } from 'node:child_process';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { packageRoot } from '../../src/native/addon.js';
import { freePort, startPykmip } from '../support/pykmip.js';

describe('PyKMIP fixture: bad environments give messages that say what to run', () => {
  it('a missing pykmip-server names the setup script', () => {
    const script = `
      const { startPykmip } = await import(${JSON.stringify(join(packageRoot(), 'dist/test/support/pykmip.js'))});
      try { await startPykmip(); console.log('started'); } catch (e) { console.log(e.message); }
    `;
    const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
      encoding: 'utf8',
      env: { ...process.env, KMIP_AGENT_PYKMIP_SERVER: '/nonexistent/pykmip-server' },
    });
    expect(run.stdout).toContain('pykmip-server is not installed');
    expect(run.stdout).toContain('scripts/setup.sh');
  });

  it('a port already taken is refused before starting, naming the port', async () => {
    const port = await freePort();
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(port, '127.0.0.1', resolve));
    try {
      await expect(startPykmip({ port })).rejects.toThrow(`port ${port} on 127.0.0.1 is already in use`);
    } finally {
      blocker.close();
    }
  });
});
