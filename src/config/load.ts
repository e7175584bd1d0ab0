import { randomBytes } from 'node:crypto';
import convict from 'convict';
import YAML from 'yaml';
import { schema, type Config } from './schema.js';

const HEX_KEY = /^[0-9a-fA-F]{64}$/;

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

convict.addFormat({
  name: 'positive-int',
  validate(value: unknown) {
    if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0) throw new Error('must be a positive integer');
  },
  coerce: (value: unknown) => (typeof value === 'string' && value.trim() !== '' ? Number(value) : value),
});

convict.addFormat({
  name: 'metric-prefix',
  validate(value: unknown) {
    if (typeof value !== 'string' || !/^[a-zA-Z_:][a-zA-Z0-9_:]*$/.test(value)) {
      throw new Error('must be a valid Prometheus metric name prefix ([a-zA-Z_:][a-zA-Z0-9_:]*)');
    }
  },
});

convict.addParser({ extension: ['yml', 'yaml'], parse: (text: string) => YAML.parse(text) as unknown });

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

/** Reads flags, environment and the YAML file (in that precedence), validates strictly and freezes. */
export function loadConfig(args: readonly string[], env: NodeJS.ProcessEnv): LoadedConfig {
  const envNames = collectEnvNames(schema);
  const store = convict(schema, { args: [...args], env });
  const file = store.get('configFile');
  if (file !== '') {
    try {
      store.loadFile(file);
    } catch (err) {
      throw new ConfigError([`CONFIG_FILE (configFile): cannot load ${file}: ${firstLine(err)}`]);
    }
  }
  try {
    store.validate({ allowed: 'strict' });
  } catch (err) {
    throw new ConfigError(
      String(err instanceof Error ? err.message : err)
        .split('\n')
        .filter((line) => line.trim() !== '')
        .map((line) => withEnvName(line, envNames)),
    );
  }
  const config = store.getProperties();
  const lines = crossChecks(config);
  const generatedKeys = config.env === 'production' ? [] : generateMissingKeys(config);
  if (config.env === 'production') lines.push(...missingKeyLines(config));
  if (lines.length > 0) throw new ConfigError(lines);
  return { config: deepFreeze(config), generatedKeys };
}

const KEY_ENV: ReadonlyArray<readonly [string, (c: Config) => string | readonly string[]]> = [
  ['SECRET_TOKEN', (c) => c.auth.secretToken],
  ['ADMIN_SECRET_TOKEN', (c) => c.auth.adminSecretToken],
  ['TOKEN_AES_KEY', (c) => c.auth.tokenAesKeys],
  ['ADMIN_TOKEN_AES_KEY', (c) => c.auth.adminTokenAesKeys],
];

function missingKeyLines(config: Config): string[] {
  return KEY_ENV.filter(([, read]) => read(config).length === 0).map(
    ([name]) => `${name}: required when NODE_ENV=production`,
  );
}

/** Fills empty keys with random ones so a bare `npm start` works; returns the env names it filled. */
function generateMissingKeys(config: Config): string[] {
  const mutable = config as { auth: Record<string, unknown> };
  const generated: string[] = [];
  const fill = (name: string, field: string, value: string | string[]) => {
    const current = mutable.auth[field];
    if ((typeof current === 'string' || Array.isArray(current)) && current.length === 0) {
      mutable.auth[field] = value;
      generated.push(name);
    }
  };
  fill('SECRET_TOKEN', 'secretToken', randomBytes(18).toString('base64url'));
  fill('ADMIN_SECRET_TOKEN', 'adminSecretToken', randomBytes(18).toString('base64url'));
  fill('TOKEN_AES_KEY', 'tokenAesKeys', [randomBytes(32).toString('hex')]);
  fill('ADMIN_TOKEN_AES_KEY', 'adminTokenAesKeys', [randomBytes(32).toString('hex')]);
  return generated;
}

function crossChecks(config: Config): string[] {
  const lines: string[] = [];
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
  if (config.limits.messageBurst < config.limits.messagesPerSecond) {
    lines.push('RATE_LIMIT_BURST: must be at least RATE_LIMIT_PER_SECOND');
  }
  // The cluster engines are not in this version; silently running in-process instead would split the cluster.
  if (config.redis.url !== '') lines.push('REDIS_URL: the Redis cluster engine is not available in this version; leave it empty');
  if (config.nats.url !== '') lines.push('NATS_URL: the NATS event source is not available in this version; leave it empty');
  return lines;
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
function withEnvName(line: string, envNames: ReadonlyMap<string, string>): string {
  const match = /^([\w.]+): (.*)$/.exec(line.trim());
  if (match === null) return line.trim();
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
