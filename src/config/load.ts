import { randomBytes } from 'node:crypto';
import { accessSync, constants } from 'node:fs';
import { isIP, isIPv6 } from 'node:net';
import convict from 'convict';
import YAML from 'yaml';
import { schema, type Config } from './schema.js';

const HEX_KEY = /^[0-9a-fA-F]{64}$/;
/** What a client can send in an X-API-Key header or a query parameter and have arrive unchanged. */
const SENDABLE_API_KEY = /^[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?$/;
/** A NATS subject one can publish to: tokens of no whitespace or wildcard, joined by dots. */
const PUBLISH_SUBJECT = /^[^\s.*>]+(\.[^\s.*>]+)*$/;
/** An Origin header as browsers send it (RFC 6454 serialization): lower-case scheme and host, no path. */
const ORIGIN = /^[a-z][a-z0-9+.-]*:\/\/[^\s/?#A-Z]+$/;
/** DESIGN.md §3: a verified token is cached for at most 30 s. */
const MAX_TOKEN_CACHE_TTL_MS = 30_000;

convict.addFormat({
  name: 'aes-key-list',
  validate(value: unknown) {
    if (!Array.isArray(value)) throw new Error('must be a comma-separated list of 64-hex-char keys');
    value.forEach((key: unknown, i) => {
      if (typeof key !== 'string' || !HEX_KEY.test(key)) {
        throw new Error(`key #${i + 1} must be exactly 64 hex characters (32 bytes)`);
      }
    });
  },
  coerce: (value: unknown) =>
    typeof value === 'string' ? value.split(',').map((k) => k.trim()).filter((k) => k !== '') : value,
});

// Environment values are text; only plain decimal digits become numbers, so "0x10" or "1e3" are errors.
const toInteger = (value: unknown) => (typeof value === 'string' && /^\s*\d+\s*$/.test(value) ? Number(value) : value);

convict.addFormat({
  name: 'positive-int',
  validate(value: unknown) {
    // Past 2^53 digits no longer parse to the number written.
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) throw new Error(`must be a whole number from 1 to ${Number.MAX_SAFE_INTEGER}`);
  },
  coerce: toInteger,
});

/** uWebSockets.js keeps its frame and send-buffer limits (4 × these) in 32-bit integers. */
const MAX_BYTE_SIZE = 256 * 1024 * 1024;

convict.addFormat({
  name: 'byte-size',
  validate(value: unknown) {
    if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0 || value > MAX_BYTE_SIZE) {
      throw new Error(`must be a whole number of bytes from 1 to ${MAX_BYTE_SIZE} (256 MiB)`);
    }
  },
  coerce: toInteger,
});

/** Node runs a timer set past 2^31 - 1 ms after 1 ms; this leaves room for the margins added to some. */
const MAX_DURATION_MS = 2_000_000_000;

convict.addFormat({
  name: 'duration-ms',
  validate(value: unknown) {
    if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0 || value > MAX_DURATION_MS) {
      throw new Error(`must be a whole number of milliseconds from 1 to ${MAX_DURATION_MS}`);
    }
  },
  coerce: toInteger,
});

convict.addFormat({
  name: 'tcp-port',
  validate(value: unknown) {
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > 65535) {
      throw new Error('must be a whole number from 0 to 65535 (0 picks a free port)');
    }
  },
  coerce: toInteger,
});

// convict's Boolean reads every string but "false" as true; an operator writing 0 or no means false.
const BOOLEAN_WORDS: Readonly<Record<string, boolean>> = { true: true, false: false, '1': true, '0': false, yes: true, no: false, on: true, off: false };

convict.addFormat({
  name: 'switch',
  validate(value: unknown) {
    if (typeof value !== 'boolean') throw new Error('must be true or false (also accepted: 1/0, yes/no, on/off)');
  },
  coerce: (value: unknown) => (typeof value === 'string' ? BOOLEAN_WORDS[value.trim().toLowerCase()] ?? value : value),
});

convict.addFormat({
  name: 'string-list',
  validate(value: unknown) {
    if (!Array.isArray(value) || value.some((item) => typeof item !== 'string')) throw new Error('must be a comma-separated list');
  },
  coerce: (value: unknown) =>
    typeof value === 'string' ? value.split(',').map((item) => item.trim()).filter((item) => item !== '') : value,
});

convict.addFormat({
  name: 'metric-prefix',
  validate(value: unknown) {
    if (typeof value !== 'string' || !/^[a-zA-Z_:][a-zA-Z0-9_:]*$/.test(value)) {
      throw new Error('must be a valid Prometheus metric name prefix ([a-zA-Z_:][a-zA-Z0-9_:]*)');
    }
  },
});

