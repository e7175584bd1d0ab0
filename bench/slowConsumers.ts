// Slow-consumer benchmark (issue 5, scenario 6): while events flow to the clients of one agent,
// 10% of them stop reading (their sockets are paused, so TCP backs up into the server). It shows
// whether the readers keep their latency (p50/p99 before vs during), whether the server's memory
// stays bounded (RSS sampled throughout) and what becomes of the stalled clients, for one
// Switchboard pod (Redis + NATS, SEND_BUFFER_BYTES small enough to be passed within the window,
// so it closes them with 4408) beside the bare uWebSockets.js server (maxBackpressure 16 MiB,
// frames past it dropped, never closes), measured in the same run by the same client processes.
//
//   node dist/bench/slowConsumers.js [--quick | --smoke] [--targets=switchboard,bare] [--out=dir]
//
// Events are padded to EVENT_BYTES: on loopback the kernel absorbs about 4 MiB per stalled socket
// (receive buffer plus the auto-tuned send buffer) before the server sees any back-pressure, so
// small events would take minutes to reach it. Once the stalled sockets are resumed, the report
// says what they got: the events buffered for them, then (Switchboard) the 4408 close.
// Figures go to stdout and bench/results/slow-consumers.json.
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { NatsConnection } from 'nats';
import { chooseFrom, startInfra, StartedProcesses } from './benchProcesses.js';
import { ClientFleet } from './clientFleet.js';
import type { StalledCounts } from './fanoutProtocol.js';
import { startBare, startOnePod, type FanoutTarget } from './fanoutTargets.js';
import type { LatencySummary } from './latencyHistogram.js';
import { publishPaced } from './pacedPublisher.js';
import { cpuSecondsOf } from './processCpu.js';
import { residentBytes } from './processMemory.js';

/**
 * Windows per mode; full stays near a minute for both targets, quick near 15 s. Full stalls long
 * enough for the bare server to reach its 16 MiB per socket and start dropping.
 */
const SHAPES = {
  full: { clients: 200, beforeMs: 6000, duringMs: 15_000, resumeMaxMs: 4000 },
  quick: { clients: 100, beforeMs: 1000, duringMs: 4000, resumeMaxMs: 1500 },
  smoke: { clients: 20, beforeMs: 1000, duringMs: 3000, resumeMaxMs: 1000 },
} as const;
const SLOW_SHARE = 0.1;
const RATE = 200;
/** 8 KiB events at 200/s: a stalled socket passes the kernel's ~4 MiB in about 2.5 s. */
const EVENT_BYTES = 8 * 1024;
const PADDING = 'x'.repeat(EVENT_BYTES - 120);
/** Switchboard's ceiling in this run: the sweep closes a client 64 KiB past what the kernel holds. */
const SEND_BUFFER_BYTES = 64 * 1024;
const SOURCES = ['127.0.0.2', '127.0.0.3'];
const WARMUP = { rate: 50, durationMs: 400, timeoutMs: 5000 };
const DRAIN = { quietMs: 500, maxMs: 3000 };
const SAMPLE_MS = 250;
const SLOW_CLOSES_METRIC = 'switchboard_slow_consumer_closes_total';
const TARGET_IDS = ['switchboard', 'bare'] as const;
type TargetId = (typeof TARGET_IDS)[number];

/** The readers over one publishing window. */
export interface ReaderWindow {
  readonly readers: number;
  readonly published: number;
  /** Delivered ÷ (published × readers). */
  readonly fraction: number;
  readonly latency: LatencySummary;
  /** Server CPU over the window, in % of one core. */
  readonly serverCpuPercent: number;
}

/** Everything measured for one server. */
export interface SlowConsumerResult {
  readonly id: TargetId;
  readonly label: string;
  readonly clients: number;
  readonly stalled: number;
  readonly before: ReaderWindow;
  readonly during: ReaderWindow;
  readonly rss: {
    readonly beforeBytes: number;
    readonly peakBytes: number;
    /** At the end of the stalled window, before the stalled sockets read again. */
    readonly endBytes: number;
    /** [ms since the stall, bytes], one every SAMPLE_MS. */
    readonly samples: ReadonlyArray<readonly [number, number]>;
  };
  /** Switchboard's own count of 4408 closes in the stalled window, and when the first and last came. */
  readonly serverSlowCloses?: { readonly count: number; readonly firstAfterMs?: number; readonly lastAfterMs?: number };
  /** The stalled sockets once resumed: what they read of the stalled window's events and how they were closed. */
  readonly afterResume: StalledCounts & { readonly shareOfPublished: number };
}

