// Cluster benchmark (issue: Redis coordination): for three pods on one Redis, measures
// authenticated connects/s per pod (session lock + route + token cache) with the load spread over
// all three, then with all of it on one pod (the other two idle in the cluster: on this 2-core
// machine that is the only way a pod gets most of a core), and cross-pod takeover latency.
// Run with `npm run bench:cluster`; figures go to stdout and bench/results/cluster.json.
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { openClient } from '../test/support/client.js';
import { randomKeys, startGateway, type TestGateway } from '../test/support/gateway.js';
import { RedisServer } from '../test/support/redis.js';
import type { WorkerReport } from './connectWorker.js';

const WORKERS = 2;
const CONCURRENCY_PER_WORKER = 32;
const CONNECT_DURATION_MS = 10_000;
const TAKEOVER_ROUNDS = 400;

const quick = process.argv.includes('--quick');
const durationMs = quick ? 2000 : CONNECT_DURATION_MS;
const rounds = quick ? 100 : TAKEOVER_ROUNDS;

const redis = await RedisServer.start();
const keys = randomKeys();
// BENCH_LOCAL=1 runs each pod on its own in-process engine: the handshake's cost without Redis.
// Those pods share no sessions, so there is no cross-pod takeover to measure.
const local = process.env['BENCH_LOCAL'] === '1';
const env = { ...(local ? {} : { REDIS_URL: redis.url }), RATE_LIMIT_PER_SECOND: '1000', RATE_LIMIT_BURST: '1000' };
// BENCH_NODE_ARGS='--cpu-prof --cpu-prof-dir=/tmp/prof' profiles the pods.
const nodeArgs = (process.env['BENCH_NODE_ARGS'] ?? '').split(' ').filter((arg) => arg !== '');
const pods = await Promise.all([0, 1, 2].map(() => startGateway(env, keys, [], nodeArgs)));
try {
  const connects = await measureConnects(pods);
  const onePod = await measureConnects(pods.slice(0, 1));
  const takeover = local ? undefined : await measureTakeover(pods);
  const results = { machine: machine(), pods: pods.length, connects, onePod, takeover };
  mkdirSync(fileURLToPath(new URL('../../bench/results/', import.meta.url)), { recursive: true });
  writeFileSync(fileURLToPath(new URL('../../bench/results/cluster.json', import.meta.url)), `${JSON.stringify(results, null, 2)}\n`);
  process.stdout.write(
    [
      `connects: ${connects.perPodPerSecond.map((r) => r.toFixed(0)).join(' / ')} per pod per second (${connects.totalPerSecond.toFixed(0)}/s in all, ${connects.refused} refused)`,
      `          pod CPU ${connects.podCpuPercent.map((p) => `${p.toFixed(0)}%`).join(' / ')}, ${connects.podCpuMsPerConnect.map((ms) => ms.toFixed(3)).join(' / ')} ms per connect` +
        ` (so ${connects.podCpuMsPerConnect.map((ms) => (1000 / ms).toFixed(0)).join(' / ')} connects/s per pod-core); Redis CPU ${connects.redisCpuPercent.toFixed(0)}%`,
      `          generator CPU ${connects.generatorCpuPercent.toFixed(0)}% of one core over ${WORKERS} processes`,
      `one pod taking every connect: ${onePod.totalPerSecond.toFixed(0)}/s (${onePod.refused} refused), pod CPU ${(onePod.podCpuPercent[0] ?? 0).toFixed(0)}%,` +
        ` ${(onePod.podCpuMsPerConnect[0] ?? 0).toFixed(3)} ms per connect; Redis CPU ${onePod.redisCpuPercent.toFixed(0)}%; generator CPU ${onePod.generatorCpuPercent.toFixed(0)}%`,
      takeover === undefined
        ? 'takeover: not measured (BENCH_LOCAL=1: pods share no sessions)'
        : `takeover: p50 ${takeover.p50Ms.toFixed(2)} ms, p99 ${takeover.p99Ms.toFixed(2)} ms, max ${takeover.maxMs.toFixed(2)} ms over ${takeover.rounds} rounds`,
      '',
    ].join('\n'),
  );
} finally {
  await Promise.all(pods.map((pod) => pod.stop()));
  await redis.stop();
}

