// Result shapes of bench/fanout.ts and the markdown it prints: one row per path, then the
// issue's targets checked against the bare server measured in the same run.
import type { LatencySummary } from './latencyHistogram.js';
import type { WakeCost } from './wakeCost.js';

/** A measurement, or why it could not be made. */
export type Outcome<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly reason: string };

/** One publishing window at one rate. */
export interface StepResult {
  readonly rate: number;
  readonly published: number;
  readonly clients: number;
  readonly delivered: number;
  /** Delivered ÷ (published × clients). */
  readonly fraction: number;
  readonly deliveriesPerSecond: number;
  readonly latency: LatencySummary;
  readonly pass: boolean;
  readonly closes: Record<string, number>;
  /** Percent of one core over the window (drain included), by process. */
  readonly cpuPercent: {
    readonly server: Record<string, number>;
    readonly nats: number;
    readonly redis: number;
    readonly publisher: number;
    readonly clients: number;
    /** Every process and the kernel together (up to 100 × cores): near the ceiling, every figure is CPU-starved. */
    readonly machine: number;
  };
  /** Per server process: its event loop's wake-ups (voluntary context switches) over the step ÷ events published. */
  readonly wakesPerEvent: Record<string, number>;
  /** Per pod role over the step (empty for the bare server): event counters (the local/forwarded split) and warning/error log counts. */
  readonly podCounters: Record<string, Record<string, number>>;
}

/** Everything measured for one path. */
export interface ScenarioResult {
  readonly id: string;
  readonly label: string;
  /** With several rounds, the median round's sweep; each round's best rate is in `bestRateByRound`. */
  readonly fanout: Outcome<{ readonly bestRate: number; readonly steps: readonly StepResult[]; readonly interruptedBy?: string }>;
  /** Each round's best rate (0 where none passed), when the paths were swept more than once. */
  readonly bestRateByRound?: readonly number[];
  readonly latency: Outcome<StepResult>;
}

/** The issue's targets: fan-out against the bare server, and p99 allowance over it per path. */
const FANOUT_RATIO_TARGET = 0.8;
const P99_ALLOWANCE_MS: Record<string, number> = { 'one-pod': 3, 'cross-pod': 6 };

const ms = (value: number) => value.toFixed(2);
const pct = (value: number) => `${value.toFixed(0)}%`;
const sum = (values: Record<string, number>) => Object.values(values).reduce((a, b) => a + b, 0);

/** The markdown printed at the end of a run. */
export function renderReport(
  results: readonly ScenarioResult[],
  shape: { fanoutClients: number; latencyClients: number; latencyRate: number; cores: number },
  wakeCost: { readonly atStart: WakeCost; readonly atEnd: WakeCost },
): string {
  const bareP99 = referenceP99(results, 'bare');
  const bare = results.find((r) => r.id === 'bare');
  const lines = [
    `| path | events/s to ${shape.fanoutClients.toLocaleString('en')} clients | deliveries/s | × bare | p50 / p99 / p99.9 ms (${shape.latencyClients} clients, ${shape.latencyRate.toLocaleString('en')} events/s) | p99 − bare | server CPU (fan-out / latency) |`,
    '| --- | --: | --: | --: | --: | --: | --: |',
  ];
  for (const result of results) {
    const cells = [result.label];
    if (result.fanout.ok) {
      const best = bestStep(result.fanout.value);
      const { interruptedBy } = result.fanout.value;
      cells.push(
        `${best === undefined ? `none passed (lowest tried ${Math.min(...result.fanout.value.steps.map((s) => s.rate))})` : best.rate}${interruptedBy === undefined ? '' : ` (sweep cut short: ${interruptedBy})`}${byRound(result.bestRateByRound)}`,
        best === undefined ? '0' : Math.round(best.deliveriesPerSecond).toLocaleString('en'),
        fanoutRatio(result, bare)?.toFixed(2) ?? '—',
      );
    } else {
      cells.push(`failed: ${result.fanout.reason}`, '—', '—');
    }
    if (result.latency.ok) {
      const { latency, fraction } = result.latency.value;
      // Percentiles of the events that arrived; say so when some did not.
      const partial = fraction < 0.999 ? ` (${(fraction * 100).toFixed(1)}% delivered)` : '';
      cells.push(`${ms(latency.p50Ms)} / ${ms(latency.p99Ms)} / ${ms(latency.p999Ms)}${partial}`, bareP99 === undefined || result.id === 'bare' ? '—' : signedMs(latency.p99Ms - bareP99));
    } else {
      cells.push(`failed: ${result.latency.reason}`, '—');
    }
    const fanoutCpu = result.fanout.ok ? bestStep(result.fanout.value)?.cpuPercent.server : undefined;
    const latencyCpu = result.latency.ok ? result.latency.value.cpuPercent.server : undefined;
    cells.push(`${fanoutCpu === undefined ? '—' : pct(sum(fanoutCpu))} / ${latencyCpu === undefined ? '—' : pct(sum(latencyCpu))}`);
    lines.push(`| ${cells.map((cell) => cell.replace(/\|/g, '\\|')).join(' | ')} |`);
  }
  lines.push('', ...targetLines(results), '', ...detailLines(results, shape.cores), '', wakeCostLine(wakeCost), '');
  return lines.join('\n');
}

