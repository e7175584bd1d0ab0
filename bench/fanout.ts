// Fan-out benchmark (issue: Event delivery across pods). For a bare uWebSockets.js server, one
// Switchboard pod, and two pods with a gRPC hop in between, all fed from the same NATS subject
// and measured by the same client processes in the same run, it reports:
//   - the highest sustained events/s to 1,000 clients of one agent (≥ 97% delivered, p99 < 100 ms);
//   - publish → client latency p50/p99/p99.9 for 100 clients at 1,000 events/s.
// Client processes share this machine's cores with the servers, so only the difference from
// the bare server means anything. Run `node dist/bench/fanout.js [--quick]` after a build;
// figures go to stdout as a markdown table and to bench/results/fanout.json.
//   --quick                   fewer rates, shorter windows (about a minute)
//   --smoke                   a harness check, not a measurement: 50 clients, one short step per path
//   --out=dir                 where fanout.json goes (default bench/results)
//   --scenarios=a,b           any of bare, bare-send, socketio, socketio-cross, one-pod, cross-pod (default all six)
//   --bare-source=core        the bare servers subscribe directly instead of through JetStream
// Two bare servers run: `bare` writes with uWS app.publish (idiomatic uWS, which coalesces the
// frames of one event-loop turn per socket) and is the reference for the targets; `bare-send`
// writes with a loop of ws.send, as Switchboard does, to tell the delivery technique's cost
// apart from the rest of Switchboard's. `socketio` is the Socket.IO 4 peer (socketioServer.ts):
// websocket transport, redis adapter, the same NATS consumer and the same client processes;
// `socketio-cross` is two Socket.IO nodes, events consumed on one and clients on the other.
// BENCH_NODE_ARGS='--cpu-prof --cpu-prof-dir=/tmp/prof' profiles the pods.
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { randomKeys } from '../test/support/gateway.js';
import { NatsServer } from '../test/support/nats.js';
import { RedisServer } from '../test/support/redis.js';
import { StartedProcesses } from './benchProcesses.js';
import { ClientFleet } from './clientFleet.js';
import { renderReport, type ScenarioResult, type StepResult, type Outcome } from './fanoutReport.js';
import { STREAM, STREAM_SUBJECTS } from './fanoutProtocol.js';
import { startBare, startCrossPod, startOnePod, startSocketIo, startSocketIoCrossNode, type BareOptions, type FanoutTarget, type Infra } from './fanoutTargets.js';
import { publishPaced } from './pacedPublisher.js';
import { cpuSecondsOf, machineBusySeconds } from './processCpu.js';

const DEFAULT_SHAPE = { fanoutClients: 1000, latencyClients: 100, latencyRate: 1000 };
const SMOKE_SHAPE = { fanoutClients: 50, latencyClients: 20, latencyRate: 100 };
/** A step passes when this share of the expected deliveries arrived… */
const DELIVERY_FLOOR = 0.97;
/** …and p99 stayed under this; past it the clients are lagging, not keeping up. */
const P99_CEILING_MS = 100;
/** One client process per source address; loopback answers on all of 127/8. */
const FANOUT_SOURCES = ['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5'];
const LATENCY_SOURCES = ['127.0.0.2', '127.0.0.3'];
const WARMUP = { rate: 50, durationMs: 400, timeoutMs: 5000 };
/** After publishing, deliveries may trail; stop waiting once none arrived for QUIET_MS. */
const DRAIN = { quietMs: 500, maxMs: 3000 };
const MIN_RATE = 25;

const { values: flags } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    smoke: { type: 'boolean', default: false },
    out: { type: 'string' },
    scenarios: { type: 'string', default: 'bare,bare-send,socketio,socketio-cross,one-pod,cross-pod' },
    'bare-source': { type: 'string', default: 'jetstream' },
  },
});
const settings = flags.smoke
  ? { firstRate: 50, maxRate: 50, refineSteps: 0, stepMs: 1000, latencyMs: 1000 }
  : flags.quick
    ? { firstRate: 200, maxRate: 800, refineSteps: 0, stepMs: 1000, latencyMs: 2000 }
    : { firstRate: 50, maxRate: 3200, refineSteps: 3, stepMs: 4000, latencyMs: 10_000 };
