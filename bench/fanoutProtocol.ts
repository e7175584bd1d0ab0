// What bench/fanout.ts, its client processes and the bare server agree on: the subject, the
// event payload, and the line protocol between the orchestrator and a client process.
import type { SparseHistogram } from './latencyHistogram.js';

/** Company and agent of every benchmark client; one event on BENCH_SUBJECT reaches them all. */
export const BENCH_COMPANY = 'bench';
export const BENCH_AGENT = 'agent';
export const BENCH_SUBJECT = `websocket.${BENCH_COMPANY}.${BENCH_AGENT}.chats`;
/** The stream and subjects Switchboard uses (DESIGN.md §7). */
export const STREAM = 'wa_stream';
export const STREAM_SUBJECTS = 'websocket.>';

/**
 * Wall-clock milliseconds with sub-millisecond precision that agree across processes:
 * performance.now() shifted onto Date.now()'s clock. performance.timeOrigin + performance.now()
 * is not guaranteed to: on this machine it was off Date.now() by 2–3 ms under `node -e` (0.03 ms
 * in a module), by a different amount per process, which is as large as the differences this
 * benchmark compares. So each process finds the offset once, at the instant Date.now() ticks over.
 */
export const benchClock = (): number => performance.now() + WALL_CLOCK_OFFSET_MS;

const WALL_CLOCK_OFFSET_MS = measureWallClockOffset();

function measureWallClockOffset(): number {
  let best = Number.NEGATIVE_INFINITY;
  for (let sample = 0; sample < 5; sample++) {
    const before = Date.now();
    let tick = before;
    // Spins at most 1 ms: right after the tick, wall time is `tick` plus the few µs this loop takes.
    while (tick === before) tick = Date.now();
    // Reading now() late only lowers the estimate, so the highest of a few samples is the closest.
    best = Math.max(best, tick - performance.now());
  }
  return best;
}

/**
 * One event. `phase` names the measurement step it belongs to, so a late delivery from an
 * earlier step is never counted in a later one; `sent_at_ms` has sub-millisecond precision.
 * `padding` (a string of plain characters) goes last, so clients find the fields above without scanning it.
 */
export function eventPayload(phase: string, seq: number, padding = ''): string {
  const pad = padding === '' ? '' : `,"pad":"${padding}"`;
  return `{"event_id":"${phase}-${seq}","sent_at_ms":${benchClock()},"seq":${seq},"phase":"${phase}"${pad}}`;
}

/** The first stdin line of a client process. */
export interface ClientTask {
  readonly urls: readonly string[];
  /** Source address for every socket (127.0.0.x), so many clients do not share one address's ports. */
  readonly localAddress?: string;
  /** Sockets opening at once; more overflows the server's accept backlog. */
  readonly connectConcurrency: number;
  readonly connectTimeoutMs: number;
}

/**
 * Commands, one JSON line each on a client's stdin after the task. `stall` stops reading on
 * `sockets` of the process's WebSocket connections (pauses the socket, so TCP backs up to the
 * server); `resume` reads them again.
 */
export type ClientCommand =
  | { readonly cmd: 'measure'; readonly phase: string }
  | { readonly cmd: 'count' }
  | { readonly cmd: 'report' }
  | { readonly cmd: 'stall'; readonly sockets: number }
  | { readonly cmd: 'resume' }
  | { readonly cmd: 'exit' };

/** Answer to the task: how many sockets reached `ready`. */
export interface ConnectedLine {
  readonly kind: 'connected';
  readonly connected: number;
  readonly failed: number;
  readonly firstError: string;
}

/** Answer to `measure`, `stall` and `resume`. */
export interface OkLine {
  readonly kind: 'ok';
}

/** Answer to `count`. */
export interface CountLine {
  readonly kind: 'count';
  readonly delivered: number;
  /** Event frames of other phases: a backlog still draining. */
  readonly stale: number;
  /** Open sockets that read (stalled ones are counted apart). */
  readonly open: number;
}

/** Answer to `report`: everything since `measure`. */
export interface ReportLine {
  readonly kind: 'report';
  readonly delivered: number;
  /** Event frames of other phases (late deliveries of an earlier step). */
  readonly stale: number;
  /** Open sockets that read (stalled ones are counted apart). */
  readonly open: number;
  /** Close codes seen since the connections opened, e.g. {"4408": 3}. */
  readonly closes: Record<string, number>;
  readonly histogram: SparseHistogram;
  readonly maxMs: number;
  readonly cpuMs: number;
  readonly elapsedMs: number;
  /** The stalled sockets; their frames are in none of the figures above. */
  readonly stalled: StalledCounts;
}

/** What became of the sockets told to stop reading. */
export interface StalledCounts {
  readonly sockets: number;
  readonly open: number;
  /** Event frames of the current phase they read (after `resume`). */
  readonly delivered: number;
  /** Their close codes, e.g. {"4408": 3}. */
  readonly closes: Record<string, number>;
}

/** Any line a client process writes. */
export type ClientLine = ConnectedLine | OkLine | CountLine | ReportLine;
