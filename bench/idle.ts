// Idle capacity benchmark (issue: Benchmarks side by side, scenario 3): how many idle
// connections one server holds and what each costs in memory, for one Switchboard pod
// (authenticated users, Redis sessions and routes, NATS consumer), the bare uWebSockets.js server
// and the Socket.IO 4 peer, measured in the same run by the same client processes.
//
//   node dist/bench/idle.js [--quick | --smoke] [--connections=N] [--targets=switchboard,bare,socketio] [--out=dir]
//
// Connections come from eight client processes, one per source address 127.0.0.2–9 (about 28,000
// ephemeral ports each). Every server process holds one descriptor per connection, so N is capped
// by the open-files limit this process inherited (`ulimit -n`); the report says when it was.
// Memory is the server's resident set (/proc/<pid>/status, the same reading for every server)
// before connecting, after half of the N are ready and idle a few seconds, and after all N are.
// Two figures per connection come of it: the average over all N, which carries one-off growth
// (V8's young generation and code space grow under the accept burst whatever N is), and the
// marginal cost of the second half, which is what each further connection costs and so what
// 100,000 would. Switchboard's heap comes from its /metrics. Last, the server's CPU is read over
// a window in which all N sit idle: what holding them costs (heartbeats, timers, sweeps) with no
// traffic. Figures go to stdout and bench/results/idle.json.
import { mkdirSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { chooseFrom, startInfra, StartedProcesses } from './benchProcesses.js';
import { ClientFleet } from './clientFleet.js';
import { startBare, startOnePod, startSocketIo, type FanoutTarget } from './fanoutTargets.js';
import { cpuSecondsOf } from './processCpu.js';
import { residentBytes } from './processMemory.js';

const TARGET_CONNECTIONS = 100_000;
/** Descriptors a server needs besides its sockets (Redis, NATS, gRPC, admin, files). */
const DESCRIPTOR_MARGIN = 500;
const SOURCES = ['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5', '127.0.0.6', '127.0.0.7', '127.0.0.8', '127.0.0.9'];
/** Idle time before each memory reading, so the accept burst's garbage and buffers can settle. */
const SETTLE_MS = 3000;
const SHORT_SETTLE_MS = 500;
/** How long the server's CPU is read with every connection idle. */
const IDLE_CPU_WINDOW_MS = 10_000;
const SHORT_IDLE_CPU_WINDOW_MS = 1000;
const TARGET_IDS = ['switchboard', 'bare', 'socketio'] as const;
type TargetId = (typeof TARGET_IDS)[number];

/** What one server held and what it cost. */
export interface IdleResult {
  readonly id: TargetId;
  readonly label: string;
  readonly connections: number;
  readonly connectSeconds: number;
  readonly rssBeforeBytes: number;
  readonly rssAfterBytes: number;
  readonly rssPerConnectionBytes: number;
  /** RSS once the first half of the connections were open and idle. */
  readonly rssHalfwayBytes: number;
  /** (RSS after all − RSS halfway) ÷ the second half's connections. */
  readonly rssPerAddedConnectionBytes: number;
  readonly heapBeforeBytes?: number;
  readonly heapAfterBytes?: number;
  readonly heapPerConnectionBytes?: number;
  /** The server's CPU (% of one core) while holding every connection idle. */
  readonly idleCpuPercent: number;
}

const { values: flags } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    smoke: { type: 'boolean', default: false },
    connections: { type: 'string' },
    out: { type: 'string' },
    targets: { type: 'string', default: TARGET_IDS.join(',') },
  },
});
const fdLimit = openFilesLimit();
const wanted = flags.connections !== undefined ? Number(flags.connections) : flags.smoke ? 200 : flags.quick ? 1000 : TARGET_CONNECTIONS;
const connections = Math.min(wanted, fdLimit - DESCRIPTOR_MARGIN);
const settleMs = flags.quick || flags.smoke ? SHORT_SETTLE_MS : SETTLE_MS;
const idleCpuWindowMs = flags.quick || flags.smoke ? SHORT_IDLE_CPU_WINDOW_MS : IDLE_CPU_WINDOW_MS;
const chosen = chooseFrom(flags.targets, TARGET_IDS, 'target');

const started = new StartedProcesses();
const { infra, nc } = await startInfra(started);
const results: Array<IdleResult | { id: TargetId; label: string; failed: string }> = [];
try {
  const starters: Record<TargetId, { label: string; start: () => Promise<FanoutTarget> }> = {
    switchboard: { label: 'Switchboard, one pod (Redis)', start: () => startOnePod(infra, 'idle') },
    bare: { label: 'bare uWS', start: () => startBare(infra, { source: 'jetstream', mode: 'publish' }) },
    socketio: { label: 'Socket.IO 4 (redis adapter)', start: () => startSocketIo(infra, 'jetstream') },
  };
  for (const id of chosen) {
    const { label, start } = starters[id];
    process.stderr.write(`${label}: ${connections.toLocaleString('en')} idle connections … `);
    try {
      const result = await measure(id, label, start);
      results.push(result);
      process.stderr.write(`${(result.rssPerConnectionBytes / 1024).toFixed(1)} KiB RSS each\n`);
    } catch (err) {
      const failed = (err instanceof Error ? err.message : String(err)).split('\n')[0]!.slice(0, 240);
      results.push({ id, label, failed });
      process.stderr.write(`failed: ${failed}\n`);
    }
  }
  await nc.close();
  const json = { machine: { cpus: cpus().length, node: process.version }, openFilesLimit: fdLimit, wanted, connections, settleMs, results };
  const outDir = flags.out ?? fileURLToPath(new URL('../../bench/results/', import.meta.url));
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, 'idle.json'), `${JSON.stringify(json, null, 2)}\n`);
  process.stdout.write(render(json));
} finally {
  await started.stopAll();
}

