// A load-generating process for bench/cluster.ts: opens authenticated connections against the
// pods it is given, as fast as `concurrency` allows, until `durationMs` passes; reports counts.
// It speaks just enough WebSocket over a plain TCP socket (the upgrade request, then the first
// server frame): a full client library cost more CPU per connect than the pods it measures, and
// on a shared machine the generator's CPU is taken from the pods.
import { connect, type Socket } from 'node:net';
import { parseAesKeys, TokenCodec } from '../src/auth/tokenCodec.js';

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
const READY = '{"type":"ready"}';
const SWITCHING_PROTOCOLS = Buffer.from('HTTP/1.1 101 ');
// Any 16 bytes in base64 will do: the client here does not check the server's answer to it.
const HANDSHAKE_KEY = 'c3dpdGNoYm9hcmQtYmVuY2g=';
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
  const { hostname, port } = new URL(base);
  const request =
    `GET /ws/${company}/bench?user=${user}&x-api-key=${task.apiKey}&token=${encodeURIComponent(token)} HTTP/1.1\r\n` +
    `Host: ${hostname}:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n` +
    `Sec-WebSocket-Key: ${HANDSHAKE_KEY}\r\nSec-WebSocket-Protocol: json.v1\r\n\r\n`;
  const socket = connect(Number(port), hostname, () => socket.write(request));
  if ((await firstFrame(socket)) === READY) {
    ready++;
    perPod[base] = (perPod[base] ?? 0) + 1;
  } else {
    refused++;
  }
  // Like a client that vanishes: no close frame, so the pod runs its abnormal-close path (1006).
  socket.destroy();
}

/** The payload of the first server frame after a 101 answer; undefined when the upgrade or the socket failed. */
function firstFrame(socket: Socket): Promise<string | undefined> {
  return new Promise((resolve) => {
    let received = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      const headerEnd = received.indexOf('\r\n\r\n');
      if (headerEnd < 0) return;
      if (!received.subarray(0, 13).equals(SWITCHING_PROTOCOLS)) {
        resolve(undefined);
        return;
      }
      // Server frames are unmasked; the pod's first frame is under 126 bytes, or an error frame we only count.
      const frame = received.subarray(headerEnd + 4);
      if (frame.length < 2) return;
      const length = frame[1] ?? 0;
      if (length >= 126) resolve(undefined);
      else if (frame.length >= 2 + length) resolve(frame.subarray(2, 2 + length).toString());
    });
    socket.on('error', () => resolve(undefined));
    socket.on('close', () => resolve(undefined));
  });
}

async function lane(): Promise<void> {
  while (Date.now() - started < task.durationMs) await cycle();
}

await Promise.all(Array.from({ length: task.concurrency }, () => lane()));
const cpu = process.cpuUsage(cpuStart);
const report: WorkerReport = { ready, refused, perPod, cpuMs: (cpu.user + cpu.system) / 1000, elapsedMs: Date.now() - started };
process.stdout.write(`${JSON.stringify(report)}\n`);
