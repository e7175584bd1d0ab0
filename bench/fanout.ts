// Fan-out benchmark (issue: Event delivery across pods). For a bare uWebSockets.js server, one
// Switchboard pod, and two pods with a gRPC hop in between, all fed from the same NATS subject
// and measured by the same client processes in the same run, it reports:
//   - the highest sustained events/s to 1,000 clients of one agent (≥ 97% delivered, p99 < 100 ms);
//   - publish → client latency p50/p99/p99.9 for 100 clients at 1,000 events/s;
//   - what a wake-up costs this machine, at the start and at the end (wakeCost.ts).
// Client processes share this machine's cores with the servers, so only the difference from
// the bare server means anything. The paths take turns, step by step in the fan-out sweeps and
// window by window in the latency measurement, so a drift in the machine's speed reaches them all
// alike; each path has a Redis and a NATS of its own. A sweep step that nearly passed is measured
// again, up to three tries in all, and only a third failure counts.
// Run `node dist/bench/fanout.js [--quick]` after a build; figures go to stdout as a markdown
// table and to bench/results/fanout.json.
//   --quick                   fewer rates, shorter windows, no repeated tries (under a minute)
//   --smoke                   a harness check, not a measurement: 50 clients, one short step per path
//   --out=dir                 where fanout.json goes (default bench/results)
//   --scenarios=a,b           any of bare, bare-send, socketio, socketio-cross, one-pod, cross-pod (default all six)
//   --bare-source=core        the bare servers subscribe directly instead of through JetStream
//   --rounds=N                sweep every path N times (default 1) and report the median round; one
//                             sweep on this shared machine is one noisy sample (the latency run stays one)
// Two bare servers run: `bare` writes with uWS app.publish (idiomatic uWS, which coalesces the
// frames of one event-loop turn per socket) and is the reference for the targets; Switchboard
// delivers the same way, through uWS topics. `bare-send` writes with a loop of ws.send, to show
// what that coalescing is worth on the machine of the run. `socketio` is the Socket.IO 4 peer
// (socketioServer.ts): websocket transport, redis adapter, the same NATS consumer and the same client processes;
// `socketio-cross` is two Socket.IO nodes, events consumed on one and clients on the other.
// BENCH_NODE_ARGS='--cpu-prof --cpu-prof-dir=/tmp/prof' profiles the pods.
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { NatsConnection } from 'nats';
import { chooseFrom, startInfra, StartedProcesses, type Testbed } from './benchProcesses.js';
import { ClientFleet } from './clientFleet.js';
import { Measurement, type Criteria, type Run } from './fanoutMeasurement.js';
import { renderReport, type ScenarioResult, type StepResult, type Outcome } from './fanoutReport.js';
import { STREAM } from './fanoutProtocol.js';
import { startBare, startCrossPod, startOnePod, startSocketIo, startSocketIoCrossNode, type BareOptions, type FanoutTarget, type Infra } from './fanoutTargets.js';
import { publishPaced } from './pacedPublisher.js';
import { RateSearch } from './rateSearch.js';
import { measureWakeCost } from './wakeCost.js';

const DEFAULT_SHAPE = { fanoutClients: 1000, latencyClients: 100, latencyRate: 1000 };
const SMOKE_SHAPE = { fanoutClients: 50, latencyClients: 20, latencyRate: 100 };
/** A step passes when this share of the expected deliveries arrived… */
const DELIVERY_FLOOR = 0.97;
/** …and p99 stayed under this; past it the clients are lagging, not keeping up. */
const P99_CEILING_MS = 100;
/** A failed step this close to passing is measured again (full runs only). */
const NEAR_MISS = { deliveryFloor: 0.9, p99CeilingMs: 3 * P99_CEILING_MS };
/** One client process per source address; loopback answers on all of 127/8. */
const FANOUT_SOURCES = ['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5'];
const LATENCY_SOURCES = ['127.0.0.2', '127.0.0.3'];
/** What a failed step left behind may take this long to arrive before its servers are replaced. */
const BACKLOG = { quietMs: 2000, maxMs: 10_000 };

const SCENARIO_IDS = ['bare', 'bare-send', 'socketio', 'socketio-cross', 'one-pod', 'cross-pod'] as const;