const { values: flags } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    smoke: { type: 'boolean', default: false },
    targets: { type: 'string', default: TARGET_IDS.join(',') },
    out: { type: 'string' },
  },
});
const shape = SHAPES[flags.smoke ? 'smoke' : flags.quick ? 'quick' : 'full'];
const chosen = chooseFrom(flags.targets, TARGET_IDS, 'target');

const started = new StartedProcesses();
const { infra, nc } = await startInfra(started);
const results: Array<SlowConsumerResult | { id: TargetId; label: string; failed: string }> = [];
try {
  const starters: Record<TargetId, { label: string; start: () => Promise<FanoutTarget> }> = {
    switchboard: { label: `Switchboard, one pod (SEND_BUFFER_BYTES ${SEND_BUFFER_BYTES})`, start: () => startOnePod(infra, 'slow', { SEND_BUFFER_BYTES: String(SEND_BUFFER_BYTES) }) },
    bare: { label: 'bare uWS (maxBackpressure 16 MiB, no close)', start: () => startBare(infra, { source: 'jetstream', mode: 'publish' }) },
  };
  for (const id of chosen) {
    const { label, start } = starters[id];
    process.stderr.write(`${label}: ${shape.clients} clients, ${Math.round(shape.clients * SLOW_SHARE)} stop reading … `);
    try {
      const result = await measure(nc, id, label, start);
      results.push(result);
      process.stderr.write(`readers p99 ${result.before.latency.p99Ms.toFixed(1)} → ${result.during.latency.p99Ms.toFixed(1)} ms, RSS peak ${mib(result.rss.peakBytes)} MiB\n`);
    } catch (err) {
      const failed = (err instanceof Error ? err.message : String(err)).split('\n')[0]!.slice(0, 240);
      results.push({ id, label, failed });
      process.stderr.write(`failed: ${failed}\n`);
    }
  }
  await nc.close();
  const settings = { ...shape, slowShare: SLOW_SHARE, rate: RATE, eventBytes: EVENT_BYTES, sendBufferBytes: SEND_BUFFER_BYTES, sampleMs: SAMPLE_MS };
  const json = { machine: { cpus: cpus().length, node: process.version }, settings, results };
  const outDir = flags.out ?? fileURLToPath(new URL('../../bench/results/', import.meta.url));
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, 'slow-consumers.json'), `${JSON.stringify(json, null, 2)}\n`);
  process.stdout.write(render(results));
} finally {
  await started.stopAll();
}

async function measure(nc: NatsConnection, id: TargetId, label: string, start: () => Promise<FanoutTarget>): Promise<SlowConsumerResult> {
  const target = await start();
  started.track(target);
  let fleet: ClientFleet | undefined;
  try {
    const pid = Object.values(target.serverPids())[0];
    if (pid === undefined) throw new Error('server has no pid');
    fleet = await ClientFleet.open(target.urls(shape.clients), SOURCES);
    await warmUp(nc, fleet, id);

    const before = await readerWindow(nc, fleet, pid, `${id}-before`, shape.beforeMs, fleet.connected);
    const rssBefore = residentBytes(pid);
    const stalled = await fleet.stall(Math.round(fleet.connected * SLOW_SHARE));
    const stalledAt = Date.now();
    const watch = watchServer(pid, target, stalledAt);
    const during = await readerWindow(nc, fleet, pid, `${id}-during`, shape.duringMs, fleet.connected - stalled);
    const watched = await watch.stop();

    await fleet.resume();
    const afterResume = await stalledOutcome(fleet, shape.resumeMaxMs);
    return {
      id,
      label,
      clients: fleet.connected,
      stalled,
      before,
      during,
      rss: { beforeBytes: rssBefore, peakBytes: Math.max(rssBefore, ...watched.rss.map(([, bytes]) => bytes)), endBytes: watched.rss.at(-1)?.[1] ?? rssBefore, samples: watched.rss },
      ...(watched.serverCloses === undefined ? {} : { serverSlowCloses: watched.serverCloses }),
      afterResume: { ...afterResume, shareOfPublished: stalled === 0 ? 0 : afterResume.delivered / (during.published * stalled) },
    };
  } finally {
    await fleet?.close();
    await started.release(target);
  }
}

/** A few events that must reach every client before anything is measured. */
async function warmUp(nc: NatsConnection, fleet: ClientFleet, id: TargetId): Promise<void> {
  const phase = `${id}-warm`;
  await fleet.measure(phase);
  const run = await publishPaced(nc, phase, WARMUP.rate, WARMUP.durationMs, PADDING);
  const expected = run.published * fleet.connected;
  const delivered = await fleet.waitForDeliveries(expected, { quietMs: WARMUP.timeoutMs, maxMs: WARMUP.timeoutMs });
  if (delivered < expected) throw new Error(`warm-up delivered ${delivered} of ${expected} events`);
}

