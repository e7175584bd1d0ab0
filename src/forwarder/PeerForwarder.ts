import * as grpc from '@grpc/grpc-js';
import CircuitBreaker from 'opossum';
import type { PeerPush } from '../dispatch/Dispatch.js';
import type { InboundEvent } from '../ingest/EventSource.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import { loadForwarderService, type ForwarderClient, type PushReply, type WireEvent } from './wire.js';

/** Timing of pushes to peers. */
export interface ForwarderOptions {
  readonly deadlineMs: number;
  readonly breakerResetMs: number;
  readonly credentials: grpc.ChannelCredentials;
}

type BreakerState = 'closed' | 'half-open' | 'open';
const BREAKER_GAUGE: Readonly<Record<BreakerState, number>> = { closed: 0, 'half-open': 1, open: 2 };

interface Pending {
  readonly event: InboundEvent;
  readonly resolve: () => void;
  readonly reject: (err: Error) => void;
}

// Events bound for one peer in the same turn of the event loop travel in one call, up to this many.
const MAX_BATCH = 256;
const IDLE_PEER_MS = 5 * 60_000;

/** One peer pod: a gRPC channel, a circuit breaker, and the batch being gathered for it. */
class Peer {
  readonly client: ForwarderClient;
  readonly breaker: CircuitBreaker<[readonly Pending[]], PushReply>;
  queue: Pending[] = [];
  flushScheduled = false;
  lastUsedMs = Date.now();

  constructor(
    readonly podId: string,
    Client: grpc.ServiceClientConstructor,
    options: ForwarderOptions,
    private readonly metrics: Metrics,
    private readonly log: Logger,
  ) {
    // proto-loader builds the client at run time; ForwarderClient is the shape forward.proto gives it.
    this.client = new Client(podId, options.credentials, {
      'grpc.keepalive_time_ms': 10_000,
      'grpc.keepalive_timeout_ms': 5000,
      'grpc.keepalive_permit_without_calls': 1,
    }) as unknown as ForwarderClient;
    // Opens on the first failure: a dead or hung peer costs one failed call, then fast failures
    // until a trial call after breakerResetMs succeeds.
    this.breaker = new CircuitBreaker((batch: readonly Pending[]) => this.#call(batch, options.deadlineMs), {
      timeout: false,
      resetTimeout: options.breakerResetMs,
      errorThresholdPercentage: 1,
      volumeThreshold: 1,
      rollingCountTimeout: 10_000,
    });
    this.breaker.on('open', () => this.#transition('open'));
    this.breaker.on('halfOpen', () => this.#transition('half-open'));
    this.breaker.on('close', () => this.#transition('closed'));
    this.metrics.breakerState.set({ peer: podId }, BREAKER_GAUGE.closed);
  }

  close(): void {
    this.breaker.shutdown();
    this.client.close();
    this.metrics.breakerState.remove({ peer: this.podId });
  }

  #transition(state: BreakerState): void {
    this.metrics.breakerState.set({ peer: this.podId }, BREAKER_GAUGE[state]);
    const message = `circuit to peer ${state}`;
    if (state === 'open') this.log.warn({ peer: this.podId }, message);
    else this.log.info({ peer: this.podId }, message);
  }

  #call(batch: readonly Pending[], deadlineMs: number): Promise<PushReply> {
    const metadata = new grpc.Metadata();
    metadata.set('x-request-id', batch.map((p) => p.event.requestId).join(','));
    const events: WireEvent[] = batch.map(({ event }) => ({
      subject: event.subject,
      payload: Buffer.from(event.payload, 'utf8'),
      request_id: event.requestId,
      published_at_ms: event.publishedAtMs,
      delivery_key: event.delivery?.key ?? '',
    }));
    const stop = this.metrics.grpcForwardDuration.startTimer();
    return new Promise((resolve, reject) => {
      this.client.Push({ events }, metadata, { deadline: Date.now() + deadlineMs }, (err, reply) => {
        stop({ outcome: err === null ? 'ok' : 'error' });
        if (err !== null || reply === undefined) reject(err ?? new Error('empty reply'));
        else resolve(reply);
      });
    });
  }
}

/** Pushes events to peer pods over gRPC: one channel and one circuit breaker per peer, batched per turn. */
export class PeerForwarder implements PeerPush {
  readonly #peers = new Map<string, Peer>();
  readonly #Client = loadForwarderService();
  readonly #sweep: NodeJS.Timeout;

  constructor(
    private readonly options: ForwarderOptions,
    private readonly metrics: Metrics,
    private readonly log: Logger,
  ) {
    this.#sweep = setInterval(() => this.#closeIdlePeers(), IDLE_PEER_MS);
    this.#sweep.unref();
  }

  push(podId: string, event: InboundEvent): Promise<void> {
    const peer = this.#peer(podId);
    peer.lastUsedMs = Date.now();
    return new Promise((resolve, reject) => {
      peer.queue.push({ event, resolve, reject });
      if (peer.queue.length >= MAX_BATCH) this.#flush(peer);
      else if (!peer.flushScheduled) {
        peer.flushScheduled = true;
        setImmediate(() => this.#flush(peer));
      }
    });
  }

  /** Closes every channel. Safe to call twice. */
  stop(): void {
    clearInterval(this.#sweep);
    for (const peer of this.#peers.values()) peer.close();
    this.#peers.clear();
  }

  #peer(podId: string): Peer {
    let peer = this.#peers.get(podId);
    if (peer === undefined) {
      peer = new Peer(podId, this.#Client, this.options, this.metrics, this.log);
      this.#peers.set(podId, peer);
    }
    return peer;
  }

  #flush(peer: Peer): void {
    peer.flushScheduled = false;
    while (peer.queue.length > 0) {
      const batch = peer.queue.splice(0, MAX_BATCH);
      peer.breaker.fire(batch).then(
        () => {
          for (const pending of batch) pending.resolve();
        },
        (err: unknown) => {
          const reason = failureReason(err);
          this.metrics.grpcForwardErrors.inc({ peer: peer.podId, reason }, batch.length);
          const error = err instanceof Error ? err : new Error(String(err));
          for (const pending of batch) pending.reject(error);
        },
      );
    }
  }

  #closeIdlePeers(): void {
    const now = Date.now();
    for (const [podId, peer] of this.#peers) {
      if (now - peer.lastUsedMs > IDLE_PEER_MS) {
        peer.close();
        this.#peers.delete(podId);
      }
    }
  }
}

/** gRPC status codes and breaker rejections, translated once into the metric's reasons. */
function failureReason(err: unknown): string {
  const code = typeof err === 'object' && err !== null && 'code' in err ? (err as { code: unknown }).code : undefined;
  if (code === 'EOPENBREAKER') return 'breaker-open';
  if (code === grpc.status.DEADLINE_EXCEEDED) return 'deadline';
  if (code === grpc.status.UNAVAILABLE) return 'unavailable';
  return 'error';
}