const { values: flags } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    smoke: { type: 'boolean', default: false },
    out: { type: 'string' },
    scenarios: { type: 'string', default: SCENARIO_IDS.join(',') },
    'bare-source': { type: 'string', default: 'jetstream' },
    rounds: { type: 'string', default: '1' },
  },
});
const ROUNDS = Number(flags.rounds);
if (!Number.isInteger(ROUNDS) || ROUNDS < 1) throw new Error(`--rounds must be a whole number from 1: ${flags.rounds}`);
const FULL = {
  firstRate: 50,
  maxRate: 3200,
  refineSteps: 3,
  minRate: 25,
  stepMs: 3000,
  /** Tries of a rate whose steps keep nearly passing; the last failure decides (1: no repeats). */
  triesPerNearMiss: 3,
  /** A failed step's backlog is delivered, so the servers stay warm. */
  keepServersAfterFailure: true,
  latencyMs: 10_000,
  latencyWindows: 5,
  /** An unmeasured window at the latency rate before the measured ones (0: none). */
  latencyWarmUpMs: 2000,
  /** Proves the path works end to end and gives the servers' hot paths time to be compiled. */
  warmUp: { rate: 100, durationMs: 1000 },
  /** After publishing, a step waits for trailing deliveries until none arrived for `quietMs` or `maxMs` passed. */
  drain: { quietMs: 500, maxMs: 3000 },
};
// Quick and smoke runs are a first look: no repeated tries, no waiting for backlogs, one latency window
// and no unmeasured one before it.
const QUICK: typeof FULL = {
  ...FULL,
  firstRate: 200,
  maxRate: 800,
  refineSteps: 0,
  stepMs: 1000,
  triesPerNearMiss: 1,
  keepServersAfterFailure: false,
  latencyMs: 2000,
  latencyWindows: 1,
  latencyWarmUpMs: 0,
  warmUp: { rate: 50, durationMs: 400 },
  drain: { quietMs: 300, maxMs: 1500 },
};
const SMOKE: typeof FULL = { ...QUICK, firstRate: 50, maxRate: 50, latencyMs: 1000 };
const settings = flags.smoke ? SMOKE : flags.quick ? QUICK : FULL;
const criteria: Criteria = { deliveryFloor: DELIVERY_FLOOR, p99CeilingMs: P99_CEILING_MS, drain: settings.drain };
/** A warm-up that has not reached every client by then fails the path. */
const WARM_UP_TIMEOUT_MS = 5000;
const { fanoutClients: FANOUT_CLIENTS, latencyClients: LATENCY_CLIENTS, latencyRate: LATENCY_RATE } = flags.smoke ? SMOKE_SHAPE : DEFAULT_SHAPE;
const OUT_DIR = flags.out ?? fileURLToPath(new URL('../../bench/results/', import.meta.url));
const bareSource: BareOptions['source'] = flags['bare-source'] === 'core' ? 'core' : 'jetstream';
const chosen = chooseFrom(flags.scenarios, SCENARIO_IDS, 'scenario');

const started = new StartedProcesses();
const podNodeArgs = (process.env['BENCH_NODE_ARGS'] ?? '').split(' ').filter((arg) => arg !== '');

/** Starts one path's servers on its testbed; Switchboard clients are users `${userPrefix}-N`. */
type StartTarget = (infra: Infra, userPrefix: string) => Promise<FanoutTarget>;

const scenarios: Record<(typeof SCENARIO_IDS)[number], { label: string; start: StartTarget }> = {
  bare: { label: `bare uWS (${bareSource}, app.publish)`, start: (infra) => startBare(infra, { source: bareSource, mode: 'publish' }) },
  'bare-send': { label: `bare uWS (${bareSource}, ws.send loop)`, start: (infra) => startBare(infra, { source: bareSource, mode: 'send' }) },
  socketio: { label: `Socket.IO 4 (${bareSource}, redis adapter)`, start: (infra) => startSocketIo(infra, bareSource) },
  'socketio-cross': { label: `Socket.IO 4 across nodes (${bareSource}, redis adapter)`, start: (infra) => startSocketIoCrossNode(infra, bareSource) },
  'one-pod': { label: 'Switchboard, one pod', start: (infra, prefix) => startOnePod(infra, prefix) },
  'cross-pod': { label: 'Switchboard, cross-pod (gRPC)', start: (infra, prefix) => startCrossPod(infra, prefix) },
};

