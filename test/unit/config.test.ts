import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { TokenCodec, parseAesKeys } from '../../src/auth/tokenCodec.js';
import { ConfigError, loadConfig, podIdOf, type LoadedConfig } from '../../src/config/load.js';

// Every call passes its own env object and args array: process.env is never read here.
const KEY_A = 'a'.repeat(64);
const KEY_B = '0123456789abcdef'.repeat(4);
const KEY_C = 'C'.repeat(64);
const KEY_D = 'd'.repeat(64);
const PROD_KEYS = {
  NODE_ENV: 'production',
  SECRET_TOKEN: 'user-api-key',
  ADMIN_SECRET_TOKEN: 'admin-api-key',
  TOKEN_AES_KEY: KEY_A,
  ADMIN_TOKEN_AES_KEY: KEY_D,
} as const;
const KEY_NAMES = ['SECRET_TOKEN', 'ADMIN_SECRET_TOKEN', 'TOKEN_AES_KEY', 'ADMIN_TOKEN_AES_KEY'];

const dir = mkdtempSync(join(tmpdir(), 'switchboard-config-'));
after(() => rmSync(dir, { recursive: true, force: true }));

let fileCount = 0;
/** Writes a YAML file into this run's temp dir and returns its path. */
function yamlFile(text: string): string {
  const path = join(dir, `config-${++fileCount}.yaml`);
  writeFileSync(path, text);
  return path;
}

function load(env: Record<string, string>, args: string[] = []): LoadedConfig {
  return loadConfig(args, env);
}

/** The ConfigError lines `loadConfig` throws for this input; fails if it loads. */
function errorLines(env: Record<string, string>, args: string[] = []): readonly string[] {
  try {
    loadConfig(args, env);
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    for (const line of err.lines) assert.ok(!line.includes('\n'), `a line must be one line: ${JSON.stringify(line)}`);
    return err.lines;
  }
  assert.fail(`expected a ConfigError for ${JSON.stringify({ env, args })}`);
}

/** The env name a line leads with (`PORT (server.port): ...` → `PORT`). */
function leadingName(line: string): string {
  return /^[A-Z_]+/.exec(line)?.[0] ?? '';
}

function assertDeeplyFrozen(value: object, path = 'config'): void {
  assert.ok(Object.isFrozen(value), `${path} is frozen`);
  for (const [key, child] of Object.entries(value)) {
    if (child !== null && typeof child === 'object') assertDeeplyFrozen(child as object, `${path}.${key}`);
  }
}

describe('defaults', () => {
  test('an empty environment gives the documented defaults', () => {
    const { config } = load({});
    assert.equal(config.env, 'development');
    assert.equal(config.server.port, 8080);
    assert.equal(config.admin.port, 9090);
    assert.equal(config.grpc.port, 50051);
    assert.equal(config.pod.ip, '127.0.0.1');
    assert.equal(config.log.level, 'info');
    assert.equal(config.metrics.prefix, 'switchboard_');
    assert.equal(config.redis.url, '');
    assert.equal(config.nats.url, '');
    assert.equal(config.configFile, '');
    assert.deepEqual(config.tls, { certFile: '', keyFile: '' });
    assert.equal(config.websocket.maxFrameBytes, 64 * 1024);
    assert.equal(config.websocket.heartbeatIntervalMs, 20_000);
    assert.equal(config.limits.messagesPerSecond, 10);
    assert.equal(config.limits.messageBurst, 20);
    assert.equal(config.auth.tokenCacheTtlMs, 30_000);
  });

  test('the configuration is frozen all the way down, arrays included', () => {
    const { config } = load({ ...PROD_KEYS, TOKEN_AES_KEY: `${KEY_A},${KEY_B}`, ALLOWED_ORIGINS: 'https://a.example' });
    assertDeeplyFrozen(config);
    // ESM is strict mode: writes to frozen objects throw rather than being ignored.
    assert.throws(() => {
      (config.server as { port: number }).port = 1;
    }, TypeError);
    assert.throws(() => {
      (config.auth.tokenAesKeys as string[]).push(KEY_C);
    }, TypeError);
    assert.throws(() => {
      (config.websocket.allowedOrigins as string[])[0] = 'https://evil.example';
    }, TypeError);
    assert.equal(config.server.port, 8080);
  });

  test('a generated development configuration is frozen too', () => {
    assertDeeplyFrozen(load({ NODE_ENV: 'development' }).config);
  });
});

