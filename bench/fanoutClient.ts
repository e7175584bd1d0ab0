// A client process for bench/fanout.ts. It reads its task (the URLs to open) as the first line
// on stdin, opens every connection and waits for `ready`, then obeys one command per stdin line
// and answers each with one JSON line on stdout:
//   {"cmd":"measure","phase":"p1"}  start counting events of phase p1 (counters reset)  → {"kind":"ok"}
//   {"cmd":"count"}                 events counted so far                                → {"kind":"count",...}
//   {"cmd":"report"}                counts, latency histogram and CPU since `measure`     → {"kind":"report",...}
//   {"cmd":"stall","sockets":5}     stop reading on the first 5 WebSocket connections     → {"kind":"ok"}
//   {"cmd":"resume"}                read the stalled connections again                    → {"kind":"ok"}
//   {"cmd":"exit"}                  close every socket and exit (so does the end of stdin)
// Latency is receive time minus the payload's `sent_at_ms`, both read with benchClock(), a
// sub-millisecond clock aligned to Date.now() in every process.
// A URL starting with `socketio+` (socketio+ws://host:port) is opened with socket.io-client over
// the websocket transport: `ready` is the server's 'ready' event and every 'event' carries the
// same frame text as Switchboard's (see socketioServer.ts).
import { createInterface } from 'node:readline';
import { io, type Socket } from 'socket.io-client';
import WebSocket from 'ws';
import { benchClock as now, type ClientCommand, type ClientLine, type ClientTask, type ConnectedLine, type StalledCounts } from './fanoutProtocol.js';
import { LatencyHistogram } from './latencyHistogram.js';

const EVENT_PREFIX = '{"type":"event"';
const READY_FRAME = '{"type":"ready"}';
const SENT_AT_KEY = '"sent_at_ms":';
const SOCKET_IO_SCHEME = 'socketio+';
/** The close code of a server that asks to be tried again later. */
const TRY_AGAIN_LATER = 1013;
const REFUSED_RETRIES = 3;
const REFUSED_BACKOFF_MS = 200;

const histogram = new LatencyHistogram();
const sockets: WebSocket[] = [];
const socketIoSockets: Socket[] = [];
const closes: Record<string, number> = {};
/** Sockets told to stop reading: their frames and closes are counted apart from the readers'. */
const stalled = new Set<WebSocket>();
const stalledCloses: Record<string, number> = {};
let phaseMarker = '';
let delivered = 0;
let stale = 0;
let stalledDelivered = 0;
let measureCpu = process.cpuUsage();
let measureStartedAt = now();

/** Counts one frame. String searches instead of JSON.parse: the client's own cost is noise in the result. */
function onFrame(text: string): void {
  if (!text.startsWith(EVENT_PREFIX)) return;
  const receivedAt = now();
  if (phaseMarker === '' || !text.includes(phaseMarker)) {
    stale++;
    return;
  }
  const at = text.indexOf(SENT_AT_KEY);
  if (at < 0) return;
  delivered++;
  // parseFloat stops at the ',' after the number, so no need to find where it ends.
  histogram.record(receivedAt - Number.parseFloat(text.slice(at + SENT_AT_KEY.length, at + SENT_AT_KEY.length + 32)));
}

/** A frame a stalled socket read (some still arrive after pause(), the rest after resume()): counted, not timed. */
function onStalledFrame(text: string): void {
  if (text.startsWith(EVENT_PREFIX) && phaseMarker !== '' && text.includes(phaseMarker)) stalledDelivered++;
}

/** How an attempt to open a socket ended: `refused` is a server asking to be tried again later (1013). */
type Opened = 'ready' | 'refused' | 'failed';

/** Opens one socket; resolves once it is `ready` or has failed. */
function open(url: string, task: ClientTask, failures: string[]): Promise<Opened> {
  if (url.startsWith(SOCKET_IO_SCHEME)) return openSocketIo(url.slice(SOCKET_IO_SCHEME.length), task, failures);
  return new Promise((resolve) => {
    const ws = new WebSocket(url, ['json.v1'], {
      perMessageDeflate: false,
      skipUTF8Validation: true,
      handshakeTimeout: task.connectTimeoutMs,
      ...(task.localAddress === undefined ? {} : { localAddress: task.localAddress }),
    });
    const { fail, refuse, succeed, isReady } = awaitReady(task, failures, () => ws.terminate(), resolve);
    ws.on('message', (data) => {
      // binaryType is the default 'nodebuffer' and frames are never fragmented here: always one Buffer.
      const text = (data as Buffer).toString('latin1');
      if (!isReady() && text === READY_FRAME) {
        sockets.push(ws);
        succeed();
        return;
      }
      if (stalled.has(ws)) onStalledFrame(text);
      else onFrame(text);
    });
    ws.on('unexpected-response', (_req, res) => fail(`upgrade refused with HTTP ${res.statusCode ?? 0}`));
    ws.on('error', (err) => fail(err.message));
    ws.on('close', (code, reason) => {
      if (!isReady()) {
        if (code === TRY_AGAIN_LATER) refuse();
        else fail(`closed with ${code} ${reason.toString()}`);
        return;
      }
      closes[code] = (closes[code] ?? 0) + 1;
      if (stalled.has(ws)) stalledCloses[code] = (stalledCloses[code] ?? 0) + 1;
    });
  });
}

