import type { Result } from 'ioredis';
import { Coalescer } from '../Coalescer.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import { execAll, scanAll, type RedisConnection } from '../redis/RedisConnection.js';
import type { LeaseOptions } from '../sessions/RedisSessions.js';
import { POD_PREFIX, RECOVERING_KEY, recoveryMs } from './RedisPods.js';
import { routeKey, type RememberedOwners, type Route, type RouteOwners, type RouteRegistry } from './RouteRegistry.js';

declare module 'ioredis' {
  interface RedisCommander<Context> {
    routeOwners(key: string, recoveringKey: string, podPrefix: string, changeChannel: string, podId: string, recoveryMs: number): Result<[string[], number], Context>;
    routeAdd(key: string, podId: string, leaseMs: number, changeChannel: string): Result<number, Context>;
    routeRemove(key: string, podId: string, changeChannel: string): Result<number, Context>;
  }
}

const KEY_PREFIX = 'route:';
/** Every change of a route's pods is announced here (the route key), so pods can keep copies. */
export const ROUTE_CHANGES_CHANNEL = 'route_changes';
/** Past this many remembered changes the record restarts (and every copy with it). */
const MAX_CHANGES_TRACKED = 10_000;
/** Copies kept at most (chat routes are many); the oldest goes first. */
const MAX_COPIES = 50_000;
/** After a route write failed, held routes are written again this soon rather than at the next renewal. */
const RETRY_MS = 500;
/** Route removals sent in one pipeline (at shutdown, or forgetting a previous process's routes). */
const REMOVE_BATCH = 1000;
/**
 * PINGs go at most this often while confirms keep coming (see Coalescer), each answering every
 * confirm asked before it. Events are delivered before they are confirmed, so this delays only
 * their acks (and the rare second delivery to an owner a copy missed); each PING costs the pod a
 * socket write that wakes Redis, which at 1,000 events/s took a sixth of a consuming pod's CPU
 * when every event had its own.
 */
const CONFIRM_GATHER_MS = 5;

/** A copy of a route's owners, and what was known when the lookup that made it was sent. */
interface OwnersCopy {
  readonly owners: readonly string[];
  /** The change count when the lookup was sent: a later change to the route makes the copy suspect. */
  readonly changesAtLookup: number;
  readonly epoch: number;
}

interface ConfirmWaiter {
  readonly resolve: () => void;
  readonly reject: (err: unknown) => void;
}

interface HeldRoute {
  count: number;
  /** The last write of this route to Redis succeeded. */
  registered: boolean;
  /** The write in flight, so a second retain waits for the same SADD. */
  pending: Promise<void> | undefined;
}

/**
 * Routes in Redis: `route:{c}:{a}:chats`, `route:{c}:{a}:messages:{chat}` and `route:admins` are sets of
 * pod ids. The pod counts its interested connections and touches Redis only on the first and the
 * last; it refreshes the entries it holds every renewal period, so they come back after a flush.
 *
 * Every change to a route's pods is announced on `route_changes`, and the pod keeps a copy of the
 * owners it looked up until it hears of a change. Dispatch delivers to a copy at once, then asks
 * `confirm` before acking: a PING on the subscriber connection, whose PONG comes after every
 * announcement Redis sent before it. An owner that joined before the event arrived (so before any
 * client of it could be `ready` for the event) was announced before the PING, so a copy that missed
 * it is caught and the event looked up again; no event is acked past an owner it missed.
 */
