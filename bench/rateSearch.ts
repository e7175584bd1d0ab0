/** The rates a fan-out sweep tries, and how fine it gets. */
export interface RateSearchSettings {
  readonly firstRate: number;
  readonly maxRate: number;
  /** Bisections between the last pass and the first failure. */
  readonly refineSteps: number;
  /** Halving below the first rate stops here. */
  readonly minRate: number;
}

/**
 * One path's search for its highest passing rate: doubles the rate until a step fails (halving
 * instead when the first one fails), then bisects between the last pass and the first failure.
 * It only says which rate to try next; the caller measures, so several searches can take turns.
 */
export class RateSearch {
  #next: number | undefined;
  #direction: 'up' | 'down' | 'refine' = 'up';
  #refined = 0;
  #pass: number | undefined;
  #fail: number | undefined;

  constructor(private readonly settings: RateSearchSettings) {
    this.#next = settings.firstRate;
  }

  /** The rate to measure next; undefined once the search is over. */
  get next(): number | undefined {
    return this.#next;
  }

  /** The highest rate that passed, if any did. */
  get best(): number | undefined {
    return this.#pass;
  }

  /** Takes the outcome of measuring `next`. */
  record(passed: boolean): void {
    const rate = this.#next;
    if (rate === undefined) throw new Error('the search is over');
    if (passed) this.#pass = rate;
    else this.#fail = rate;
    this.#next = this.#following(rate, passed);
  }

  #following(rate: number, passed: boolean): number | undefined {
    const { maxRate, minRate } = this.settings;
    if (this.#direction === 'up') {
      if (passed) return rate * 2 <= maxRate ? rate * 2 : undefined;
      if (this.#pass === undefined) {
        this.#direction = 'down';
        return rate / 2 >= minRate ? rate / 2 : undefined;
      }
      this.#direction = 'refine';
      return this.#bisect();
    }
    if (this.#direction === 'down') {
      if (!passed) return rate / 2 >= minRate ? rate / 2 : undefined;
      this.#direction = 'refine';
      return this.#bisect();
    }
    this.#refined++;
    return this.#bisect();
  }

  #bisect(): number | undefined {
    if (this.#refined >= this.settings.refineSteps || this.#pass === undefined || this.#fail === undefined) return undefined;
    return Math.round((this.#pass + this.#fail) / 2);
  }
}
