import { createHash, timingSafeEqual } from 'node:crypto';
import type { AuthStage } from '../metrics.js';
import type { TokenCache, VerifiedToken } from './TokenCache.js';
import { TokenError, type TokenCodec, type TokenKind } from './tokenCodec.js';

/** Why a credential was refused; `stage` feeds the auth-failure metric, `message` goes to the client. */
export interface AuthFailure {
  readonly stage: AuthStage;
  readonly code: 'InvalidAPIKey' | 'InvalidToken';
  readonly message: string;
  /** The token does not decrypt under this pod's keys, but another pod may have verified it (key rotation): the cache may know it. */
  readonly cacheMayKnow: boolean;
}

export type AuthResult = { readonly ok: true; readonly token: VerifiedToken } | { readonly ok: false; readonly failure: AuthFailure };

/** Everything the authenticator needs for one kind of credential (user or admin). */
export interface CredentialKeys {
  readonly apiKey: string;
  readonly codec: TokenCodec;
}

/** API-key guard and token verification with a cache in front of the AES work. */
export class Authenticator {
  readonly #apiKeyDigests: Readonly<Record<TokenKind, Buffer>>;

  constructor(
    private readonly keys: Readonly<Record<TokenKind, CredentialKeys>>,
    private readonly cache: TokenCache,
    private readonly cacheTtlMs: number,
  ) {
    this.#apiKeyDigests = { user: sha256(keys.user.apiKey), admin: sha256(keys.admin.apiKey) };
  }

  /** Compares in constant time (over digests, so the length of the key does not leak either). */
  apiKeyMatches(kind: TokenKind, presented: string | undefined): boolean {
    if (presented === undefined || presented === '') return false;
    return timingSafeEqual(sha256(presented), this.#apiKeyDigests[kind]);
  }

  /**
   * Checks the API key, then the token: accepted when it verifies here or when it was verified
   * recently (on any pod) and is in the cache. Verifying (AES-GCM, a few microseconds) costs far
   * less than a cache read, so the cache is read only for a token that does not decrypt under this
   * pod's keys: another pod's keys may open it (a rotation in progress). One that decrypts here but
   * fails (expired, bad claims) or is not a token at all fails on every pod, without a round trip.
   */
  async authenticate(kind: TokenKind, apiKey: string | undefined, token: string | undefined, nowMs: number): Promise<AuthResult> {
    const presented = this.#presentedToken(kind, apiKey, token);
    if (typeof presented !== 'string') return presented;
    const digest = sha256(presented).toString('hex');
    const result = this.#verify(kind, presented, nowMs);
    if (result.ok) {
      const ttlMs = Math.min(this.cacheTtlMs, result.token.claims.expiresAtMs - nowMs);
      // Not awaited: the cache only saves later work, and its write then leaves with the session's commands.
      if (ttlMs > 0) void this.cache.set(digest, result.token, ttlMs);
      return result;
    }
    if (!result.failure.cacheMayKnow) return result;
    const cached = await this.cache.get(digest);
    if (cached !== undefined && cached.kind === kind && cached.claims.expiresAtMs > nowMs) {
      return { ok: true, token: cached };
    }
    return result;
  }

  /** The same checks without the cache, synchronously (for answering before the upgrade). */
  authenticateNow(kind: TokenKind, apiKey: string | undefined, token: string | undefined, nowMs: number): AuthResult {
    const presented = this.#presentedToken(kind, apiKey, token);
    return typeof presented === 'string' ? this.#verify(kind, presented, nowMs) : presented;
  }

  /** The token to verify once the API key matched, or why the credentials are refused outright. */
  #presentedToken(kind: TokenKind, apiKey: string | undefined, token: string | undefined): string | AuthResult {
    if (!this.apiKeyMatches(kind, apiKey)) {
      return fail('api_key', 'InvalidAPIKey', apiKey === undefined || apiKey === '' ? 'missing API key' : 'wrong API key');
    }
    if (token === undefined || token === '') return fail('token', 'InvalidToken', 'missing token');
    return token;
  }

  #verify(kind: TokenKind, token: string, nowMs: number): AuthResult {
    try {
      return {
        ok: true,
        token:
          kind === 'user'
            ? { kind, claims: this.keys.user.codec.verifyUser(token, nowMs) }
            : { kind, claims: this.keys.admin.codec.verifyAdmin(token, nowMs) },
      };
    } catch (err) {
      if (err instanceof TokenError) return fail('token', 'InvalidToken', err.message, err.failure === 'undecryptable');
      throw err;
    }
  }
}

function fail(stage: AuthStage, code: AuthFailure['code'], message: string, cacheMayKnow = false): AuthResult {
  return { ok: false, failure: { stage, code, message, cacheMayKnow } };
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}