async function measure(id: TargetId, label: string, start: () => Promise<FanoutTarget>): Promise<IdleResult> {
  const target = await start();
  started.track(target);
  try {
    const pid = Object.values(target.serverPids())[0];
    if (pid === undefined) throw new Error('server has no pid');
    await settle();
    const [rssBefore, heapBefore] = [residentBytes(pid), await heapBytes(target)];
    const urls = target.urls(connections);
    const half = Math.floor(connections / 2);
    const startedAt = Date.now();
    const fleets = [await ClientFleet.open(urls.slice(0, half), SOURCES)];
    let connectMs = Date.now() - startedAt;
    try {
      await settle();
      const rssHalfway = residentBytes(pid);
      const secondStartedAt = Date.now();
      fleets.push(await ClientFleet.open(urls.slice(half), SOURCES));
      connectMs += Date.now() - secondStartedAt;
      await settle();
      const open = (await Promise.all(fleets.map((fleet) => fleet.count()))).reduce((sum, count) => sum + count.open, 0);
      if (open < connections) throw new Error(`only ${open} of ${connections} connections still open after ${settleMs} ms idle`);
      const [rssAfter, heapAfter] = [residentBytes(pid), await heapBytes(target)];
      const cpuBefore = cpuSecondsOf(pid);
      await new Promise((resolve) => setTimeout(resolve, idleCpuWindowMs));
      const idleCpuPercent = ((cpuSecondsOf(pid) - cpuBefore) * 100_000) / idleCpuWindowMs;
      return {
        id,
        label,
        connections,
        connectSeconds: connectMs / 1000,
        rssBeforeBytes: rssBefore,
        rssAfterBytes: rssAfter,
        rssPerConnectionBytes: (rssAfter - rssBefore) / connections,
        rssHalfwayBytes: rssHalfway,
        rssPerAddedConnectionBytes: (rssAfter - rssHalfway) / (connections - half),
        ...(heapBefore === undefined || heapAfter === undefined
          ? {}
          : { heapBeforeBytes: heapBefore, heapAfterBytes: heapAfter, heapPerConnectionBytes: (heapAfter - heapBefore) / connections }),
        idleCpuPercent,
      };
    } finally {
      await Promise.all(fleets.map((fleet) => fleet.close()));
    }
  } finally {
    await started.release(target);
  }
}

function settle(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, settleMs));
}

/** Used heap where the server reports it (Switchboard's /metrics); undefined for the peers. */
async function heapBytes(target: FanoutTarget): Promise<number | undefined> {
  return target.heapUsedBytes?.();
}

/** The soft open-files limit this process (and so every server it starts) runs under. */
function openFilesLimit(): number {
  try {
    return Number(execFileSync('sh', ['-c', 'ulimit -n'], { encoding: 'utf8' }).trim()) || 1024;
  } catch {
    return 1024;
  }
}

function render(json: { openFilesLimit: number; wanted: number; connections: number; results: typeof results }): string {
  const kib = (bytes: number | undefined) => (bytes === undefined ? '—' : (bytes / 1024).toFixed(1));
  const mib = (bytes: number) => (bytes / 1048576).toFixed(0);
  const lines = [
    `Idle connections held by one server: ${json.connections.toLocaleString('en')}` +
      (json.connections < json.wanted ? ` (wanted ${json.wanted.toLocaleString('en')}; capped by the open-files limit ${json.openFilesLimit})` : ''),
    '',
    '| server | connections | connect s | RSS before → halfway → after MiB | RSS KiB / connection | RSS KiB / added connection | heap KiB / connection | CPU while idle |',
    '| --- | --: | --: | --: | --: | --: | --: | --: |',
  ];
  for (const r of json.results) {
    if ('failed' in r) lines.push(`| ${r.label} | failed: ${r.failed.replace(/\|/g, '\\|')} | | | | | | |`);
    else
      lines.push(
        `| ${r.label} | ${r.connections.toLocaleString('en')} | ${r.connectSeconds.toFixed(1)} | ${mib(r.rssBeforeBytes)} → ${mib(r.rssHalfwayBytes)} → ${mib(r.rssAfterBytes)} | ${kib(r.rssPerConnectionBytes)} | ${kib(r.rssPerAddedConnectionBytes)} | ${kib(r.heapPerConnectionBytes)} | ${r.idleCpuPercent.toFixed(1)}% |`,
      );
  }
  return `${lines.join('\n')}\n`;
}
