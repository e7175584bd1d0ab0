import * as grpc from '@grpc/grpc-js';
import CircuitBreaker from 'opossum';
import { Coalescer } from '../Coalescer.js';
import type { PeerPush } from '../dispatch/Dispatch.js';
import type { InboundEvent } from '../ingest/EventSource.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import { loadForwarderService, type BatchResult, type ForwarderClient, type PushReply, type PushRequest, type WireEvent } from './wire.js';

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
  /** The payload in UTF-8, encoded once: its size bounds the batch, and it is what goes on the wire. */
  readonly payload: Buffer;
  readonly resolve: () => void;
  readonly reject: (err: Error) => void;
}

/** The `reason` label of grpc_forward_errors_total. */
const FAILURE_REASONS = ['breaker-open', 'deadline', 'unavailable', 'error'] as const;
type FailureReason = (typeof FAILURE_REASONS)[number];

// A batch to one peer holds at most this many events, and past its first event at most this many
// payload bytes: a message over the peer's receive limit (16 MiB) would fail the whole stream, and
// every retry of it, with a healthy peer.
const MAX_BATCH = 256;
const MAX_BATCH_BYTES = 4 * 1024 * 1024;
const IDLE_PEER_MS = 5 * 60_000;
/**
 * Pushes to a peer go at most this often while events keep coming (see Coalescer), so the peer
 * writes several events to its sockets in one go: each of its turns writes to every socket an event
 * reaches, whatever the number of events. Gathering 2 ms took the fan-out bench's cross-pod path from
 * 700–750 to 800–900 events/s to 1,000 clients and the two pods from 59% to 51% of a core at 1,000
 * events/s to 100 clients, for about 1 ms more latency.
 */
const PUSH_GATHER_MS = 2;

/**
 * One push stream to a peer: batches written in order, answers matched by batch id. Once it fails
 * (an error, the peer ending it, or the peer going silent) every batch still waiting fails with it
 * and the peer opens a new stream for the next batch.
 *
 * The peer counts as hung when it has answered nothing for `silenceMs` while batches wait, not
 * when one batch is slow: a peer whose event loop is behind (its CPU is shared with busy sockets)
 * still answers in order, and failing its stream would turn a slow pod into a flood of retries.
 */
class BatchStream {
  readonly #call: grpc.ClientDuplexStream<PushRequest, PushReply>;
  readonly #waiting = new Map<number, { readonly resolve: (result: BatchResult) => void; readonly reject: (err: Error) => void }>();
  #nextBatchId = 1;
  #failure: Error | undefined;
  /** When the peer last showed it is alive: its last reply, or the moment a batch started waiting with none before it. */
  #progressAtMs = 0;
  #watchdog: NodeJS.Timeout | undefined;

  constructor(
    client: ForwarderClient,
    private readonly silenceMs: number,
    private readonly onFailed: (stream: BatchStream) => void,
    /** Called when the last write in progress finished: batches gathered meanwhile can go. */
    private readonly onWritable: () => void,
  ) {
    this.#call = client.Push();
    this.#call.on('data', (reply: PushReply) => this.#answer(reply));
    this.#call.on('error', (err: grpc.ServiceError) => this.#fail(err));
    this.#call.on('end', () => this.#fail(streamError(grpc.status.UNAVAILABLE, 'the peer ended the push stream')));
  }

  send(events: readonly WireEvent[]): Promise<BatchResult> {
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    const batchId = this.#nextBatchId++;
    return new Promise((resolve, reject) => {
      if (this.#waiting.size === 0) this.#progressAtMs = Date.now();
      this.#waiting.set(batchId, { resolve, reject });
      this.#watchdog ??= setTimeout(() => this.#checkSilence(), this.silenceMs);
      this.#call.write({ batch_id: batchId, events }, () => {
        if (!this.writing && this.#failure === undefined) this.onWritable();
      });
    });
  }

  /**
   * A write is in progress. gRPC writes one message at a time, each finishing on a later turn of
   * the event loop, so batches sent now would go one per turn; gathered into one, they go at once.
   */
  get writing(): boolean {
    // The stream's write queue counts the write in progress until its callback.
    return this.#call.writableLength > 0 && this.#failure === undefined;
  }