const { fanoutClients: FANOUT_CLIENTS, latencyClients: LATENCY_CLIENTS, latencyRate: LATENCY_RATE } = flags.smoke ? SMOKE_SHAPE : DEFAULT_SHAPE;
const OUT_DIR = flags.out ?? fileURLToPath(new URL('../../bench/results/', import.meta.url));
const bareSource: BareOptions['source'] = flags['bare-source'] === 'core' ? 'core' : 'jetstream';
const SCENARIO_IDS = ['bare', 'bare-send', 'socketio', 'socketio-cross', 'one-pod', 'cross-pod'];
const chosen = flags.scenarios.split(',');
for (const id of chosen) {
  if (!SCENARIO_IDS.includes(id)) throw new Error(`unknown scenario ${id}: use ${SCENARIO_IDS.join(', ')}`);
}

const started = new StartedProcesses();

const redis = started.track(await RedisServer.start());
const nats = started.track(await NatsServer.start());
const nc = await nats.client();
const jsm = await nc.jetstreamManager();
try {
  await jsm.streams.info(STREAM);
} catch {
  // Not there yet: the pods would create it, but the bare server reads it first.
  await jsm.streams.add({ name: STREAM, subjects: [STREAM_SUBJECTS] });
}
const infra: Infra = {
  redisUrl: redis.url,
  natsUrl: nats.url,
  jsm,
  keys: randomKeys(),
  podNodeArgs: (process.env['BENCH_NODE_ARGS'] ?? '').split(' ').filter((arg) => arg !== ''),
};

/** Starts one path's servers; Switchboard clients are users `${userPrefix}-N`. */
type StartTarget = (userPrefix: string) => Promise<FanoutTarget>;

const scenarios: Record<string, { label: string; start: StartTarget }> = {
  bare: { label: `bare uWS (${bareSource}, app.publish)`, start: () => startBare(infra, { source: bareSource, mode: 'publish' }) },
  'bare-send': { label: `bare uWS (${bareSource}, ws.send loop)`, start: () => startBare(infra, { source: bareSource, mode: 'send' }) },
  socketio: { label: `Socket.IO 4 (${bareSource}, redis adapter)`, start: () => startSocketIo(infra, bareSource) },
  'socketio-cross': { label: `Socket.IO 4 across nodes (${bareSource}, redis adapter)`, start: () => startSocketIoCrossNode(infra, bareSource) },
  'one-pod': { label: 'Switchboard, one pod', start: (prefix) => startOnePod(infra, prefix) },
  'cross-pod': { label: 'Switchboard, cross-pod (gRPC)', start: (prefix) => startCrossPod(infra, prefix) },
};

const loadAtStart = loadavg();
const results: ScenarioResult[] = [];
try {
  for (const id of chosen) {
    const scenario = scenarios[id]!;
    process.stderr.write(`${scenario.label}: fan-out sweep\n`);
    const fanout = await attempt(() => sweep(id, scenario.start));
    process.stderr.write(`${scenario.label}: latency\n`);
    const latency = await attempt(async () => {
      const run = await openRun(scenario.start, `${id}-latency`, LATENCY_CLIENTS, LATENCY_SOURCES);
      try {
        return await measureStep(run, `${id}-lat`, LATENCY_RATE, settings.latencyMs);
      } finally {
        await started.release(run);
      }
    });
    results.push({ id, label: scenario.label, fanout, latency });
  }
  const report = renderReport(results, { fanoutClients: FANOUT_CLIENTS, latencyClients: LATENCY_CLIENTS, latencyRate: LATENCY_RATE, cores: cpus().length });
  const json = {
    machine: { ...machine(), loadAverageAtStart: loadAtStart, loadAverageAtEnd: loadavg() },
    settings: { ...settings, quick: flags.quick, smoke: flags.smoke, fanoutClients: FANOUT_CLIENTS, latencyClients: LATENCY_CLIENTS, latencyRate: LATENCY_RATE, bareSource, deliveryFloor: DELIVERY_FLOOR, p99CeilingMs: P99_CEILING_MS },
    results,
  };
  mkdirSync(OUT_DIR, { recursive: true });
  writeFileSync(join(OUT_DIR, 'fanout.json'), `${JSON.stringify(json, null, 2)}\n`);
  process.stdout.write(report);
} finally {
  await started.stopAll();
}

