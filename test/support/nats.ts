import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type NatsConnection } from 'nats';
import { freePort } from './ports.js';
import { waitFor } from './wait.js';

/** How long a freshly launched server gets to accept connections and answer JetStream requests. */
const START_TIMEOUT_MS = 10_000;
/** A graceful stop flushes the JetStream store; past this the server is killed outright. */
const GRACEFUL_STOP_MS = 5_000;

/**
 * A `nats-server -js` of the test's own, on a free port with its store in a temp dir, that the
 * test may pause and restart; streams and consumers survive a restart.
 */
export class NatsServer {
  #child: ChildProcess | undefined;
  readonly #storeDir = mkdtempSync(join(tmpdir(), 'switchboard-nats-'));
  #client: Promise<NatsConnection> | undefined;

  private constructor(readonly port: number) {}

  /** Starts one; fails with an install hint when nats-server is missing. */
  static async start(): Promise<NatsServer> {
    if (spawnSync('nats-server', ['--version']).error !== undefined) {
      throw new Error('nats-server not found on the PATH: apt-get install nats-server (see .ci/run)');
    }
    const server = new NatsServer(await freePort());
    try {
      await server.#launch();
    } catch (err) {
      await server.stop();
      throw err;
    }
    return server;
  }

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  /** The server's process id while it runs (benchmarks read its CPU time from /proc). */
  get pid(): number | undefined {
    return this.#child?.pid;
  }

  /** A connection for assertions and publishing; created on first use, reconnects forever, closed by stop(). */
  async client(): Promise<NatsConnection> {
    this.#client ??= connect({ servers: this.url, name: 'test-support', maxReconnectAttempts: -1, reconnectTimeWait: 100 });
    return this.#client;
  }

  pause(): void {
    this.#child?.kill('SIGSTOP');
  }

  resume(): void {
    this.#child?.kill('SIGCONT');
  }

  /**
   * Stops the server and starts it again on the same port with the same store, so streams,
   * consumers and messages persist. The stop is graceful (SIGTERM) because the file store
   * buffers recent writes in memory and SIGKILL would lose them. Resolves once the support
   * client, if there is one, has reconnected: nats.js can lose a request made while it is away.
   */
  async restart(): Promise<void> {
    await this.#kill();
    await this.#launch();
    await this.#clientReconnected();
  }

  /** Stops the server and starts it again with an empty store: every stream, consumer and message is gone. */
  async restartEmpty(): Promise<void> {
    await this.#kill();
    rmSync(this.#storeDir, { recursive: true, force: true });
    await this.#launch();
    await this.#clientReconnected();
  }

  async #clientReconnected(): Promise<void> {
    if (this.#client !== undefined) {
      const nc = await this.#client;
      await waitFor(
        async () => {
          try {
            // rtt() refuses at once while disconnected, and otherwise proves a round trip.
            await nc.rtt();
            return true;
          } catch {
            return false;
          }
        },
        START_TIMEOUT_MS,
        'the support client to reconnect to nats-server',
      );
    }
  }

  async stop(): Promise<void> {
    const client = this.#client;
    this.#client = undefined;
    if (client !== undefined) {
      // A connection that never succeeded rejects here; there is nothing to close then.
      await client.then((nc) => nc.close()).catch(() => undefined);
    }
    await this.#kill();
    rmSync(this.#storeDir, { recursive: true, force: true });
  }

  async #launch(): Promise<void> {
    const child = spawn('nats-server', ['-js', '-a', '127.0.0.1', '-p', String(this.port), '-sd', this.#storeDir], { stdio: ['ignore', 'ignore', 'pipe'] });
    this.#child = child;
    let stderr = '';
    child.stderr?.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-2000)));
    await waitFor(
      async () => {
        if (child.exitCode !== null) throw new Error(`nats-server exited with ${child.exitCode}: ${stderr}`);
        return this.#answersJetStream();
      },
      START_TIMEOUT_MS,
      `nats-server on port ${this.port}`,
    );
  }

  /** True once a connection succeeds and JetStream answers; after a restart the store must be recovered first. */
  async #answersJetStream(): Promise<boolean> {
    let probe: NatsConnection | undefined;
    try {
      probe = await connect({ servers: this.url, reconnect: false, timeout: 500 });
      await (await probe.jetstreamManager({ timeout: 500 })).getAccountInfo();
      return true;
    } catch {
      return false;
    } finally {
      await probe?.close().catch(() => undefined);
    }
  }

  async #kill(): Promise<void> {
    const child = this.#child;
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGCONT');
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), GRACEFUL_STOP_MS);
    try {
      await exited;
    } finally {
      clearTimeout(timer);
    }
  }
}
