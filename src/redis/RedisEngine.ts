import { RedisTokenCache } from '../auth/RedisTokenCache.js';
import type { Engine } from '../engine/Engine.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import { RedisPods } from '../routes/RedisPods.js';
import { RedisRoutes } from '../routes/RedisRoutes.js';
import { RedisSessions, type LeaseOptions } from '../sessions/RedisSessions.js';
import { RedisConnection, type RedisOptions } from './RedisConnection.js';
import { RedisDeliveryLedger } from './RedisDeliveryLedger.js';

/** What the Redis engine needs to know about this pod. */
export interface RedisEngineOptions {
  readonly redis: RedisOptions;
  readonly lease: LeaseOptions;
  readonly podId: string;
  readonly maxDevices: number;
  readonly connectionCount: () => number;
  /** How long a partial delivery is remembered: longer than any event keeps being retried. */
  readonly ledgerTtlMs: number;
}

/** Sessions, routes, token cache and pod liveness in Redis, shared by every pod. */
export class RedisEngine implements Engine {
  readonly name = 'redis';
  readonly sessions: RedisSessions;
  readonly routes: RedisRoutes;
  readonly tokenCache: RedisTokenCache;
  readonly pods: RedisPods;
  readonly deliveryLedger: RedisDeliveryLedger;
  readonly #connection: RedisConnection;
  readonly #log: Logger;

  constructor(options: RedisEngineOptions, metrics: Metrics, log: Logger) {
    this.#log = log;
    const { podId, lease } = options;
    this.#connection = new RedisConnection(options.redis, metrics, log.child({ part: 'redis' }));
    const reassert = async () => {
      await Promise.all([this.routes.refreshAll(), this.sessions.renewAll()]);
    };
    this.pods = new RedisPods(this.#connection, podId, lease, options.connectionCount, reassert, () => this.routes.forgetPredecessor(), log.child({ part: 'pods' }));
    this.sessions = new RedisSessions(this.#connection, podId, lease, options.maxDevices, metrics, log.child({ part: 'sessions' }));
    this.routes = new RedisRoutes(this.#connection, podId, lease, metrics, log.child({ part: 'routes' }));
    this.tokenCache = new RedisTokenCache(this.#connection, log.child({ part: 'token-cache' }));
    this.deliveryLedger = new RedisDeliveryLedger(this.#connection, options.ledgerTtlMs);
  }

  isHealthy(): boolean {
    return this.#connection.healthy;
  }

  /** Connects, then beats before anything names this pod, so peers never see its entries as stale. */
  async start(): Promise<void> {
    await this.#connection.start();
    await this.pods.start();
    await this.sessions.start();
    await this.routes.start();
  }

  async stop(): Promise<void> {
    const steps = [
      ['release sessions', () => this.sessions.stop()],
      ['release routes', () => this.routes.stop()],
      ['remove heartbeat', () => this.pods.stop()],
    ] as const;
    for (const [name, step] of steps) {
      try {
        await step();
      } catch (err) {
        this.#log.warn({ err, step: name }, 'could not clean up in Redis; the lease will expire');
      }
    }
    await this.#connection.stop();
  }
}
