import * as grpc from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import type { InboundEvent } from '../ingest/EventSource.js';
import type { Logger } from '../log.js';
import { loadForwarderService, type PushReply, type PushRequest } from './wire.js';

/** Writes pushed events to this pod's connections; answers how many connections got each. */
export type PeerDelivery = (events: readonly InboundEvent[]) => number[];

const SERVICE_NAME = 'switchboard.v1.Forwarder';
const MAX_MESSAGE_BYTES = 16 * 1024 * 1024;
const SHUTDOWN_GRACE_MS = 2000;

/** The gRPC listener: the Forwarder service that peers push events to, and grpc.health.v1. */
export class ForwardServer {
  readonly #server = new grpc.Server({
    'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
    'grpc.keepalive_permit_without_calls': 1,
    'grpc.http2.min_ping_interval_without_data_ms': 5000,
  });
  readonly #health = new HealthImplementation({ '': 'NOT_SERVING', [SERVICE_NAME]: 'NOT_SERVING' });

  constructor(
    private readonly port: number,
    private readonly credentials: grpc.ServerCredentials,
    private readonly deliver: PeerDelivery,
    private readonly log: Logger,
  ) {
    const service = loadForwarderService().service;
    this.#server.addService(service, { Push: (call: grpc.ServerUnaryCall<PushRequest, PushReply>, callback: grpc.sendUnaryData<PushReply>) => this.#push(call, callback) });
    this.#health.addToServer(this.#server);
  }

  /** Listens on every interface (peers dial POD_IP:GRPC_PORT); resolves with the bound port. */
  async start(): Promise<number> {
    const port = await new Promise<number>((resolve, reject) => {
      this.#server.bindAsync(`0.0.0.0:${this.port}`, this.credentials, (err, bound) => (err === null ? resolve(bound) : reject(err)));
    });
    this.#setServing(true);
    return port;
  }

  /** Stops taking pushes; calls in flight get a short grace. Safe to call twice. */
  async stop(): Promise<void> {
    this.#setServing(false);
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

  #push(call: grpc.ServerUnaryCall<PushRequest, PushReply>, callback: grpc.sendUnaryData<PushReply>): void {
    const events: InboundEvent[] = call.request.events.map((event) => ({
      origin: 'peer',
      subject: event.subject,
      payload: event.payload.toString('utf8'),
      requestId: event.request_id,
      publishedAtMs: Number(event.published_at_ms),
      ...(event.delivery_key === '' ? {} : { delivery: { key: event.delivery_key, redelivered: false } }),
    }));
    try {
      callback(null, { delivered: this.deliver(events) });
    } catch (err) {
      this.log.error({ err, request_id: call.metadata.get('x-request-id').join(',') }, 'push failed');
      callback({ code: grpc.status.INTERNAL, details: 'delivery failed' });
    }
  }
}
