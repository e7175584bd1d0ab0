import { isIPv6 } from 'node:net';
import { isDeepStrictEqual } from 'node:util';
import { Acceptor } from './acceptor/Acceptor.js';
import { AdminApi } from './admin/AdminApi.js';
import { Authenticator } from './auth/Authenticator.js';
import { parseAesKeys, TokenCodec } from './auth/tokenCodec.js';
import { podIdOf } from './config/load.js';
import type { Config } from './config/schema.js';
import { Dispatch } from './dispatch/Dispatch.js';
import type { Engine } from './engine/Engine.js';
import { LocalEngine } from './engine/LocalEngine.js';
import { LocalEventSource } from './engine/LocalEventSource.js';
import { channelCredentials, serverCredentials } from './forwarder/credentials.js';
import { ForwardServer } from './forwarder/ForwardServer.js';
import { PeerForwarder } from './forwarder/PeerForwarder.js';
import type { EventSource } from './ingest/EventSource.js';
import { NatsEventSource } from './ingest/NatsEventSource.js';
import { CloseCode } from './errors.js';
import type { Logger } from './log.js';
import { Metrics } from './metrics.js';
import { RedisEngine } from './redis/RedisEngine.js';

/** Configuration sections a running pod cannot change: a reload reports them instead. */
const RESTART_ONLY = [
  'server', 'admin', 'grpc', 'pod', 'redis', 'nats', 'cluster', 'auth', 'tls', 'metrics', 'websocket', 'sessions', 'lifecycle',
] as const satisfies ReadonlyArray<keyof Config>;

/**
 * Of SHUTDOWN_TIMEOUT_MS, the steps after the drain keep at least this much: the gRPC server's grace
 * and the Redis commands that release sessions, routes and heartbeat. A drain that ran into it would
 * leave them to lapse with their leases instead.
 */
const AFTER_DRAIN_RESERVE_MS = 2000;

/** The ports a started gateway listens on. */
export interface BoundPorts {
  readonly public: number;
  readonly admin: number;
}

/** One pod: builds every part from the configuration, starts them in order and stops them in reverse. */
export class Gateway {
  readonly podId: string;
  readonly codecs: { readonly user: TokenCodec; readonly admin: TokenCodec };
  readonly #log: Logger;
  readonly #config: Config;
  readonly #engine: Engine;
  readonly #events: EventSource;
  /** Pod-to-pod forwarding exists only with a shared engine (Redis), where other pods can own routes. */
  readonly #forwarding: { readonly server: ForwardServer; readonly client: PeerForwarder } | undefined;
  readonly #dispatch: Dispatch;
  readonly #acceptor: Acceptor;
  readonly #admin: AdminApi;
  #ready = false;
  #stopping: Promise<void> | undefined;