/** What a wake-up cost this machine at the start and at the end of the run (see wakeCost.ts). */
export function wakeCostLine({ atStart, atEnd }: { readonly atStart: WakeCost; readonly atEnd: WakeCost }): string {
  const describe = (cost: WakeCost) => `${cost.cpuMicrosPerWake.toFixed(0)} µs of CPU (round trip p50 ${cost.roundTripP50Micros.toFixed(0)} µs, p99 ${cost.roundTripP99Micros.toFixed(0)} µs)`;
  return (
    `Machine: a Node process woken ${atStart.rate} times a second through a pipe spent ${describe(atStart)} per wake at the start of the run and ` +
    `${describe(atEnd)} at the end. Every process an event passes through pays this for it, so the higher it is, the more an extra process on a path costs that path.`
  );
}

/** The latency p99 of a reference server's run, where measured. */
function referenceP99(results: readonly ScenarioResult[], id: string): number | undefined {
  const reference = results.find((r) => r.id === id);
  return reference?.latency.ok === true ? reference.latency.value.latency.p99Ms : undefined;
}

const signedMs = (value: number) => `${value >= 0 ? '+' : ''}${ms(value)}`;

/** ` (rounds: 400, 375, 600)` where the paths were swept more than once. */
const byRound = (rates: readonly number[] | undefined) => (rates === undefined ? '' : ` (rounds: ${rates.join(', ')})`);

/**
 * A path's best rate ÷ the reference's. Over several rounds, the median of each round's ratio: a
 * round's paths took turns on the same machine, so a round is the fair pairing. Undefined where
 * either was not measured.
 */
export function fanoutRatio(result: ScenarioResult, reference: ScenarioResult | undefined): number | undefined {
  if (reference === undefined) return undefined;
  const byRound = roundRatios(result, reference);
  if (byRound !== undefined) {
    const ratios = byRound.filter((ratio): ratio is number => ratio !== undefined).sort((a, b) => a - b);
    return ratios.length === 0 ? undefined : ratios[Math.floor((ratios.length - 1) / 2)];
  }
  const [best, referenceBest] = [result, reference].map((r) => (r.fanout.ok ? bestStep(r.fanout.value) : undefined));
  return best === undefined || referenceBest === undefined ? undefined : best.rate / referenceBest.rate;
}

/** Each round's ratio to the reference's same round (undefined where the reference passed nothing); undefined without rounds. */
function roundRatios(result: ScenarioResult, reference: ScenarioResult | undefined): Array<number | undefined> | undefined {
  const [rates, referenceRates] = [result.bestRateByRound, reference?.bestRateByRound];
  if (rates === undefined || referenceRates === undefined) return undefined;
  return rates.map((rate, i) => ((referenceRates[i] ?? 0) > 0 ? rate / referenceRates[i]! : undefined));
}

/** `; by round 0.50, 0.62, 1.00` where the paths were swept more than once. */
function ratiosByRound(result: ScenarioResult, reference: ScenarioResult | undefined): string {
  const byRound = roundRatios(result, reference);
  return byRound === undefined ? '' : `; by round ${byRound.map((ratio) => ratio?.toFixed(2) ?? '—').join(', ')}`;
}

/** The passing step at the best rate, if any step passed. */
function bestStep(fanout: { readonly bestRate: number; readonly steps: readonly StepResult[] }): StepResult | undefined {
  return fanout.steps.find((step) => step.pass && step.rate === fanout.bestRate);
}

