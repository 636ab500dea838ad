/**
 * A throwaway appliance for the recovery and inventory suites: temp directories, `kmip-agent setup`
 * against the run's PyKMIP server (a fresh appliance id, so its key group is its own), emulated drives
 * and LUKS2 images, and the real CLI (dist/kmip-agent.mjs) run as separate processes, as operators run
 * it: no state survives between runs but what the agent writes to disk.
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, inject } from 'vitest';
import { KmipProvider } from '../../src/kmip/index.js';
import { createEmulatedDrive } from '../../src/drives/index.js';
import { pykmipCliArgs } from '../support/pykmip.js';

export const CLI = resolve('dist/kmip-agent.mjs');

export interface CliResult {
  code: number;
  json: Record<string, unknown>;
  stderr: string;
}

export class TestAppliance {
  readonly work = mkdtempSync(join(tmpdir(), 'kmip-agent-recover-'));
  readonly id = `app-${randomBytes(4).toString('hex')}`;
  readonly dirs = {
    config: join(this.work, 'etc'),
    state: join(this.work, 'lib'),
    runtime: join(this.work, 'run'),
  };
  readonly server = inject('pykmip');
  private kmip: KmipProvider | undefined;

  get statePath(): string {
    return join(this.dirs.state, 'state.json');
  }

  private argv(args: string[]): string[] {
    const d = this.dirs;
    return [CLI, ...args, '--json', '--config-dir', d.config, '--state-dir', d.state, '--runtime-dir', d.runtime];
  }

  private result(args: string[], code: number | null, stdout: string, stderr: string): CliResult {
    let json: Record<string, unknown>;
    try {
      json = JSON.parse(stdout) as Record<string, unknown>;
    } catch {
      throw new Error(`kmip-agent ${args.join(' ')}: no JSON (exit ${code}): ${stdout}${stderr}`);
    }
    return { code: code ?? -1, json, stderr };
  }

  /** `kmip-agent <args> --json` with the appliance's directories; the JSON answer (or error). */
  cli(args: string[], stdin: Buffer = Buffer.alloc(0)): CliResult {
    const run = spawnSync(process.execPath, this.argv(args), { input: stdin, timeout: 120_000 });
    return this.result(args, run.status, run.stdout.toString(), run.stderr.toString());
  }

  /** `cli` without blocking this process (when it serves something the CLI talks to). */
  cliAsync(args: string[]): Promise<CliResult> {
    return new Promise((resolve, reject) => {
      const child = spawn(process.execPath, this.argv(args), { stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
      child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
      child.once('error', reject);
      child.once('close', (code) => {
        try {
          resolve(this.result(args, code, stdout, stderr));
        } catch (error) {
          reject(error as Error);
        }
      });
    });
  }

  /** Like `cli`, failing the test on a non-zero exit. */
  ok(args: string[], stdin?: Buffer): Record<string, unknown> {
    const r = this.cli(args, stdin);
    if (r.code !== 0) throw new Error(`kmip-agent ${args.join(' ')} failed (${r.code}): ${JSON.stringify(r.json)}`);
    return r.json;
  }

  setup(): void {
    this.ok(['setup', '--appliance-id', this.id, ...pykmipCliArgs(this.server)]);
  }

  /** A factory-fresh emulated drive; returns its device spec. */
  async emulatedDrive(serial: string): Promise<string> {
    const path = join(this.work, `${serial}.img`);
    await createEmulatedDrive(path, 8, serial);
    return `emu:${path}`;
  }

  /** The key server, for what the agent must find there (keys registered by hand, Gets to compare). */
  provider(): KmipProvider {
    const s = this.server;
    this.kmip ??= new KmipProvider({
      servers: [{ host: s.host, port: s.port, servername: 'localhost' }],
      ca: readFileSync(s.ca),
      cert: readFileSync(s.clientCert),
      key: readFileSync(s.clientKey),
    });
    return this.kmip;
  }

  /** Registers a Secret Data under this appliance's naming, as enrollment would; returns its UID. */
  async registerKey(id: string, secret: Buffer): Promise<string> {
    const { uniqueIdentifier } = await this.provider().register({
      kind: 'secret-data',
      secret,
      name: `kmip-agent/${this.id}/${id}`,
      objectGroup: `kmip-agent/${this.id}`,
    });
    await this.provider().activate(uniqueIdentifier);
    return uniqueIdentifier;
  }

  close(): void {
    this.kmip?.close();
    rmSync(this.work, { recursive: true, force: true });
  }
}

/**
 * A suite's factory of throwaway appliances (call at the top level of a test file): each is set up against
 * the run's PyKMIP server unless `setup: false`, and closed after its test.
 */
export function appliancesForEachTest(): (options?: { setup?: boolean }) => TestAppliance {
  const made: TestAppliance[] = [];
  afterEach(() => made.splice(0).forEach((a) => a.close()));
  return ({ setup = true } = {}) => {
    const a = new TestAppliance();
    made.push(a);
    if (setup) a.setup();
    return a;
  };
}