async function measureConnects(targets: readonly TestGateway[]) {
  const cpuBefore = await Promise.all(targets.map((pod) => pod.metric('switchboard_process_cpu_seconds_total')));
  const redisCpuBefore = await redisCpuSeconds();
  const worker = fileURLToPath(new URL('./connectWorker.js', import.meta.url));
  const reports = await Promise.all(
    Array.from({ length: WORKERS }, (_, i) => {
      const task = {
        urls: targets.map((pod) => pod.wsBase),
        apiKey: keys.secretToken,
        aesKey: keys.tokenAesKeys[0],
        concurrency: CONCURRENCY_PER_WORKER,
        durationMs,
        prefix: `w${i}`,
      };
      return new Promise<WorkerReport>((resolve, reject) => {
        const child = spawn(process.execPath, [worker, JSON.stringify(task)], { stdio: ['ignore', 'pipe', 'inherit'] });
        let out = '';
        child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
        child.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out) as WorkerReport) : reject(new Error(`worker exited with ${code}`))));
      });
    }),
  );
  const seconds = Math.max(...reports.map((r) => r.elapsedMs)) / 1000;
  const cpuAfter = await Promise.all(targets.map((pod) => pod.metric('switchboard_process_cpu_seconds_total')));
  const podCpuSeconds = cpuAfter.map((after, i) => after - (cpuBefore[i] ?? 0));
  const redisCpu = (await redisCpuSeconds()) - redisCpuBefore;
  const perPod = targets.map((pod) => reports.reduce((sum, r) => sum + (r.perPod[pod.wsBase] ?? 0), 0) / seconds);
  const ready = reports.reduce((sum, r) => sum + r.ready, 0);
  return {
    seconds,
    ready,
    refused: reports.reduce((sum, r) => sum + r.refused, 0),
    totalPerSecond: ready / seconds,
    perPodPerSecond: perPod,
    generatorCpuPercent: (reports.reduce((sum, r) => sum + r.cpuMs, 0) / (seconds * 1000)) * 100,
    podCpuPercent: podCpuSeconds.map((cpu) => (cpu / seconds) * 100),
    // Server CPU per accepted connection (connect, ready, close): what bounds connects/s on a pod with a core of its own.
    podCpuMsPerConnect: podCpuSeconds.map((cpu, i) => (cpu * 1000) / Math.max(1, (perPod[i] ?? 0) * seconds)),
    redisCpuPercent: (redisCpu / seconds) * 100,
  };
}

/** One identity connected on pod i, then again on pod i+1: time from the new socket's open to both its `ready` and the old socket's 4402. */
async function measureTakeover(targets: readonly TestGateway[]) {
  const samples: number[] = [];
  for (let round = 0; round < rounds; round++) {
    const [from, to] = [targets[round % targets.length]!, targets[(round + 1) % targets.length]!];
    const user = `takeover-${round}`;
    const [oldUrl, newUrl] = await Promise.all([from.userUrl('bench', 'takeover', user), to.userUrl('bench', 'takeover', user)]);
    const old = await openClient(oldUrl);
    await old.expect('ready');
    const fresh = await openClient(newUrl);
    const openedAt = performance.now();
    const [, closed] = await Promise.all([fresh.expect('ready', 5000), old.closeInfo(5000)]);
    samples.push(performance.now() - openedAt);
    if (closed.code !== 4402) throw new Error(`round ${round}: old socket closed with ${closed.code}, not 4402`);
    fresh.close();
  }
  samples.sort((a, b) => a - b);
  const at = (q: number) => samples[Math.min(samples.length - 1, Math.floor(q * samples.length))] ?? 0;
  return { rounds, p50Ms: at(0.5), p99Ms: at(0.99), maxMs: samples.at(-1) ?? 0 };
}

async function redisCpuSeconds(): Promise<number> {
  const info = await redis.client.info('cpu');
  const read = (name: string) => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(info)?.[1] ?? 0);
  return read('used_cpu_user') + read('used_cpu_sys');
}

function machine() {
  return { cpus: (globalThis.navigator?.hardwareConcurrency ?? 0), node: process.version, platform: `${process.platform}/${process.arch}` };
}