/** Runs `body`, turning a failure into a reason for the table instead of ending the benchmark. */
async function attempt<T>(body: () => Promise<T>): Promise<Outcome<T>> {
  try {
    return { ok: true, value: await body() };
  } catch (err) {
    const reason = oneLineReason(err instanceof Error ? err.message : String(err));
    process.stderr.write(`  failed: ${reason}\n`);
    return { ok: false, reason };
  }
}

/** The first line of a failure, plus the line naming the error when that is further down (a gateway's stderr). */
function oneLineReason(message: string): string {
  const lines = message.split('\n').map((line) => line.trim()).filter((line) => line !== '');
  const first = lines[0] ?? 'unknown failure';
  const named = lines.slice(1).find((line) => /^\w*Error\b|\berror\b/i.test(line));
  return (named === undefined ? first : `${first} … ${named}`).slice(0, 240);
}

/** Servers and connected clients, warmed up, for one or more measured steps. */
interface Run {
  readonly target: FanoutTarget;
  readonly fleet: ClientFleet;
  stop(): Promise<void>;
}

/** Starts fresh servers, connects `clients` clients and warms the path up; the run is tracked until released. */
async function openRun(start: StartTarget, userPrefix: string, clients: number, sources: readonly string[]): Promise<Run> {
  const target = started.track(await start(userPrefix));
  const fleet = await ClientFleet.open(target.urls(clients), sources).catch(async (err: unknown) => {
    await started.release(target);
    throw err;
  });
  started.untrack(target);
  // Clients leave first, so the pods' shutdown has no sockets left to drain.
  const run = started.track({
    target,
    fleet,
    stop: async () => {
      await fleet.close();
      await target.stop();
    },
  });
  try {
    await warmUp(fleet, userPrefix);
  } catch (err) {
    await started.release(run);
    throw err;
  }
  return run;
}

/** A few events that must reach every client before anything is measured: proves the path works end to end. */
async function warmUp(fleet: ClientFleet, tag: string): Promise<void> {
  const phase = `${tag}-warm`;
  await fleet.measure(phase);
  const run = await publishPaced(nc, phase, WARMUP.rate, WARMUP.durationMs);
  const expected = run.published * fleet.connected;
  const delivered = await fleet.waitForDeliveries(expected, { quietMs: WARMUP.timeoutMs, maxMs: WARMUP.timeoutMs });
  if (delivered === 0) throw new Error(`no event reached any client within ${WARMUP.timeoutMs} ms: is a pod consuming ${STREAM}?`);
  if (delivered < expected) throw new Error(`warm-up delivered ${delivered} of ${expected} events`);
}

/**
 * Doubles the rate until a step fails, halving instead when the first one fails, then bisects
 * between the last pass and the first failure. A failed step leaves a backlog in the stream, the
 * pods and the sockets' send buffers, so the next step gets fresh servers and clients.
 */
