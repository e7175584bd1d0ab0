import type { TokenCache, VerifiedToken } from '../auth/TokenCache.js';

interface Entry {
  readonly token: VerifiedToken;
  readonly expiresAtMs: number;
}

/** The in-process token cache: bounded, oldest entries evicted first, entries expire on read. */
export class LocalTokenCache implements TokenCache {
  readonly #entries = new Map<string, Entry>();

  constructor(private readonly maxEntries: number) {}

  async get(digest: string): Promise<VerifiedToken | undefined> {
    const entry = this.#entries.get(digest);
    if (entry === undefined) return undefined;
    if (entry.expiresAtMs <= Date.now()) {
      this.#entries.delete(digest);
      return undefined;
    }
    return entry.token;
  }

  async set(digest: string, token: VerifiedToken, ttlMs: number): Promise<void> {
    this.#entries.delete(digest);
    this.#entries.set(digest, { token, expiresAtMs: Date.now() + ttlMs });
    // Map iteration is insertion order, so the first key is the oldest entry.
    while (this.#entries.size > this.maxEntries) {
      const oldest = this.#entries.keys().next();
      if (oldest.done === true) break;
      this.#entries.delete(oldest.value);
    }
  }
}