describe('precedence: flag over environment over YAML file over defaults', () => {
  const file = () => yamlFile('server:\n  port: 7000\nlimits:\n  messagesPerSecond: 3\nlog:\n  level: warn\n');

  test('the YAML file overrides defaults, with nested keys', () => {
    const { config } = load({ CONFIG_FILE: file() });
    assert.equal(config.server.port, 7000);
    assert.equal(config.limits.messagesPerSecond, 3);
    assert.equal(config.log.level, 'warn');
    assert.equal(config.admin.port, 9090, 'keys absent from the file keep their defaults');
    assert.equal(config.limits.messageBurst, 20);
  });

  test('the environment overrides the YAML file, key by key', () => {
    const { config } = load({ CONFIG_FILE: file(), PORT: '7100' });
    assert.equal(config.server.port, 7100);
    assert.equal(config.limits.messagesPerSecond, 3, 'file keys the environment does not set still apply');
    assert.equal(config.log.level, 'warn');
  });

  test('a flag overrides the environment and the YAML file', () => {
    const env = { CONFIG_FILE: file(), PORT: '7100', LOG_LEVEL: 'error' };
    assert.equal(load(env, ['--port', '7200']).config.server.port, 7200);
    assert.equal(load(env, ['--port=7300']).config.server.port, 7300);
    const { config } = load(env, ['--log-level', 'debug']);
    assert.equal(config.log.level, 'debug');
    assert.equal(config.server.port, 7100);
  });

  test('the environment overrides defaults without a file', () => {
    const { config } = load({ PORT: '7400', ADMIN_PORT: '7401', GRPC_PORT: '7402', POD_IP: '10.0.0.7', LOG_LEVEL: 'debug', METRICS_PREFIX: 'sb_' });
    assert.equal(config.server.port, 7400);
    assert.equal(config.admin.port, 7401);
    assert.equal(config.grpc.port, 7402);
    assert.equal(config.pod.ip, '10.0.0.7');
    assert.equal(config.log.level, 'debug');
    assert.equal(config.metrics.prefix, 'sb_');
  });

  test('--config names the file too and wins over CONFIG_FILE', () => {
    const fromFlag = yamlFile('server:\n  port: 7500\n');
    const fromEnv = yamlFile('server:\n  port: 7600\n');
    assert.equal(load({}, ['--config', fromFlag]).config.server.port, 7500);
    assert.equal(load({ CONFIG_FILE: fromEnv }, ['--config', fromFlag]).config.server.port, 7500);
  });

  test('keys can come from the YAML file, AES keys as a list', () => {
    const path = yamlFile(
      ['auth:', '  secretToken: from-file', '  adminSecretToken: admin-from-file', `  tokenAesKeys: ["${KEY_A}", "${KEY_B}"]`, `  adminTokenAesKeys: ["${KEY_C}"]`, ''].join('\n'),
    );
    const { config, generatedKeys } = load({ NODE_ENV: 'production', CONFIG_FILE: path });
    assert.equal(config.auth.secretToken, 'from-file');
    assert.deepEqual(config.auth.tokenAesKeys, [KEY_A, KEY_B]);
    assert.deepEqual(config.auth.adminTokenAesKeys, [KEY_C]);
    assert.deepEqual(generatedKeys, []);
  });
});

