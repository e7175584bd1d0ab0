// One measured phase of bench/fanout.ts: the events published to a path over one or more windows,
// what reached its clients, and the CPU every process used while it did.
import type { Testbed } from './benchProcesses.js';
import type { ClientFleet } from './clientFleet.js';
import type { StepResult } from './fanoutReport.js';
import type { FanoutTarget } from './fanoutTargets.js';
import { publishPaced } from './pacedPublisher.js';
import { cpuSecondsOf, machineBusySeconds, wakesOf } from './processCpu.js';

/** Servers and connected clients, warmed up, for one or more measured steps. */
export interface Run {
  readonly testbed: Testbed;
  readonly target: FanoutTarget;
  readonly fleet: ClientFleet;
  stop(): Promise<void>;
}

/** When a phase passes, and how long its deliveries may take to arrive after each window. */
export interface Criteria {
  /** A phase passes when this share of the expected deliveries arrived… */
  readonly deliveryFloor: number;
  /** …and p99 stayed under this. */
  readonly p99CeilingMs: number;
  readonly drain: { readonly quietMs: number; readonly maxMs: number };
}

/**
 * What reached one path's clients over one or more publishing windows of one phase, and the CPU
 * everyone used during those windows (not between them, when other paths take their turns).
 */
export class Measurement {
  #rate = 0;
  #published = 0;
  #publishMs = 0;
  #publisherCpuMs = 0;
  #wallSeconds = 0;
  readonly #cpuSeconds = { server: {} as Record<string, number>, nats: 0, redis: 0, machine: 0 };
  readonly #serverWakes: Record<string, number> = {};

  private constructor(
    private readonly run: Run,
    private readonly phase: string,
    private readonly criteria: Criteria,
    private readonly connected: number,
    private readonly countersBefore: Record<string, Record<string, number>>,
  ) {}

  static async start(run: Run, phase: string, criteria: Criteria): Promise<Measurement> {
    const connected = (await run.fleet.count()).open;
    const countersBefore = await run.target.podCounters();
    await run.fleet.measure(phase);
    return new Measurement(run, phase, criteria, connected, countersBefore);
  }

  /** Publishes at `rate` for `durationMs`, then waits for the deliveries to arrive. */
  async window(rate: number, durationMs: number): Promise<void> {
    const { testbed, target, fleet } = this.run;
    const before = await cpuSnapshot(testbed, target);
    const published = await publishPaced(testbed.nc, this.phase, rate, durationMs);
    this.#rate = rate;
    this.#published += published.published;
    this.#publishMs += published.elapsedMs;
    this.#publisherCpuMs += published.cpuMs;
    await fleet.waitForDeliveries(this.#published * this.connected, this.criteria.drain);
    const after = await cpuSnapshot(testbed, target);
    this.#wallSeconds += (after.at - before.at) / 1000;
    const spent = this.#cpuSeconds;
    for (const [role, seconds] of Object.entries(after.server)) spent.server[role] = (spent.server[role] ?? 0) + seconds - (before.server[role] ?? 0);
    for (const [role, wakes] of Object.entries(after.serverWakes)) this.#serverWakes[role] = (this.#serverWakes[role] ?? 0) + wakes - (before.serverWakes[role] ?? 0);
    spent.nats += after.nats - before.nats;
    spent.redis += after.redis - before.redis;
    spent.machine += after.machine - before.machine;
  }

  async finish(): Promise<StepResult> {
    const { target, fleet } = this.run;
    const report = await fleet.report();
    const countersAfter = await target.podCounters();
    const percent = (seconds: number) => (seconds / this.#wallSeconds) * 100;
    const expected = this.#published * this.connected;
    const fraction = expected === 0 ? 0 : report.delivered / expected;
    const spent = this.#cpuSeconds;
    return {
      rate: this.#rate,
      published: this.#published,
      clients: this.connected,
      delivered: report.delivered,
      fraction,
      deliveriesPerSecond: report.delivered / (this.#publishMs / 1000),
      latency: report.latency,
      pass: fraction >= this.criteria.deliveryFloor && report.latency.p99Ms < this.criteria.p99CeilingMs,
      closes: report.closes,
      cpuPercent: {
        server: Object.fromEntries(Object.entries(spent.server).map(([role, seconds]) => [role, percent(seconds)])),
        nats: percent(spent.nats),
        redis: percent(spent.redis),
        publisher: (this.#publisherCpuMs / this.#publishMs) * 100,
        // The client processes are idle between windows, so their CPU since `measure` is theirs during them.
        clients: percent(report.cpuMs / 1000),
        machine: percent(spent.machine),
      },
      wakesPerEvent: Object.fromEntries(Object.entries(this.#serverWakes).map(([role, wakes]) => [role, this.#published === 0 ? 0 : wakes / this.#published])),
      podCounters: deltas(this.countersBefore, countersAfter),
    };
  }
}

async function cpuSnapshot({ redis, nats }: Testbed, target: FanoutTarget) {
  const info = await redis.client.info('cpu');
  const read = (name: string) => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(info)?.[1] ?? 0);
  const pids = Object.entries(target.serverPids());
  const server = Object.fromEntries(pids.map(([role, pid]) => [role, cpuSecondsOf(pid)]));
  const serverWakes = Object.fromEntries(pids.map(([role, pid]) => [role, wakesOf(pid)]));
  return { at: Date.now(), server, serverWakes, nats: cpuSecondsOf(nats.pid), redis: read('used_cpu_user') + read('used_cpu_sys'), machine: machineBusySeconds() };
}

function deltas(before: Record<string, Record<string, number>>, after: Record<string, Record<string, number>>): Record<string, Record<string, number>> {
  return Object.fromEntries(
    Object.entries(after).map(([role, counters]) => [role, Object.fromEntries(Object.entries(counters).map(([name, value]) => [name, value - (before[role]?.[name] ?? 0)]))]),
  );
}

