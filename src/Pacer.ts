/**
 * Runs a task at most once per interval: at once when its last run was long enough ago, otherwise
 * once the interval since that run has passed. Requests in between share that one run, so an idle
 * pod pays no delay and a busy one does the work once per interval instead of once per request.
 */
export class Pacer {
  #lastRunAtMs = Number.NEGATIVE_INFINITY;
  #timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly intervalMs: number,
    private readonly task: () => void,
  ) {}

  request(): void {
    if (this.#timer !== undefined) return;
    const waitMs = this.#lastRunAtMs + this.intervalMs - Date.now();
    if (waitMs <= 0) {
      this.#run();
      return;
    }
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#run();
    }, waitMs);
  }

  /** Drops a waiting run. */
  cancel(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #run(): void {
    this.#lastRunAtMs = Date.now();
    this.task();
  }
}
