// The servers bench/fanout.ts measures, each started fresh for one run and stopped after it:
// the bare uWebSockets.js server, one Switchboard pod, and two pods where events must cross a
// gRPC hop to reach the clients.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { JetStreamManager } from 'nats';
import { parseAesKeys, TokenCodec } from '../src/auth/tokenCodec.js';
import { startGateway, type TestGateway, type TestKeys } from '../test/support/gateway.js';
import { BENCH_AGENT, BENCH_COMPANY, STREAM } from './fanoutProtocol.js';

const BARE_SERVER_SCRIPT = fileURLToPath(new URL('./bareServer.js', import.meta.url));
const SOCKET_IO_SERVER_SCRIPT = fileURLToPath(new URL('./socketioServer.js', import.meta.url));
const BARE_START_TIMEOUT_MS = 10_000;
const TOKEN_LIFETIME_MS = 3_600_000;
/** Switchboard's counters of events in, fanned out (by outcome) and rejected. */
const EVENT_COUNTER_PREFIX = 'switchboard_events_';
/** The pods' log levels (pino labels) counted by message, to explain a failed step. */
const COUNTED_LEVELS = new Set(['warn', 'error', 'fatal']);

/** The Redis and NATS a target runs against, with the keys its pods share. */
export interface Infra {
  readonly redisUrl: string;
  readonly natsUrl: string;
  readonly jsm: JetStreamManager;
  readonly keys: TestKeys;
  /** Extra node flags for the pods, e.g. --cpu-prof. */
  readonly podNodeArgs: readonly string[];
}

/** How the bare server reads NATS and writes to its sockets (see bareServer.ts). */
export interface BareOptions {
  readonly source: 'jetstream' | 'core';
  readonly mode: 'send' | 'publish';
}

/** A running server under test. */
export interface FanoutTarget {
  /** WebSocket URLs for `count` distinct clients, each valid for one connection. */
  urls(count: number): string[];
  /** Processes whose CPU is the server's cost, by role. */
  serverPids(): Record<string, number | undefined>;
  /**
   * Per pod role (empty for the bare server): Switchboard's event counters, whose deltas show the
   * local/forwarded split, and `log warn: <message>` counts of warning and error log lines.
   */
  podCounters(): Promise<Record<string, Record<string, number>>>;
  /** Used V8 heap of the process holding the clients, where it reports one (Switchboard's /metrics). */
  heapUsedBytes?(): Promise<number>;
  /** One sample of the client-holding pod's /metrics (name with labels), where there is one. */
  metric?(sample: string): Promise<number>;
  stop(): Promise<void>;
}

/** Starts the bare server as a child process; its stdin is a pipe so it dies with the orchestrator. */
export async function startBare(infra: Infra, options: BareOptions): Promise<FanoutTarget> {
  const args = ['--nats', infra.natsUrl, '--source', options.source, '--mode', options.mode];
  return startPeer('bare server', 'bare', BARE_SERVER_SCRIPT, args, (port) => `ws://127.0.0.1:${port}/ws/${BENCH_COMPANY}/${BENCH_AGENT}`);
}

/**
 * Starts the Socket.IO 4 server (redis adapter on the bench's Redis) as a child process. Its URLs
 * carry the `socketio+` scheme the client processes open with socket.io-client.
 */
export async function startSocketIo(infra: Infra, source: BareOptions['source']): Promise<FanoutTarget> {
  await emptyStream(infra.jsm);
  const args = ['--nats', infra.natsUrl, '--redis', infra.redisUrl, '--source', source];
  return startPeer('Socket.IO server', 'socketio', SOCKET_IO_SERVER_SCRIPT, args, (port) => `socketio+ws://127.0.0.1:${port}`);
}

/**
 * Two Socket.IO nodes on one redis adapter: B consumes the stream and emits, A holds every client
 * and gets B's emits through Redis pub/sub (Socket.IO's own way across nodes).
 */
export async function startSocketIoCrossNode(infra: Infra, source: BareOptions['source']): Promise<FanoutTarget> {
  await emptyStream(infra.jsm);
  const args = ['--nats', infra.natsUrl, '--redis', infra.redisUrl, '--source', source];
  const clientNode = await startPeer('Socket.IO node A', 'A (clients)', SOCKET_IO_SERVER_SCRIPT, [...args, '--no-consume'], (port) => `socketio+ws://127.0.0.1:${port}`);
  const consumerNode = await startPeer('Socket.IO node B', 'B (consumer)', SOCKET_IO_SERVER_SCRIPT, args, (port) => `socketio+ws://127.0.0.1:${port}`).catch(async (err: unknown) => {
    await clientNode.stop();
    throw err;
  });
  return {
    urls: (count) => clientNode.urls(count),
    serverPids: () => ({ ...clientNode.serverPids(), ...consumerNode.serverPids() }),
    podCounters: async () => ({}),
    stop: async () => {
      await Promise.allSettled([clientNode.stop(), consumerNode.stop()]);
    },
  };
}

