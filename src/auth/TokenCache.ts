import type { AdminClaims, UserClaims } from './tokenCodec.js';

/** Claims of a verified token, tagged with its kind. */
export type VerifiedToken =
  | { readonly kind: 'user'; readonly claims: UserClaims }
  | { readonly kind: 'admin'; readonly claims: AdminClaims };

/** Verified tokens by the sha256 of the raw token; the raw token is never stored. */
export interface TokenCache {
  get(digest: string): Promise<VerifiedToken | undefined>;
  /** Never rejects: a write that cannot be made is dropped (the cache only saves work). */
  set(digest: string, token: VerifiedToken, ttlMs: number): Promise<void>;
}