  /** Cancels the stream; batches still unanswered fail (and are retried through NATS). */
  close(): void {
    this.#fail(streamError(grpc.status.CANCELLED, 'push stream closed'));
  }

  #answer(reply: PushReply): void {
    this.#progressAtMs = Date.now();
    for (const result of reply.batches) {
      const waiter = this.#waiting.get(result.batch_id);
      if (waiter === undefined) continue;
      this.#waiting.delete(result.batch_id);
      waiter.resolve(result);
    }
  }

  /** One timer per stream, not per batch: fails the stream if the peer stayed silent, else looks again when it could have. */
  #checkSilence(): void {
    this.#watchdog = undefined;
    if (this.#failure !== undefined || this.#waiting.size === 0) return;
    const silentForMs = Date.now() - this.#progressAtMs;
    if (silentForMs >= this.silenceMs) {
      this.#fail(streamError(grpc.status.DEADLINE_EXCEEDED, `no reply from the peer for ${this.silenceMs} ms`));
      return;
    }
    this.#watchdog = setTimeout(() => this.#checkSilence(), this.silenceMs - silentForMs);
  }

  #fail(err: Error): void {
    if (this.#failure !== undefined) return;
    this.#failure = err;
    clearTimeout(this.#watchdog);
    for (const waiter of this.#waiting.values()) waiter.reject(err);
    this.#waiting.clear();
    this.#call.cancel();
    this.onFailed(this);
  }
}

/** One peer pod: a gRPC channel, its current push stream, a circuit breaker, and the batch being gathered for it. */
class Peer {
  readonly client: ForwarderClient;
  readonly breaker: CircuitBreaker<[readonly Pending[]], BatchResult>;
  queue: Pending[] = [];
  /** Payload bytes in `queue`. */
  queuedBytes = 0;
  /** When the pushes gathered for the peer go (see PUSH_GATHER_MS). */
  readonly pushes: Coalescer;
  lastUsedMs = Date.now();
  #stream: BatchStream | undefined;

  constructor(
    readonly podId: string,
    Client: grpc.ServiceClientConstructor,
    private readonly options: ForwarderOptions,
    private readonly metrics: Metrics,
    private readonly log: Logger,
    /** Sends the batch gathered while the stream was busy writing (or before it failed). */
    private readonly flushGathered: () => void,
  ) {
    this.pushes = new Coalescer(PUSH_GATHER_MS, flushGathered);
    // proto-loader builds the client at run time; ForwarderClient is the shape forward.proto gives it.
    this.client = new Client(podId, options.credentials, {
      'grpc.keepalive_time_ms': 10_000,
      'grpc.keepalive_timeout_ms': 5000,
      'grpc.keepalive_permit_without_calls': 1,
    }) as unknown as ForwarderClient;
    this.breaker = breakerOpeningOnFirstFailure((batch: readonly Pending[]) => this.#send(batch), options.breakerResetMs);
    this.breaker.on('open', () => this.#transition('open'));
    this.breaker.on('halfOpen', () => this.#transition('half-open'));
    this.breaker.on('close', () => this.#transition('closed'));
    this.metrics.breakerState.set({ peer: podId }, BREAKER_GAUGE.closed);
  }

  close(): void {
    // Pushes still gathering fail as those on the stream do (and are retried through NATS).
    this.pushes.cancel();
    const closed = streamError(grpc.status.CANCELLED, 'peer channel closed');
    for (const pending of this.queue.splice(0)) pending.reject(closed);
    this.queuedBytes = 0;
    this.breaker.shutdown();
    this.#stream?.close();
    this.client.close();
    // Pod ids change with every rollout: a peer's series go with it, or they would pile up.
    this.metrics.breakerState.remove({ peer: this.podId });
    for (const reason of FAILURE_REASONS) this.metrics.grpcForwardErrors.remove({ peer: this.podId, reason });
  }

  /** The push stream is busy writing: a batch gathered now goes when it is done. */
  get writing(): boolean {
    return this.#stream?.writing ?? false;
  }

  #transition(state: BreakerState): void {
    this.metrics.breakerState.set({ peer: this.podId }, BREAKER_GAUGE[state]);
    const message = `circuit to peer ${state}`;
    if (state === 'open') this.log.warn({ peer: this.podId }, message);
    else this.log.info({ peer: this.podId }, message);
  }

  async #send(batch: readonly Pending[]): Promise<BatchResult> {
    const events: WireEvent[] = batch.map(({ event, payload }) => ({
      subject: event.subject,
      payload,
      request_id: event.requestId,
      published_at_ms: event.publishedAtMs,
      delivery_key: event.delivery?.key ?? '',
      event_id: event.eventId ?? '',
    }));
    const stream = (this.#stream ??= new BatchStream(
      this.client,
      this.options.deadlineMs,
      (failed) => this.#forget(failed),
      this.flushGathered,
    ));
    const stop = this.metrics.grpcForwardDuration.startTimer();
    try {
      const result = await stream.send(events);
      stop({ outcome: 'ok' });
      return result;
    } catch (err) {
      stop({ outcome: 'error' });
      throw err;
    }
  }

  /**
   * Drops a failed stream. What was gathered behind it goes on a later turn: by then its failed
   * batches have reached the breaker, so a dead peer's open circuit fails them at once instead of
   * a fresh stream waiting out another deadline.
   */
  #forget(stream: BatchStream): void {
    if (this.#stream !== stream) return;
    this.#stream = undefined;
    setImmediate(this.flushGathered);
  }
}

/** An error shaped like grpc-js's own, so failure reasons read the same whatever raised them. */
function streamError(code: grpc.status, details: string): grpc.ServiceError {
  return Object.assign(new Error(details), { code, details, metadata: new grpc.Metadata() });
}

/**
 * Pushes events to peer pods over gRPC: one channel and one circuit breaker per peer. Pushes made
 * within a few milliseconds go as one batch, and so do those made while the stream is busy writing.
 */
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
      const payload = Buffer.from(event.payload, 'utf8');
      peer.queue.push({ event, payload, resolve, reject });
      peer.queuedBytes += payload.length;
      if (hasFullBatch(peer)) this.#flush(peer);
      else peer.pushes.request();
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
      const created = new Peer(podId, this.#Client, this.options, this.metrics, this.log, () => this.#flush(created));
      peer = created;
      this.#peers.set(podId, peer);
    }
    return peer;
  }

  #flush(peer: Peer): void {
    // A full batch goes at once; a smaller one waits for the write in progress (which flushes when done).
    if (peer.writing && !hasFullBatch(peer)) return;
    while (peer.queue.length > 0) {
      const batch = takeBatch(peer);
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

/**
 * A circuit breaker that opens on the first failure, however many successes came before it: a dead
 * or hung peer costs one failed batch, then fast failures until a trial call after `resetMs`
 * succeeds. (opossum opens past an error percentage; at 0 any failure passes it.)
 */
export function breakerOpeningOnFirstFailure<TArgs extends unknown[], TResult>(
  action: (...args: TArgs) => Promise<TResult>,
  resetMs: number,
): CircuitBreaker<TArgs, TResult> {
  return new CircuitBreaker(action, { timeout: false, resetTimeout: resetMs, errorThresholdPercentage: 0, volumeThreshold: 1, rollingCountTimeout: 10_000 });
}

function hasFullBatch(peer: Peer): boolean {
  return peer.queue.length >= MAX_BATCH || peer.queuedBytes >= MAX_BATCH_BYTES;
}

/** Takes the next batch off the peer's queue: at least one event, within both limits. */
function takeBatch(peer: Peer): Pending[] {
  let count = 0;
  let bytes = 0;
  for (const pending of peer.queue) {
    if (count === MAX_BATCH || (count > 0 && bytes + pending.payload.length > MAX_BATCH_BYTES)) break;
    count++;
    bytes += pending.payload.length;
  }
  peer.queuedBytes -= bytes;
  return peer.queue.splice(0, count);
}

/** gRPC status codes and breaker rejections, translated once into the metric's reasons. */
function failureReason(err: unknown): FailureReason {
  const code = typeof err === 'object' && err !== null && 'code' in err ? (err as { code: unknown }).code : undefined;
  if (code === 'EOPENBREAKER') return 'breaker-open';
  if (code === grpc.status.DEADLINE_EXCEEDED) return 'deadline';
  if (code === grpc.status.UNAVAILABLE) return 'unavailable';
  return 'error';
}