/** A peer server process that prints {"port":N} once ready and exits when its stdin ends. */
async function startPeer(name: string, role: string, script: string, args: readonly string[], url: (port: number) => string): Promise<FanoutTarget> {
  const child = spawn(process.execPath, [script, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-2000)));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
    await exited;
    clearTimeout(timer);
  };
  try {
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${name} did not start within ${BARE_START_TIMEOUT_MS} ms`)), BARE_START_TIMEOUT_MS);
      createInterface({ input: child.stdout }).once('line', (line) => {
        clearTimeout(timer);
        resolve((JSON.parse(line) as { port: number }).port);
      });
      void exited.then(() => reject(new Error(`${name} exited: ${stderr.trim()}`)));
    });
    return {
      urls: (count) => Array.from({ length: count }, () => url(port)),
      serverPids: () => ({ [role]: child.pid }),
      podCounters: async () => ({}),
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** One pod that both consumes the stream and holds every client; `env` overrides the pod's settings (e.g. SEND_BUFFER_BYTES). */
export async function startOnePod(infra: Infra, userPrefix: string, env: Record<string, string> = {}): Promise<FanoutTarget> {
  await emptyStream(infra.jsm);
  const pod = await startGateway({ ...podEnv(infra, true), ...env }, infra.keys, [], [...infra.podNodeArgs]);
  return podTarget(infra, userPrefix, pod, { pod });
}

/**
 * Two pods where every event crosses gRPC: A holds the clients and has no NATS_URL, so it never
 * consumes; B consumes the stream and holds no clients, so it forwards every event to A.
 */
export async function startCrossPod(infra: Infra, userPrefix: string): Promise<FanoutTarget> {
  await emptyStream(infra.jsm);
  const holder = await startGateway(podEnv(infra, false), infra.keys, [], [...infra.podNodeArgs]);
  let consumer: TestGateway;
  try {
    consumer = await startGateway(podEnv(infra, true), infra.keys, [], [...infra.podNodeArgs]);
  } catch (err) {
    await holder.stop();
    throw err;
  }
  return podTarget(infra, userPrefix, holder, { 'A (clients)': holder, 'B (consumer)': consumer });
}

function podEnv(infra: Infra, consumes: boolean): Record<string, string> {
  return {
    REDIS_URL: infra.redisUrl,
    ...(consumes ? { NATS_URL: infra.natsUrl } : {}),
    LOG_LEVEL: 'info',
    // Clients send nothing during the run; the limits only matter if they did.
    RATE_LIMIT_PER_SECOND: '1000',
    RATE_LIMIT_BURST: '1000',
    // 8 MiB: room for bursts at high rates, so a lagging client is measured, not closed with 4408.
    SEND_BUFFER_BYTES: '8388608',
  };
}

/**
 * Earlier runs leave events in the stream; a consumer created with deliver-all would replay them
 * all into this run. Purging first makes every run start at an empty stream.
 */
async function emptyStream(jsm: JetStreamManager): Promise<void> {
  await jsm.streams.purge(STREAM);
}

function podTarget(infra: Infra, userPrefix: string, clientPod: TestGateway, pods: Record<string, TestGateway>): FanoutTarget {
  // Tokens minted locally with the pods' key: minting 1,000 through the admin API would load the pod being measured.
  const codec = new TokenCodec(parseAesKeys([infra.keys.tokenAesKeys[0] ?? '']));
  const expiresAtMs = Date.now() + TOKEN_LIFETIME_MS;
  return {
    urls: (count) =>
      Array.from({ length: count }, (_, i) => {
        const user = `${userPrefix}-${i}`;
        const token = codec.mintUser({ companyId: BENCH_COMPANY, agentId: BENCH_AGENT, userId: user, expiresAtMs });
        return `${clientPod.wsBase}/ws/${BENCH_COMPANY}/${BENCH_AGENT}?user=${user}&x-api-key=${infra.keys.secretToken}&token=${encodeURIComponent(token)}`;
      }),
    serverPids: () => Object.fromEntries(Object.entries(pods).map(([role, pod]) => [role, pod.child.pid])),
    podCounters: async () => Object.fromEntries(await Promise.all(Object.entries(pods).map(async ([role, pod]) => [role, await countersOf(pod)] as const))),
    heapUsedBytes: () => clientPod.metric('switchboard_nodejs_heap_size_used_bytes'),
    metric: (sample) => clientPod.metric(sample),
    stop: async () => {
      await Promise.allSettled(Object.values(pods).map((pod) => pod.stop()));
    },
  };
}

/** Every `switchboard_events_*` sample of a pod (keyed by name with labels), and its warnings and errors so far by message. */
async function countersOf(pod: TestGateway): Promise<Record<string, number>> {
  const text = await (await fetch(`${pod.adminBase}/metrics`)).text();
  const counters: Record<string, number> = {};
  for (const line of text.split('\n')) {
    if (!line.startsWith(EVENT_COUNTER_PREFIX)) continue;
    const space = line.lastIndexOf(' ');
    counters[line.slice(0, space)] = Number(line.slice(space + 1));
  }
  for (const line of pod.logLines((l) => COUNTED_LEVELS.has(String(l['level'])))) {
    const key = `log ${String(line['level'])}: ${String(line['msg'])}`;
    counters[key] = (counters[key] ?? 0) + 1;
  }
  return counters;
}
