// The side-by-side table of bench/run.ts: one row per figure, with Switchboard, the bare
// uWebSockets.js ceiling and Socket.IO 4 as measured in the same run, read from the JSON files
// the scenario processes wrote.
import { fanoutRatio, wakeCostLine, type ScenarioResult, type StepResult } from './fanoutReport.js';
import type { IdleResult } from './idle.js';
import type { SlowConsumerResult } from './slowConsumers.js';
import type { WakeCost } from './wakeCost.js';

/** What each scenario process wrote, where it ran to the end. */
export interface ScenarioFiles {
  fanout?: {
    readonly settings: { readonly fanoutClients?: number; readonly latencyClients?: number; readonly latencyRate?: number; readonly maxRate?: number };
    readonly results: readonly ScenarioResult[];
    /** Absent in results from before the wake-up cost was measured. */
    readonly machine?: { readonly wakeCost?: { readonly atStart: WakeCost; readonly atEnd: WakeCost } };
  };
  cluster?: {
    readonly pods: number;
    readonly connects: { readonly perPodPerSecond: readonly number[]; readonly podCpuMsPerConnect: readonly number[] };
    /** The same load on one pod of the three (absent in results from before it was measured). */
    readonly onePod?: { readonly totalPerSecond: number; readonly podCpuMsPerConnect: readonly number[]; readonly podCpuPercent: readonly number[] };
    readonly takeover: { readonly rounds: number; readonly p50Ms: number; readonly p99Ms: number };
  };
  idle?: { readonly openFilesLimit: number; readonly wanted: number; readonly connections: number; readonly results: ReadonlyArray<IdleResult | { readonly id: string; readonly failed: string }> };
  slowConsumers?: {
    readonly settings: { readonly clients: number; readonly slowShare: number; readonly rate: number; readonly eventBytes: number; readonly duringMs: number; readonly sendBufferBytes: number };
    readonly results: ReadonlyArray<SlowConsumerResult | { readonly id: string; readonly failed: string }>;
  };
}

/** One figure side by side; undefined where a server was not measured (or cannot be, e.g. takeover on a bare server). */
export interface Row {
  readonly figure: string;
  readonly unit: string;
  readonly switchboard?: number;
  readonly ceiling?: number;
  readonly socketio?: number;
  /** Switchboard ÷ ceiling. */
  readonly ratio?: number;
}

/** The rows and their markdown, with the scenarios that failed listed under the table. */
export function renderTable(files: ScenarioFiles, failures: Record<string, string>, mode: string): { rows: Row[]; markdown: string } {
  const rows = [...fanoutRows(files.fanout), ...idleRows(files.idle), ...clusterRows(files.cluster), ...slowConsumerRows(files.slowConsumers)];
  const cell = (value: number | undefined, digits: number) => (value === undefined || !Number.isFinite(value) ? '—' : value.toLocaleString('en', { maximumFractionDigits: digits, minimumFractionDigits: digits }));
  const lines = [
    `## Switchboard side by side (${mode} run)`,
    '',
    '| figure | Switchboard | ceiling (bare uWS) | Socket.IO 4 | Switchboard ÷ ceiling |',
    '| --- | --: | --: | --: | --: |',
    ...rows.map((r) => {
      const digits = r.unit === 'ms' || r.unit === 'KiB' ? 2 : r.unit === '%' || r.unit === 's' || r.unit === 'MiB' ? 1 : 0;
      return `| ${r.figure} (${r.unit}) | ${cell(r.switchboard, digits)} | ${cell(r.ceiling, digits)} | ${cell(r.socketio, digits)} | ${cell(r.ratio, 2)} |`;
    }),
    '',
    '- Every server ran on this machine in this run, fed by the same NATS stream and measured by the same client processes, which share the cores with the servers.',
    '- Fan-out is the highest rate of the doubling sweep with ≥ 97% delivered and p99 < 100 ms; a sweep that never passed shows 0. The ceiling is the bare uWS server writing with app.publish.',
    '- Across pods, the ceiling column repeats the single bare server; the Socket.IO column is two Socket.IO nodes on the redis adapter (events consumed on one, clients on the other).',
    ...roundNotes(files.fanout),
    ...sweepCapNotes(files.fanout),
    ...overloadNotes(files.fanout),
    ...(files.fanout?.machine?.wakeCost === undefined ? [] : [`- ${wakeCostLine(files.fanout.machine.wakeCost)}`]),
    ...slowConsumerNotes(files.slowConsumers),
    ...Object.entries(failures).map(([name, why]) => `- ${name} failed: ${why}; its rows are missing.`),
    '',
  ];
  return { rows, markdown: lines.join('\n') };
}

