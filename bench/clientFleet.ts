// The orchestrator's side of bench/fanoutClient.ts: spreads connections over several client
// processes (each on its own 127.0.0.x source address), steers them, and merges their reports.
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { ClientCommand, ClientLine, ClientTask, ConnectedLine, CountLine, ReportLine, StalledCounts } from './fanoutProtocol.js';
import { LatencyHistogram, type LatencySummary } from './latencyHistogram.js';

const CLIENT_SCRIPT = fileURLToPath(new URL('./fanoutClient.js', import.meta.url));
/** A busy client process answers within this; past it the process is wedged and the step failed. */
const ANSWER_TIMEOUT_MS = 15_000;
const CONNECT_CONCURRENCY_PER_PROCESS = 32;
const CONNECT_TIMEOUT_MS = 10_000;
const POLL_MS = 100;

/** Merged report of every client process. */
export interface FleetReport {
  readonly delivered: number;
  readonly stale: number;
  readonly open: number;
  readonly closes: Record<string, number>;
  readonly latency: LatencySummary;
  /** CPU of all client processes together, in ms, since `measure`. */
  readonly cpuMs: number;
  /** The sockets told to stop reading, summed over the processes. */
  readonly stalled: StalledCounts;
}

/** One client process and its request/answer line protocol (one question at a time). */
class ClientProcess {
  readonly #waiting: Array<(line: ClientLine) => void> = [];
  readonly exited: Promise<void>;
  #stderr = '';

  constructor(readonly child: ChildProcess) {
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    child.stderr?.on('data', (chunk: Buffer) => (this.#stderr = (this.#stderr + chunk.toString()).slice(-2000)));
    createInterface({ input: child.stdout! }).on('line', (line) => this.#waiting.shift()?.(JSON.parse(line) as ClientLine));
  }

  /** Writes one line and waits for the answer; rejects if the process exits or stalls first. */
  async ask(line: ClientTask | ClientCommand, timeoutMs = ANSWER_TIMEOUT_MS): Promise<ClientLine> {
    let timer: NodeJS.Timeout | undefined;
    const answered = new Promise<ClientLine>((resolve) => this.#waiting.push(resolve));
    const failed = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`client process did not answer within ${timeoutMs} ms`)), timeoutMs);
      void this.exited.then(() => reject(new Error(`client process exited: ${this.#stderr.trim() || 'no stderr'}`)));
    });
    this.child.stdin?.write(`${JSON.stringify(line)}\n`);
    try {
      return await Promise.race([answered, failed]);
    } finally {
      clearTimeout(timer);
    }
  }

  async exit(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.stdin?.end(`${JSON.stringify({ cmd: 'exit' } satisfies ClientCommand)}\n`);
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 3000);
    await this.exited;
    clearTimeout(timer);
  }
}

/** Benchmark clients over several processes. */
export class ClientFleet {
  readonly #processes: readonly ClientProcess[];
  /** Connections that reached `ready`, per process. */
  readonly #connectedPerProcess: readonly number[];

  private constructor(processes: readonly ClientProcess[], connectedPerProcess: readonly number[]) {
    this.#processes = processes;
    this.#connectedPerProcess = connectedPerProcess;
  }

  /** Connections that reached `ready`. */
  get connected(): number {
    return this.#connectedPerProcess.reduce((sum, n) => sum + n, 0);
  }

  /**
   * Opens every URL (one connection each) and waits for `ready` on all of them; the URLs are
   * dealt round-robin to one process per source address. Fails unless every one connected.
   */
  static async open(urls: readonly string[], sourceAddresses: readonly string[]): Promise<ClientFleet> {
    const processes = sourceAddresses.map(
      () => new ClientProcess(spawn(process.execPath, [CLIENT_SCRIPT], { stdio: ['pipe', 'pipe', 'pipe'] })),
    );
    try {
      const answers = await Promise.all(
        processes.map((client, i) =>
          client.ask(
            {
              urls: urls.filter((_, n) => n % processes.length === i),
              localAddress: sourceAddresses[i]!,
              connectConcurrency: CONNECT_CONCURRENCY_PER_PROCESS,
              connectTimeoutMs: CONNECT_TIMEOUT_MS,
            },
            CONNECT_TIMEOUT_MS * Math.ceil(urls.length / processes.length),
          ),
        ),
      );
      const connected = answers as ConnectedLine[];
      const total = connected.reduce((sum, a) => sum + a.connected, 0);
      if (total < urls.length) {
        const firstError = connected.find((a) => a.firstError !== '')?.firstError ?? '';
        throw new Error(`only ${total} of ${urls.length} clients reached ready (${firstError})`);
      }
      return new ClientFleet(processes, connected.map((a) => a.connected));
    } catch (err) {
      await Promise.all(processes.map((p) => p.exit()));
      throw err;
    }
  }

