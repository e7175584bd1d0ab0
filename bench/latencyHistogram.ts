// A fixed-bucket latency histogram, cheap enough to record every delivery at hundreds of
// thousands per second, and mergeable across client processes by summing counts.

/** Below one second, buckets are 10 µs wide: the targets compare p99s a few ms apart. */
const FINE_BUCKETS_PER_MS = 100;
const FINE_LIMIT_MS = 1000;
const FINE_BUCKETS = FINE_LIMIT_MS * FINE_BUCKETS_PER_MS;
/** From one second to two minutes, 1 ms buckets; anything later lands in the last one. */
const COARSE_BUCKETS = 120_000;
const BUCKETS = FINE_BUCKETS + COARSE_BUCKETS;

/** Non-empty buckets as `[bucket, count]` pairs: what a client process sends back. */
export type SparseHistogram = ReadonlyArray<readonly [number, number]>;

/** Latency percentiles in milliseconds. */
export interface LatencySummary {
  readonly count: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly p999Ms: number;
  readonly maxMs: number;
}

/** Counts of latencies by bucket; percentiles are read at bucket midpoints. */
export class LatencyHistogram {
  readonly #counts = new Uint32Array(BUCKETS);
  #count = 0;
  #maxMs = 0;

  get count(): number {
    return this.#count;
  }

  /** Records one latency; negative ones (clock noise between processes) count as zero. */
  record(ms: number): void {
    const clamped = ms > 0 ? ms : 0;
    this.#counts[bucketOf(clamped)]! += 1;
    this.#count += 1;
    if (clamped > this.#maxMs) this.#maxMs = clamped;
  }

  reset(): void {
    this.#counts.fill(0);
    this.#count = 0;
    this.#maxMs = 0;
  }

  toSparse(): SparseHistogram {
    const pairs: Array<readonly [number, number]> = [];
    this.#counts.forEach((count, bucket) => {
      if (count > 0) pairs.push([bucket, count]);
    });
    return pairs;
  }

  /** Adds another process's counts; `maxMs` is carried separately because buckets lose it. */
  merge(sparse: SparseHistogram, maxMs: number): void {
    for (const [bucket, count] of sparse) {
      this.#counts[bucket]! += count;
      this.#count += count;
    }
    if (maxMs > this.#maxMs) this.#maxMs = maxMs;
  }

  get maxMs(): number {
    return this.#maxMs;
  }

  /** The latency below which a fraction `q` of the samples fall (0 with no samples). */
  quantile(q: number): number {
    if (this.#count === 0) return 0;
    const rank = Math.ceil(q * this.#count);
    let seen = 0;
    for (let bucket = 0; bucket < BUCKETS; bucket++) {
      seen += this.#counts[bucket]!;
      if (seen >= rank) return Math.min(midpointOf(bucket), this.#maxMs);
    }
    return this.#maxMs;
  }

  summary(): LatencySummary {
    return { count: this.#count, p50Ms: this.quantile(0.5), p99Ms: this.quantile(0.99), p999Ms: this.quantile(0.999), maxMs: this.#maxMs };
  }
}

function bucketOf(ms: number): number {
  if (ms < FINE_LIMIT_MS) return Math.floor(ms * FINE_BUCKETS_PER_MS);
  return Math.min(BUCKETS - 1, FINE_BUCKETS + Math.floor(ms - FINE_LIMIT_MS));
}

function midpointOf(bucket: number): number {
  if (bucket < FINE_BUCKETS) return (bucket + 0.5) / FINE_BUCKETS_PER_MS;
  return FINE_LIMIT_MS + (bucket - FINE_BUCKETS) + 0.5;
}