function fanoutRows(fanout: ScenarioFiles['fanout']): Row[] {
  if (fanout === undefined) return [];
  const byId = (id: string) => fanout.results.find((r) => r.id === id);
  const best = (id: string): StepResult | undefined => {
    const result = byId(id);
    if (result?.fanout.ok !== true) return undefined;
    const { bestRate, steps } = result.fanout.value;
    return steps.find((s) => s.pass && s.rate === bestRate);
  };
  const bestRate = (id: string) => {
    const result = byId(id);
    return result?.fanout.ok === true ? result.fanout.value.bestRate : undefined;
  };
  const latency = (id: string) => {
    const result = byId(id);
    return result?.latency.ok === true ? result.latency.value : undefined;
  };
  const clients = fanout.settings.fanoutClients ?? 1000;
  const latencyShape = `${fanout.settings.latencyClients ?? 100} clients at ${fanout.settings.latencyRate ?? 1000}/s`;
  const rows: Row[] = [];
  for (const [id, where, socketio] of [
    ['one-pod', 'one pod', 'socketio'],
    ['cross-pod', 'across pods', 'socketio-cross'],
  ] as const) {
    if (byId(id) === undefined) continue;
    const events = row(`fan-out, ${where}: events/s to ${clients} clients`, 'events/s', bestRate(id), bestRate('bare'), bestRate(socketio));
    const result = byId(id)!;
    rows.push(result.bestRateByRound === undefined ? events : { ...events, ratio: fanoutRatio(result, byId('bare')) });
    rows.push(row(`fan-out, ${where}: deliveries/s at that rate`, 'deliveries/s', best(id)?.deliveriesPerSecond, best('bare')?.deliveriesPerSecond, best(socketio)?.deliveriesPerSecond));
    for (const [name, pick] of [
      ['p50', (s: StepResult) => s.latency.p50Ms],
      ['p99', (s: StepResult) => s.latency.p99Ms],
      ['p99.9', (s: StepResult) => s.latency.p999Ms],
    ] as const) {
      const of = (target: string) => {
        const step = latency(target);
        return step === undefined ? undefined : pick(step);
      };
      rows.push(row(`latency ${name}, ${where} (${latencyShape})`, 'ms', of(id), of('bare'), of(socketio)));
    }
    const delivered = (target: string) => {
      const step = latency(target);
      return step === undefined ? undefined : step.fraction * 100;
    };
    rows.push(row(`latency run, ${where}: share delivered`, '%', delivered(id), delivered('bare'), delivered(socketio)));
  }
  return rows;
}

/** With several rounds, fan-out figures are medians; say so and give each round's rates. */
function roundNotes(fanout: ScenarioFiles['fanout']): string[] {
  const swept = fanout?.results.filter((r) => r.bestRateByRound !== undefined) ?? [];
  if (swept.length === 0) return [];
  const rounds = swept.map((r) => `${r.label} ${r.bestRateByRound!.join(', ')}`).join('; ');
  return [`- Fan-out is the median of ${swept[0]!.bestRateByRound!.length} rounds (${rounds} events/s), and its ratio the median of each round's ratio to the ceiling of that round.`];
}