export class RedisRoutes implements RouteRegistry {
  readonly #held = new Map<string, HeldRoute>();
  /** Routes released here whose removal from Redis failed: removed again with the next refresh. */
  readonly #unreleased = new Set<string>();
  readonly #copies = new Map<string, OwnersCopy>();
  /** Route key → the change count when a change to it was last heard. */
  readonly #lastChange = new Map<string, number>();
  #changes = 0;
  /** Bumped whenever announcements may have been missed (the subscriber connection dropped): every copy is suspect. */
  #epoch = 0;
  #listening = false;
  #confirmWaiters: ConfirmWaiter[] = [];
  #pingInFlight = false;
  readonly #pings = new Coalescer(CONFIRM_GATHER_MS, () => this.#sendConfirmPing());
  /** The last lookup said Redis is recovering lost data (logged once per recovery). */
  #recovering = false;
  #refreshTimer: NodeJS.Timeout | undefined;
  #retryTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly redis: RedisConnection,
    private readonly podId: string,
    private readonly lease: LeaseOptions,
    private readonly metrics: Metrics,
    private readonly log: Logger,
  ) {
    redis.defineScript('routeOwners', new URL('./owners.lua', import.meta.url), 2);
    redis.defineScript('routeAdd', new URL('./add.lua', import.meta.url), 1);
    redis.defineScript('routeRemove', new URL('./remove.lua', import.meta.url), 1);
  }

  async start(): Promise<void> {
    const { subscriber } = this.redis;
    subscriber.on('message', (channel: string, key: string) => {
      if (channel === ROUTE_CHANGES_CHANNEL) this.#heardChange(key);
    });
    // Announcements sent while the connection was down are lost: forget every copy, and keep none
    // until the subscription is known to be back (ioredis resubscribes only after `ready` fires).
    subscriber.on('close', () => this.#forgetAll(false));
    subscriber.on('ready', () => {
      this.#listen().catch((err: unknown) => {
        this.log.warn({ err }, 'could not subscribe to route changes again; every event looks its route up until the next reconnect');
      });
    });
    await this.#listen();
    this.#refreshTimer = setInterval(() => void this.refreshAll(), this.lease.renewIntervalMs);
    this.#refreshTimer.unref();
  }

  /** Resolves once the route names this pod in Redis: a route whose last write failed is written again. */
  async retain(route: Route): Promise<void> {
    const key = redisKey(route);
    this.#unreleased.delete(key);
    let held = this.#held.get(key);
    if (held === undefined) {
      held = { count: 0, registered: false, pending: undefined };
      this.#held.set(key, held);
      this.metrics.routesHeld.set(this.#held.size);
    }
    held.count++;
    if (held.registered) return;
    const entry = held;
    entry.pending ??= this.redis.run('route_add', (r) => r.routeAdd(key, this.podId, this.lease.leaseMs, ROUTE_CHANGES_CHANNEL)).then(
      () => {
        entry.registered = true;
        entry.pending = undefined;
      },
      (err: unknown) => {
        // Still held, so written again soon, or by the next retain.
        entry.pending = undefined;
        this.#retrySoon();
        throw err;
      },
    );
    return entry.pending;
  }

  /** Takes this pod out of the route once no connection here holds it; a failed removal is retried. */
  async release(route: Route): Promise<void> {
    const key = redisKey(route);
    const held = this.#held.get(key);
    if (held === undefined) return;
    held.count--;
    if (held.count > 0) return;
    this.#held.delete(key);
    this.metrics.routesHeld.set(this.#held.size);
    try {
      await this.redis.run('route_remove', (r) => r.routeRemove(key, this.podId, ROUTE_CHANGES_CHANNEL));
    } catch (err) {
      // Left in Redis, this pod would stay an owner for as long as other pods keep the route alive;
      // unless a connection took the route again meanwhile, which wants it kept.
      if (!this.#held.has(key)) {
        this.#unreleased.add(key);
        this.#retrySoon();
      }
      throw err;
    }
  }

  /**
   * Takes this pod's id out of every route. For a pod that finds a heartbeat under its id at start
   * (it restarted with the same address): the routes its previous process held name it still, and
   * nothing else would ever remove them while other pods keep those routes alive.
   */
  async forgetPredecessor(): Promise<number> {
    const keys = await this.redis.run('route_scan', (r) => scanAll(r, `${KEY_PREFIX}*`));
    return this.#removeFrom(keys);
  }

  /** Takes this pod out of each route in `keys`, a pipeline per REMOVE_BATCH; answers how many named it. */
  async #removeFrom(keys: readonly string[]): Promise<number> {
    let removed = 0;
    for (let i = 0; i < keys.length; i += REMOVE_BATCH) {
      const batch = keys.slice(i, i + REMOVE_BATCH);
      const results = await this.redis.run('route_remove', (r) => {
        const pipeline = r.pipeline();
        for (const key of batch) pipeline.routeRemove(key, this.podId, ROUTE_CHANGES_CHANNEL);
        return execAll(pipeline);
      });
      removed += results.filter((result) => result === 1).length;
    }
    return removed;
  }

  /**
   * Looks the route up in Redis, keeping a copy unless a change to it was heard meanwhile or the
   * answer may be incomplete (Redis is recovering lost data).
   */
  async owners(route: Route): Promise<RouteOwners> {
    const key = redisKey(route);
    const changesAtLookup = this.#changes;
    const epoch = this.#epoch;
    const [owners, incompleteForMs] = await this.redis.run('route_owners', (r) =>
      r.routeOwners(key, RECOVERING_KEY, POD_PREFIX, ROUTE_CHANGES_CHANNEL, this.podId, recoveryMs(this.lease)),
    );
    const current = epoch === this.#epoch && (this.#lastChange.get(key) ?? 0) <= changesAtLookup;
    if (this.#listening && current && incompleteForMs === 0) {
      // A Map iterates in insertion order: the first key is the oldest copy.
      if (this.#copies.size >= MAX_COPIES) this.#copies.delete(this.#copies.keys().next().value ?? '');
      this.#copies.set(key, { owners, changesAtLookup, epoch });
    }
    if (incompleteForMs > 0 && !this.#recovering) {
      this.log.warn({ for_ms: incompleteForMs }, 'Redis is recovering lost data: events wait until every pod has re-asserted its routes');
    }
    this.#recovering = incompleteForMs > 0;
    return { pods: owners, incompleteForMs };
  }

  remembered(route: Route): RememberedOwners | undefined {
    const key = redisKey(route);
    const copy = this.#copies.get(key);
    if (copy === undefined) return undefined;
    return { owners: copy.owners, confirm: () => this.#confirm(key, copy) };
  }

  /** Removes this pod from every route it still holds. */
  async stop(): Promise<void> {
    clearInterval(this.#refreshTimer);
    clearTimeout(this.#retryTimer);
    this.#pings.cancel();
    for (const waiter of this.#confirmWaiters.splice(0)) waiter.resolve();
    this.#forgetAll(false);
    const keys = [...this.#held.keys(), ...this.#unreleased];
    this.#held.clear();
    this.#unreleased.clear();
    this.metrics.routesHeld.set(0);
    await this.#removeFrom(keys);
  }

  /** Subscribes (again); copies are kept only from lookups sent after Redis confirmed it. */
  async #listen(): Promise<void> {
    await this.redis.subscriber.subscribe(ROUTE_CHANGES_CHANNEL);
    this.#forgetAll(true);
  }

  #heardChange(key: string): void {
    if (this.#lastChange.size >= MAX_CHANGES_TRACKED) this.#forgetAll(true);
    this.#lastChange.set(key, ++this.#changes);
    this.#copies.delete(key);
  }

  #forgetAll(listening: boolean): void {
    this.#listening = listening;
    this.#epoch++;
    this.#copies.clear();
    this.#lastChange.clear();
  }

  /** True when no change to `key` was heard since `copy`'s lookup, once every earlier announcement has arrived. */
  async #confirm(key: string, copy: OwnersCopy): Promise<boolean> {
    try {
      await this.#heardEverythingSentBefore();
    } catch {
      return false;
    }
    return copy.epoch === this.#epoch && (this.#lastChange.get(key) ?? 0) <= copy.changesAtLookup;
  }

  /**
   * Resolves after a PING on the subscriber connection comes back: Redis answers it after every
   * message it published to this connection before it. One PING is out at a time, gathered over
   * up to CONFIRM_GATHER_MS; whoever asks while one is out waits for the next one, so each caller's
   * PING is sent after it asked.
   */
  #heardEverythingSentBefore(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#confirmWaiters.push({ resolve, reject });
      if (!this.#pingInFlight) this.#pings.request();
    });
  }

  #sendConfirmPing(): void {
    // Queued before stop(), which answered every waiter; or a PING is already out, and its answer asks again.
    if (this.#confirmWaiters.length === 0 || this.#pingInFlight) return;
    const waiters = this.#confirmWaiters.splice(0);
    this.#pingInFlight = true;
    const settle = (settleOne: (waiter: ConfirmWaiter) => void) => {
      this.#pingInFlight = false;
      waiters.forEach(settleOne);
      if (this.#confirmWaiters.length > 0) this.#pings.request();
    };
    this.redis.subscriber.ping().then(
      () => settle((waiter) => waiter.resolve()),
      (err: unknown) => settle((waiter) => waiter.reject(err)),
    );
  }

  /**
   * Writes every route this pod holds back to Redis, with a fresh lease, and removes those it let go
   * of whose removal failed; a failure is retried shortly.
   */
  async refreshAll(): Promise<void> {
    const held = [...this.#held];
    const unreleased = [...this.#unreleased];
    if (held.length === 0 && unreleased.length === 0) return;
    try {
      await this.redis.run('route_refresh', (r) => {
        const pipeline = r.pipeline();
        for (const [key] of held) pipeline.routeAdd(key, this.podId, this.lease.leaseMs, ROUTE_CHANGES_CHANNEL);
        for (const key of unreleased) pipeline.routeRemove(key, this.podId, ROUTE_CHANGES_CHANNEL);
        return execAll(pipeline);
      });
    } catch (err) {
      this.log.warn({ err, routes: held.length, removals: unreleased.length }, 'route refresh failed; retrying shortly');
      this.#retrySoon();
      return;
    }
    for (const [, route] of held) route.registered = true;
    for (const key of unreleased) this.#unreleased.delete(key);
  }

  /** Writes every held route again shortly (once, however many writes failed meanwhile). */
  #retrySoon(): void {
    if (this.#retryTimer !== undefined || (this.#held.size === 0 && this.#unreleased.size === 0)) return;
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      void this.refreshAll();
    }, RETRY_MS);
    this.#retryTimer.unref();
  }
}

function redisKey(route: Route): string {
  return `${KEY_PREFIX}${routeKey(route)}`;
}
