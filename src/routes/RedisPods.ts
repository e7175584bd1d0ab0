import type { Logger } from '../log.js';
import type { RedisConnection } from '../redis/RedisConnection.js';
import { RECONNECT_MAX_DELAY_MS, scanAll } from '../redis/RedisConnection.js';
import type { LeaseOptions } from '../sessions/RedisSessions.js';
import type { PodDirectory, PodInfo } from './PodDirectory.js';

/** Prefix of the heartbeat keys; route and session scripts check liveness against it. */
export const POD_PREFIX = 'pod:';
/**
 * Set when a pod finds its own heartbeat gone: Redis lost its data (a restart without persistence,
 * FLUSHALL), or the pod stalled past its lease. Until it expires, pods may still be re-asserting
 * their heartbeats and routes, so route lookups may miss owners (see owners.lua).
 */
export const RECOVERING_KEY = 'cluster:recovering';
/**
 * A pod that was connected to a Redis that restarted is back, and has marked the recovery, within
 * this long of Redis's start: its next reconnect attempt, plus a margin for the connect, the
 * heartbeat that finds the loss and a busy event loop.
 */
const RECONNECT_GAP_MS = RECONNECT_MAX_DELAY_MS + 2000;
/** The margin covers the heartbeat's and the re-assertion's own round trips. */
const RECOVERY_MARGIN_MS = 1000;

/**
 * How long a recovery lasts past the last pod that found the loss: every connected pod's heartbeat
 * finds it within one renewal period, and a pod that finds it writes its routes back at once.
 */
export function recoveryMs(lease: LeaseOptions): number {
  return lease.renewIntervalMs + RECOVERY_MARGIN_MS;
}

interface Heartbeat {
  readonly connections: number;
  readonly started_at_ms: number;
  readonly seen_at_ms: number;
}

/** Pod liveness in Redis: `pod:{pod_id}` with a lease, refreshed every renewal period while the pod lives. */
export class RedisPods implements PodDirectory {
  #timer: NodeJS.Timeout | undefined;
  readonly #startedAtMs = Date.now();
  /** Whether this pod has written a heartbeat: from then on, finding none means Redis lost it. */
  #beating = false;

  constructor(
    private readonly redis: RedisConnection,
    private readonly podId: string,
    private readonly lease: LeaseOptions,
    private readonly connectionCount: () => number,
    /** Writes back what Redis lost of this pod's state (its routes and sessions). */
    private readonly reassert: () => Promise<void>,
    /** Removes what a previous process under this pod id left in Redis; answers how many routes it held. */
    private readonly forgetPredecessor: () => Promise<number>,
    private readonly log: Logger,
  ) {}

  /** Writes the first heartbeat (before any session or route names this pod) and keeps beating. */
  async start(): Promise<void> {
    await this.#waitOutReconnectGap();
    await this.#beat();
    this.#timer = setInterval(this.#beatLogged, this.lease.renewIntervalMs);
    this.#timer.unref();
    // Back from a reconnect: beat at once, so a Redis that lost its data is found out now, not a period later.
    this.redis.commands.on('ready', this.#beatLogged);
  }

  async list(): Promise<readonly PodInfo[]> {
    const keys = await this.redis.run('pod_scan', (r) => scanAll(r, `${POD_PREFIX}*`));
    if (keys.length === 0) return [];
    const values = await this.redis.run('pod_list', (r) => r.mget(keys));
    return keys.flatMap((key, i) => {
      const heartbeat = parseHeartbeat(values[i]);
      return heartbeat === undefined
        ? []
        : [{ podId: key.slice(POD_PREFIX.length), connections: heartbeat.connections, startedAtMs: heartbeat.started_at_ms, lastSeenMs: heartbeat.seen_at_ms }];
    });
  }

  /** Removes the heartbeat so peers stop routing here at once. */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    this.redis.commands.off('ready', this.#beatLogged);
    await this.redis.run('pod_remove', (r) => r.del(`${POD_PREFIX}${this.podId}`));
  }

  readonly #beatLogged = (): void => {
    this.#beat().catch((err: unknown) => this.log.warn({ err }, 'pod heartbeat failed; retrying next period'));
  };

