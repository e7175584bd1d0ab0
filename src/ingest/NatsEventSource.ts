import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  AckPolicy,
  connect,
  ConsumerEvents,
  credsAuthenticator,
  DeliverPolicy,
  ErrorCode,
  headers as natsHeaders,
  nanos,
  NatsError,
  type ConsumerInfo,
  type ConsumerMessages,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
  type NatsConnection,
  type Subscription,
} from 'nats';
import { Coalescer } from '../Coalescer.js';
import type { Config } from '../config/schema.js';
import { GatewayError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import { eventIdOf, REQUEST_ID_HEADER, type DispatchOutcome, type EventSink, type EventSource, type InboundEvent } from './EventSource.js';

/** The NATS slice of the configuration. */
export type NatsOptions = Config['nats'] & {
  /**
   * How long an owner that died may still count as one (its heartbeat's lease; 0 with a single pod).
   * The last retry for an unreachable owner waits this long, so an event is not counted dead while
   * its only missing owner is a pod that is gone but not yet known to be.
   */
  readonly ownerGoneAfterMs: number;
};

const SUBJECTS = 'websocket.>';
const STREAM_NOT_FOUND = 10059;
const CONSUMER_NOT_FOUND = 10014;
/** JetStream refused the message: over the stream's max_msg_size. */
const MESSAGE_TOO_LARGE = 10054;
const PENDING_POLL_MS = 5000;
// A pull request lives this long: a hung pod keeps receiving (and sitting on) redelivered events
// only until its open pull expires, so keep it short.
const PULL_EXPIRES_MS = 5000;
/**
 * Acks go together at most this often while events keep coming (see Coalescer): NATS gets one write
 * for all of them instead of one per event, which at 1,000 events/s took a consuming pod from
 * 0.35–0.38 to about 0.31 ms of CPU per event, and a fifth off nats-server's. An event acked late is
 * only redelivered if the pod dies meanwhile.
 */
const ACK_GATHER_MS = 5;
/**
 * When dispatch itself fails (Redis unreachable), retries back off from NATS_NAK_DELAY_MS, doubling
 * up to this: an outage then takes many minutes to use up the delivery limit instead of seconds.
 */
const DISPATCH_FAILURE_MAX_NAK_MS = 30_000;
/** How long each step of a stopping pod's goodbye to NATS waits for an answer. */
const NATS_STOP_LIMIT_MS = 2000;
/** Pulling again after the consumer was lost waits this long at first, doubling up to PULL_RETRY_MAX_MS. */
const PULL_RETRY_MS = 1000;
const PULL_RETRY_MAX_MS = 5000;
/** The consumer notices that are not debug chatter. */
const NOTICES: ReadonlySet<string> = new Set(Object.values(ConsumerEvents));

/**
 * How far the shared consumer had got, as last read: a consumer remade in the same stream starts
 * after its ack floor. A stream made anew (its creation time differs) numbers its events from 1.
 */
interface ConsumerProgress {
  readonly streamCreated: string;
  readonly ackFloor: number;
}

/**
 * Events from NATS JetStream: every pod pulls from one durable consumer, so each event is handled
 * by one pod. An event is acked once every owner has it, nak'd with a delay when an owner could
 * not be reached, counted as dead past the delivery limit, and acked without dispatch when malformed.
 */
export class NatsEventSource implements EventSource {
  #connection: NatsConnection | undefined;
  #jetstream: JetStreamClient | undefined;
  #manager: JetStreamManager | undefined;
  #messages: ConsumerMessages | undefined;
  #consuming: Promise<void> | undefined;
  readonly #stopping = new AbortController();
  #progress: ConsumerProgress | undefined;
  /** Events pulled so far: a pull that ended after delivering some resets the retry backoff. */
  #received = 0;
  /** Failed tries to pull again since the last pull that delivered events: each waits longer. */
  #pullRetries = 0;
  #pendingPoll: NodeJS.Timeout | undefined;
  #maxDeliver: number;
  #connected = false;
  readonly #inFlight = new Set<Promise<void>>();
  /** Handled events whose acks wait for the next gathered write. */
  #acks: JsMsg[] = [];
  readonly #ackFlush = new Coalescer(ACK_GATHER_MS, () => this.#sendAcks());

  constructor(
    private readonly options: NatsOptions,
    private readonly podId: string,
    private readonly metrics: Metrics,
    private readonly log: Logger,
  ) {
    this.#maxDeliver = options.maxDeliver;
  }

  /** Connects, makes sure the stream and consumer exist (leaving existing ones as they are), and starts pulling. */
  async start(sink: EventSink): Promise<void> {
    const { tlsCaFile, credsFile } = this.options;
    // Users and passwords may ride in the URLs (nats://user:pass@host); TLS and creds come from files.
    const connection = await connect({
      servers: this.options.url.split(',').map((url) => url.trim()),
      name: this.podId,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 500,
      ...(tlsCaFile === '' ? {} : { tls: { caFile: tlsCaFile } }),
      ...(credsFile === '' ? {} : { authenticator: credsAuthenticator(readFileSync(credsFile)) }),
    });
    this.#connection = connection;
    this.#setConnected(true);
    void this.#watchStatus(connection);
    const manager = await connection.jetstreamManager();
    this.#manager = manager;
    await this.#ensureStreamAndConsumer(manager);
    const jetstream = connection.jetstream();
    this.#jetstream = jetstream;
    this.#consuming = this.#keepConsuming(await this.#pull(jetstream), manager, jetstream, sink);
    this.#pendingPoll = setInterval(() => void this.#pollPending(), PENDING_POLL_MS);
    this.#pendingPoll.unref();
  }

  async publish(subject: string, payload: string, headers: Readonly<Record<string, string>>): Promise<void> {
    const jetstream = this.#jetstream;
    if (jetstream === undefined || !this.#connected) throw unavailable();
    const natsHeadersValue = natsHeaders();
    for (const [name, value] of Object.entries(headers)) natsHeadersValue.set(name, value);
    try {
      await this.#timed('publish', () => jetstream.publish(subject, payload, { headers: natsHeadersValue }));
    } catch (err) {
      // Too large for the server or the stream: publishing it again would fail again.
      if (err instanceof NatsError && (err.code === ErrorCode.MaxPayloadExceeded || apiErrorCode(err) === MESSAGE_TOO_LARGE)) {
        throw new GatewayError('BadRequest', `the event is larger than NATS takes (${err.message}); send a smaller payload`);
      }
      this.log.warn({ err, subject }, 'publish to NATS failed');
      throw unavailable();
    }
  }

  isHealthy(): boolean {
    return this.#connected;
  }

  /**
   * Stops pulling, lets the events in flight finish (and be acked), then drains the connection. A
   * hung NATS answers neither drain: past NATS_STOP_LIMIT_MS the connection is closed instead, so
   * the rest of the shutdown (closing connections with 1001, releasing sessions) goes on.
   */
  async stop(): Promise<void> {
    this.#stopping.abort();
    clearInterval(this.#pendingPoll);
    const answered = this.#messages === undefined || (await stopPulling(this.#messages));
    await this.#consuming;
    await Promise.allSettled([...this.#inFlight]);
    this.#ackFlush.flushNow();
    const connection = this.#connection;
    if (connection !== undefined && !connection.isClosed()) {
      const drained = answered && (await finishesWithin(connection.drain(), NATS_STOP_LIMIT_MS));
      if (!drained) await connection.close();
    }
    this.#connected = false;
  }

  /** Times one NATS request for `nats_op_duration_seconds`. */
  async #timed<T>(op: string, request: () => Promise<T>): Promise<T> {
    const stop = this.metrics.natsOpDuration.startTimer({ op });
    try {
      const result = await request();
      stop({ outcome: 'ok' });
      return result;
    } catch (err) {
      stop({ outcome: 'error' });
      throw err;
    }
  }

  async #ensureStreamAndConsumer(manager: JetStreamManager): Promise<void> {
    const { stream, consumer } = this.options;
    let streamCreated: string;
    try {
      streamCreated = (await this.#timed('stream_info', () => manager.streams.info(stream))).created;
    } catch (err) {
      if (apiErrorCode(err) !== STREAM_NOT_FOUND) throw err;
      streamCreated = (await this.#timed('stream_add', () => manager.streams.add({ name: stream, subjects: [SUBJECTS] }))).created;
      this.log.info({ stream }, 'created the JetStream stream');
    }
    try {
      const info = await this.#timed('consumer_info', () => manager.consumers.info(stream, consumer));
      // An operator's consumer keeps its settings; its delivery limit is the one that counts, and
      // none (-1, NATS's default) means its events are retried for as long as it takes.
      const limit = info.config.max_deliver;
      this.#maxDeliver = limit !== undefined && limit > 0 ? limit : Number.POSITIVE_INFINITY;
      this.#progress = { streamCreated, ackFloor: ackFloorOf(info) };
    } catch (err) {
      if (apiErrorCode(err) !== CONSUMER_NOT_FOUND) throw err;
      // Made for the first time, it starts at the stream's first event. Remade while the pod ran
      // (deleted, or NATS lost it), it starts after what the lost consumer had acked, so neither is
      // the stream's history replayed nor an event published meanwhile skipped.
      const progress = this.#progress;
      const startAfter = progress !== undefined && progress.streamCreated === streamCreated ? progress.ackFloor : 0;
      await this.#timed('consumer_add', () =>
        manager.consumers.add(stream, {
          durable_name: consumer,
          ack_policy: AckPolicy.Explicit,
          ack_wait: nanos(this.options.ackWaitMs),
          max_deliver: this.options.maxDeliver,
          filter_subject: SUBJECTS,
          ...(startAfter === 0 ? {} : { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: startAfter + 1 }),
        }),
      );
      this.#maxDeliver = this.options.maxDeliver;
      this.#progress = { streamCreated, ackFloor: startAfter };
      this.log.info({ stream, consumer, start_sequence: startAfter + 1 }, 'created the durable JetStream consumer');
    }
  }

  /** Starts pulling from the shared consumer. */
  async #pull(jetstream: JetStreamClient): Promise<ConsumerMessages> {
    const consumer = await jetstream.consumers.get(this.options.stream, this.options.consumer);
    // Without the abort, nats.js waits for a lost stream or consumer to come back by itself.
    const messages = await consumer.consume({ max_messages: this.options.maxInFlight, expires: PULL_EXPIRES_MS, abort_on_missing_resource: true });
    this.#messages = messages;
    this.metrics.natsConsuming.set(1);
    void this.#watchConsumer(messages);
    return messages;
  }

  /**
   * Handles events until stop(). Pulling ends by itself when the consumer or its stream is lost
   * (deleted, or NATS restarted without its store) or NATS refuses a pull: then the stream and
   * consumer are made again where missing, and pulling starts over, with backoff.
   */
  async #keepConsuming(first: ConsumerMessages, manager: JetStreamManager, jetstream: JetStreamClient, sink: EventSink): Promise<void> {
    let messages: ConsumerMessages | undefined = first;
    while (messages !== undefined) {
      const receivedBefore = this.#received;
      try {
        await this.#consume(messages, sink);
      } catch (err) {
        // Also a NATS cluster electing the consumer's leader (503): then nothing is missing.
        if (!this.#stopping.signal.aborted) this.log.warn({ err }, 'stopped pulling from the JetStream consumer; making sure it exists and pulling again');
      }
      if (this.#stopping.signal.aborted) return;
      this.metrics.natsConsuming.set(0);
      // A pull refused again and again backs off; one that delivered events starts over at the first delay.
      if (this.#received > receivedBefore) this.#pullRetries = 0;
      messages = await this.#pullAgain(manager, jetstream);
    }
  }

  /** Makes the stream and consumer where missing and pulls again, with backoff; undefined once stop() came. */
  async #pullAgain(manager: JetStreamManager, jetstream: JetStreamClient): Promise<ConsumerMessages | undefined> {
    const { signal } = this.#stopping;
    for (;;) {
      const delayMs = Math.min(PULL_RETRY_MS * 2 ** this.#pullRetries, PULL_RETRY_MAX_MS);
      this.#pullRetries++;
      let pulling: Promise<ConsumerMessages> | undefined;
      try {
        await sleep(delayMs, undefined, { signal });
        pulling = this.#ensureStreamAndConsumer(manager).then(() => this.#pull(jetstream));
        // NATS requests wait out their own timeouts (5 s) when NATS is away: stop() does not wait for them.
        const messages = await untilAborted(pulling, signal);
        // stop() came while the pull was being set up: it stopped the previous one.
        if (signal.aborted) {
          await stopPulling(messages);
          return undefined;
        }
        this.log.info('pulling from the JetStream consumer again');
        return messages;
      } catch (err) {
        if (signal.aborted) {
          // A pull that NATS sets up after all is stopped too, or it would sit on the events NATS sends it.
          void pulling?.then(stopPulling, () => undefined);
          return undefined;
        }
        this.log.warn({ err, retries: this.#pullRetries }, 'could not pull from the JetStream consumer yet');
      }
    }
  }

  async #consume(messages: ConsumerMessages, sink: EventSink): Promise<void> {
    for await (const message of messages) {
      this.#received++;
      // The consumer's buffer bounds what is pulled, not what is being handled: bound that here.
      if (this.#inFlight.size >= this.options.maxInFlight) await Promise.race(this.#inFlight);
      const handling = this.#handle(message, sink).finally(() => this.#inFlight.delete(handling));
      this.#inFlight.add(handling);
    }
  }

  async #handle(message: JsMsg, sink: EventSink): Promise<void> {
    const place = `${message.info.stream}:${message.info.streamSequence}`;
    const event: InboundEvent = {
      origin: 'nats',
      subject: message.subject,
      payload: message.string(),
      // Without a header, the event's place in the stream: every retry of it logs the same id.
      requestId: message.headers?.get(REQUEST_ID_HEADER) || place,
      publishedAtMs: Math.floor(message.info.timestampNanos / 1e6),
      // The place alone would come back if the stream were deleted and made again (its sequence
      // starts over): with the publish time, a new event is never taken for one already written.
      delivery: { key: `${place}:${message.info.timestampNanos}`, redelivered: message.info.redelivered },
    };
    if (message.info.redelivered) this.metrics.eventsRedelivered.inc();
    let outcome: DispatchOutcome | 'failed';
    try {
      outcome = await sink(event);
    } catch (err) {
      this.log.error({ err, request_id: event.requestId, event_id: eventIdOf(event.payload), subject: event.subject }, 'dispatch failed; the event will be retried');
      outcome = 'failed';
    }
    if (outcome === 'delivered' || outcome === 'rejected') {
      // A malformed event is poison: acked (and counted by dispatch) so it never comes back.
      this.#acks.push(message);
      this.#ackFlush.request();
      return;
    }
    if (message.info.redeliveryCount >= this.#maxDeliver) {
      this.#bury(message, event);
      return;
    }
    message.nak(this.#nakDelayMs(outcome, message.info.redeliveryCount));
  }

  /** How long an event waits before its next delivery. */
  #nakDelayMs(outcome: 'retry' | 'failed' | { readonly retryAfterMs: number }, deliveries: number): number {
    const { nakDelayMs, ownerGoneAfterMs } = this.options;
    if (outcome === 'retry') return deliveries + 1 >= this.#maxDeliver ? Math.max(nakDelayMs, ownerGoneAfterMs) : nakDelayMs;
    // Events reached their owners from the route copies while Redis is away; back off rather than
    // bury them as dead after a few seconds of outage.
    if (outcome === 'failed') return Math.min(nakDelayMs * 2 ** Math.min(deliveries - 1, 30), Math.max(nakDelayMs, DISPATCH_FAILURE_MAX_NAK_MS));
    return Math.max(outcome.retryAfterMs, nakDelayMs);
  }

  /** Acks every handled event in one turn, so the NATS client writes them together. */
  #sendAcks(): void {
    for (const message of this.#acks.splice(0)) message.ack();
  }

  /** Past the delivery limit: counted, logged, published to the dead-letter subject if one is set, and terminated. */
  #bury(message: JsMsg, event: InboundEvent): void {
    this.metrics.eventsFannedOut.inc({ outcome: 'dead' });
    this.log.error({ request_id: event.requestId, event_id: eventIdOf(event.payload), subject: event.subject, deliveries: message.info.redeliveryCount }, 'event is dead: its owners stayed unreachable');
    const { deadLetterSubject } = this.options;
    if (deadLetterSubject !== '' && this.#connection !== undefined) {
      const h = natsHeaders();
      h.set(REQUEST_ID_HEADER, event.requestId);
      h.set('Switchboard-Subject', event.subject);
      this.#connection.publish(deadLetterSubject, message.data, { headers: h });
    }
    message.term();
  }

  /** The consumer's own notices (missed heartbeats, consumer or stream gone) explain a gap in events: logged. */
  async #watchConsumer(messages: ConsumerMessages): Promise<void> {
    for await (const status of await messages.status()) {
      if (NOTICES.has(status.type)) this.log.warn({ notice: status.type, data: status.data }, 'nats consumer notice');
    }
  }

  async #watchStatus(connection: NatsConnection): Promise<void> {
    for await (const status of connection.status()) {
      if (status.type === 'disconnect') this.#setConnected(false);
      if (status.type === 'reconnect') this.#setConnected(true);
    }
  }

  async #pollPending(): Promise<void> {
    const manager = this.#manager;
    if (manager === undefined || !this.#connected) return;
    const { stream, consumer } = this.options;
    try {
      // The stream first: should it be made anew in between, the floor read after is tagged with the
      // old stream, and a consumer remade from it starts at the new stream's first event, skipping none.
      const { created } = await this.#timed('stream_info', () => manager.streams.info(stream));
      const info = await this.#timed('consumer_info', () => manager.consumers.info(stream, consumer));
      this.#progress = { streamCreated: created, ackFloor: ackFloorOf(info) };
      this.metrics.consumerPending.set({ kind: 'pending' }, info.num_pending);
      this.metrics.consumerPending.set({ kind: 'ack_pending' }, info.num_ack_pending);
    } catch (err) {
      this.log.debug({ err }, 'could not read consumer info');
    }
  }

  #setConnected(connected: boolean): void {
    if (connected === this.#connected) return;
    this.#connected = connected;
    this.metrics.natsUp.set(connected ? 1 : 0);
    if (connected) this.log.info('nats reachable');
    else this.log.warn('nats unreachable');
  }
}

/**
 * Ends a consumer's pulling without losing what NATS already sent. nats.js's stop() unsubscribes at
 * once, so the events in flight to the pod are dropped and wait out the ack wait before another pod
 * gets them. Draining the pull subscription (UNSUB, then a round trip) takes them in first, and the
 * iterator ends after them. nats.js 2.x keeps that subscription on a field it does not type; when
 * it is not there, or NATS does not answer the round trip in time (it is down), stop() ends it.
 * Answers false when NATS did not answer.
 */
async function stopPulling(messages: ConsumerMessages): Promise<boolean> {
  const { sub } = messages as ConsumerMessages & { readonly sub?: Subscription };
  const answered = sub === undefined || sub.isClosed() || (await finishesWithin(sub.drain(), NATS_STOP_LIMIT_MS));
  messages.stop();
  return answered;
}

/** Waits for `work` up to `limitMs`; true when it finished (or failed) in time. */
async function finishesWithin(work: Promise<unknown>, limitMs: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), limitMs)));
  const done = work.then(
    () => true,
    () => true,
  );
  const finished = await Promise.race([done, late]);
  clearTimeout(timer);
  return finished;
}

/** Settles as `work` does, or rejects as soon as `signal` aborts (`work` then goes on unheeded). */
function untilAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const abort = (): void => reject(new Error('stopped'));
    if (signal.aborted) abort();
    signal.addEventListener('abort', abort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', abort));
  });
}

/**
 * The last stream sequence up to which the consumer has nothing left to deliver or ack. A consumer
 * that has delivered nothing yet reports a floor of 0 but starts after its delivered mark (its
 * start sequence less one, or the stream's end when it was made).
 */
function ackFloorOf(info: ConsumerInfo): number {
  return info.delivered.consumer_seq === 0 ? info.delivered.stream_seq : info.ack_floor.stream_seq;
}

function apiErrorCode(err: unknown): number | undefined {
  return err instanceof NatsError ? err.api_error?.err_code : undefined;
}

function unavailable(): GatewayError {
  return new GatewayError('ServiceUnavailable', 'NATS is unreachable; try again later');
}