async function sweep(id: string, start: StartTarget): Promise<{ bestRate: number; steps: StepResult[]; interruptedBy?: string }> {
  const steps: StepResult[] = [];
  const session: { run?: Run; opened: number } = { opened: 0 };
  const passes = async (rate: number) => {
    const run = session.run ?? (session.run = await openRun(start, `${id}-fanout${session.opened++}`, FANOUT_CLIENTS, FANOUT_SOURCES));
    process.stderr.write(`  ${rate} events/s … `);
    const step = await measureStep(run, `${id}-r${rate}`, rate, settings.stepMs);
    steps.push(step);
    process.stderr.write(`${(step.fraction * 100).toFixed(1)}% delivered, p99 ${step.latency.p99Ms.toFixed(2)} ms\n`);
    if (!step.pass) {
      session.run = undefined;
      await started.release(run);
    }
    return step.pass;
  };
  let pass: number | undefined;
  let fail: number | undefined;
  try {
    for (let rate = settings.firstRate; rate <= settings.maxRate && fail === undefined; rate *= 2) {
      if (await passes(rate)) pass = rate;
      else fail = rate;
    }
    for (let rate = settings.firstRate / 2; pass === undefined && rate >= MIN_RATE; rate /= 2) {
      if (await passes(rate)) pass = rate;
      else fail = rate;
    }
    for (let i = 0; i < settings.refineSteps && pass !== undefined && fail !== undefined; i++) {
      const rate = Math.round((pass + fail) / 2);
      if (await passes(rate)) pass = rate;
      else fail = rate;
    }
  } catch (err) {
    // Steps already measured still count; the table says the sweep was cut short.
    if (steps.length === 0) throw err;
    const interruptedBy = oneLineReason(err instanceof Error ? err.message : String(err));
    process.stderr.write(`  sweep interrupted: ${interruptedBy}\n`);
    return { bestRate: pass ?? 0, steps, interruptedBy };
  } finally {
    if (session.run !== undefined) await started.release(session.run);
  }
  return { bestRate: pass ?? 0, steps };
}

/** Publishes at `rate` for `durationMs` and measures what reached the clients, with everyone's CPU. */
async function measureStep({ target, fleet }: Run, phase: string, rate: number, durationMs: number): Promise<StepResult> {
  const connected = (await fleet.count()).open;
  const countersBefore = await target.podCounters();
  await fleet.measure(phase);
  const before = await cpuSnapshot(target);
  const run = await publishPaced(nc, phase, rate, durationMs);
  const expected = run.published * connected;
  await fleet.waitForDeliveries(expected, DRAIN);
  const report = await fleet.report();
  const after = await cpuSnapshot(target);
  const countersAfter = await target.podCounters();
  const wallSeconds = (after.at - before.at) / 1000;
  const percent = (seconds: number) => (seconds / wallSeconds) * 100;
  const fraction = expected === 0 ? 0 : report.delivered / expected;
  return {
    rate,
    published: run.published,
    clients: connected,
    delivered: report.delivered,
    fraction,
    deliveriesPerSecond: report.delivered / (run.elapsedMs / 1000),
    latency: report.latency,
    pass: fraction >= DELIVERY_FLOOR && report.latency.p99Ms < P99_CEILING_MS,
    closes: report.closes,
    cpuPercent: {
      server: Object.fromEntries(Object.entries(after.server).map(([role, s]) => [role, percent(s - (before.server[role] ?? 0))])),
      nats: percent(after.nats - before.nats),
      redis: percent(after.redis - before.redis),
      publisher: (run.cpuMs / run.elapsedMs) * 100,
      clients: percent(report.cpuMs / 1000),
      machine: percent(after.machine - before.machine),
    },
    podCounters: deltas(countersBefore, countersAfter),
  };
}

async function cpuSnapshot(target: FanoutTarget): Promise<{ at: number; server: Record<string, number>; nats: number; redis: number; machine: number }> {
  const info = await redis.client.info('cpu');
  const read = (name: string) => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(info)?.[1] ?? 0);
  const server = Object.fromEntries(Object.entries(target.serverPids()).map(([role, pid]) => [role, cpuSecondsOf(pid)]));
  return { at: Date.now(), server, nats: cpuSecondsOf(nats.pid), redis: read('used_cpu_user') + read('used_cpu_sys'), machine: machineBusySeconds() };
}

function deltas(before: Record<string, Record<string, number>>, after: Record<string, Record<string, number>>): Record<string, Record<string, number>> {
  return Object.fromEntries(
    Object.entries(after).map(([role, counters]) => [role, Object.fromEntries(Object.entries(counters).map(([name, value]) => [name, value - (before[role]?.[name] ?? 0)]))]),
  );
}

function machine() {
  return { cpus: cpus().length, model: cpus()[0]?.model ?? '', node: process.version, platform: `${process.platform}/${process.arch}` };
}
