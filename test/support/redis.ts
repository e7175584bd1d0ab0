import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { freePort } from './ports.js';
import { waitFor } from './wait.js';

/** A redis-server of the test's own, on a free port in a temp dir, that the test may stop, pause and restart. */
export class RedisServer {
  #child: ChildProcess | undefined;
  readonly #dir = mkdtempSync(join(tmpdir(), 'switchboard-redis-'));
  #client: Redis | undefined;

  private constructor(readonly port: number) {}

  /** Starts one; fails with an install hint when redis-server is missing. */
  static async start(): Promise<RedisServer> {
    if (spawnSync('redis-server', ['--version']).error !== undefined) {
      throw new Error('redis-server not found: apt-get install redis-server (see .ci/run)');
    }
    const server = new RedisServer(await freePort());
    try {
      await server.#launch();
    } catch (err) {
      // A half-started server (its process, its temp dir) is not handed to the test: clean it up here.
      await server.stop();
      throw err;
    }
    return server;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** A client for assertions (keys, TTLs); created on first use. */
  get client(): Redis {
    if (this.#client === undefined) {
      this.#client = new Redis(this.url, { maxRetriesPerRequest: 3 });
      // Pauses and restarts are the point of these tests; the client reconnects by itself.
      this.#client.on('error', () => undefined);
    }
    return this.#client;
  }

  pause(): void {
    this.#child?.kill('SIGSTOP');
  }

  resume(): void {
    this.#child?.kill('SIGCONT');
  }

  /** Kills the server and starts a new empty one on the same port (no persistence). */
  async restart(): Promise<void> {
    await this.#kill();
    await this.#launch();
  }

  async stop(): Promise<void> {
    this.#client?.disconnect();
    this.#client = undefined;
    await this.#kill();
    rmSync(this.#dir, { recursive: true, force: true });
  }

  async #launch(): Promise<void> {
    const child = spawn(
      'redis-server',
      ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', this.#dir, '--loglevel', 'warning'],
      { stdio: 'ignore' },
    );
    this.#child = child;
    const probe = new Redis(this.url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    probe.on('error', () => undefined);
    try {
      await waitFor(
        async () => {
          try {
            if (probe.status !== 'ready') await probe.connect();
            return (await probe.ping()) === 'PONG';
          } catch {
            probe.disconnect();
            return false;
          }
        },
        5000,
        `redis-server on port ${this.port}`,
      );
    } finally {
      probe.disconnect();
    }
  }

  async #kill(): Promise<void> {
    const child = this.#child;
    if (child === undefined || child.exitCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGCONT');
    child.kill('SIGKILL');
    await exited;
  }
}