  constructor(config: Config, log: Logger) {
    this.#config = config;
    this.#log = log;
    this.podId = podIdOf(config);
    const metrics = new Metrics(config.metrics.prefix);
    this.codecs = {
      user: new TokenCodec(parseAesKeys(config.auth.tokenAesKeys)),
      admin: new TokenCodec(parseAesKeys(config.auth.adminTokenAesKeys)),
    };
    // The acceptor needs the engine, so it comes later; the engine asks for the count only once running.
    const engine = createEngine(config, this.podId, () => this.#acceptor.connections.size, metrics, log);
    this.#engine = engine;
    const { sessions, routes } = engine;
    const authenticator = new Authenticator(
      {
        user: { apiKey: config.auth.secretToken, codec: this.codecs.user },
        admin: { apiKey: config.auth.adminSecretToken, codec: this.codecs.admin },
      },
      engine.tokenCache,
      config.auth.tokenCacheTtlMs,
    );
    this.#acceptor = new Acceptor(
      {
        host: config.server.host,
        port: config.server.port,
        tls: config.tls,
        maxFrameBytes: config.websocket.maxFrameBytes,
        heartbeatIntervalMs: config.websocket.heartbeatIntervalMs,
        allowedOrigins: config.websocket.allowedOrigins,
        compression: config.websocket.compression,
        rejectBeforeUpgrade: config.auth.rejectBeforeUpgrade,
        limits: {
          sendBufferBytes: config.websocket.sendBufferBytes,
          messagesPerSecond: config.limits.messagesPerSecond,
          messageBurst: config.limits.messageBurst,
          badFramesPerMinute: config.limits.badFramesPerMinute,
        },
      },
      { authenticator, sessions, routes, metrics, log: log.child({ part: 'acceptor' }), isReady: () => this.#ready && engine.isHealthy() && this.#events.isHealthy() },
    );
    // Across pods, an owner that died stays an owner until its heartbeat's lease runs out.
    const ownerGoneAfterMs = engine.name === 'in-process' ? 0 : config.cluster.leaseMs;
    this.#events =
      config.nats.url === ''
        ? new LocalEventSource()
        : new NatsEventSource({ ...config.nats, ownerGoneAfterMs }, this.podId, metrics, log.child({ part: 'ingest' }));
    const peers =
      engine.name === 'in-process'
        ? undefined
        : new PeerForwarder(
            { deadlineMs: config.grpc.deadlineMs, breakerResetMs: config.grpc.breakerResetMs, credentials: channelCredentials(config.grpc) },
            metrics,
            log.child({ part: 'forwarder' }),
          );
    this.#dispatch = new Dispatch(
      { routes, local: this.#acceptor.connections, podId: this.podId, peers, ledger: engine.deliveryLedger },
      metrics,
      log.child({ part: 'dispatch' }),
    );
    const dispatch = this.#dispatch;
    this.#forwarding =
      peers === undefined
        ? undefined
        : {
            client: peers,
            server: new ForwardServer(
              { host: isIPv6(config.pod.ip) ? '::' : '0.0.0.0', port: config.grpc.port },
              serverCredentials(config.grpc),
              (events) => dispatch.deliverFromPeer(events),
              log.child({ part: 'grpc' }),
            ),
          };
    this.#admin = new AdminApi(config.admin, {
      authenticator,
      codecs: this.codecs,
      events: this.#events,
      sessions,
      pods: engine.pods,
      registry: metrics.registry,
      log: log.child({ part: 'admin' }),
    });
  }

  /** Starts every part in order; /ready turns 200 last. */
  async start(): Promise<BoundPorts> {
    await this.#engine.start();
    await this.#events.start(this.#dispatch.handle);
    await this.#forwarding?.server.start();
    const admin = await this.#admin.start();
    const publicPort = await this.#acceptor.start();
    this.#ready = true;
    this.#log.info({ port: publicPort, admin_port: admin, engine: this.#engine.name }, 'gateway ready');
    return { public: publicPort, admin };
  }

  /**
   * Applies what a configuration reload may change while running: the log level and the
   * per-connection rate limits. Answers the sections that changed but need a restart.
   */
  reload(next: Config): string[] {
    this.#log.level = next.log.level;
    this.#acceptor.reloadLimits(next.limits);
    return RESTART_ONLY.filter((section) => !isDeepStrictEqual(next[section], this.#config[section]));
  }

  /**
   * Drains and stops: not ready, stop accepting, stop events, close connections with 1001, by
   * `deadline` (SHUTDOWN_TIMEOUT_MS from now unless given). Idempotent.
   */
  stop(deadline = Date.now() + this.#config.lifecycle.shutdownTimeoutMs): Promise<void> {
    return (this.#stopping ??= this.#stop(deadline));
  }

  async #stop(deadline: number): Promise<void> {
    this.#ready = false;
    const steps: ReadonlyArray<readonly [string, () => unknown]> = [
      ['stop accepting', () => this.#acceptor.stopAccepting()],
      ['stop events', () => this.#events.stop()],
      [
        'close connections',
        // The drain gets what the steps before it left, less what the steps after it need.
        () => this.#acceptor.closeAll(CloseCode.GoingAway, 'going-away', this.#config.lifecycle.drainWindowMs, Math.max(0, deadline - Date.now() - AFTER_DRAIN_RESERVE_MS)),
      ],
      ['stop acceptor', () => this.#acceptor.stop()],
      // Before the last routes are released (DESIGN.md §9 has it after): a push answered now would
      // reach no connection yet count as delivered, so its event would be acked; refused, it is
      // retried and finds the pod its client reconnected to.
      ['stop gRPC server', () => this.#forwarding?.server.stop()],
      ['close peer channels', () => this.#forwarding?.client.stop()],
      ['release sessions and routes', () => this.#engine.stop()],
      ['stop admin API', () => this.#admin.stop()],
    ];
    // Each step runs even when an earlier one failed, so one fault does not leave the rest open.
    for (const [name, step] of steps) {
      try {
        await step();
      } catch (err) {
        this.#log.error({ err, step: name }, 'shutdown step failed');
      }
    }
    this.#log.info('gateway stopped');
  }
}

/** The in-process engine on a bare machine; Redis when REDIS_URL is set. */
function createEngine(config: Config, podId: string, connectionCount: () => number, metrics: Metrics, log: Logger): Engine {
  const maxDevices = config.sessions.multiDevice ? config.sessions.maxDevicesPerIdentity : 1;
  if (config.redis.url === '') return new LocalEngine(podId, maxDevices, connectionCount);
  return new RedisEngine(
    {
      redis: config.redis,
      lease: config.cluster,
      podId,
      maxDevices,
      connectionCount,
      // Retries of one event span at most maxDeliver nak delays, or ack waits when a pod stalls.
      ledgerTtlMs: config.nats.maxDeliver * Math.max(config.nats.nakDelayMs, config.nats.ackWaitMs),
    },
    metrics,
    log,
  );
}