convict.addFormat({
  name: 'nats-name',
  validate(value: unknown) {
    if (typeof value !== 'string' || !/^[A-Za-z0-9_-]{1,64}$/.test(value)) throw new Error('must be 1-64 letters, digits, "_" or "-"');
  },
});

/** A host name (Compose service names may hold "_") made of dot-separated labels. */
const HOST_NAME = /^[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*$/;

convict.addFormat({
  name: 'pod-address',
  validate(value: unknown) {
    if (typeof value !== 'string' || (isIP(value) === 0 && !HOST_NAME.test(value))) {
      throw new Error('must be an IP address or a host name, without a port (the pod id adds GRPC_PORT)');
    }
  },
});

convict.addParser({
  extension: ['yml', 'yaml'],
  parse: (text: string) => {
    const doc: unknown = YAML.parse(text);
    if (doc === null || doc === undefined) return {};
    if (typeof doc !== 'object' || Array.isArray(doc)) throw new Error('the top level must be a mapping of keys');
    return doc;
  },
});

/** Start-up configuration errors, one line per bad key, meant to be printed as they are. */
export class ConfigError extends Error {
  constructor(readonly lines: readonly string[]) {
    super(lines.join('\n'));
    this.name = 'ConfigError';
  }
}

/** A loaded configuration plus the names of the keys that were generated for this run (development only). */
export interface LoadedConfig {
  readonly config: Config;
  readonly generatedKeys: readonly string[];
}

/** The pod's id, POD_IP:GRPC_PORT: its gRPC address, dialled by its peers (an IPv6 address in brackets). */
export function podIdOf(config: Config): string {
  const { ip } = config.pod;
  return `${isIPv6(ip) ? `[${ip}]` : ip}:${config.grpc.port}`;
}

/**
 * Reads flags, environment and the YAML file (in that precedence), validates strictly and freezes.
 * On a reload, pass the running configuration: keys generated for it are kept, not generated anew.
 */
export function loadConfig(args: readonly string[], env: NodeJS.ProcessEnv, running?: LoadedConfig): LoadedConfig {
  const envNames = collectEnvNames(schema);
  const flagLines = unknownFlags(args);
  if (flagLines.length > 0) throw new ConfigError(flagLines);
  const store = convict(schema, { args: [...args], env });
  const file = store.get('configFile');
  if (file !== '') {
    try {
      store.loadFile(file);
    } catch (err) {
      throw new ConfigError([`CONFIG_FILE (configFile): cannot load ${file}: ${firstLine(err)}`]);
    }
  }
  const lines: string[] = [];
  try {
    store.validate({ allowed: 'strict' });
  } catch (err) {
    lines.push(
      ...String(err instanceof Error ? err.message : err)
        .split('\n')
        .filter((line) => line.trim() !== '')
        .map((line) => withEnvName(line, envNames, file)),
    );
  }
  const config = store.getProperties();
  // Cross-key checks only make sense on values that passed; missing keys are reported either way.
  if (lines.length === 0) lines.push(...crossChecks(config));
  const production = config.env === 'production';
  if (production) lines.push(...missingKeyLines(config));
  if (lines.length > 0) throw new ConfigError(lines);
  const generatedKeys = production ? [] : generateMissingKeys(config, running);
  return { config: deepFreeze(config), generatedKeys };
}

/**
 * The files settings name that this process cannot read, one line each. Checked at start-up rather
 * than in loadConfig: the files are often mounted only where the pod runs.
 */
export function unreadableFiles(config: Config): string[] {
  const named: ReadonlyArray<readonly [string, string]> = [
    ['TLS_CERT_FILE', config.tls.certFile],
    ['TLS_KEY_FILE', config.tls.keyFile],
    ['GRPC_TLS_CA_FILE', config.grpc.tlsCaFile],
    ['GRPC_TLS_CERT_FILE', config.grpc.tlsCertFile],
    ['GRPC_TLS_KEY_FILE', config.grpc.tlsKeyFile],
    ['REDIS_TLS_CA_FILE', config.redis.tlsCaFile],
    ['NATS_TLS_CA_FILE', config.nats.tlsCaFile],
    ['NATS_CREDS_FILE', config.nats.credsFile],
  ];
  const lines: string[] = [];
  for (const [name, file] of named) {
    if (file === '') continue;
    try {
      accessSync(file, constants.R_OK);
    } catch (err) {
      lines.push(`${name}: cannot read ${file}: ${firstLine(err)}`);
    }
  }
  return lines;
}

/** convict ignores flags it does not know; a misspelled flag should stop start-up like a misspelled file key. */
function unknownFlags(args: readonly string[]): string[] {
  const known = new Set(collectFlags(schema));
  return args
    .filter((arg) => arg.startsWith('--'))
    .map((arg) => arg.slice(2).split('=')[0] ?? '')
    .filter((name) => !known.has(name))
    .map((name) => `--${name}: unknown flag (known: ${[...known].map((f) => `--${f}`).join(', ')})`);
}

const KEY_ENV: ReadonlyArray<readonly [string, (c: Config) => string | readonly string[]]> = [
  ['SECRET_TOKEN', (c) => c.auth.secretToken],
  ['ADMIN_SECRET_TOKEN', (c) => c.auth.adminSecretToken],
  ['TOKEN_AES_KEY', (c) => c.auth.tokenAesKeys],
  ['ADMIN_TOKEN_AES_KEY', (c) => c.auth.adminTokenAesKeys],
];

function missingKeyLines(config: Config): string[] {
  return KEY_ENV.filter(([, read]) => isBlank(read(config))).map(
    ([name]) => `${name}: required when NODE_ENV=production`,
  );
}

/** Fills empty keys with random ones so a bare `npm start` works; returns the env names it filled. */
function generateMissingKeys(config: Config, running: LoadedConfig | undefined): string[] {
  const mutable = config as { auth: Record<string, unknown> };
  const generated: string[] = [];
  const fill = (name: string, field: 'secretToken' | 'adminSecretToken' | 'tokenAesKeys' | 'adminTokenAesKeys', value: string | string[]) => {
    const current = mutable.auth[field];
    if ((typeof current === 'string' || Array.isArray(current)) && isBlank(current)) {
      // A reload keeps what was generated at start: new keys would void every token and client URL.
      mutable.auth[field] = running?.generatedKeys.includes(name) === true ? running.config.auth[field] : value;
      generated.push(name);
    }
  };
  fill('SECRET_TOKEN', 'secretToken', randomBytes(18).toString('base64url'));
  fill('ADMIN_SECRET_TOKEN', 'adminSecretToken', randomBytes(18).toString('base64url'));
  fill('TOKEN_AES_KEY', 'tokenAesKeys', [randomBytes(32).toString('hex')]);
  fill('ADMIN_TOKEN_AES_KEY', 'adminTokenAesKeys', [randomBytes(32).toString('hex')]);
  return generated;
}

function isBlank(value: string | readonly string[]): boolean {
  return typeof value === 'string' ? value.trim() === '' : value.length === 0;
}

function crossChecks(config: Config): string[] {
  const lines: string[] = [];
  const { secretToken, adminSecretToken, tokenAesKeys, adminTokenAesKeys } = config.auth;
  if (secretToken !== '' && secretToken === adminSecretToken) {
    lines.push('ADMIN_SECRET_TOKEN: must differ from SECRET_TOKEN, or the user key would open the admin API');
  }
  for (const [name, key] of [['SECRET_TOKEN', secretToken], ['ADMIN_SECRET_TOKEN', adminSecretToken]] as const) {
    // Clients send it in a header or a URL: one that could never arrive as written would refuse every client.
    if (key !== '' && !SENDABLE_API_KEY.test(key)) {
      lines.push(`${name}: must be printable ASCII without leading or trailing whitespace (a trailing newline from a secret file?), or no client could send it`);
    }
  }
  const shared = tokenAesKeys.find((key) => adminTokenAesKeys.some((adminKey) => adminKey.toLowerCase() === key.toLowerCase()));
  if (shared !== undefined) lines.push('ADMIN_TOKEN_AES_KEY: must not share a key with TOKEN_AES_KEY: user and admin tokens are sealed with different keys');
  const ports = [
    ['PORT', config.server.port],
    ['ADMIN_PORT', config.admin.port],
    ['GRPC_PORT', config.grpc.port],
  ] as const;
  for (let i = 0; i < ports.length; i++) {
    for (let j = i + 1; j < ports.length; j++) {
      const [a, pa] = ports[i]!;
      const [b, pb] = ports[j]!;
      if (pa !== 0 && pa === pb) lines.push(`${b}: ${pb} is already used by ${a}`);
    }
  }
  if ((config.tls.certFile === '') !== (config.tls.keyFile === '')) {
    lines.push('TLS_CERT_FILE / TLS_KEY_FILE: set both or neither');
  }
  const grpcTls = [config.grpc.tlsCaFile, config.grpc.tlsCertFile, config.grpc.tlsKeyFile].filter((file) => file !== '');
  if (grpcTls.length !== 0 && grpcTls.length !== 3) {
    lines.push('GRPC_TLS_CA_FILE / GRPC_TLS_CERT_FILE / GRPC_TLS_KEY_FILE: set all three (mutual TLS) or none');
  }
  if (config.limits.messageBurst < config.limits.messagesPerSecond) {
    lines.push('RATE_LIMIT_BURST: must be at least RATE_LIMIT_PER_SECOND');
  }
  if (config.redis.url !== '' && !/^rediss?:\/\//.test(config.redis.url)) {
    lines.push('REDIS_URL: must start with redis:// or rediss://');
  }
  if (config.redis.url !== '' && config.grpc.port === 0) {
    lines.push('GRPC_PORT: must be a fixed port with REDIS_URL: other pods reach this one at POD_IP:GRPC_PORT');
  }
  if (config.auth.tokenCacheTtlMs > MAX_TOKEN_CACHE_TTL_MS) {
    lines.push(`TOKEN_CACHE_TTL_MS: at most ${MAX_TOKEN_CACHE_TTL_MS}: a verified token may be trusted from the cache for 30 s at most`);
  }
  if (config.lifecycle.drainWindowMs >= config.lifecycle.shutdownTimeoutMs) {
    lines.push('DRAIN_WINDOW_MS: must be shorter than SHUTDOWN_TIMEOUT_MS, which must leave time to release sessions and close');
  }
  if (config.cluster.renewIntervalMs * 3 > config.cluster.leaseMs) {
    lines.push('LEASE_RENEW_INTERVAL_MS: must be at most a third of LEASE_TTL_MS, so a lease survives a missed renewal');
  }
  if (config.nats.url !== '' && !config.nats.url.split(',').every((url) => /^(nats|tls):\/\/./.test(url.trim()))) {
    lines.push('NATS_URL: must be nats://host:port or tls://host:port (comma-separated for several servers)');
  }
  const { deadLetterSubject } = config.nats;
  if (deadLetterSubject.startsWith('websocket.')) {
    lines.push('NATS_DEAD_LETTER_SUBJECT: must be outside websocket.>, or dead events would be consumed again');
  } else if (deadLetterSubject !== '' && !PUBLISH_SUBJECT.test(deadLetterSubject)) {
    // Found out otherwise only when the first event dies and its publish fails.
    lines.push('NATS_DEAD_LETTER_SUBJECT: must be a subject to publish to: dot-separated tokens without spaces or wildcards (* and >)');
  }
  const badOrigin = config.websocket.allowedOrigins.find((origin) => !ORIGIN.test(origin));
  if (badOrigin !== undefined) {
    lines.push(`ALLOWED_ORIGINS: ${JSON.stringify(badOrigin)} is not an origin as browsers send it: scheme://host[:port] in lower case, with no path or trailing slash`);
  }
  return lines;
}

function collectFlags(node: object): string[] {
  return Object.values(node).flatMap((value: unknown) => {
    if (value === null || typeof value !== 'object') return [];
    if ('default' in value) return 'arg' in value && typeof value.arg === 'string' ? [value.arg] : [];
    return collectFlags(value);
  });
}

function collectEnvNames(node: object, prefix = ''): Map<string, string> {
  const names = new Map<string, string>();
  for (const [key, value] of Object.entries(node)) {
    if (value === null || typeof value !== 'object') continue;
    const path = prefix === '' ? key : `${prefix}.${key}`;
    if ('default' in value) {
      if ('env' in value && typeof value.env === 'string') names.set(path, value.env);
    } else {
      for (const [p, e] of collectEnvNames(value, path)) names.set(p, e);
    }
  }
  return names;
}

/** Convict reports `path: message`; operators know the environment names, so lead with those. */
function withEnvName(line: string, envNames: ReadonlyMap<string, string>, file: string): string {
  const match = /^([\w.]+): (.*)$/.exec(line.trim());
  if (match === null) return file === '' ? line.trim() : `CONFIG_FILE (${file}): ${line.trim()}`;
  const [, path = '', rest = ''] = match;
  const envName = envNames.get(path);
  return envName === undefined ? `${path}: ${rest}` : `${envName} (${path}): ${rest}`;
}

function firstLine(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split('\n')[0] ?? '';
}

function deepFreeze<T extends object>(value: T): T {
  for (const child of Object.values(value)) {
    if (child !== null && typeof child === 'object') deepFreeze(child as object);
  }
  return Object.freeze(value);
}
