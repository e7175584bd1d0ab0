import type { Logger } from '../log.js';
import type { RedisConnection } from '../redis/RedisConnection.js';
import type { TokenCache, VerifiedToken } from './TokenCache.js';

const KEY_PREFIX = 'token_cache:';

/**
 * Verified tokens in Redis under `token_cache:<sha256>`. The cache only saves work: a failed
 * read is a miss and a failed write is dropped, so it never refuses a valid token.
 */
export class RedisTokenCache implements TokenCache {
  constructor(
    private readonly redis: RedisConnection,
    private readonly log: Logger,
  ) {}

  async get(digest: string): Promise<VerifiedToken | undefined> {
    try {
      const value = await this.redis.run('token_cache_get', (r) => r.get(`${KEY_PREFIX}${digest}`));
      return value === null ? undefined : parseVerified(value);
    } catch (err) {
      this.log.debug({ err }, 'token cache read failed; verifying instead');
      return undefined;
    }
  }

  async set(digest: string, token: VerifiedToken, ttlMs: number): Promise<void> {
    try {
      await this.redis.run('token_cache_set', (r) => r.set(`${KEY_PREFIX}${digest}`, JSON.stringify(token), 'PX', Math.max(1, Math.floor(ttlMs))));
    } catch (err) {
      this.log.debug({ err }, 'token cache write failed');
    }
  }
}

/** Rebuilds the cached claims field by field, so a corrupt or foreign value is a miss, never a login. */
function parseVerified(value: string): VerifiedToken | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    return undefined;
  }
  if (typeof parsed !== 'object' || parsed === null) return undefined;
  const { kind, claims } = parsed as { kind?: unknown; claims?: unknown };
  if (typeof claims !== 'object' || claims === null) return undefined;
  const c = claims as Record<string, unknown>;
  const text = (name: string) => (typeof c[name] === 'string' ? (c[name] as string) : undefined);
  const expiresAtMs = typeof c['expiresAtMs'] === 'number' ? c['expiresAtMs'] : undefined;
  if (expiresAtMs === undefined) return undefined;
  if (kind === 'user') {
    const [companyId, agentId, userId] = [text('companyId'), text('agentId'), text('userId')];
    if (companyId === undefined || agentId === undefined || userId === undefined) return undefined;
    return { kind, claims: { companyId, agentId, userId, expiresAtMs } };
  }
  if (kind === 'admin') {
    const adminId = text('adminId');
    if (adminId === undefined) return undefined;
    return {
      kind,
      claims: {
        adminId,
        companyIdRestriction: text('companyIdRestriction') ?? '',
        subscribedCompanyId: text('subscribedCompanyId') ?? '',
        subscribedAgentId: text('subscribedAgentId') ?? '',
        expiresAtMs,
      },
    };
  }
  return undefined;
}
