// The Socket.IO peer for bench/fanout.ts and bench/idle.ts: Socket.IO 4 on its default Node
// http + ws engine, websocket transport only, with @socket.io/redis-adapter on the bench's own
// Redis, as a Socket.IO deployment of more than one node would run it. It reads the NATS subject
// exactly as bareServer.ts does and emits each event to a room every client joined, so the same
// publisher, stream and clients measure it.
//
//   node dist/bench/socketioServer.js --nats nats://127.0.0.1:4222 --redis redis://127.0.0.1:6379 [--no-consume]
//
// --no-consume: this node reads nothing from NATS and only relays what another node emits through
//   the redis adapter, so two nodes measure Socket.IO across nodes as Switchboard's cross-pod path
//   is measured (events consumed on one, clients on the other).
//
// Each event goes out as io.to('agent').emit('event', frame) where frame is the string
// {"type":"event","payload":...}, byte for byte what Switchboard sends, so the clients parse the
// same text; Socket.IO wraps it in its own packet (42["event","…"]). After joining the room a
// socket gets emit('ready'). The first stdout line is {"port":N}, written once the NATS consumer
// (if any) and the adapter are in place; the process exits when its stdin ends or on SIGTERM.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';
import { createAdapter } from '@socket.io/redis-adapter';
import { Redis } from 'ioredis';
import { Server } from 'socket.io';
import { feedFromNats } from './natsFeed.js';

const ROOM = 'agent';
/** As bareServer.ts: room for a burst at hundreds of events/s. */

const { values } = parseArgs({
  options: {
    nats: { type: 'string' },
    redis: { type: 'string' },
    source: { type: 'string', default: 'jetstream' },
    consume: { type: 'boolean', default: true },
  },
  allowNegative: true,
});
if (values.nats === undefined) throw new Error('--nats <url> is required');
if (values.redis === undefined) throw new Error('--redis <url> is required');
if (values.source !== 'jetstream' && values.source !== 'core') throw new Error('--source must be jetstream or core');

const pub = new Redis(values.redis, { lazyConnect: true });
const sub = pub.duplicate();
await Promise.all([pub.connect(), sub.connect()]);

const http = createServer();
const io = new Server(http, {
  transports: ['websocket'],
  serveClient: false,
  perMessageDeflate: false,
  adapter: createAdapter(pub, sub),
});
io.on('connection', (socket) => {
  void socket.join(ROOM);
  socket.emit('ready');
});

const decoder = new TextDecoder();
function fanOut(data: Uint8Array): void {
  io.to(ROOM).emit('event', `{"type":"event","payload":${decoder.decode(data)}}`);
}

const nc = values.consume ? await feedFromNats(values.nats, values.source, 'bench-socketio-server', fanOut) : undefined;

await new Promise<void>((resolve, reject) => {
  http.once('error', reject);
  http.listen(0, '127.0.0.1', () => resolve());
});
process.stdout.write(`${JSON.stringify({ port: (http.address() as AddressInfo).port, source: values.source })}\n`);

let leaving = false;
const leave = () => {
  if (leaving) return;
  leaving = true;
  // Nothing is measured any more: drop the sockets rather than wait for them.
  io.disconnectSockets(true);
  http.closeAllConnections();
  void Promise.allSettled([nc?.close(), pub.quit(), sub.quit()]).finally(() => process.exit(0));
};
process.on('SIGTERM', leave);
process.stdin.on('end', leave).resume();