/** A path under test and the Redis and NATS it alone uses. */
interface Path {
  readonly id: string;
  readonly label: string;
  readonly start: StartTarget;
  readonly testbed: Testbed;
}

// Every path gets a Redis and a NATS of its own: paths take turns while each keeps its servers up,
// and a server that could read another path's events would fan those out to its clients too.
const paths: Path[] = await Promise.all(chosen.map(async (id) => ({ id, ...scenarios[id], testbed: await startInfra(started, podNodeArgs) })));

const loadAtStart = loadavg();
const results: ScenarioResult[] = [];
try {
  // Measured before and after: the machine's speed drifts, and this says by how much.
  const wakeCostAtStart = await measureWakeCost();
  const rounds: Array<Map<string, SweepResult>> = [];
  for (let round = 1; round <= ROUNDS; round++) {
    process.stderr.write(`fan-out sweeps${ROUNDS > 1 ? ` (round ${round} of ${ROUNDS})` : ''}, taking turns: ${paths.map((path) => path.label).join('; ')}\n`);
    rounds.push(await sweepAll(paths));
  }
  process.stderr.write(`latency, ${settings.latencyWindows} windows per path, taking turns\n`);
  const latencies = await latencyInTurns(paths);
  for (const path of paths) {
    const sweeps = rounds.map((round) => round.get(path.id)!);
    const byRound = ROUNDS > 1 ? { bestRateByRound: sweeps.map(bestRateOf) } : {};
    results.push({ id: path.id, label: path.label, fanout: medianSweep(sweeps), ...byRound, latency: latencies.get(path.id)! });
  }
  const wakeCost = { atStart: wakeCostAtStart, atEnd: await measureWakeCost() };
  const report = renderReport(results, { fanoutClients: FANOUT_CLIENTS, latencyClients: LATENCY_CLIENTS, latencyRate: LATENCY_RATE, cores: cpus().length }, wakeCost);
  const json = {
    machine: { ...machine(), loadAverageAtStart: loadAtStart, loadAverageAtEnd: loadavg(), wakeCost },
    settings: { ...settings, rounds: ROUNDS, quick: flags.quick, smoke: flags.smoke, fanoutClients: FANOUT_CLIENTS, latencyClients: LATENCY_CLIENTS, latencyRate: LATENCY_RATE, bareSource, deliveryFloor: DELIVERY_FLOOR, p99CeilingMs: P99_CEILING_MS },
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

/** Starts fresh servers, connects `clients` clients and warms the path up; the run is tracked until released. */
async function openRun({ start, testbed }: Path, userPrefix: string, clients: number, sources: readonly string[]): Promise<Run> {
  const target = started.track(await start(testbed.infra, userPrefix));
  const fleet = await ClientFleet.open(target.urls(clients), sources).catch(async (err: unknown) => {
    await started.release(target);
    throw err;
  });
  started.untrack(target);
  // Clients leave first, so the pods' shutdown has no sockets left to drain.
  const run = started.track({
    testbed,
    target,
    fleet,
    stop: async () => {
      await fleet.close();
      await target.stop();
    },
  });
  try {
    await warmUp(testbed.nc, fleet, userPrefix);
  } catch (err) {
    await started.release(run);
    throw err;
  }
  return run;
}

/** A few events that must reach every client before anything is measured: proves the path works end to end. */
async function warmUp(nc: NatsConnection, fleet: ClientFleet, tag: string): Promise<void> {
  const phase = `${tag}-warm`;
  await fleet.measure(phase);
  const run = await publishPaced(nc, phase, settings.warmUp.rate, settings.warmUp.durationMs);
  const expected = run.published * fleet.connected;
  const delivered = await fleet.waitForDeliveries(expected, { quietMs: WARM_UP_TIMEOUT_MS, maxMs: WARM_UP_TIMEOUT_MS });
  if (delivered === 0) throw new Error(`no event reached any client within ${WARM_UP_TIMEOUT_MS} ms: is a pod consuming ${STREAM}?`);
  if (delivered < expected) throw new Error(`warm-up delivered ${delivered} of ${expected} events`);
}

/** One path's sweep in progress: its search, the steps measured so far, and its open servers and clients. */
interface Sweep {
  readonly path: Path;
  readonly search: RateSearch;
  readonly steps: StepResult[];
  run: Run | undefined;
  opened: number;
  /** Why the sweep ended early, if it did. */
  stoppedBy: string | undefined;
  /** How many times the next rate has been measured and nearly passed. */
  nearMisses: number;
}

type SweepResult = Outcome<{ bestRate: number; steps: StepResult[]; interruptedBy?: string }>;

/** A sweep's best rate; 0 when it failed or nothing passed. */
function bestRateOf(sweep: SweepResult): number {
  return sweep.ok ? sweep.value.bestRate : 0;
}

/** The round whose best rate is the median (the lower one of an even count, so noise does not flatter). */
function medianSweep(sweeps: readonly SweepResult[]): SweepResult {
  const ordered = [...sweeps].sort((a, b) => bestRateOf(a) - bestRateOf(b));
  return ordered[Math.floor((ordered.length - 1) / 2)]!;
}

/**
 * Sweeps every path's rate at once, taking turns step by step: the machine's speed drifts over
 * minutes, and paths measured one after another would each get a different machine. The order
 * rotates every round so no path always follows the same neighbour. Each path keeps its servers
 * and clients from step to step (a failed step's backlog is delivered first), so the servers are
 * measured warm, as they run in production; servers whose backlog does not drain are replaced.
 */
async function sweepAll(paths: readonly Path[]): Promise<Map<string, SweepResult>> {
  const sweeps = paths.map((path): Sweep => ({ path, search: new RateSearch(settings), steps: [], run: undefined, opened: 0, stoppedBy: undefined, nearMisses: 0 }));
  const active = () => sweeps.filter((sweep) => sweep.stoppedBy === undefined && sweep.search.next !== undefined);
  try {
    for (let round = 0; active().length > 0; round++) {
      const turn = active();
      for (let i = 0; i < turn.length; i++) await takeStep(turn[(round + i) % turn.length]!);
      // A path that has finished holds no servers while the others go on.
      for (const sweep of sweeps) {
        if (sweep.run !== undefined && !active().includes(sweep)) await releaseRun(sweep);
      }
    }
  } finally {
    for (const sweep of sweeps) await releaseRun(sweep);
  }
  return new Map(
    sweeps.map((sweep): [string, SweepResult] => {
      // A path that measured nothing failed; steps already measured still count, and the table says the sweep was cut short.
      if (sweep.steps.length === 0) return [sweep.path.id, { ok: false, reason: sweep.stoppedBy ?? 'no step was measured' }];
      const interruptedBy = sweep.stoppedBy === undefined ? {} : { interruptedBy: sweep.stoppedBy };
      return [sweep.path.id, { ok: true, value: { bestRate: sweep.search.best ?? 0, steps: sweep.steps, ...interruptedBy } }];
    }),
  );
}

/**
 * Latency at LATENCY_RATE for every path, in windows that take turns (settings.latencyWindows): every
 * path's servers and clients stay up, and each path's windows add up to one measurement. In a
 * full run each path first gets one unmeasured window at that rate.
 */
async function latencyInTurns(paths: readonly Path[]): Promise<Map<string, Outcome<StepResult>>> {
  const outcomes = new Map<string, Outcome<StepResult>>();
  const open: Array<{ readonly path: Path; readonly run: Run }> = [];
  const fail = (path: Path, err: unknown) => outcomes.set(path.id, { ok: false, reason: oneLineReason(err instanceof Error ? err.message : String(err)) });
  const live = () => open.filter(({ path }) => !outcomes.has(path.id));
  try {
    // Opened side by side: nothing is measured yet.
    await Promise.all(
      paths.map(async (path) => {
        try {
          open.push({ path, run: await openRun(path, `${path.id}-latency`, LATENCY_CLIENTS, LATENCY_SOURCES) });
        } catch (err) {
          fail(path, err);
        }
      }),
    );
    // Turns follow the order paths were given in, whatever order they opened in.
    open.sort((a, b) => paths.indexOf(a.path) - paths.indexOf(b.path));
    // One unmeasured window at the measured rate first: a pod's CPU per event takes seconds of
    // traffic to settle, and the first window would otherwise measure its compiler.
    for (const { path, run } of settings.latencyWarmUpMs > 0 ? live() : []) {
      await Measurement.start(run, `${path.id}-lat-warm`, criteria)
        .then((warm) => warm.window(LATENCY_RATE, settings.latencyWarmUpMs))
        .catch((err: unknown) => fail(path, err));
    }
    const measurements = new Map<Path, Measurement>();
    for (const { path, run } of live()) {
      await Measurement.start(run, `${path.id}-lat`, criteria).then((measurement) => measurements.set(path, measurement), (err: unknown) => fail(path, err));
    }
    for (let window = 0; window < settings.latencyWindows; window++) {
      const turn = live();
      for (let i = 0; i < turn.length; i++) {
        const { path } = turn[(window + i) % turn.length]!;
        await measurements.get(path)!.window(LATENCY_RATE, settings.latencyMs / settings.latencyWindows).catch((err: unknown) => fail(path, err));
      }
    }
    for (const { path } of live()) outcomes.set(path.id, await attempt(() => measurements.get(path)!.finish()));
  } finally {
    for (const { run } of open) await started.release(run);
  }
  return outcomes;
}

/** Measures a sweep's next rate, opening its servers and clients first when it has none. */
async function takeStep(sweep: Sweep): Promise<void> {
  const rate = sweep.search.next!;
  const { id, label } = sweep.path;
  try {
    const run = sweep.run ?? (await openFor(sweep));
    const step = await measureStep(run, `${id}-r${rate}`, rate, settings.stepMs);
    sweep.steps.push(step);
    // Noise on a shared machine only ever makes a step worse, and a hiccup of ~100 ms anywhere
    // (a client process descheduled, a collection) is enough to fail one: a near miss counts once
    // every try of the rate failed. A step far past what the clients keep up with is not worth another look.
    const nearMiss = step.fraction >= NEAR_MISS.deliveryFloor && step.latency.p99Ms < NEAR_MISS.p99CeilingMs;
    sweep.nearMisses = nearMiss && !step.pass ? sweep.nearMisses + 1 : 0;
    const decides = sweep.nearMisses === 0 || sweep.nearMisses >= settings.triesPerNearMiss;
    process.stderr.write(`  ${label}: ${rate} events/s … ${(step.fraction * 100).toFixed(1)}% delivered, p99 ${step.latency.p99Ms.toFixed(2)} ms${decides ? '' : ' (failed; measured again)'}\n`);
    if (decides) {
      sweep.nearMisses = 0;
      sweep.search.record(step.pass);
    }
    if (step.pass) return;
    const stepsLeft = !decides || sweep.search.next !== undefined;
    if (!stepsLeft || !settings.keepServersAfterFailure || !(await backlogDelivered(run, step))) await releaseRun(sweep);
  } catch (err) {
    await stopSweep(sweep, err);
  }
}

/** Opens fresh servers and clients for a sweep. */
async function openFor(sweep: Sweep): Promise<Run> {
  sweep.run = await openRun(sweep.path, `${sweep.path.id}-fanout${sweep.opened++}`, FANOUT_CLIENTS, FANOUT_SOURCES);
  return sweep.run;
}

/** Ends a sweep early: its steps so far still count, and the table says why it stopped. */
async function stopSweep(sweep: Sweep, err: unknown): Promise<void> {
  sweep.stoppedBy = oneLineReason(err instanceof Error ? err.message : String(err));
  process.stderr.write(`  ${sweep.path.label}: sweep stopped at ${sweep.search.next ?? 0} events/s: ${sweep.stoppedBy}\n`);
  await releaseRun(sweep);
}

/**
 * After a failed step, waits for its backlog (in the stream, the servers and the sockets' buffers)
 * to reach the clients, so the next step starts clean on servers that stay warm; false when it
 * does not, and the servers are replaced.
 */
async function backlogDelivered({ fleet }: Run, step: StepResult): Promise<boolean> {
  const expected = step.published * step.clients;
  return (await fleet.waitForDeliveries(expected, BACKLOG)) >= expected;
}

async function releaseRun(sweep: Sweep): Promise<void> {
  const { run } = sweep;
  sweep.run = undefined;
  if (run !== undefined) await started.release(run);
}

/** Publishes at `rate` for `durationMs` and measures what reached the clients, with everyone's CPU. */
async function measureStep(run: Run, phase: string, rate: number, durationMs: number): Promise<StepResult> {
  const measurement = await Measurement.start(run, phase, criteria);
  await measurement.window(rate, durationMs);
  return measurement.finish();
}

function machine() {
  return { cpus: cpus().length, model: cpus()[0]?.model ?? '', node: process.version, platform: `${process.platform}/${process.arch}` };
}
