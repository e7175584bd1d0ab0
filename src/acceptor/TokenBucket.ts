/** A token bucket: `capacity` tokens, refilled continuously at `perSecond`. Time is passed in, so it is pure. */
export class TokenBucket {
  #tokens: number;
  #updatedAtMs: number;

  constructor(
    private readonly capacity: number,
    private readonly perSecond: number,
    nowMs: number,
  ) {
    this.#tokens = capacity;
    this.#updatedAtMs = nowMs;
  }

  /** Takes one token if there is one; false means the caller is over the limit. */
  take(nowMs: number): boolean {
    const elapsedMs = Math.max(0, nowMs - this.#updatedAtMs);
    this.#tokens = Math.min(this.capacity, this.#tokens + (elapsedMs * this.perSecond) / 1000);
    this.#updatedAtMs = nowMs;
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }
}