describe('AES key lists', () => {
  test('a comma-separated TOKEN_AES_KEY parses into a list in order, for rotation', () => {
    const { config } = load({ ...PROD_KEYS, TOKEN_AES_KEY: `${KEY_A},${KEY_B}`, ADMIN_TOKEN_AES_KEY: `${KEY_C},${KEY_D}` });
    assert.deepEqual(config.auth.tokenAesKeys, [KEY_A, KEY_B]);
    assert.deepEqual(config.auth.adminTokenAesKeys, [KEY_C, KEY_D]);
  });

  test('blanks around commas and a trailing comma are ignored', () => {
    const { config } = load({ ...PROD_KEYS, TOKEN_AES_KEY: ` ${KEY_A} , ${KEY_B} ,` });
    assert.deepEqual(config.auth.tokenAesKeys, [KEY_A, KEY_B]);
  });

  test('a single key is a list of one', () => {
    assert.deepEqual(load(PROD_KEYS).config.auth.tokenAesKeys, [KEY_A]);
  });
});

describe('bad values: one line per bad key, led by its environment name', () => {
  test('PORT=70000 and LOG_LEVEL=loud give two lines, one per key', () => {
    const lines = errorLines({ PORT: '70000', LOG_LEVEL: 'loud' });
    assert.equal(lines.length, 2, lines.join('\n'));
    assert.deepEqual(lines.map(leadingName).sort(), ['LOG_LEVEL', 'PORT']);
  });

  test('every kind of schema error names its environment variable', () => {
    const env = {
      PORT: 'abc',
      ADMIN_PORT: '-1',
      MAX_FRAME_BYTES: '-1',
      HEARTBEAT_INTERVAL_MS: '0',
      RATE_LIMIT_PER_SECOND: '1.5',
      METRICS_PREFIX: 'my-prefix',
      NODE_ENV: 'staging',
    };
    const lines = errorLines(env);
    assert.deepEqual(lines.map(leadingName).sort(), Object.keys(env).sort(), lines.join('\n'));
  });

  test('an unknown key in the YAML file is an error naming that key', () => {
    const lines = errorLines({ CONFIG_FILE: yamlFile('server:\n  port: 7000\n  prot: 7001\nbogus: true\n') });
    assert.equal(lines.length, 2, lines.join('\n'));
    assert.ok(lines.some((l) => l.includes("'server.prot'")), lines.join('\n'));
    assert.ok(lines.some((l) => l.includes("'bogus'")), lines.join('\n'));
  });

  test('environment names are not YAML keys: the file uses the nested schema names', () => {
    const lines = errorLines({ CONFIG_FILE: yamlFile('PORT: 7000\n') });
    assert.equal(lines.length, 1);
    assert.match(lines[0] ?? '', /'PORT'/);
  });

  test('a wrongly typed value in the YAML file is an error naming the key', () => {
    const lines = errorLines({ CONFIG_FILE: yamlFile('server:\n  port: hello\n') });
    assert.equal(lines.length, 1);
    assert.equal(leadingName(lines[0] ?? ''), 'PORT');
  });

  test('a YAML syntax error is one line naming CONFIG_FILE and the file', () => {
    const path = yamlFile('server:\n  port: [7000\n  host: : :\n');
    const lines = errorLines({ CONFIG_FILE: path });
    assert.equal(lines.length, 1, lines.join('\n'));
    assert.equal(leadingName(lines[0] ?? ''), 'CONFIG_FILE');
    assert.ok(lines[0]?.includes(path), lines[0]);
  });

  test('a CONFIG_FILE that does not exist is one line naming the file', () => {
    const path = join(dir, 'does-not-exist.yaml');
    const lines = errorLines({ CONFIG_FILE: path });
    assert.equal(lines.length, 1, lines.join('\n'));
    assert.equal(leadingName(lines[0] ?? ''), 'CONFIG_FILE');
    assert.ok(lines[0]?.includes(path), lines[0]);
    assert.match(lines[0] ?? '', /ENOENT|no such file/);
  });

  test('an empty YAML file is fine', () => {
    assert.equal(load({ CONFIG_FILE: yamlFile('') }).config.server.port, 8080);
  });

  describe('bad AES keys name the variable and position, never the value', () => {
    const cases: ReadonlyArray<readonly [string, Record<string, string>, readonly string[]]> = [
      ['not hex', { TOKEN_AES_KEY: `zz${'9'.repeat(62)}` }, [`zz${'9'.repeat(62)}`]],
      ['too short', { TOKEN_AES_KEY: 'deadbeefcafe1234' }, ['deadbeefcafe1234']],
      ['too long', { TOKEN_AES_KEY: `${KEY_B}ff` }, [KEY_B]],
      ['a good key then a bad one', { TOKEN_AES_KEY: `${KEY_B},not-a-key-s3cr3t-value` }, [KEY_B, 'not-a-key-s3cr3t-value', 's3cr3t']],
      ['the admin list', { ADMIN_TOKEN_AES_KEY: `${KEY_B},${'f'.repeat(63)}g` }, [KEY_B, `${'f'.repeat(63)}g`, 'f'.repeat(32)]],
    ];
    for (const [name, env, secrets] of cases) {
      test(name, () => {
        const lines = errorLines({ ...PROD_KEYS, ...env });
        assert.equal(lines.length, 1, lines.join('\n'));
        const line = lines[0] ?? '';
        assert.equal(leadingName(line), Object.keys(env)[0]);
        assert.match(line, /#\d/, 'the line names the key position');
        for (const secret of secrets) assert.ok(!line.includes(secret), `the line must not contain the key: ${line}`);
        // No long hex run at all, whatever the slicing.
        assert.doesNotMatch(line, /[0-9a-fA-F]{16}/);
      });
    }

    test('both lists bad give one line each', () => {
      const lines = errorLines({ ...PROD_KEYS, TOKEN_AES_KEY: 'short1', ADMIN_TOKEN_AES_KEY: 'short2' });
      assert.deepEqual(lines.map(leadingName).sort(), ['ADMIN_TOKEN_AES_KEY', 'TOKEN_AES_KEY']);
      assert.ok(lines.every((l) => !l.includes('short1') && !l.includes('short2')), lines.join('\n'));
    });

    test('a bad key in the YAML file does not leak either', () => {
      const { TOKEN_AES_KEY: _fromFile, ...env } = PROD_KEYS;
      const lines = errorLines({ ...env, CONFIG_FILE: yamlFile('auth:\n  tokenAesKeys: ["file-s3cr3t"]\n') });
      assert.equal(lines.length, 1, lines.join('\n'));
      assert.equal(leadingName(lines[0] ?? ''), 'TOKEN_AES_KEY');
      assert.ok(!lines[0]?.includes('file-s3cr3t'), lines[0]);
    });
  });

  test('API keys of the wrong type in the file do not leak', () => {
    const lines = errorLines({ CONFIG_FILE: yamlFile('auth:\n  secretToken: 987654321\n') });
    assert.equal(lines.length, 1);
    assert.equal(leadingName(lines[0] ?? ''), 'SECRET_TOKEN');
    assert.ok(!lines[0]?.includes('987654321'), lines[0]);
  });

  test('PORT and ADMIN_PORT on the same number is one line naming both', () => {
    const lines = errorLines({ PORT: '9000', ADMIN_PORT: '9000' });
    assert.equal(lines.length, 1, lines.join('\n'));
    assert.match(lines[0] ?? '', /ADMIN_PORT/);
    assert.match(lines[0] ?? '', /\bPORT\b/);
    assert.match(lines[0] ?? '', /9000/);
  });

  test('GRPC_PORT colliding with ADMIN_PORT is reported', () => {
    const lines = errorLines({ ADMIN_PORT: '9100', GRPC_PORT: '9100' });
    assert.equal(lines.length, 1, lines.join('\n'));
    assert.match(lines[0] ?? '', /GRPC_PORT.*ADMIN_PORT/);
  });

  test('several listeners on port 0 do not collide (each binds a free port)', () => {
    const { config } = load({ PORT: '0', ADMIN_PORT: '0', GRPC_PORT: '0' });
    assert.deepEqual([config.server.port, config.admin.port, config.grpc.port], [0, 0, 0]);
  });

  test('a TLS certificate without a key, or a key without a certificate, is an error', () => {
    const halves: Record<string, string>[] = [{ TLS_CERT_FILE: '/etc/tls/tls.crt' }, { TLS_KEY_FILE: '/etc/tls/tls.key' }];
    for (const env of halves) {
      const lines = errorLines(env);
      assert.equal(lines.length, 1, lines.join('\n'));
      assert.match(lines[0] ?? '', /TLS_CERT_FILE/);
      assert.match(lines[0] ?? '', /TLS_KEY_FILE/);
    }
  });

  test('GRPC_PORT 0 with REDIS_URL is an error: the pod id would name no port peers can reach', () => {
    const lines = errorLines({ REDIS_URL: 'redis://127.0.0.1:6379', GRPC_PORT: '0' });
    assert.deepEqual(lines.map(leadingName), ['GRPC_PORT']);
  });

  test('a duration past what a Node timer can wait is an error, not a timer that fires after 1 ms', () => {
    const lines = errorLines({ HEARTBEAT_INTERVAL_MS: '2147483648', SHUTDOWN_TIMEOUT_MS: '9999999999' });
    assert.deepEqual(lines.map(leadingName).sort(), ['HEARTBEAT_INTERVAL_MS', 'SHUTDOWN_TIMEOUT_MS']);
    assert.ok(lines.every((line) => line.includes('from 1 to 2000000000')), lines.join('\n'));
    assert.equal(load({ SHUTDOWN_TIMEOUT_MS: '2000000000' }).config.lifecycle.shutdownTimeoutMs, 2_000_000_000);
  });

  test('POD_IP is an IP address or a host name; the pod id brackets an IPv6 address so peers can dial it', () => {
    const podId = (ip: string) => podIdOf(load({ POD_IP: ip, GRPC_PORT: '50051' }).config);
    assert.equal(podId('10.1.2.3'), '10.1.2.3:50051');
    assert.equal(podId('fd00::1'), '[fd00::1]:50051');
    assert.equal(podId('switchboard_1'), 'switchboard_1:50051');
    for (const bad of ['10.1.2.3:50051', '[fd00::1]', 'two words', 'host..name']) {
      assert.deepEqual(errorLines({ POD_IP: bad }).map(leadingName), ['POD_IP'], bad);
    }
  });

  test('TOKEN_CACHE_TTL_MS past 30 s is an error; 30 s is accepted', () => {
    assert.deepEqual(errorLines({ TOKEN_CACHE_TTL_MS: '30001' }).map(leadingName), ['TOKEN_CACHE_TTL_MS']);
    assert.equal(load({ TOKEN_CACHE_TTL_MS: '30000' }).config.auth.tokenCacheTtlMs, 30_000);
  });

  test('a burst below the sustained rate and a non-redis REDIS_URL are reported together', () => {
    const lines = errorLines({ RATE_LIMIT_PER_SECOND: '30', REDIS_URL: 'http://localhost:6379' });
    assert.deepEqual(lines.map(leadingName).sort(), ['RATE_LIMIT_BURST', 'REDIS_URL']);
  });
});

describe('keys by mode', () => {
  test('NODE_ENV=production with no keys gives one line per missing key', () => {
    const lines = errorLines({ NODE_ENV: 'production' });
    assert.deepEqual(lines.map(leadingName), KEY_NAMES);
    assert.ok(lines.every((l) => l.includes('production')), lines.join('\n'));
  });

  test('NODE_ENV=production names only the keys that are missing', () => {
    const lines = errorLines({ NODE_ENV: 'production', SECRET_TOKEN: 's', TOKEN_AES_KEY: KEY_A });
    assert.deepEqual(lines.map(leadingName), ['ADMIN_SECRET_TOKEN', 'ADMIN_TOKEN_AES_KEY']);
  });

  test('NODE_ENV=production: an AES list of only commas counts as missing', () => {
    const lines = errorLines({ ...PROD_KEYS, ADMIN_TOKEN_AES_KEY: ' , ,' });
    assert.deepEqual(lines.map(leadingName), ['ADMIN_TOKEN_AES_KEY']);
  });

  test('NODE_ENV=production reports colliding ports and missing keys together', () => {
    const lines = errorLines({ NODE_ENV: 'production', PORT: '9000', ADMIN_PORT: '9000' });
    assert.deepEqual(lines.map(leadingName), ['ADMIN_PORT', ...KEY_NAMES]);
  });

  test('NODE_ENV=production with every key loads and generates nothing', () => {
    const { config, generatedKeys } = load(PROD_KEYS);
    assert.equal(config.env, 'production');
    assert.deepEqual(generatedKeys, []);
    assert.equal(config.auth.secretToken, 'user-api-key');
    assert.equal(config.auth.adminSecretToken, 'admin-api-key');
  });

  test('development generates every missing key, lists them and makes valid 64-hex AES keys', () => {
    const { config, generatedKeys } = load({ NODE_ENV: 'development' });
    assert.deepEqual([...generatedKeys].sort(), [...KEY_NAMES].sort());
    assert.ok(config.auth.secretToken.length >= 16, 'the API key is not trivially short');
    assert.ok(config.auth.adminSecretToken.length >= 16);
    assert.notEqual(config.auth.secretToken, config.auth.adminSecretToken);
    for (const keys of [config.auth.tokenAesKeys, config.auth.adminTokenAesKeys]) {
      assert.equal(keys.length, 1);
      assert.match(keys[0] ?? '', /^[0-9a-f]{64}$/);
    }
    assert.notEqual(config.auth.tokenAesKeys[0], config.auth.adminTokenAesKeys[0], 'user and admin tokens use different keys');
    // The generated keys are usable by the real codec: mint and verify a token.
    const codec = new TokenCodec(parseAesKeys(config.auth.tokenAesKeys));
    const now = Date.now();
    const token = codec.mintUser({ companyId: 'acme', agentId: 'support', userId: 'alice', expiresAtMs: now + 60_000 });
    assert.equal(codec.verifyUser(token, now).userId, 'alice');
  });

  test('development generates fresh keys on every load', () => {
    const a = load({}).config.auth;
    const b = load({}).config.auth;
    assert.notEqual(a.secretToken, b.secretToken);
    assert.notEqual(a.tokenAesKeys[0], b.tokenAesKeys[0]);
  });

  test('development keeps the keys it is given and generates only the rest', () => {
    const { config, generatedKeys } = load({ NODE_ENV: 'development', SECRET_TOKEN: 'mine', TOKEN_AES_KEY: `${KEY_A},${KEY_B}` });
    assert.deepEqual([...generatedKeys].sort(), ['ADMIN_SECRET_TOKEN', 'ADMIN_TOKEN_AES_KEY']);
    assert.equal(config.auth.secretToken, 'mine');
    assert.deepEqual(config.auth.tokenAesKeys, [KEY_A, KEY_B]);
  });

  test('development with every key given generates nothing', () => {
    const { generatedKeys } = load({ ...PROD_KEYS, NODE_ENV: 'development' });
    assert.deepEqual(generatedKeys, []);
  });
});

describe('strictness', () => {
  test('a boolean variable set to "0" or "no" is not read as true', () => {
    assert.equal(load({ WS_COMPRESSION: '0' }).config.websocket.compression, false);
    assert.equal(load({ MULTI_DEVICE: 'no' }).config.sessions.multiDevice, false);
  });

  test('ALLOWED_ORIGINS trims blanks around commas as TOKEN_AES_KEY does', () => {
    assert.deepEqual(load({ ALLOWED_ORIGINS: 'https://a.example, https://b.example' }).config.websocket.allowedOrigins, [
      'https://a.example',
      'https://b.example',
    ]);
  });

  test('an API key no client could send as written is an error: a trailing newline, or not ASCII', () => {
    for (const bad of ['user-api-key\n', ' user-api-key', 'kéy']) {
      assert.deepEqual(errorLines({ ...PROD_KEYS, SECRET_TOKEN: bad }).map(leadingName), ['SECRET_TOKEN'], JSON.stringify(bad));
    }
    assert.match(errorLines({ ...PROD_KEYS, ADMIN_SECRET_TOKEN: 'admin-key\n' })[0] ?? '', /^ADMIN_SECRET_TOKEN: .*trailing newline/);
    assert.equal(load({ ...PROD_KEYS, SECRET_TOKEN: 'two words' }).config.auth.secretToken, 'two words');
  });

  test('one AES key for both user and admin tokens is an error', () => {
    const lines = errorLines({ ...PROD_KEYS, ADMIN_TOKEN_AES_KEY: `${KEY_D},${KEY_A.toUpperCase()}` });
    assert.deepEqual(lines.map(leadingName), ['ADMIN_TOKEN_AES_KEY']);
  });

  test('sizes past what uWebSockets.js can hold, and numbers past 2^53, are errors', () => {
    const lines = errorLines({ MAX_FRAME_BYTES: String(256 * 1024 * 1024 + 1), SEND_BUFFER_BYTES: '99999999999999999999', NATS_MAX_IN_FLIGHT: '99999999999999999999' });
    assert.deepEqual(lines.map(leadingName).sort(), ['MAX_FRAME_BYTES', 'NATS_MAX_IN_FLIGHT', 'SEND_BUFFER_BYTES']);
    assert.equal(load({ SEND_BUFFER_BYTES: String(256 * 1024 * 1024) }).config.websocket.sendBufferBytes, 256 * 1024 * 1024);
  });

  test('a dead-letter subject one cannot publish to is an error at start, not when the first event dies', () => {
    for (const bad of ['dead letters', 'dead.>', 'dead.*', 'dead..x', '.dead']) {
      assert.deepEqual(errorLines({ NATS_DEAD_LETTER_SUBJECT: bad }).map(leadingName), ['NATS_DEAD_LETTER_SUBJECT'], bad);
    }
    assert.equal(load({ NATS_DEAD_LETTER_SUBJECT: 'dead.websocket' }).config.nats.deadLetterSubject, 'dead.websocket');
  });

  test('an allowed origin that no browser sends is an error naming it', () => {
    for (const bad of ['https://app.example/', '*', 'HTTPS://App.Example', 'app.example']) {
      const lines = errorLines({ ALLOWED_ORIGINS: `https://ok.example,${bad}` });
      assert.deepEqual(lines.map(leadingName), ['ALLOWED_ORIGINS'], bad);
      assert.ok(lines[0]?.includes(JSON.stringify(bad)), lines[0]);
    }
    assert.deepEqual(load({ ALLOWED_ORIGINS: 'http://localhost:3000,http://[::1]:8080' }).config.websocket.allowedOrigins, ['http://localhost:3000', 'http://[::1]:8080']);
  });

  test('NODE_ENV=production reports missing keys alongside bad values', () => {
    const lines = errorLines({ NODE_ENV: 'production', PORT: 'abc' });
    assert.deepEqual(lines.map(leadingName), ['PORT', ...KEY_NAMES]);
  });

  test('an unknown flag is an error like an unknown file key', () => {
    assert.match(errorLines({}, ['--log-leve', 'debug'])[0] ?? '', /^--log-leve: unknown flag/);
  });

  test('numbers are plain decimal digits; a port is a whole number', () => {
    assert.deepEqual(errorLines({ MAX_FRAME_BYTES: '0x10', PORT: '80.5' }).map(leadingName).sort(), ['MAX_FRAME_BYTES', 'PORT']);
  });

  test('the user and admin API keys must differ', () => {
    assert.deepEqual(errorLines({ SECRET_TOKEN: 'same-key', ADMIN_SECRET_TOKEN: 'same-key' }).map(leadingName), ['ADMIN_SECRET_TOKEN']);
  });
});
