import type { Result } from 'ioredis';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import type { RedisConnection } from '../redis/RedisConnection.js';
import type { LeaseOptions } from '../sessions/RedisSessions.js';
import { POD_PREFIX } from './RedisPods.js';
import { routeKey, type Route, type RouteRegistry } from './RouteRegistry.js';

declare module 'ioredis' {
  interface RedisCommander<Context> {
    routeOwners(key: string, podPrefix: string): Result<string[], Context>;
    routeAdd(key: string, podId: string, leaseMs: number): Result<number, Context>;
  }
}

const KEY_PREFIX = 'route:';

interface HeldRoute {
  count: number;
  /** The registration in flight, so a second retain waits for the same SADD. */
  pending: Promise<void>;
}

/**
 * Routes in Redis: `route:{c}:{a}:chats`, `route:{c}:{a}:messages:{chat}` and `route:admins` are sets of
 * pod ids. The pod counts its interested connections and touches Redis only on the first and the
 * last; it refreshes the entries it holds every renewal period, so they come back after a flush.
 */
export class RedisRoutes implements RouteRegistry {
  readonly #held = new Map<string, HeldRoute>();
  #refreshTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly redis: RedisConnection,
    private readonly podId: string,
    private readonly lease: LeaseOptions,
    private readonly metrics: Metrics,
    private readonly log: Logger,
  ) {
    redis.defineScript('routeOwners', new URL('./owners.lua', import.meta.url), 1);
    redis.defineScript('routeAdd', new URL('./add.lua', import.meta.url), 1);
  }

  start(): void {
    this.#refreshTimer = setInterval(() => void this.#refreshAll(), this.lease.renewIntervalMs);
    this.#refreshTimer.unref();
  }

  async retain(route: Route): Promise<void> {
    const key = redisKey(route);
    const held = this.#held.get(key);
    if (held !== undefined) {
      held.count++;
      return held.pending;
    }
    const pending = this.redis.run('route_add', (r) => r.routeAdd(key, this.podId, this.lease.leaseMs)).then(() => undefined);
    this.#held.set(key, { count: 1, pending });
    this.metrics.routesHeld.set(this.#held.size);
    return pending;
  }

  async release(route: Route): Promise<void> {
    const key = redisKey(route);
    const held = this.#held.get(key);
    if (held === undefined) return;
    held.count--;
    if (held.count > 0) return;
    this.#held.delete(key);
    this.metrics.routesHeld.set(this.#held.size);
    await this.redis.run('route_remove', (r) => r.srem(key, this.podId));
  }

  async owners(route: Route): Promise<readonly string[]> {
    return this.redis.run('route_owners', (r) => r.routeOwners(redisKey(route), POD_PREFIX));
  }

  /** Removes this pod from every route it still holds. */
  async stop(): Promise<void> {
    clearInterval(this.#refreshTimer);
    const keys = [...this.#held.keys()];
    this.#held.clear();
    this.metrics.routesHeld.set(0);
    if (keys.length === 0) return;
    await this.redis.run('route_remove', (r) => {
      const pipeline = r.pipeline();
      for (const key of keys) pipeline.srem(key, this.podId);
      return pipeline.exec();
    });
  }

  async #refreshAll(): Promise<void> {
    if (this.#held.size === 0) return;
    const keys = [...this.#held.keys()];
    try {
      await this.redis.run('route_refresh', (r) => {
        const pipeline = r.pipeline();
        for (const key of keys) pipeline.routeAdd(key, this.podId, this.lease.leaseMs);
        return pipeline.exec();
      });
    } catch (err) {
      this.log.warn({ err, routes: this.#held.size }, 'route refresh failed; retrying next period');
    }
  }
}

function redisKey(route: Route): string {
  return `${KEY_PREFIX}${routeKey(route)}`;
}
