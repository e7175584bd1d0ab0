import { readFileSync } from 'node:fs';
import { Redis, type ChainableCommander } from 'ioredis';
import { GatewayError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';

/** Connection settings for Redis. */
export interface RedisOptions {
  readonly url: string;
  /** A command that takes longer fails, so a hung Redis is noticed instead of waited on. */
  readonly commandTimeoutMs: number;
  /** CA for a rediss:// server certificate; '' trusts the system's CAs. */
  readonly tlsCaFile: string;
}

const HEALTH_PROBE_MS = 1000;
/** Reconnect attempts back off up to this: a pod is back within about this long of Redis. */
export const RECONNECT_MAX_DELAY_MS = 1000;
const CONNECT_TIMEOUT_MS = 10_000;

/**
 * The pod's two Redis connections (commands and pub/sub), their health, and timing of every
 * operation. Errors from ioredis are translated here, once, into ServiceUnavailable.
 */
export class RedisConnection {
  readonly commands: Redis;
  readonly subscriber: Redis;
  #healthy = false;
  #probe: NodeJS.Timeout | undefined;
  #corked = false;

  constructor(
    private readonly options: RedisOptions,
    private readonly metrics: Metrics,
    private readonly log: Logger,
  ) {
    const common = {
      ...(options.tlsCaFile === '' ? {} : { tls: { ca: readFileSync(options.tlsCaFile) } }),
      lazyConnect: true,
      commandTimeout: options.commandTimeoutMs,
      retryStrategy: (attempt: number) => Math.min(attempt * 100, RECONNECT_MAX_DELAY_MS),
    };
    // No offline queue: while Redis is away, commands fail at once and callers answer "try again later".
    this.commands = new Redis(options.url, { ...common, enableOfflineQueue: false, maxRetriesPerRequest: 0 });
    this.subscriber = new Redis(options.url, { ...common, autoResubscribe: true });
    for (const client of [this.commands, this.subscriber]) {
      client.on('error', (err: Error) => this.log.debug({ err }, 'redis connection error'));
    }
    // Without the subscriber the pod misses kill messages and route changes: as bad as no Redis.
    for (const client of [this.commands, this.subscriber]) client.on('close', () => this.#setHealthy(false));
  }

  /** True while both connections are up and the last probe succeeded. */
  get healthy(): boolean {
    return this.#healthy;
  }

  /** Connects both clients; fails with a clear message when Redis cannot be reached in time. */
  async start(): Promise<void> {
    const unreachable = (why: string) => new Error(`cannot reach Redis at ${redactedUrl(this.options.url)}: ${why}`);
    // ioredis rejects a failed connect with only "Connection is closed."; the cause came as an error event.
    let cause: Error | undefined;
    const remember = (err: Error) => (cause = err);
    this.commands.on('error', remember);
    const deadline = new Promise<never>((_, reject) => {
      setTimeout(() => reject(unreachable(`no answer within ${CONNECT_TIMEOUT_MS} ms`)), CONNECT_TIMEOUT_MS).unref();
    });
    try {
      await Promise.race([Promise.all([this.commands.connect(), this.subscriber.connect()]), deadline]);
    } catch (err) {
      throw cause === undefined ? err : unreachable(cause.message);
    } finally {
      this.commands.off('error', remember);
    }
    this.#setHealthy(true);
    this.#probe = setInterval(() => void this.#checkHealth(), HEALTH_PROBE_MS);
    this.#probe.unref();
  }

  /**
   * Registers a Lua script from a file beside its owner as a command on the commands client;
   * without `numberOfKeys` each call passes its key count first.
   */
  defineScript(name: string, file: URL, numberOfKeys?: number): void {
    this.commands.defineCommand(name, { numberOfKeys, lua: readFileSync(file, 'utf8') });
  }

  /** Runs one operation, timing it; any Redis failure becomes ServiceUnavailable. */
  async run<T>(op: string, operation: (redis: Redis) => Promise<T>): Promise<T> {
    this.#coalesceWrites();
    const stop = this.metrics.redisOpDuration.startTimer({ op });
    try {
      const result = await operation(this.commands);
      stop({ outcome: 'ok' });
      return result;
    } catch (err) {
      stop({ outcome: 'error' });
      // The cause stays in the logs: clients (WebSocket ones included) see only that it failed.
      throw new GatewayError('ServiceUnavailable', 'the coordination store is unreachable; try again later', undefined, { cause: err });
    }
  }

  /** Closes both connections. Safe to call twice. */
  async stop(): Promise<void> {
    clearInterval(this.#probe);
    this.#setHealthy(false);
    await Promise.allSettled([quit(this.commands), quit(this.subscriber)]);
  }

  /**
   * Holds back socket writes until this turn of the event loop has handled all its I/O, so the
   * commands issued meanwhile leave in one write: a connect's or a close's commands, and those of
   * every other handshake handled in the same turn, cost one system call between them.
   */
  #coalesceWrites(): void {
    // The stream exists only once the client connected, and is replaced on every reconnect.
    const stream: Redis['stream'] | undefined = this.commands.stream;
    if (this.#corked || stream === undefined) return;
    this.#corked = true;
    stream.cork();
    // Immediates run right after the turn's I/O callbacks (and their promise continuations).
    setImmediate(() => {
      this.#corked = false;
      stream.uncork();
    });
  }

  async #checkHealth(): Promise<void> {
    try {
      await this.run('ping', (redis) => redis.ping());
      this.#setHealthy(this.subscriber.status === 'ready');
    } catch {
      this.#setHealthy(false);
    }
  }

  #setHealthy(healthy: boolean): void {
    if (healthy === this.#healthy) return;
    this.#healthy = healthy;
    this.metrics.redisUp.set(healthy ? 1 : 0);
    if (healthy) this.log.info('redis reachable');
    else this.log.warn('redis unreachable');
  }
}

async function quit(client: Redis): Promise<void> {
  if (client.status === 'end') return;
  try {
    await client.quit();
  } catch {
    client.disconnect();
  }
}

function redactedUrl(url: string): string {
  return url.replace(/\/\/[^@/]*@/, '//[Redacted]@');
}

/**
 * Runs a pipeline and answers each command's result, or rejects with the first command's error:
 * ioredis resolves `exec()` even when commands failed (Redis unreachable, OOM, READONLY).
 */
export async function execAll(pipeline: ChainableCommander): Promise<unknown[]> {
  const replies = (await pipeline.exec()) ?? [];
  const failed = replies.find(([err]) => err !== null);
  if (failed !== undefined) throw failed[0];
  return replies.map(([, result]) => result);
}

/** Every key matching `pattern`, with SCAN (never KEYS, which blocks Redis). */
export async function scanAll(redis: Redis, pattern: string): Promise<string[]> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    cursor = next;
    keys.push(...batch);
  } while (cursor !== '0');
  return keys;
}
