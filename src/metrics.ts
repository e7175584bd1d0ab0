import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export type ConnectionType = 'user' | 'admin';
export type AuthStage = 'api_key' | 'token' | 'path' | 'origin';

const MINUTE = 60;
const HOUR = 60 * MINUTE;
const EVENT_LOOP_SAMPLE_MS = 100;
/** Seconds: a Redis or NATS request takes from a fifth of a millisecond to a timeout. */
const STORE_OP_BUCKETS = [0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];

/** Every metric of one gateway process, in its own registry (no global state, so tests can build several). */
export class Metrics {
  readonly registry = new Registry();
  readonly connectionsActive: Gauge<'type'>;
  readonly connectionsOpened: Counter<'type'>;
  readonly connectionDuration: Histogram<'type'>;
  readonly sessionReplacements: Counter<'type'>;
  readonly authFailures: Counter<'stage' | 'token_type'>;
  readonly eventsIn: Counter<'source'>;
  readonly eventsFannedOut: Counter<'outcome'>;
  readonly eventsRejected: Counter<'reason'>;
  readonly routeCopyMisses: Counter;
  readonly eventDeliveryLatency: Histogram;
  readonly slowConsumerCloses: Counter;
  readonly rateLimitHits: Counter;
  readonly badFrames: Counter;
  readonly redisOpDuration: Histogram<'op' | 'outcome'>;
  readonly natsOpDuration: Histogram<'op' | 'outcome'>;
  readonly redisUp: Gauge;
  readonly sessionAcquisitions: Counter<'result'>;
  readonly sessionTakeovers: Counter;
  readonly leaseLosses: Counter<'reason'>;
  readonly routesHeld: Gauge;
  readonly eventsRedelivered: Counter;
  readonly natsUp: Gauge;
  readonly natsConsuming: Gauge;
  readonly consumerPending: Gauge<'kind'>;
  readonly grpcForwardDuration: Histogram<'outcome'>;
  readonly grpcForwardErrors: Counter<'peer' | 'reason'>;
  readonly breakerState: Gauge<'peer'>;

