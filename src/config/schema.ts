import type { Schema } from 'convict';

/** The shape of a validated configuration; see `schema` for names, defaults and environment variables. */
export interface Config {
  readonly env: 'production' | 'development' | 'test';
  readonly configFile: string;
  readonly server: { readonly host: string; readonly port: number };
  readonly admin: { readonly host: string; readonly port: number };
  readonly grpc: {
    readonly port: number;
    readonly deadlineMs: number;
    readonly breakerResetMs: number;
    readonly tlsCaFile: string;
    readonly tlsCertFile: string;
    readonly tlsKeyFile: string;
  };
  readonly pod: { readonly ip: string };
  readonly redis: { readonly url: string; readonly commandTimeoutMs: number; readonly tlsCaFile: string };
  readonly cluster: { readonly leaseMs: number; readonly renewIntervalMs: number };
  readonly nats: {
    readonly url: string;
    readonly stream: string;
    readonly consumer: string;
    readonly ackWaitMs: number;
    readonly maxDeliver: number;
    readonly nakDelayMs: number;
    readonly deadLetterSubject: string;
    readonly maxInFlight: number;
    readonly tlsCaFile: string;
    readonly credsFile: string;
  };
  readonly auth: {
    readonly secretToken: string;
    readonly adminSecretToken: string;
    readonly tokenAesKeys: readonly string[];
    readonly adminTokenAesKeys: readonly string[];
    readonly tokenCacheTtlMs: number;
    readonly rejectBeforeUpgrade: boolean;
  };
  readonly tls: { readonly certFile: string; readonly keyFile: string };
  readonly log: { readonly level: string };
  readonly metrics: { readonly prefix: string };
  readonly websocket: {
    readonly maxFrameBytes: number;
    readonly sendBufferBytes: number;
    readonly heartbeatIntervalMs: number;
    readonly allowedOrigins: readonly string[];
    readonly compression: boolean;
  };
  readonly limits: {
    readonly messagesPerSecond: number;
    readonly messageBurst: number;
    readonly badFramesPerMinute: number;
  };
  readonly sessions: { readonly multiDevice: boolean; readonly maxDevicesPerIdentity: number };
  readonly lifecycle: { readonly drainWindowMs: number; readonly shutdownTimeoutMs: number };
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

const port = (doc: string, def: number, envName: string, arg: string) => ({
  doc,
  format: 'tcp-port',
  default: def,
  env: envName,
  arg,
});

/** Convict schema: every key, its default, environment variable and flag. The README documents the same table. */
export const schema: Schema<Config> = {
  env: {
    doc: 'Run mode; production requires all keys to be configured.',
    format: ['production', 'development', 'test'],
    default: 'development',
    env: 'NODE_ENV',
  },
  configFile: {
    doc: 'YAML file with any of these keys (nested as in this schema).',
    format: String,
    default: '',
    env: 'CONFIG_FILE',
    arg: 'config',
  },
  server: {
    host: { doc: 'Public listener address.', format: String, default: '0.0.0.0', env: 'HOST', arg: 'host' },
    port: port('Public listener (WebSocket, /health, /ready).', 8080, 'PORT', 'port'),
  },
  admin: {
    host: { doc: 'Admin listener address.', format: String, default: '0.0.0.0', env: 'ADMIN_HOST', arg: 'admin-host' },
    port: port('Admin listener (/metrics, token minting, connection admin).', 9090, 'ADMIN_PORT', 'admin-port'),
  },
  grpc: {
    port: port('Pod-to-pod gRPC listener.', 50051, 'GRPC_PORT', 'grpc-port'),
    deadlineMs: { doc: 'How long a peer may leave pushes unanswered (no reply at all) before it counts as hung.', format: 'duration-ms', default: 1000, env: 'GRPC_DEADLINE_MS' },
    breakerResetMs: { doc: 'How long a peer circuit stays open before one trial push.', format: 'duration-ms', default: 2000, env: 'BREAKER_RESET_MS' },
    tlsCaFile: { doc: 'PEM CA for pod-to-pod mTLS; with the cert and key below, pods only talk to peers it signed.', format: String, default: '', env: 'GRPC_TLS_CA_FILE' },
    tlsCertFile: { doc: "PEM certificate of this pod for pod-to-pod mTLS (its SAN must cover POD_IP).", format: String, default: '', env: 'GRPC_TLS_CERT_FILE' },
    tlsKeyFile: { doc: 'PEM private key for GRPC_TLS_CERT_FILE.', format: String, default: '', env: 'GRPC_TLS_KEY_FILE' },
  },
  pod: {
    ip: { doc: "This pod's routable address (IP or host name); pod id is POD_IP:GRPC_PORT.", format: 'pod-address', default: '127.0.0.1', env: 'POD_IP', arg: 'pod-ip' },
  },
  redis: {
    url: { doc: 'redis://host:port/db; empty runs the in-process engine.', format: String, default: '', env: 'REDIS_URL', arg: 'redis-url' },
    commandTimeoutMs: { doc: 'A Redis command slower than this fails (a hung Redis is treated as unreachable).', format: 'duration-ms', default: 1000, env: 'REDIS_COMMAND_TIMEOUT_MS' },
    tlsCaFile: { doc: 'PEM CA that signed the Redis server certificate (with a rediss:// URL).', format: String, default: '', env: 'REDIS_TLS_CA_FILE' },
  },
  cluster: {
    leaseMs: { doc: 'Lease of session locks, route entries and pod heartbeats in Redis.', format: 'duration-ms', default: 30_000, env: 'LEASE_TTL_MS' },
    renewIntervalMs: { doc: 'How often leases are renewed; at most a third of LEASE_TTL_MS.', format: 'duration-ms', default: 10_000, env: 'LEASE_RENEW_INTERVAL_MS' },
  },
  nats: {
    url: { doc: 'nats://host:port[,...] (or tls://); empty means events arrive only through /admin/publish.', format: String, default: '', env: 'NATS_URL', arg: 'nats-url' },
    stream: { doc: 'JetStream stream holding websocket.> (created when missing).', format: 'nats-name', default: 'wa_stream', env: 'NATS_STREAM' },
    consumer: { doc: 'Durable pull consumer shared by every pod (created when missing).', format: 'nats-name', default: 'ws_fanout', env: 'NATS_CONSUMER' },
    ackWaitMs: { doc: 'Ack wait of a consumer we create: an unacked event is redelivered after it.', format: 'duration-ms', default: 30_000, env: 'NATS_ACK_WAIT_MS' },
    maxDeliver: { doc: 'Deliveries of one event before it is counted as dead.', format: 'positive-int', default: 20, env: 'NATS_MAX_DELIVER' },
    nakDelayMs: { doc: 'Delay before an event whose owner could not be reached is redelivered.', format: 'duration-ms', default: 1000, env: 'NATS_NAK_DELAY_MS' },
    deadLetterSubject: { doc: 'Where dead events are published (empty: only counted and logged); must be outside the stream.', format: String, default: '', env: 'NATS_DEAD_LETTER_SUBJECT' },
    maxInFlight: { doc: 'Events a pod handles at once.', format: 'positive-int', default: 512, env: 'NATS_MAX_IN_FLIGHT' },
    tlsCaFile: { doc: 'PEM CA that signed the NATS server certificate; set it to require TLS.', format: String, default: '', env: 'NATS_TLS_CA_FILE' },
    credsFile: { doc: 'NATS credentials file (JWT and NKey seed) to authenticate with.', format: String, default: '', env: 'NATS_CREDS_FILE', sensitive: true },
  },
  auth: {
    secretToken: { doc: 'API key for user connections and /generate-token.', format: String, default: '', env: 'SECRET_TOKEN', sensitive: true },
    adminSecretToken: { doc: 'API key for admin connections and /admin/*.', format: String, default: '', env: 'ADMIN_SECRET_TOKEN', sensitive: true },
    tokenAesKeys: { doc: 'User token keys, 64 hex chars each, comma-separated; the first mints.', format: 'aes-key-list', default: [], env: 'TOKEN_AES_KEY', sensitive: true },
    adminTokenAesKeys: { doc: 'Admin token keys, 64 hex chars each, comma-separated; the first mints.', format: 'aes-key-list', default: [], env: 'ADMIN_TOKEN_AES_KEY', sensitive: true },
    tokenCacheTtlMs: { doc: 'How long a verified token is cached (never past its expiry).', format: 'duration-ms', default: 30_000, env: 'TOKEN_CACHE_TTL_MS' },
    rejectBeforeUpgrade: { doc: 'Answer auth failures with an HTTP status instead of an error frame and close code.', format: 'switch', default: false, env: 'REJECT_BEFORE_UPGRADE' },
  },
  tls: {
    certFile: { doc: 'PEM certificate; with TLS_KEY_FILE the public listener speaks wss.', format: String, default: '', env: 'TLS_CERT_FILE' },
    keyFile: { doc: 'PEM private key for TLS_CERT_FILE.', format: String, default: '', env: 'TLS_KEY_FILE' },
  },
  log: {
    level: { doc: 'pino log level.', format: LOG_LEVELS, default: 'info', env: 'LOG_LEVEL', arg: 'log-level' },
  },
  metrics: {
    prefix: { doc: 'Prefix of every Prometheus metric name.', format: 'metric-prefix', default: 'switchboard_', env: 'METRICS_PREFIX' },
  },
  websocket: {
    maxFrameBytes: { doc: 'Largest client frame; larger ones close the connection with 1009.', format: 'byte-size', default: 64 * 1024, env: 'MAX_FRAME_BYTES' },
    sendBufferBytes: { doc: 'Send-buffer ceiling per connection; past it the client is closed with 4408.', format: 'byte-size', default: 1024 * 1024, env: 'SEND_BUFFER_BYTES' },
    heartbeatIntervalMs: { doc: 'Ping interval; a connection that misses two pongs is closed.', format: 'duration-ms', default: 20_000, env: 'HEARTBEAT_INTERVAL_MS' },
    allowedOrigins: { doc: 'Comma-separated Origin allow-list; empty allows any origin.', format: 'string-list', default: [], env: 'ALLOWED_ORIGINS' },
    compression: { doc: 'Offer permessage-deflate.', format: 'switch', default: false, env: 'WS_COMPRESSION' },
  },
  limits: {
    messagesPerSecond: { doc: 'Client messages per second per connection (sustained).', format: 'positive-int', default: 10, env: 'RATE_LIMIT_PER_SECOND' },
    messageBurst: { doc: 'Client message burst per connection.', format: 'positive-int', default: 20, env: 'RATE_LIMIT_BURST' },
    badFramesPerMinute: { doc: 'Malformed frames tolerated per minute before closing with 4400.', format: 'positive-int', default: 10, env: 'BAD_FRAME_LIMIT' },
  },
  sessions: {
    multiDevice: { doc: 'Allow several connections per identity instead of newest-wins.', format: 'switch', default: false, env: 'MULTI_DEVICE' },
    maxDevicesPerIdentity: { doc: 'With MULTI_DEVICE, live connections per identity; the oldest is replaced past it.', format: 'positive-int', default: 5, env: 'MAX_DEVICES_PER_IDENTITY' },
  },
  lifecycle: {
    drainWindowMs: { doc: 'On SIGTERM, connections are closed with 1001 spread over this window, so clients do not all reconnect at once.', format: 'duration-ms', default: 10_000, env: 'DRAIN_WINDOW_MS' },
    shutdownTimeoutMs: { doc: 'Deadline for a graceful stop after SIGTERM; then the process exits anyway.', format: 'duration-ms', default: 25_000, env: 'SHUTDOWN_TIMEOUT_MS' },
  },
};
