/**
 * A token bucket refilled continuously. Capacity and rate are passed on every take, so a reload of
 * the limits applies to live connections at once; time is passed in, so it is pure.
 */
export class TokenBucket {
  #tokens: number;
  #updatedAtMs: number;

  constructor(capacity: number, nowMs: number) {
    this.#tokens = capacity;
    this.#updatedAtMs = nowMs;
  }

  /** Takes one token if there is one; false means the caller is over the limit. */
  take(nowMs: number, capacity: number, perSecond: number): boolean {
    const elapsedMs = Math.max(0, nowMs - this.#updatedAtMs);
    this.#tokens = Math.min(capacity, this.#tokens + (elapsedMs * perSecond) / 1000);
    this.#updatedAtMs = nowMs;
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }
}
