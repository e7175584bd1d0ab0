// A load-generating process for bench/cluster.ts: opens authenticated connections against the
// pods it is given, as fast as `concurrency` allows, until `durationMs` passes; reports counts.
import { parseAesKeys, TokenCodec } from '../src/auth/tokenCodec.js';
import WebSocket from 'ws';

interface WorkerTask {
  readonly urls: readonly string[];
  readonly apiKey: string;
  readonly aesKey: string;
  readonly concurrency: number;
  readonly durationMs: number;
  readonly prefix: string;
}

/** What a worker reports to the parent on stdout, as one JSON line. */
export interface WorkerReport {
  readonly ready: number;
  readonly refused: number;
  readonly perPod: Record<string, number>;
  readonly cpuMs: number;
  readonly elapsedMs: number;
}

const task = JSON.parse(process.argv[2] ?? '{}') as WorkerTask;
const codec = new TokenCodec(parseAesKeys([task.aesKey]));
const perPod: Record<string, number> = {};
let ready = 0;
let refused = 0;
let sequence = 0;
const started = Date.now();
const cpuStart = process.cpuUsage();

/** One connect → ready → close cycle; a distinct identity and company each time, so each costs a lock, a route and a token. */
async function cycle(): Promise<void> {
  const n = sequence++;
  const base = task.urls[n % task.urls.length] ?? '';
  const company = `${task.prefix}c${n % 997}`;
  const user = `${task.prefix}u${n}`;
  const token = codec.mintUser({ companyId: company, agentId: 'bench', userId: user, expiresAtMs: Date.now() + 600_000 });
  const ws = new WebSocket(`${base}/ws/${company}/bench?user=${user}&x-api-key=${task.apiKey}&token=${encodeURIComponent(token)}`, ['json.v1']);
  await new Promise<void>((resolve) => {
    ws.on('message', (data) => {
      if (String(data) === '{"type":"ready"}') {
        ready++;
        perPod[base] = (perPod[base] ?? 0) + 1;
      } else {
        refused++;
      }
      ws.terminate();
    });
    ws.on('close', () => resolve());
    ws.on('error', () => {
      refused++;
      resolve();
    });
  });
}

async function lane(): Promise<void> {
  while (Date.now() - started < task.durationMs) await cycle();
}

await Promise.all(Array.from({ length: task.concurrency }, () => lane()));
const cpu = process.cpuUsage(cpuStart);
const report: WorkerReport = { ready, refused, perPod, cpuMs: (cpu.user + cpu.system) / 1000, elapsedMs: Date.now() - started };
process.stdout.write(`${JSON.stringify(report)}\n`);