/** As open(), with socket.io-client: one engine per socket (forceNew), no reconnection, no polling. */
function openSocketIo(url: string, task: ClientTask, failures: string[]): Promise<Opened> {
  return new Promise((resolve) => {
    // localAddress is passed on to ws by engine.io-client in Node but is missing from its types.
    const nodeOnly: object = task.localAddress === undefined ? {} : { localAddress: task.localAddress };
    const socket = io(url, { transports: ['websocket'], forceNew: true, reconnection: false, timeout: task.connectTimeoutMs, ...nodeOnly });
    const { fail, succeed } = awaitReady(task, failures, () => socket.disconnect(), resolve);
    socket.once('ready', () => {
      socketIoSockets.push(socket);
      succeed();
    });
    socket.on('event', (text: string) => onFrame(text));
    socket.on('connect_error', (err) => fail(err.message));
    socket.on('disconnect', (reason) => {
      closes[reason] = (closes[reason] ?? 0) + 1;
      fail(`disconnected: ${reason}`);
    });
  });
}

/**
 * The wait for `ready` both transports share: `fail` records why and gives up, `refuse` gives up
 * for now (the caller tries again), both ignored once settled; `succeed` settles it, and a timer
 * fails it after the connect timeout.
 */
function awaitReady(task: ClientTask, failures: string[], abort: () => void, resolve: (opened: Opened) => void) {
  let outcome: Opened | undefined;
  const settle = (opened: Opened) => {
    outcome = opened;
    clearTimeout(timer);
    resolve(opened);
  };
  const fail = (why: string) => {
    if (outcome !== undefined) return;
    failures.push(why);
    abort();
    settle('failed');
  };
  const refuse = () => {
    if (outcome !== undefined) return;
    abort();
    settle('refused');
  };
  const timer = setTimeout(() => fail(`no ready within ${task.connectTimeoutMs} ms`), task.connectTimeoutMs);
  return { fail, refuse, succeed: () => settle('ready'), isReady: () => outcome === 'ready' };
}

async function connectAll(task: ClientTask): Promise<ConnectedLine> {
  const failures: string[] = [];
  let next = 0;
  let connected = 0;
  const lane = async () => {
    while (next < task.urls.length) {
      const url = task.urls[next++]!;
      let opened = await open(url, task, failures);
      // A pod answers 1013 when Redis was too slow for a moment; a real client would come back.
      for (let retry = 1; opened === 'refused' && retry <= REFUSED_RETRIES; retry++) {
        await new Promise((resolve) => setTimeout(resolve, retry * REFUSED_BACKOFF_MS));
        opened = await open(url, task, failures);
      }
      if (opened === 'ready') connected++;
      else if (opened === 'refused') failures.push(`closed with ${TRY_AGAIN_LATER} ${REFUSED_RETRIES + 1} times`);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, task.connectConcurrency) }, lane));
  return { kind: 'connected', connected, failed: failures.length, firstError: failures[0] ?? '' };
}

const openCount = (): number =>
  sockets.filter((ws) => ws.readyState === WebSocket.OPEN && !stalled.has(ws)).length + socketIoSockets.filter((socket) => socket.connected).length;

function stalledCounts(): StalledCounts {
  const open = [...stalled].filter((ws) => ws.readyState === WebSocket.OPEN).length;
  return { sockets: stalled.size, open, delivered: stalledDelivered, closes: stalledCloses };
}

function answer(line: ClientLine): void {
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

function obey(command: ClientCommand): void {
  switch (command.cmd) {
    case 'measure':
      phaseMarker = `"phase":"${command.phase}"`;
      delivered = 0;
      stale = 0;
      stalledDelivered = 0;
      histogram.reset();
      measureCpu = process.cpuUsage();
      measureStartedAt = now();
      return answer({ kind: 'ok' });
    case 'count':
      return answer({ kind: 'count', delivered, stale, open: openCount() });
    case 'stall':
      // ws.pause() stops reading the TCP socket: the kernel buffers fill and the server sees back-pressure.
      for (const ws of sockets.slice(0, command.sockets)) {
        stalled.add(ws);
        ws.pause();
      }
      return answer({ kind: 'ok' });
    case 'resume':
      for (const ws of stalled) ws.resume();
      return answer({ kind: 'ok' });
    case 'report': {
      const cpu = process.cpuUsage(measureCpu);
      return answer({
        kind: 'report',
        delivered,
        stale,
        open: openCount(),
        closes,
        histogram: histogram.toSparse(),
        maxMs: histogram.maxMs,
        cpuMs: (cpu.user + cpu.system) / 1000,
        elapsedMs: now() - measureStartedAt,
        stalled: stalledCounts(),
      });
    }
    case 'exit':
      for (const ws of sockets) ws.terminate();
      for (const socket of socketIoSockets) socket.disconnect();
      process.exit(0);
  }
}

const lines = createInterface({ input: process.stdin });
// The orchestrator going away (even by SIGKILL) closes stdin: leave with it rather than linger.
lines.on('close', () => obey({ cmd: 'exit' }));
let task: ClientTask | undefined;
for await (const line of lines) {
  if (task === undefined) {
    task = JSON.parse(line) as ClientTask;
    answer(await connectAll(task));
  } else {
    obey(JSON.parse(line) as ClientCommand);
  }
}
