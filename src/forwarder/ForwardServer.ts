import * as grpc from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import type { InboundEvent } from '../ingest/EventSource.js';
import { Coalescer } from '../Coalescer.js';
import type { Logger } from '../log.js';
import { loadForwarderService, type BatchResult, type PushReply, type PushRequest } from './wire.js';

/** Writes pushed events to this pod's connections; answers how many connections got each. */
export type PeerDelivery = (events: readonly InboundEvent[]) => number[];

const SERVICE_NAME = 'switchboard.v1.Forwarder';
const MAX_MESSAGE_BYTES = 16 * 1024 * 1024;
const SHUTDOWN_GRACE_MS = 2000;
/** Replies to a peer go at most this often while it keeps pushing (see Coalescer). */
const REPLY_GATHER_MS = 5;

/** The gRPC listener: the Forwarder service that peers push events to, and grpc.health.v1. */
export class ForwardServer {
  readonly #server = new grpc.Server({
    'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
    'grpc.keepalive_permit_without_calls': 1,
    'grpc.http2.min_ping_interval_without_data_ms': 5000,
  });
  readonly #health = new HealthImplementation({ '': 'NOT_SERVING', [SERVICE_NAME]: 'NOT_SERVING' });
  /** Open push streams, with their gathered replies: they last as long as the peer, so shutdown has to end them. */
  readonly #streams = new Map<PushStream, OpenStream>();

  constructor(
    /** Every interface of the pod's address family: peers dial POD_IP:GRPC_PORT. */
    private readonly listen: { readonly host: '0.0.0.0' | '::'; readonly port: number },
    private readonly credentials: grpc.ServerCredentials,
    private readonly deliver: PeerDelivery,
    private readonly log: Logger,
  ) {
    const service = loadForwarderService().service;
    this.#server.addService(service, { Push: (call: PushStream) => this.#serve(call) });
    this.#health.addToServer(this.#server);
  }

  /** Listens; resolves with the bound port. */
  async start(): Promise<number> {
    const { host, port: wanted } = this.listen;
    const address = host === '::' ? `[::]:${wanted}` : `${host}:${wanted}`;
    const port = await new Promise<number>((resolve, reject) => {
      this.#server.bindAsync(address, this.credentials, (err, bound) => (err === null ? resolve(bound) : reject(err)));
    });
    this.#setServing(true);
    return port;
  }

  /** Stops taking pushes; batches already received are answered, then every stream ends. Safe to call twice. */
  async stop(): Promise<void> {
    this.#setServing(false);
    for (const [call, open] of this.#streams) finish(call, open);
    await new Promise<void>((resolve) => {
      const force = setTimeout(() => {
        this.#server.forceShutdown();
        resolve();
      }, SHUTDOWN_GRACE_MS);
      this.#server.tryShutdown(() => {
        clearTimeout(force);
        resolve();
      });
    });
  }

  #setServing(serving: boolean): void {
    const status = serving ? 'SERVING' : 'NOT_SERVING';
    this.#health.setStatus('', status);
    this.#health.setStatus(SERVICE_NAME, status);
  }

  #serve(call: PushStream): void {
    const unanswered: BatchResult[] = [];
    const replies = new Coalescer(REPLY_GATHER_MS, () => writeReplies(call, unanswered, replies));
    const open = { unanswered, replies };
    this.#streams.set(call, open);
    call.on('data', (request: PushRequest) => this.#push(call, open, request));
    // The peer half-closed (it is shutting down or dropping an idle channel): close our half too.
    call.on('end', () => finish(call, open));
    call.on('close', () => this.#forget(call));
    // A cancelled stream (the peer gave up on a deadline, or went away) ends here; it has nothing left to answer.
    call.on('error', () => this.#forget(call));
  }

  #forget(call: PushStream): void {
    this.#streams.get(call)?.replies.cancel();
    this.#streams.delete(call);
  }

  #push(call: PushStream, { unanswered, replies }: OpenStream, request: PushRequest): void {
    const events: InboundEvent[] = request.events.map((event) => ({
      origin: 'peer',
      subject: event.subject,
      payload: event.payload.toString('utf8'),
      requestId: event.request_id,
      ...(event.event_id === '' ? {} : { eventId: event.event_id }),
      publishedAtMs: Number(event.published_at_ms),
      ...(event.delivery_key === '' ? {} : { delivery: { key: event.delivery_key, redelivered: false } }),
    }));
    let delivered: number[];
    try {
      delivered = this.deliver(events);
    } catch (err) {
      this.log.error({ err, request_id: events.map((event) => event.requestId).join(',') }, 'push failed');
      // Ends the stream with this status: the peer fails every batch it has in flight and retries them.
      call.emit('error', { code: grpc.status.INTERNAL, details: 'delivery failed' });
      return;
    }
    unanswered.push({ batch_id: request.batch_id, delivered });
    replies.request();
  }
}

type PushStream = grpc.ServerDuplexStream<PushRequest, PushReply>;

/** A push stream being served: the batches delivered but not answered yet, and when to answer them. */
interface OpenStream {
  readonly unanswered: BatchResult[];
  readonly replies: Coalescer;
}

/**
 * Answers every batch delivered since the last reply, in one message. The sender acks its events
 * only on the answer, which can wait a few milliseconds: replies gathered that long wake it once
 * per few batches instead of once per batch. gRPC also writes one message at a time, each
 * finishing on a later turn of the event loop, so while one is being written the answers wait for
 * it, and a pod busy writing to its own sockets still answers everything in one reply.
 */
function writeReplies(call: PushStream, unanswered: BatchResult[], replies: Coalescer): void {
  // The stream's write queue counts the write in progress until its callback.
  if (unanswered.length === 0 || !call.writable || call.writableLength > 0) return;
  const reply: PushReply = { batches: unanswered.splice(0) };
  call.write(reply, () => {
    if (unanswered.length > 0) replies.request();
  });
}

/** Answers what is left, behind any write in progress, and closes our half of the stream. */
function finish(call: PushStream, { unanswered, replies }: OpenStream): void {
  replies.cancel();
  if (unanswered.length > 0 && call.writable) call.write({ batches: unanswered.splice(0) });
  call.end();
}
