import type { DeliveryLedger } from '../dispatch/DeliveryLedger.js';
import { execAll, type RedisConnection } from './RedisConnection.js';

const KEY_PREFIX = 'delivered:';

/** The delivery ledger in Redis: `delivered:{stream}:{sequence}:{published_ns}`, a set of pod ids that expires with the retry window. */
export class RedisDeliveryLedger implements DeliveryLedger {
  constructor(
    private readonly redis: RedisConnection,
    private readonly ttlMs: number,
  ) {}

  async served(key: string): Promise<ReadonlySet<string>> {
    return new Set(await this.redis.run('ledger_read', (r) => r.smembers(`${KEY_PREFIX}${key}`)));
  }

  async record(key: string, pods: readonly string[]): Promise<void> {
    if (pods.length === 0) return;
    await this.redis.run('ledger_write', (r) => execAll(r.pipeline().sadd(`${KEY_PREFIX}${key}`, ...pods).pexpire(`${KEY_PREFIX}${key}`, this.ttlMs)));
  }
}