/** Publishes RATE events/s for `durationMs` and measures what reached the `readers` reading clients. */
async function readerWindow(nc: NatsConnection, fleet: ClientFleet, pid: number, phase: string, durationMs: number, readers: number): Promise<ReaderWindow> {
  await fleet.measure(phase);
  const [cpuBefore, startedAt] = [cpuSecondsOf(pid), Date.now()];
  const run = await publishPaced(nc, phase, RATE, durationMs, PADDING);
  await fleet.waitForDeliveries(run.published * readers, DRAIN);
  const report = await fleet.report();
  const serverCpuPercent = ((cpuSecondsOf(pid) - cpuBefore) / ((Date.now() - startedAt) / 1000)) * 100;
  const fraction = run.published * readers === 0 ? 0 : report.delivered / (run.published * readers);
  return { readers, published: run.published, fraction, latency: report.latency, serverCpuPercent };
}

/**
 * Samples the server's RSS every SAMPLE_MS and, where the server has /metrics, its count of
 * slow-consumer closes, noting when it first and last rose, until stopped.
 */
function watchServer(pid: number, target: FanoutTarget, stalledAt: number) {
  const rss: Array<readonly [number, number]> = [];
  const closes: { baseline?: number; latest?: number; firstAfterMs?: number; lastAfterMs?: number } = {};
  const sample = async () => {
    rss.push([Date.now() - stalledAt, residentBytes(pid)]);
    const count = await target.metric?.(SLOW_CLOSES_METRIC);
    if (count === undefined) return;
    if (closes.baseline === undefined) closes.baseline = count;
    else if (count > (closes.latest ?? count)) {
      closes.firstAfterMs ??= Date.now() - stalledAt;
      closes.lastAfterMs = Date.now() - stalledAt;
    }
    closes.latest = count;
  };
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      await sample();
      await new Promise((resolve) => setTimeout(resolve, SAMPLE_MS));
    }
  })();
  return {
    stop: async () => {
      stopped = true;
      await loop;
      await sample();
      const { baseline, latest, firstAfterMs, lastAfterMs } = closes;
      const serverCloses = baseline === undefined || latest === undefined ? undefined : { count: latest - baseline, firstAfterMs, lastAfterMs };
      return { rss, serverCloses };
    },
  };
}

/** After resume: waits until the stalled sockets read nothing more for a while (bounded), then answers what they got. */
async function stalledOutcome(fleet: ClientFleet, maxMs: number): Promise<StalledCounts> {
  const startedAt = Date.now();
  let last = await fleet.report();
  let lastChangeAt = startedAt;
  while (Date.now() - startedAt < maxMs && Date.now() - lastChangeAt < DRAIN.quietMs) {
    await new Promise((resolve) => setTimeout(resolve, SAMPLE_MS));
    const next = await fleet.report();
    if (next.stalled.delivered !== last.stalled.delivered || next.stalled.open !== last.stalled.open) lastChangeAt = Date.now();
    last = next;
  }
  return last.stalled;
}

function mib(bytes: number): string {
  return (bytes / 1048576).toFixed(0);
}

function render(all: typeof results): string {
  const ms = (l: LatencySummary) => `${l.p50Ms.toFixed(2)} / ${l.p99Ms.toFixed(2)}`;
  const lines = [
    `Slow consumers: ${shape.clients} clients of one agent at ${RATE} events/s of ${EVENT_BYTES / 1024} KiB; ${SLOW_SHARE * 100}% stop reading for ${shape.duringMs / 1000} s`,
    '',
    '| server | readers p50 / p99 ms before | during | readers delivered during | RSS MiB before → peak → end | stalled closed (codes) | stalled read of their events |',
    '| --- | --: | --: | --: | --: | --: | --: |',
  ];
  for (const r of all) {
    if ('failed' in r) {
      lines.push(`| ${r.label} | failed: ${r.failed.replace(/\|/g, '\\|')} | | | | | |`);
      continue;
    }
    const codes = Object.entries(r.afterResume.closes).map(([code, n]) => `${n}×${code}`).join(', ') || 'none';
    lines.push(
      `| ${r.label} | ${ms(r.before.latency)} | ${ms(r.during.latency)} | ${(r.during.fraction * 100).toFixed(1)}% | ${mib(r.rss.beforeBytes)} → ${mib(r.rss.peakBytes)} → ${mib(r.rss.endBytes)} | ` +
        `${r.stalled - r.afterResume.open} of ${r.stalled} (${codes}) | ${(r.afterResume.shareOfPublished * 100).toFixed(1)}% |`,
    );
  }
  return `${lines.join('\n')}\n`;
}