/** Each target judged against `bare` (app.publish); the `bare-send` figures show what a ws.send loop would cost instead. */
function targetLines(results: readonly ScenarioResult[]): string[] {
  const bareP99 = referenceP99(results, 'bare');
  const sendP99 = referenceP99(results, 'bare-send');
  const [bare, bareSend] = ['bare', 'bare-send'].map((id) => results.find((r) => r.id === id));
  const lines = ['Targets, against the bare app.publish server of this run (and, in brackets, against the bare ws.send loop):'];
  for (const result of results) {
    const allowance = P99_ALLOWANCE_MS[result.id];
    if (allowance === undefined) continue;
    const p99 = result.latency.ok ? result.latency.value.latency.p99Ms : undefined;
    const overBy = (reference: number | undefined) => (p99 === undefined || reference === undefined ? undefined : p99 - reference);
    const [ratio, sendRatio, over, sendOver] = [fanoutRatio(result, bare), fanoutRatio(result, bareSend), overBy(bareP99), overBy(sendP99)];
    const fanout = ratio === undefined ? 'not measured' : `${ratio >= FANOUT_RATIO_TARGET ? 'met' : 'MISSED'} (${ratio.toFixed(2)}${sendRatio === undefined ? '' : ` [${sendRatio.toFixed(2)}]`}${ratiosByRound(result, bare)})`;
    const latency = over === undefined ? 'not measured' : `${over <= allowance ? 'met' : 'MISSED'} (${signedMs(over)} ms${sendOver === undefined ? '' : ` [${signedMs(sendOver)} ms]`})`;
    lines.push(`- ${result.label}: fan-out ≥ ${FANOUT_RATIO_TARGET} × bare: ${fanout}; p99 within ${allowance} ms of bare: ${latency}`);
  }
  lines.push(
    '- the paths sweep in turns: each doubles the rate until a step fails (in a full run, a step that nearly passed is measured again, up to three tries, and only a third failure counts), then bisects, so fan-out ratios are only as fine as those steps (every step is in the JSON).',
  );
  return lines;
}

/** Generator cost, infrastructure cost, closes and the pods' own event counters (the local/forwarded split). */
function detailLines(results: readonly ScenarioResult[], cores: number): string[] {
  const lines: string[] = [];
  for (const result of results) {
    const runs: Array<{ kind: string; step: StepResult | undefined }> = [];
    if (result.fanout.ok) runs.push({ kind: 'fan-out, best step', step: bestStep(result.fanout.value) });
    if (result.latency.ok) runs.push({ kind: 'latency', step: result.latency.value });
    for (const { kind, step } of runs) {
      if (step === undefined) continue;
      const cpu = step.cpuPercent;
      const closes = Object.entries(step.closes).map(([code, n]) => `${n}×${code}`);
      const podCounters = Object.entries(step.podCounters).map(([role, values]) => `${role}: ${describeCounters(values)}`);
      lines.push(
        `- ${result.label}, ${kind} (${step.rate} events/s to ${step.clients} clients): ${(step.fraction * 100).toFixed(1)}% delivered; ` +
          `CPU (% of one core) ${Object.entries(cpu.server).map(([role, p]) => `${role} ${pct(p)}`).join(', ')}, nats-server ${pct(cpu.nats)}, redis ${pct(cpu.redis)}; ` +
          `generator: publisher ${pct(cpu.publisher)}, clients ${pct(cpu.clients)}; whole machine ${pct(cpu.machine)} of ${cores * 100}%, ` +
          `of which ${pct(Math.max(0, cpu.machine - ours(cpu)))} kernel and processes not started by this benchmark; ` +
          `wake-ups per event ${Object.entries(step.wakesPerEvent).map(([role, n]) => `${role} ${n.toFixed(2)}`).join(', ')}` +
          (closes.length > 0 ? `; closes ${closes.join(', ')}` : '') +
          (podCounters.length > 0 ? `; pod counters over the step: ${podCounters.join('; ')}` : ''),
      );
    }
  }
  return lines;
}

/** CPU of every process this benchmark started. */
function ours(cpu: StepResult['cpuPercent']): number {
  return sum(cpu.server) + cpu.nats + cpu.redis + cpu.publisher + cpu.clients;
}

/** `fanned_out{outcome="forwarded"} 1000, ...`: the non-zero counter deltas without the common prefix. */
function describeCounters(values: Record<string, number>): string {
  const nonZero = Object.entries(values).filter(([, n]) => n !== 0);
  if (nonZero.length === 0) return 'no events';
  return nonZero.map(([name, n]) => `${name.replace('switchboard_events_', '').replace('_total', '')} ${n}`).join(', ');
}
