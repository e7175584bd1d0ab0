import type { Result } from 'ioredis';
import { GatewayError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import { execAll, scanAll, type RedisConnection } from '../redis/RedisConnection.js';
import { POD_PREFIX } from '../routes/RedisPods.js';
import {
  identityKey,
  type Identity,
  type RevokeReason,
  type SessionHolder,
  type SessionInfo,
  type SessionLease,
  type SessionStore,
} from './SessionStore.js';

declare module 'ioredis' {
  interface RedisCommander<Context> {
    sessionAcquire(key: string, podId: string, connectionId: string, leaseMs: number, limit: number, podPrefix: string, killPrefix: string, revokedPrefix: string): Result<string[], Context>;
    sessionRenew(keyCount: number, ...keysMembersLeaseLimit: Array<string | number>): Result<number[], Context>;
    sessionDisconnect(key: string, killPrefix: string, revokedPrefix: string, leaseMs: number, podPrefix: string): Result<number, Context>;
    sessionForget(key: string, memberSuffix: string): Result<number, Context>;
  }
}

/** Lease timing shared by sessions, routes and pod heartbeats. */
export interface LeaseOptions {
  readonly leaseMs: number;
  readonly renewIntervalMs: number;
}

/** A session this pod holds; it is also the lease handed to the connection, so a connection costs one object here. */
class LocalSession implements SessionLease {
  /** Set once acquire.lua answered; renewal and release need it. */
  member: string | undefined = undefined;

  constructor(
    readonly key: string,
    readonly identity: Identity,
    readonly holder: SessionHolder,
    /** Past this the lease may have lapsed in Redis, so the connection must go (1012). */
    public leaseUntilMs: number,
    private readonly releaseById: (connectionId: string) => Promise<void>,
  ) {}

  release(): Promise<void> {
    return this.releaseById(this.holder.connectionId);
  }
}

const KEY_PREFIX = 'session:';
const KILL_PREFIX = 'session_kill:';
/** Left by an admin disconnect for one lease, so a renewal does not bring the session back. */
const REVOKED_PREFIX = 'session_revoked:';
const SCAN_BATCH = 500;
/** Sessions renewed by one script call: a few milliseconds of Redis time at most. */
const RENEW_BATCH = 200;

/**
 * Sessions in Redis: one sorted set per identity (`session:{c}:{a}:{u}`, `session:admin:{id}`) whose
 * members are leases. The newest connection wins at once; the replaced connection's pod hears it on
 * its kill channel (`session_kill:{pod_id}`). Leases are renewed only while still held, and closed
 * with 1012 when Redis stays unreachable past their expiry.
 */
export class RedisSessions implements SessionStore {
  readonly #local = new Map<string, LocalSession>();
  readonly #releaseById = (connectionId: string) => this.#release(connectionId);
  #renewTimer: NodeJS.Timeout | undefined;
  /** Renewal passes under way: the scheduled one, and a re-assertion after Redis lost its data. */
  #renewPasses = 0;
  #sweepTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly redis: RedisConnection,
    private readonly podId: string,
    private readonly lease: LeaseOptions,
    private readonly maxDevices: number,
    private readonly metrics: Metrics,
    private readonly log: Logger,
  ) {
    redis.defineScript('sessionAcquire', new URL('./acquire.lua', import.meta.url), 1);
    redis.defineScript('sessionRenew', new URL('./renew.lua', import.meta.url));
    redis.defineScript('sessionDisconnect', new URL('./disconnect.lua', import.meta.url), 1);
    redis.defineScript('sessionForget', new URL('./forget.lua', import.meta.url), 1);
  }

  /** Listens on this pod's kill channel and starts renewing. */
  async start(): Promise<void> {
    const channel = `${KILL_PREFIX}${this.podId}`;
    this.redis.subscriber.on('message', (from: string, message: string) => {
      if (from === channel) this.#onKill(message);
    });
    await this.redis.subscriber.subscribe(channel);
    // A pass on a hung Redis takes a command timeout per batch, which can outlast the period: the
    // next one waits for a period of its own rather than pile the same renewals on a waking Redis.
    this.#renewTimer = setInterval(() => {
      if (this.#renewPasses === 0) void this.renewAll();
    }, this.lease.renewIntervalMs);
    this.#sweepTimer = setInterval(() => this.#closeLapsed(), Math.min(1000, this.lease.renewIntervalMs / 4));
    this.#renewTimer.unref();
    this.#sweepTimer.unref();
  }

  async acquire(identity: Identity, holder: SessionHolder): Promise<SessionLease> {
    if (!this.redis.healthy) {
      this.metrics.sessionAcquisitions.inc({ result: 'unavailable' });
      throw new GatewayError('ServiceUnavailable', 'the coordination store is unreachable; try again later');
    }
    const key = sessionKey(identity);
    const session = new LocalSession(key, identity, holder, Date.now() + this.lease.leaseMs, this.#releaseById);
    // Registered before the script runs: a kill for this connection may arrive before the reply does.
    this.#local.set(holder.connectionId, session);
    let reply: string[];
    try {
      reply = await this.redis.run('session_acquire', (r) =>
        r.sessionAcquire(key, this.podId, holder.connectionId, this.lease.leaseMs, this.maxDevices, POD_PREFIX, KILL_PREFIX, REVOKED_PREFIX),
      );
    } catch (err) {
      this.#local.delete(holder.connectionId);
      this.metrics.sessionAcquisitions.inc({ result: 'unavailable' });
      // A timeout may hide a script that ran. Best effort: if Redis is gone, the lease expires.
      this.#forget(key, holder.connectionId).catch(() => undefined);
      throw err;
    }
    const [member, ...evicted] = reply;
    session.member = member;
    this.metrics.sessionAcquisitions.inc({ result: 'acquired' });
    if (evicted.length > 0) this.metrics.sessionTakeovers.inc(evicted.length);
    return session;
  }

  async disconnect(identity: Identity): Promise<boolean> {
    const closed = await this.redis.run('session_disconnect', (r) => r.sessionDisconnect(sessionKey(identity), KILL_PREFIX, REVOKED_PREFIX, this.lease.leaseMs, POD_PREFIX));
    return closed > 0;
  }

  async list(): Promise<readonly SessionInfo[]> {
    const keys = await this.redis.run('session_scan', (r) => scanAll(r, `${KEY_PREFIX}*`));
    // Lease expiries are on the Redis clock (the scripts read TIME), so compare them with that clock.
    const [seconds, micros] = await this.redis.run('session_time', (r) => r.time());
    const now = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
    const sessions: SessionInfo[] = [];
    for (let i = 0; i < keys.length; i += SCAN_BATCH) {
      const batch = keys.slice(i, i + SCAN_BATCH);
      const replies = await this.redis.run('session_list', (r) => {
        const pipeline = r.pipeline();
        // Leases past their expiry are gone even if Redis has not pruned them yet.
        for (const key of batch) pipeline.zrangebyscore(key, now, '+inf');
        return execAll(pipeline);
      });
      batch.forEach((key, j) => {
        const identity = identityFromKey(key);
        const members = replies[j];
        if (identity === undefined || !Array.isArray(members)) return;
        for (const member of members) {
          const parsed = parseMember(String(member));
          if (parsed !== undefined) sessions.push({ identity, connectionId: parsed.connectionId, podId: parsed.podId, sinceMs: parsed.acquiredAtMs });
        }
      });
    }
    return sessions;
  }

  /** Releases whatever this pod still holds and stops renewing. */
  async stop(): Promise<void> {
    clearInterval(this.#renewTimer);
    clearInterval(this.#sweepTimer);
    await Promise.allSettled([...this.#local.keys()].map((id) => this.#release(id)));
  }

  async #release(connectionId: string): Promise<void> {
    const session = this.#local.get(connectionId);
    if (session === undefined) return;
    this.#local.delete(connectionId);
    const { member } = session;
    if (member !== undefined) await this.#removeLease(session.key, member);
    // Still being acquired (the pod is stopping): the lease the acquire makes goes too.
    else await this.#forget(session.key, connectionId);
  }

  /**
   * Removes this pod's lease for `connectionId` whatever its member: sent on the connection that
   * sent the acquire, it runs after it, so a lease whose acquire is still out is removed too.
   */
  async #forget(key: string, connectionId: string): Promise<void> {
    await this.redis.run('session_forget', (r) => r.sessionForget(key, `|${this.podId}|${connectionId}`));
  }

  /** ZREM removes only our own member, so a lease another connection took over is left alone. */
  async #removeLease(key: string, member: string): Promise<void> {
    await this.redis.run('session_release', (r) => r.zrem(key, member));
  }

  #onKill(message: string): void {
    const [connectionId = '', reason = ''] = message.split(' ');
    const session = this.#local.get(connectionId);
    if (session === undefined) return;
    this.#local.delete(connectionId);
    session.holder.revoke(reason === 'admin-disconnect' ? 'admin-disconnect' : 'replaced');
  }

  /**
   * Renews every lease this pod holds, re-asserting those Redis lost; failures leave the leases
   * running on. One batch at a time: each command's timeout covers its own work, not the batches
   * queued ahead of it, and a batch that fails costs only its own sessions their renewal.
   */
  async renewAll(): Promise<void> {
    this.#renewPasses++;
    try {
      await this.#renewPass();
    } finally {
      this.#renewPasses--;
    }
  }

  async #renewPass(): Promise<void> {
    const sessions = [...this.#local.values()].filter((s) => s.member !== undefined);
    let reasserted = 0;
    let failed = 0;
    let firstError: unknown;
    for (let i = 0; i < sessions.length; i += RENEW_BATCH) {
      // Sessions released while earlier batches were out are left alone: renewing one would re-assert it.
      const batch = sessions.slice(i, i + RENEW_BATCH).filter((s) => this.#local.get(s.holder.connectionId) === s);
      if (batch.length === 0) continue;
      const sentAtMs = Date.now();
      let statuses: unknown;
      try {
        statuses = await this.redis.run('session_renew', (r) =>
          r.sessionRenew(batch.length, ...batch.map((s) => s.key), ...batch.map((s) => s.member ?? ''), this.lease.leaseMs, this.maxDevices, REVOKED_PREFIX),
        );
      } catch (err) {
        failed += batch.length;
        firstError ??= err;
        continue;
      }
      reasserted += this.#applyRenewal(batch, statuses, sentAtMs);
    }
    if (failed > 0) this.log.warn({ err: firstError, sessions: failed }, 'session renewal failed; leases run on');
    if (reasserted > 0) this.log.info({ sessions: reasserted }, 're-asserted sessions Redis had lost');
  }

  /** Acts on renew.lua's status for each session of a batch; answers how many were re-asserted. */
  #applyRenewal(batch: readonly LocalSession[], statuses: unknown, sentAtMs: number): number {
    if (!Array.isArray(statuses)) return 0;
    let reasserted = 0;
    batch.forEach((session, i) => {
      const status: unknown = statuses[i];
      if (status === 0) {
        this.#lose(session, 'replaced');
        return;
      }
      if (status === 3) {
        this.#revokeMissedKill(session);
        return;
      }
      if (status === 2) reasserted++;
      // A re-assertion may run beside the scheduled pass: an answer to the older renewal never shortens the lease.
      if (status === 1 || status === 2) session.leaseUntilMs = Math.max(session.leaseUntilMs, sentAtMs + this.lease.leaseMs);
    });
    return reasserted;
  }

  /** An admin disconnected this session, and the kill message never reached this pod. */
  #revokeMissedKill(session: LocalSession): void {
    if (this.#local.get(session.holder.connectionId) !== session) return;
    this.#local.delete(session.holder.connectionId);
    this.log.warn({ session: identityKey(session.identity), connection_id: session.holder.connectionId }, 'session disconnected by an admin while this pod was not listening; closing');
    session.holder.revoke('admin-disconnect');
  }

  #closeLapsed(): void {
    const now = Date.now();
    for (const session of this.#local.values()) {
      if (session.member !== undefined && session.leaseUntilMs <= now) this.#lose(session, 'lease-lost');
    }
  }

  #lose(session: LocalSession, reason: RevokeReason): void {
    if (this.#local.get(session.holder.connectionId) !== session) return;
    this.#local.delete(session.holder.connectionId);
    this.metrics.leaseLosses.inc({ reason: reason === 'lease-lost' ? 'expired' : 'taken' });
    this.log.warn({ session: identityKey(session.identity), connection_id: session.holder.connectionId, reason }, 'session lease lost; closing');
    const { member } = session;
    if (reason === 'lease-lost' && member !== undefined) {
      // A hung Redis still holds the renewals sent to it, and will re-assert this lease when it wakes;
      // a removal sent now runs after them, on the same connection. Best effort: the lease lapses anyway.
      this.#removeLease(session.key, member).catch(() => undefined);
    }
    session.holder.revoke(reason);
  }
}

function sessionKey(identity: Identity): string {
  return `${KEY_PREFIX}${identityKey(identity)}`;
}

function identityFromKey(key: string): Identity | undefined {
  const parts = key.slice(KEY_PREFIX.length).split(':');
  if (parts.length === 2 && parts[0] === 'admin' && parts[1] !== undefined) return { kind: 'admin', adminId: parts[1] };
  const [companyId, agentId, userId] = parts;
  if (parts.length === 3 && companyId !== undefined && agentId !== undefined && userId !== undefined) {
    return { kind: 'user', companyId, agentId, userId };
  }
  return undefined;
}

function parseMember(member: string): { acquiredAtMs: number; podId: string; connectionId: string } | undefined {
  const first = member.indexOf('|');
  const last = member.lastIndexOf('|');
  if (first < 0 || last <= first) return undefined;
  return { acquiredAtMs: Number(member.slice(0, first)), podId: member.slice(first + 1, last), connectionId: member.slice(last + 1) };
}