/** A sweep that passed its highest rate found no limit: its figure is a floor (quick runs stop low to stay short). */
function sweepCapNotes(fanout: ScenarioFiles['fanout']): string[] {
  const cap = fanout?.settings.maxRate;
  if (fanout === undefined || cap === undefined) return [];
  const capped = fanout.results.filter((r) => r.fanout.ok && r.fanout.value.bestRate === cap).map((r) => r.label);
  if (capped.length === 0) return [];
  return [`- The sweep stops at ${cap.toLocaleString('en')} events/s; these passed it, so their fan-out figure is a floor, not a limit: ${capped.join('; ')}.`];
}

/** A latency run asks for more deliveries/s than a server's best fan-out step carried: its latency is a queue, not a path. */
function overloadNotes(fanout: ScenarioFiles['fanout']): string[] {
  if (fanout === undefined) return [];
  const load = (fanout.settings.latencyClients ?? 100) * (fanout.settings.latencyRate ?? 1000);
  const notes: string[] = [];
  for (const result of fanout.results) {
    if (result.fanout.ok !== true) continue;
    const { bestRate, steps } = result.fanout.value;
    const carried = steps.find((s) => s.pass && s.rate === bestRate)?.deliveriesPerSecond ?? 0;
    if (carried < load) {
      notes.push(
        `- ${result.label}: the latency run asks for ${load.toLocaleString('en')} deliveries/s and its best fan-out step carried ${Math.round(carried).toLocaleString('en')}/s, so its latency figures measure a growing backlog.`,
      );
    }
  }
  return notes;
}

function idleRows(idle: ScenarioFiles['idle']): Row[] {
  if (idle === undefined) return [];
  const of = (id: string): IdleResult | undefined => {
    const result = idle.results.find((r) => r.id === id);
    return result === undefined || 'failed' in result ? undefined : result;
  };
  const [sb, bare, sio] = [of('switchboard'), of('bare'), of('socketio')];
  const capped = idle.connections < idle.wanted ? `, capped by ulimit -n ${idle.openFilesLimit}` : '';
  const kib = (bytes: number | undefined) => (bytes === undefined ? undefined : bytes / 1024);
  return [
    row(`idle: connections held by one server${capped}`, 'connections', sb?.connections, bare?.connections, sio?.connections),
    row('idle: time to open them all', 's', sb?.connectSeconds, bare?.connectSeconds, sio?.connectSeconds),
    row('idle: server RSS per connection (average over all)', 'KiB', kib(sb?.rssPerConnectionBytes), kib(bare?.rssPerConnectionBytes), kib(sio?.rssPerConnectionBytes)),
    row('idle: server RSS per added connection (second half)', 'KiB', kib(sb?.rssPerAddedConnectionBytes), kib(bare?.rssPerAddedConnectionBytes), kib(sio?.rssPerAddedConnectionBytes)),
    row('idle: server heap per connection', 'KiB', kib(sb?.heapPerConnectionBytes), kib(bare?.heapPerConnectionBytes), kib(sio?.heapPerConnectionBytes)),
    row('idle: server CPU while holding them (100% = one core)', '%', sb?.idleCpuPercent, bare?.idleCpuPercent, sio?.idleCpuPercent),
  ];
}

function clusterRows(cluster: ScenarioFiles['cluster']): Row[] {
  if (cluster === undefined) return [];
  const mean = (values: readonly number[]) => values.reduce((a, b) => a + b, 0) / Math.max(1, values.length);
  return [
    row(`connect storm: authenticated connects/s per pod (${cluster.pods} pods, one Redis)`, 'connects/s', mean(cluster.connects.perPodPerSecond)),
    row('connect storm: pod CPU per connect', 'ms', mean(cluster.connects.podCpuMsPerConnect)),
    ...(cluster.onePod === undefined
      ? []
      : [
          row('connect storm: connects/s on one pod taking every connect (the other two idle)', 'connects/s', cluster.onePod.totalPerSecond),
          row('connect storm: that pod\'s CPU (100% = one core)', '%', cluster.onePod.podCpuPercent[0]),
        ]),
    row(`takeover across pods p50 (${cluster.takeover.rounds} rounds)`, 'ms', cluster.takeover.p50Ms),
    row('takeover across pods p99', 'ms', cluster.takeover.p99Ms),
  ];
}