  async #beat(): Promise<void> {
    const heartbeat: Heartbeat = { connections: this.connectionCount(), started_at_ms: this.#startedAtMs, seen_at_ms: Date.now() };
    const previous = await this.redis.run('pod_heartbeat', (r) => r.set(`${POD_PREFIX}${this.podId}`, JSON.stringify(heartbeat), 'PX', this.lease.leaseMs, 'GET'));
    if (previous === null && this.#beating) await this.#recover();
    if (previous !== null && !this.#beating) await this.#replacePredecessor(previous);
    this.#beating = true;
  }

  /**
   * When Redis started moments ago it may have restarted empty under a live cluster whose pods have
   * not reconnected yet. Until they do, their routes are missing and nothing says so (they mark the
   * recovery when they are back), so an event this pod handled now would miss their connections.
   * A pod starting in that gap waits it out; on a new cluster that is a few seconds of start-up,
   * and a pod starting next to a Redis that has been up for longer never waits.
   */
  async #waitOutReconnectGap(): Promise<void> {
    // A Redis that refuses INFO (some managed ones rename it) cannot say: no wait, as before.
    const server = await this.redis.run('server_info', (r) => r.info('server')).catch(() => '');
    const uptimeSeconds = Number(/^uptime_in_seconds:(\d+)/m.exec(server)?.[1]);
    // Whole seconds, rounded down: the wait may run up to a second longer than the gap.
    const waitMs = Number.isFinite(uptimeSeconds) ? RECONNECT_GAP_MS - uptimeSeconds * 1000 : 0;
    if (waitMs <= 0) return;
    this.log.info({ redis_uptime_s: uptimeSeconds, wait_ms: waitMs }, 'Redis started moments ago: waiting for pods that may be reconnecting to it before handling events');
    await new Promise((resolve) => setTimeout(resolve, waitMs));
  }

  /**
   * A heartbeat under this id before this process wrote one: the pod restarted with the same
   * address within a lease (or two pods share POD_IP:GRPC_PORT, which the log says too).
   */
  async #replacePredecessor(heartbeat: string): Promise<void> {
    const removed = await this.forgetPredecessor();
    this.log.warn(
      { previous_started_at_ms: parseHeartbeat(heartbeat)?.started_at_ms, routes_removed: removed },
      'a heartbeat under this pod id was already in Redis: this pod restarted (or another pod has the same POD_IP:GRPC_PORT); removed the routes naming it',
    );
  }

  /**
   * Marks a recovery, or extends the one on, by a whole window from now: another pod may already
   * have marked one that ends before this pod's routes are back. Then writes those routes back at
   * once rather than at the next renewal, so the window covers them whenever this pod found out.
   */
  async #recover(): Promise<void> {
    const windowMs = recoveryMs(this.lease);
    await this.redis.run('recovery_mark', (r) => r.set(RECOVERING_KEY, this.podId, 'PX', windowMs));
    this.log.warn({ window_ms: windowMs }, 'this pod\'s heartbeat was gone from Redis (it lost its data, or this pod stalled past its lease); re-asserting its routes and sessions, and events wait until every pod has');
    await this.reassert();
  }
}

function parseHeartbeat(value: string | null | undefined): Heartbeat | undefined {
  if (value === null || value === undefined) return undefined;
  try {
    const parsed = JSON.parse(value) as Partial<Heartbeat>;
    return typeof parsed.connections === 'number' && typeof parsed.started_at_ms === 'number' && typeof parsed.seen_at_ms === 'number'
      ? (parsed as Heartbeat)
      : undefined;
  } catch {
    return undefined;
  }
}