  constructor(prefix: string) {
    const registers = [this.registry];
    this.connectionsActive = new Gauge({
      name: `${prefix}connections_active`,
      help: 'Open WebSocket connections that completed the handshake, by type.',
      labelNames: ['type'],
      registers,
    });
    this.connectionsOpened = new Counter({
      name: `${prefix}connections_opened_total`,
      help: 'WebSocket connections that became ready, by type.',
      labelNames: ['type'],
      registers,
    });
    this.connectionDuration = new Histogram({
      name: `${prefix}connection_duration_seconds`,
      help: 'Lifetime of ready connections, by type.',
      labelNames: ['type'],
      buckets: [MINUTE, 5 * MINUTE, 15 * MINUTE, 30 * MINUTE, HOUR, 2 * HOUR, 4 * HOUR, 8 * HOUR, 12 * HOUR, 24 * HOUR],
      registers,
    });
    this.sessionReplacements = new Counter({
      name: `${prefix}session_replacements_total`,
      help: 'Connections closed with 4402 because the identity connected again.',
      labelNames: ['type'],
      registers,
    });
    this.authFailures = new Counter({
      name: `${prefix}auth_failures_total`,
      help: 'Rejected connection attempts, by stage and token type.',
      labelNames: ['stage', 'token_type'],
      registers,
    });
    this.eventsIn = new Counter({
      name: `${prefix}events_in_total`,
      help: 'Events received for dispatch, by source.',
      labelNames: ['source'],
      registers,
    });
    this.eventsFannedOut = new Counter({
      name: `${prefix}events_fanned_out_total`,
      help: 'Event deliveries by outcome: local socket writes, forwarded to a peer, dropped (no owner), deferred (owners unknown while Redis recovers lost data), dead.',
      labelNames: ['outcome'],
      registers,
    });
    this.eventsRejected = new Counter({
      name: `${prefix}events_rejected_total`,
      help: 'Events refused before dispatch (malformed subject or payload), by reason.',
      labelNames: ['reason'],
      registers,
    });
    this.routeCopyMisses = new Counter({
      name: `${prefix}route_copy_misses_total`,
      help: 'Events delivered from a remembered copy of their route that turned out stale before the ack, and were looked up again.',
      registers,
    });
    this.eventDeliveryLatency = new Histogram({
      name: `${prefix}event_delivery_latency_seconds`,
      help: 'From event publish to the socket write on this pod.',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    });
    this.slowConsumerCloses = new Counter({
      name: `${prefix}slow_consumer_closes_total`,
      help: 'Connections closed with 4408 because their send buffer passed the ceiling.',
      registers,
    });
    this.rateLimitHits = new Counter({
      name: `${prefix}rate_limit_hits_total`,
      help: 'Client messages refused by the per-connection rate limit.',
      registers,
    });
    this.badFrames = new Counter({
      name: `${prefix}bad_frames_total`,
      help: 'Client frames answered with BadRequest.',
      registers,
    });
    this.redisOpDuration = new Histogram({
      name: `${prefix}redis_op_duration_seconds`,
      help: 'Redis operations by name and outcome.',
      labelNames: ['op', 'outcome'],
      buckets: STORE_OP_BUCKETS,
      registers,
    });
    this.natsOpDuration = new Histogram({
      name: `${prefix}nats_op_duration_seconds`,
      help: 'NATS requests (JetStream publish, stream and consumer info) by name and outcome.',
      labelNames: ['op', 'outcome'],
      buckets: STORE_OP_BUCKETS,
      registers,
    });
    this.redisUp = new Gauge({
      name: `${prefix}redis_up`,
      help: '1 while Redis answers, 0 otherwise (only with REDIS_URL).',
      registers,
    });
    this.sessionAcquisitions = new Counter({
      name: `${prefix}session_acquisitions_total`,
      help: 'Session acquisitions by result (acquired, unavailable).',
      labelNames: ['result'],
      registers,
    });
    this.sessionTakeovers = new Counter({
      name: `${prefix}session_takeovers_total`,
      help: 'Acquisitions that replaced a live connection (possibly on another pod).',
      registers,
    });
    this.leaseLosses = new Counter({
      name: `${prefix}session_lease_losses_total`,
      help: 'Sessions closed because their lease lapsed (1012) or another connection held it (4402).',
      labelNames: ['reason'],
      registers,
    });
    this.routesHeld = new Gauge({
      name: `${prefix}routes_held`,
      help: 'Routes this pod holds in the registry.',
      registers,
    });
    this.eventsRedelivered = new Counter({
      name: `${prefix}events_redelivered_total`,
      help: 'NATS messages received again after a nak or an ack timeout.',
      registers,
    });
    this.natsUp = new Gauge({
      name: `${prefix}nats_up`,
      help: '1 while connected to NATS, 0 otherwise (only with NATS_URL).',
      registers,
    });
    this.natsConsuming = new Gauge({
      name: `${prefix}nats_consuming`,
      help: '1 while the pod has a pull set up on the shared JetStream consumer, 0 while it makes a lost stream or consumer again (only with NATS_URL).',
      registers,
    });
    this.consumerPending = new Gauge({
      name: `${prefix}consumer_pending`,
      help: 'Messages of the shared JetStream consumer: pending delivery, or delivered and not yet acked.',
      labelNames: ['kind'],
      registers,
    });
    this.grpcForwardDuration = new Histogram({
      name: `${prefix}grpc_forward_duration_seconds`,
      help: 'Pod-to-pod pushes (one batch each), by outcome.',
      labelNames: ['outcome'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    });
    this.grpcForwardErrors = new Counter({
      name: `${prefix}grpc_forward_errors_total`,
      help: 'Failed pod-to-pod pushes by peer and reason (deadline, unavailable, breaker-open, error).',
      labelNames: ['peer', 'reason'],
      registers,
    });
    this.breakerState = new Gauge({
      name: `${prefix}breaker_state`,
      help: 'Circuit breaker per peer pod: 0 closed, 1 half-open, 2 open.',
      labelNames: ['peer'],
      registers,
    });
    // The event-loop lag histogram samples on a timer; prom-client's default of every 10 ms wakes an
    // idle pod 100 times a second, which cost it 2% of a core. Every 100 ms still gives each
    // 15-second scrape 150 samples.
    collectDefaultMetrics({ register: this.registry, prefix, eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS });
  }
}