  /** Starts counting events of `phase` (counters reset in every process). */
  async measure(phase: string): Promise<void> {
    await Promise.all(this.#processes.map((p) => p.ask({ cmd: 'measure', phase })));
  }

  /** Events of the current phase delivered so far, events of other phases, and sockets still open. */
  async count(): Promise<{ delivered: number; stale: number; open: number }> {
    const counts = (await Promise.all(this.#processes.map((p) => p.ask({ cmd: 'count' })))) as CountLine[];
    const sum = (pick: (c: CountLine) => number) => counts.reduce((s, c) => s + pick(c), 0);
    return { delivered: sum((c) => c.delivered), stale: sum((c) => c.stale), open: sum((c) => c.open) };
  }

  /** Waits until `expected` deliveries arrived, none arrived for `quietMs`, or `maxMs` passed; answers the count. */
  async waitForDeliveries(expected: number, limits: { readonly quietMs: number; readonly maxMs: number }): Promise<number> {
    const startedAt = Date.now();
    let last = -1;
    let lastChangeAt = startedAt;
    for (;;) {
      const { delivered } = await this.count();
      if (delivered >= expected) return delivered;
      if (delivered !== last) [last, lastChangeAt] = [delivered, Date.now()];
      if (Date.now() - lastChangeAt >= limits.quietMs || Date.now() - startedAt >= limits.maxMs) return delivered;
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  }

  /**
   * Stops reading on `total` connections, dealt round-robin over the processes (as the URLs
   * were); answers how many were stalled. They stay open and are counted apart from then on.
   */
  async stall(total: number): Promise<number> {
    const perProcess = this.#connectedPerProcess.map(() => 0);
    for (let dealt = 0, i = 0; dealt < Math.min(total, this.connected); i = (i + 1) % perProcess.length) {
      if (perProcess[i]! < this.#connectedPerProcess[i]!) {
        perProcess[i]! += 1;
        dealt++;
      }
    }
    await Promise.all(this.#processes.map((p, i) => p.ask({ cmd: 'stall', sockets: perProcess[i]! })));
    return perProcess.reduce((sum, n) => sum + n, 0);
  }

  /** Reads the stalled connections again. */
  async resume(): Promise<void> {
    await Promise.all(this.#processes.map((p) => p.ask({ cmd: 'resume' })));
  }

  async report(): Promise<FleetReport> {
    const reports = (await Promise.all(this.#processes.map((p) => p.ask({ cmd: 'report' })))) as ReportLine[];
    const histogram = new LatencyHistogram();
    const closes: Record<string, number> = {};
    const stalledCloses: Record<string, number> = {};
    for (const report of reports) {
      histogram.merge(report.histogram, report.maxMs);
      for (const [code, n] of Object.entries(report.closes)) closes[code] = (closes[code] ?? 0) + n;
      for (const [code, n] of Object.entries(report.stalled.closes)) stalledCloses[code] = (stalledCloses[code] ?? 0) + n;
    }
    const sum = (pick: (r: ReportLine) => number) => reports.reduce((s, r) => s + pick(r), 0);
    return {
      delivered: sum((r) => r.delivered),
      stale: sum((r) => r.stale),
      open: sum((r) => r.open),
      closes,
      latency: histogram.summary(),
      cpuMs: sum((r) => r.cpuMs),
      stalled: { sockets: sum((r) => r.stalled.sockets), open: sum((r) => r.stalled.open), delivered: sum((r) => r.stalled.delivered), closes: stalledCloses },
    };
  }

  async close(): Promise<void> {
    await Promise.all(this.#processes.map((p) => p.exit()));
  }
}