function slowConsumerRows(slow: ScenarioFiles['slowConsumers']): Row[] {
  if (slow === undefined) return [];
  const of = (id: string): SlowConsumerResult | undefined => {
    const result = slow.results.find((r) => r.id === id);
    return result === undefined || 'failed' in result ? undefined : result;
  };
  const [sb, bare] = [of('switchboard'), of('bare')];
  const both = (pick: (r: SlowConsumerResult) => number | undefined) => [sb === undefined ? undefined : pick(sb), bare === undefined ? undefined : pick(bare)] as const;
  const { clients, slowShare, rate, eventBytes, duringMs } = slow.settings;
  const stalled = Math.round(clients * slowShare);
  const shape = `${clients} clients, ${rate} events/s of ${eventBytes / 1024} KiB`;
  const during = `while ${stalled} of ${clients} clients stop reading for ${duringMs / 1000} s`;
  const mib = (bytes: number) => bytes / 1048576;
  const lastClose = sb?.serverSlowCloses?.lastAfterMs;
  return [
    row(`slow consumers: readers' p50 before (${shape})`, 'ms', ...both((r) => r.before.latency.p50Ms)),
    row(`slow consumers: readers' p50 ${during}`, 'ms', ...both((r) => r.during.latency.p50Ms)),
    row("slow consumers: readers' p99 before", 'ms', ...both((r) => r.before.latency.p99Ms)),
    row("slow consumers: readers' p99 while stalled", 'ms', ...both((r) => r.during.latency.p99Ms)),
    row("slow consumers: readers' share delivered while stalled", '%', ...both((r) => r.during.fraction * 100)),
    row('slow consumers: server RSS before the stall', 'MiB', ...both((r) => mib(r.rss.beforeBytes))),
    row('slow consumers: server RSS peak while stalled', 'MiB', ...both((r) => mib(r.rss.peakBytes))),
    row('slow consumers: server RSS at the end of the stall', 'MiB', ...both((r) => mib(r.rss.endBytes))),
    row(`slow consumers: stalled clients closed by the server (of ${stalled})`, 'clients', ...both((r) => r.stalled - r.afterResume.open)),
    row("slow consumers: share of the stall's events the stalled clients got", '%', ...both((r) => r.afterResume.shareOfPublished * 100)),
    row("slow consumers: stall to the server's last 4408 close", 's', lastClose === undefined ? undefined : lastClose / 1000),
  ];
}

/** What the slow-consumer rows mean, and the close codes the stalled clients saw once they read again. */
function slowConsumerNotes(slow: ScenarioFiles['slowConsumers']): string[] {
  if (slow === undefined) return [];
  const seen = slow.results.map((r) => {
    if ('failed' in r) return `${r.id} failed: ${r.failed}`;
    const codes = Object.entries(r.afterResume.closes).map(([code, n]) => `${n}×${code}`);
    return `${r.label}: ${codes.length === 0 ? 'no close' : codes.join(', ')}, ${r.afterResume.open} still open`;
  });
  return [
    '- Slow consumers: the stalled clients pause their sockets, so TCP backs up into the server once the kernel buffers (about 4 MiB per socket on loopback) are full. ' +
      `Switchboard (SEND_BUFFER_BYTES ${slow.settings.sendBufferBytes}) closes them with 4408; the bare server buffers up to its maxBackpressure of 16 MiB per socket, ` +
      'then drops that socket\'s frames without telling it, and never closes.',
    `- Slow consumers, what the stalled clients saw once they read again: ${seen.join('; ')}. A 4408 close frame queues behind the unread backlog; ` +
      'a client that reads again only long after the close can find the connection ended without it (1006).',
  ];
}

function row(figure: string, unit: string, switchboard?: number, ceiling?: number, socketio?: number): Row {
  const ratio = switchboard === undefined || ceiling === undefined || ceiling === 0 ? undefined : switchboard / ceiling;
  return { figure, unit, switchboard, ceiling, socketio, ratio };
}
