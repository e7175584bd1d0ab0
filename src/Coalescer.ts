/**
 * Gathers work that can wait a few milliseconds (acks, confirmations, replies) and flushes it on a
 * wake-up the process has anyway. Waking a Node process costs about 100 µs of CPU on a busy
 * machine, more than the work itself, so a timer per flush is what this avoids:
 *
 * - the first request at least `intervalMs` after the last flush flushes at the end of its turn of
 *   the event loop (so whatever else that turn adds joins it);
 * - requests sooner than that wait for a later request that is not, and only when none comes
 *   within `2 × intervalMs` of the last flush does a timer wake the process for them.
 *
 * So at most one flush per `intervalMs` while requests keep coming, each on a turn that runs
 * anyway, and a request waits at most `2 × intervalMs` for its flush.
 */
export class Coalescer {
  #lastFlushAt = Number.NEGATIVE_INFINITY;
  #queuedFlush: NodeJS.Immediate | undefined;
  #backstop: NodeJS.Timeout | undefined;

  constructor(
    private readonly intervalMs: number,
    private readonly flush: () => void,
  ) {}

  /** Asks for a flush; many requests between two flushes cost one. */
  request(): void {
    if (this.#queuedFlush !== undefined) return;
    const sinceFlushMs = Date.now() - this.#lastFlushAt;
    if (sinceFlushMs >= this.intervalMs) {
      this.#queuedFlush = setImmediate(() => this.flushNow());
      return;
    }
    // Capped: a wall clock stepped back makes the time since the last flush negative.
    const waitMs = Math.min(2 * this.intervalMs, 2 * this.intervalMs - sinceFlushMs);
    this.#backstop ??= setTimeout(() => this.flushNow(), waitMs);
  }

  /** Flushes at once (also when stopping, so nothing gathered is left behind). */
  flushNow(): void {
    this.cancel();
    this.#lastFlushAt = Date.now();
    this.flush();
  }

  /** Drops the flush scheduled, if any; what is gathered stays for the owner to flush or discard. */
  cancel(): void {
    clearImmediate(this.#queuedFlush);
    this.#queuedFlush = undefined;
    clearTimeout(this.#backstop);
    this.#backstop = undefined;
  }
}
