// The reference for bench/fanout.ts: a bare uWebSockets.js server that reads the same NATS
// subject as Switchboard and writes every event to all its sockets in Switchboard's frame,
// with no authentication, sessions, routes, acks or metrics. Whatever Switchboard costs beyond
// this is its own overhead.
//
//   node dist/bench/bareServer.js --nats nats://127.0.0.1:4222 [--source jetstream|core] [--mode send|publish]
//
// --source jetstream (default): an ordered consumer of its own on stream wa_stream, filtered to
//   the subject and starting at new messages, so events take the same publish → stream → consumer
//   path as Switchboard's. --source core: a plain subscription, which skips the stream.
// --mode send (default): a loop of ws.send over every socket.
//   --mode publish: one uWS app.publish to a topic every socket subscribed to, as Switchboard delivers.
// Clients connect to ws://127.0.0.1:<port>/ws/{anything}/{anything} and get {"type":"ready"};
// the first stdout line is {"port":N}, written once the NATS subscription is in place. It exits
// when its stdin ends, so spawn it with a pipe there (or keep a terminal attached).
import { parseArgs } from 'node:util';
import * as uWS from 'uWebSockets.js';
import type { us_listen_socket, WebSocket } from 'uWebSockets.js';
import { feedFromNats } from './natsFeed.js';

const TOPIC = 'agent';
/** As the benchmark's pods (SEND_BUFFER_BYTES=8 MiB): uWS drops frames only past 4× that. */
const MAX_BACKPRESSURE_BYTES = 32 * 1024 * 1024;

const { values } = parseArgs({
  options: {
    nats: { type: 'string' },
    source: { type: 'string', default: 'jetstream' },
    mode: { type: 'string', default: 'send' },
  },
});
if (values.nats === undefined) throw new Error('--nats <url> is required');
if (values.source !== 'jetstream' && values.source !== 'core') throw new Error('--source must be jetstream or core');
if (values.mode !== 'send' && values.mode !== 'publish') throw new Error('--mode must be send or publish');
const mode = values.mode;

const sockets = new Set<WebSocket<unknown>>();
const app = uWS.App().ws('/ws/:company/:agent', {
  maxBackpressure: MAX_BACKPRESSURE_BYTES,
  closeOnBackpressureLimit: false,
  idleTimeout: 0,
  sendPingsAutomatically: false,
  open: (ws) => {
    sockets.add(ws);
    if (mode === 'publish') ws.subscribe(TOPIC);
    ws.send('{"type":"ready"}', false);
  },
  close: (ws) => {
    sockets.delete(ws);
  },
});

const decoder = new TextDecoder();

/** Writes one event to every socket, framed exactly as Switchboard's eventFrame(). */
function fanOut(data: Uint8Array): void {
  const frame = `{"type":"event","payload":${decoder.decode(data)}}`;
  if (mode === 'publish') {
    app.publish(TOPIC, frame, false);
    return;
  }
  for (const ws of sockets) ws.send(frame, false);
}

const nc = await feedFromNats(values.nats, values.source, 'bench-bare-server', fanOut);

const listenSocket = await new Promise<us_listen_socket | false>((resolve) => app.listen('127.0.0.1', 0, resolve));
if (listenSocket === false) throw new Error('cannot listen on 127.0.0.1');
process.stdout.write(`${JSON.stringify({ port: uWS.us_socket_local_port(listenSocket), source: values.source, mode })}\n`);

// The orchestrator stops this process with SIGTERM, or vanishes and so closes our stdin (a pipe
// when it spawned us); either way leave at once, nothing is being measured any more.
const leave = () => {
  uWS.us_listen_socket_close(listenSocket);
  void nc.close().finally(() => process.exit(0));
};
process.on('SIGTERM', leave);
process.stdin.on('end', leave).resume();
