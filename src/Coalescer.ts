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
 * anyway, and a request waits at most `2 × intervalMs`.
 */
export class Coalescer {
  #lastFlushAt = Number.NEGATIVE_INFINITY;
  #flushQueued = false;
  #backstop: NodeJS.Timeout | undefined;

  constructor(
    private readonly intervalMs: number,
    private readonly flush: () => void,
  ) {}

  /** Asks for a flush; many requests between two flushes cost one. */
  request(): void {
    if (this.#flushQueued) return;
    if (Date.now() - this.#lastFlushAt >= this.intervalMs) {
      this.#flushQueued = true;
      setImmediate(() => this.flushNow());
      return;
    }
    this.#backstop ??= setTimeout(() => this.flushNow(), this.#lastFlushAt + 2 * this.intervalMs - Date.now());
  }

  /** Flushes at once (also when stopping, so nothing gathered is left behind). */
  flushNow(): void {
    clearTimeout(this.#backstop);
    this.#backstop = undefined;
    this.#flushQueued = false;
    this.#lastFlushAt = Date.now();
    this.flush();
  }

  /** Drops a pending timer; what is gathered stays for the owner to flush or discard. */
  cancel(): void {
    clearTimeout(this.#backstop);
    this.#backstop = undefined;
  }
}
