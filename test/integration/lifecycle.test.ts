import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, type AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { after, describe, test } from 'node:test';
import { openClient, type TestClient } from '../support/client.js';
import { keyEnv, randomKeys, startGateway, type TestGateway } from '../support/gateway.js';
import { freePort } from '../support/ports.js';
import { waitFor } from '../support/wait.js';

// Resolved as test/support/gateway.ts does: dist/test/integration → dist/src/main.js.
const MAIN = fileURLToPath(new URL('../../src/main.js', import.meta.url));
const EXIT_BAD_CONFIG = 2;
const KEY_NAMES = ['SECRET_TOKEN', 'ADMIN_SECRET_TOKEN', 'TOKEN_AES_KEY', 'ADMIN_TOKEN_AES_KEY'];
const SPAWN_DEADLINE_MS = 10_000;

/** A gateway process spawned directly (not through startGateway, which waits for ready). */
class GatewayProcess {
  readonly stdoutLines: string[] = [];
  stdout = '';
  stderr = '';
  /** Resolves once the process has exited and its output is fully read. */
  readonly done: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly child: ChildProcess;

  constructor(env: Record<string, string>, args: string[] = []) {
    // Only PATH is inherited: the test controls every configuration variable.
    this.child = spawn(process.execPath, [MAIN, ...args], { env: { PATH: process.env['PATH'] ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    running.add(this.child);
    let partial = '';
    this.child.stdout?.on('data', (chunk: Buffer) => {
      this.stdout += chunk.toString();
      const lines = (partial + chunk.toString()).split('\n');
      partial = lines.pop() ?? '';
      this.stdoutLines.push(...lines);
    });
    this.child.stderr?.on('data', (chunk: Buffer) => {
      this.stderr += chunk.toString();
    });
    this.done = new Promise((resolve) =>
      this.child.once('close', (code, signal) => {
        running.delete(this.child);
        resolve({ code, signal });
      }),
    );
  }

  /** Waits for the exit, killing the process if it outlives the deadline. */
  async exit(deadlineMs = SPAWN_DEADLINE_MS): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    const timer = setTimeout(() => this.child.kill('SIGKILL'), deadlineMs);
    try {
      const result = await this.done;
      assert.notEqual(result.signal, 'SIGKILL', `the process did not exit within ${deadlineMs} ms; stderr: ${this.stderr}`);
      return result;
    } finally {
      clearTimeout(timer);
    }
  }

  /** SIGTERM, then the exit status. */
  async stop(): Promise<number | null> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGTERM');
    return (await this.exit()).code;
  }
}

const running = new Set<ChildProcess>();
after(() => {
  for (const child of running) child.kill('SIGKILL');
});

/** Non-empty stderr lines. */
function stderrLines(proc: GatewayProcess): string[] {
  return proc.stderr.split('\n').filter((l) => l.trim() !== '');
}

function assertNoStackTrace(proc: GatewayProcess): void {
  const output = `${proc.stdout}\n${proc.stderr}`;
  assert.doesNotMatch(output, /^\s+at /m, `no stack trace expected:\n${output}`);
}

/** The env name after `config error: ` (`config error: PORT (server.port): ...` → `PORT`). */
function configErrorName(line: string): string {
  return /^config error: ([A-Z_]+)/.exec(line)?.[1] ?? '';
}

describe('a bad configuration exits at start with status 2 and one line per bad key', () => {
  test('PORT=abc and MAX_FRAME_BYTES=-1 give exactly two config error lines and no stack trace', async () => {
    const proc = new GatewayProcess({ PORT: 'abc', MAX_FRAME_BYTES: '-1' });
    const { code } = await proc.exit();
    assert.equal(code, EXIT_BAD_CONFIG);
    const lines = stderrLines(proc);
    assert.equal(lines.length, 2, proc.stderr);
    assert.ok(lines.every((l) => l.startsWith('config error: ')), proc.stderr);
    assert.deepEqual(lines.map(configErrorName).sort(), ['MAX_FRAME_BYTES', 'PORT']);
    assertNoStackTrace(proc);
    assert.equal(proc.stdout, '', 'nothing starts, so nothing is logged');
  });

  test('NODE_ENV=production without keys exits 2 naming each missing key', async () => {
    const proc = new GatewayProcess({ NODE_ENV: 'production', PORT: '0', ADMIN_PORT: '0', GRPC_PORT: '0' });
    const { code } = await proc.exit();
    assert.equal(code, EXIT_BAD_CONFIG);
    const lines = stderrLines(proc);
    assert.ok(lines.every((l) => l.startsWith('config error: ')), proc.stderr);
    assert.deepEqual(lines.map(configErrorName), KEY_NAMES);
    assertNoStackTrace(proc);
  });

  test('a bad AES key exits 2 without printing the key', async () => {
    const keys = randomKeys();
    const badKey = `${keys.tokenAesKeys[0] ?? ''}ff`;
    const proc = new GatewayProcess({
      NODE_ENV: 'production',
      ...keyEnv(keys),
      TOKEN_AES_KEY: badKey,
    });
    const { code } = await proc.exit();
    assert.equal(code, EXIT_BAD_CONFIG);
    const lines = stderrLines(proc);
    assert.deepEqual(lines.map(configErrorName), ['TOKEN_AES_KEY']);
    assert.ok(!proc.stderr.includes(badKey.slice(0, 16)), proc.stderr);
    assert.ok(!proc.stderr.includes(keys.secretToken), proc.stderr);
  });

  test('a bad flag value and a missing CONFIG_FILE are reported the same way', async () => {
    const proc = new GatewayProcess({ CONFIG_FILE: '/nonexistent/switchboard.yaml' }, ['--log-level', 'loud']);
    const { code } = await proc.exit();
    assert.equal(code, EXIT_BAD_CONFIG);
    const lines = stderrLines(proc);
    // The file is read before validation, so only its line is reported.
    assert.deepEqual(lines.map(configErrorName), ['CONFIG_FILE'], proc.stderr);
    assert.match(lines[0] ?? '', /\/nonexistent\/switchboard\.yaml/);
    assertNoStackTrace(proc);

    const flagOnly = new GatewayProcess({}, ['--log-level', 'loud']);
    assert.equal((await flagOnly.exit()).code, EXIT_BAD_CONFIG);
    assert.deepEqual(stderrLines(flagOnly).map(configErrorName), ['LOG_LEVEL'], flagOnly.stderr);
  });

  test('files that settings name but cannot be read exit 2, one line each, before anything starts', async () => {
    const proc = new GatewayProcess({
      REDIS_URL: 'redis://127.0.0.1:1',
      REDIS_TLS_CA_FILE: '/nonexistent/redis-ca.pem',
      GRPC_TLS_CA_FILE: '/nonexistent/ca.pem',
      GRPC_TLS_CERT_FILE: '/nonexistent/pod.pem',
      GRPC_TLS_KEY_FILE: '/nonexistent/pod.key',
    });
    const { code } = await proc.exit();
    assert.equal(code, EXIT_BAD_CONFIG);
    const lines = stderrLines(proc);
    assert.deepEqual(lines.map(configErrorName), ['GRPC_TLS_CA_FILE', 'GRPC_TLS_CERT_FILE', 'GRPC_TLS_KEY_FILE', 'REDIS_TLS_CA_FILE'], proc.stderr);
    assert.match(lines[3] ?? '', /cannot read \/nonexistent\/redis-ca\.pem/);
    assertNoStackTrace(proc);
    assert.equal(proc.stdout, '', 'nothing starts, so nothing is logged');
  });

  test('a listener that cannot bind exits non-zero instead of hanging', async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = blocker.address() as AddressInfo;
      const keys = randomKeys();
      const proc = new GatewayProcess({
        NODE_ENV: 'test',
        HOST: '127.0.0.1',
        ADMIN_HOST: '127.0.0.1',
        PORT: String(port),
        ADMIN_PORT: '0',
        GRPC_PORT: '0',
        ...keyEnv(keys),
      });
      const { code } = await proc.exit();
      assert.equal(code, 1, `stdout: ${proc.stdout}\nstderr: ${proc.stderr}`);
      assert.ok(proc.stdoutLines.some((l) => l.includes('start-up failed')), proc.stdout);
    } finally {
      await new Promise((resolve) => blocker.close(resolve));
    }
  });

  test('a Redis that refuses connections exits 1 naming the address and the cause, not "Connection is closed."', async () => {
    const keys = randomKeys();
    const redisPort = await freePort();
    const proc = new GatewayProcess({
      NODE_ENV: 'test',
      PORT: '0',
      ADMIN_PORT: '0',
      GRPC_PORT: String(await freePort()),
      REDIS_URL: `redis://127.0.0.1:${redisPort}`,
      ...keyEnv(keys),
    });
    const { code } = await proc.exit();
    assert.equal(code, 1, `stdout: ${proc.stdout}\nstderr: ${proc.stderr}`);
    const failure = proc.stdoutLines.find((l) => l.includes('start-up failed')) ?? '';
    assert.match(failure, new RegExp(`cannot reach Redis at redis://127\\.0\\.0\\.1:${redisPort}: connect ECONNREFUSED`), proc.stdout);
  });
});

/** Shell words of one printed command: single-quoted strings or bare words. */
function shellWords(command: string): string[] {
  return [...command.matchAll(/'([^']*)'|(\S+)/g)].map((m) => m[1] ?? m[2] ?? '');
}

/** The printed commands, with `\` continuations joined, starting with `prefix`. */
function printedCommands(lines: readonly string[], prefix: string): string[][] {
  const joined = lines.join('\n').replace(/\\\n\s*/g, '');
  return joined
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.startsWith(prefix))
    .map(shellWords);
}

interface CurlRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: Record<string, string>;
  readonly body: string | undefined;
}

/** Reads the curl options the instructions use; anything else fails the test rather than being ignored. */
function parseCurl(words: readonly string[]): CurlRequest {
  assert.equal(words[0], 'curl');
  let method = 'GET';
  let url = '';
  let body: string | undefined;
  const headers: Record<string, string> = {};
  for (let i = 1; i < words.length; i++) {
    const word = words[i] ?? '';
    if (word === '-s') continue;
    if (word === '-X') method = words[++i] ?? '';
    else if (word === '-H') {
      const header = words[++i] ?? '';
      const colon = header.indexOf(':');
      headers[header.slice(0, colon).trim()] = header.slice(colon + 1).trim();
    } else if (word === '-d') {
      body = words[++i];
      if (method === 'GET') method = 'POST';
    } else if (word.startsWith('-')) assert.fail(`unexpected curl option ${word}`);
    else url = word;
  }
  return { method, url, headers, body };
}

async function runCurl(request: CurlRequest): Promise<{ status: number; body: unknown }> {
  const res = await fetch(request.url, { method: request.method, headers: request.headers, ...(request.body === undefined ? {} : { body: request.body }) });
  const text = await res.text();
  return { status: res.status, body: text === '' ? undefined : (JSON.parse(text) as unknown) };
}

describe('development mode prints working instructions', () => {
  test('with no keys at all, the printed mint request, WebSocket URL and publish request work', { timeout: 20_000 }, async () => {
    const proc = new GatewayProcess({ NODE_ENV: 'development', PORT: '0', ADMIN_PORT: '0', GRPC_PORT: '0' });
    const clients: TestClient[] = [];
    try {
      // The log is written asynchronously (pino), the instructions at once: either may come first.
      const readyLogged = () => proc.stdoutLines.some((l) => parseJson(l)?.['msg'] === 'gateway ready');
      await waitFor(
        () => proc.child.exitCode !== null || (readyLogged() && proc.stdoutLines.some((l) => l.includes('/admin/publish')) && proc.stdoutLines.some((l) => l.includes('"subject"'))),
        SPAWN_DEADLINE_MS,
        'the ready log line and the development instructions on stdout',
      );
      assert.equal(proc.child.exitCode, null, `the gateway exited: ${proc.stderr}`);
      const ready = proc.stdoutLines.map(parseJson).find((l) => l?.['msg'] === 'gateway ready');
      assert.ok(ready !== undefined, proc.stdout);
      const publicPort = Number(ready['port']);
      const adminPort = Number(ready['admin_port']);
      assert.ok(publicPort > 0 && adminPort > 0, 'port 0 binds real ports');

      const text = proc.stdoutLines.join('\n');
      for (const name of KEY_NAMES) assert.ok(text.includes(name), `the generated ${name} is announced`);
      const secretToken = /^\s*SECRET_TOKEN=(\S+)$/m.exec(text)?.[1];
      const adminSecretToken = /^\s*ADMIN_SECRET_TOKEN=(\S+)$/m.exec(text)?.[1];
      assert.ok(secretToken !== undefined && adminSecretToken !== undefined, text);

      const curls = printedCommands(proc.stdoutLines, 'curl ').map(parseCurl);
      const mint = curls.find((c) => new URL(c.url).pathname === '/generate-token');
      const publish = curls.find((c) => new URL(c.url).pathname === '/admin/publish');
      const wscat = printedCommands(proc.stdoutLines, 'npx wscat ')[0] ?? [];
      assert.ok(mint !== undefined && publish !== undefined, text);
      const wsUrl = wscat[wscat.indexOf('-c') + 1] ?? '';
      const subprotocol = wscat[wscat.indexOf('-s') + 1] ?? '';

      // With PORT=0 the printed URLs carry the ports actually bound, not 0.
      assert.equal(Number(new URL(wsUrl).port), publicPort, wsUrl);
      assert.equal(Number(new URL(mint.url).port), adminPort, mint.url);
      assert.equal(Number(new URL(publish.url).port), adminPort, publish.url);
      assert.equal(new URL(wsUrl).searchParams.get('x-api-key'), secretToken, 'the URL uses the printed SECRET_TOKEN');
      assert.equal(mint.headers['X-API-Key'], secretToken, 'the mint request uses the printed SECRET_TOKEN');
      assert.equal(publish.headers['X-API-Key'], adminSecretToken, 'the publish request uses the printed ADMIN_SECRET_TOKEN');

      // The mint request returns a token, and that token opens a connection.
      const minted = await runCurl(mint);
      assert.equal(minted.status, 200, JSON.stringify(minted.body));
      const token = (minted.body as { token?: unknown }).token;
      assert.ok(typeof token === 'string' && token.length > 0, JSON.stringify(minted.body));
      const withMinted = new URL(wsUrl);
      withMinted.searchParams.set('token', token);
      const first = await openClient(withMinted.toString(), { protocols: [subprotocol] });
      clients.push(first);
      await first.expect('ready');
      first.close();
      await first.closeInfo();

      // The printed URL connects as printed.
      const client = await openClient(wsUrl, { protocols: [subprotocol] });
      clients.push(client);
      assert.equal(client.ws.protocol, 'json.v1');
      await client.expect('ready');

      // The printed publish request reaches that connection.
      const published = await runCurl(publish);
      assert.equal(published.status, 202, JSON.stringify(published.body));
      const event = await client.expect('event');
      const sent = JSON.parse(publish.body ?? '{}') as { payload: unknown };
      assert.deepEqual(event.payload, sent.payload);

      assert.equal(await proc.stop(), 0);
      assert.equal(proc.stderr, '');
    } finally {
      for (const c of clients) c.close();
      if (proc.child.exitCode === null) proc.child.kill('SIGKILL');
    }
  });

  test('API keys the operator set are never printed, only placeholders for them', { timeout: 20_000 }, async () => {
    const secrets = { SECRET_TOKEN: 'operator-user-key-7c1f', ADMIN_SECRET_TOKEN: 'operator-admin-key-9d2e' };
    const proc = new GatewayProcess({ NODE_ENV: 'development', PORT: '0', ADMIN_PORT: '0', GRPC_PORT: '0', ...secrets });
    try {
      await waitFor(() => proc.child.exitCode !== null || proc.stdoutLines.some((l) => l.includes('/admin/publish')), SPAWN_DEADLINE_MS, 'the development instructions');
      assert.ok(proc.stdout.includes('TOKEN_AES_KEY'), 'the generated AES keys are announced');
      for (const value of Object.values(secrets)) assert.ok(!proc.stdout.includes(value), 'a configured key is not on stdout');
      assert.ok(proc.stdout.includes("X-API-Key: <SECRET_TOKEN>'") && proc.stdout.includes("X-API-Key: <ADMIN_SECRET_TOKEN>'"), proc.stdout);
      assert.equal(await proc.stop(), 0);
    } finally {
      if (proc.child.exitCode === null) proc.child.kill('SIGKILL');
    }
  });

  test('SIGHUP keeps the generated keys: nothing needs a restart, and the printed API key still works', { timeout: 20_000 }, async () => {
    const proc = new GatewayProcess({ NODE_ENV: 'development', PORT: '0', ADMIN_PORT: '0', GRPC_PORT: '0' });
    try {
      const logged = (msg: string) => proc.stdoutLines.map(parseJson).find((l) => l?.['msg'] === msg);
      await waitFor(() => proc.child.exitCode !== null || (logged('gateway ready') !== undefined && proc.stdoutLines.some((l) => l.includes('/generate-token'))), SPAWN_DEADLINE_MS, 'start-up');
      proc.child.kill('SIGHUP');
      await waitFor(() => logged('configuration reloaded') !== undefined, 5000, 'the reload');
      assert.deepEqual(logged('configuration reloaded')?.['need_restart'], []);
      const secretToken = /X-API-Key: ([^']+)'/.exec(proc.stdoutLines.find((l) => l.includes('/generate-token')) ?? '')?.[1] ?? '';
      const adminPort = Number(logged('gateway ready')?.['admin_port']);
      const minted = await fetch(`http://127.0.0.1:${adminPort}/generate-token`, {
        method: 'POST',
        headers: { 'x-api-key': secretToken, 'content-type': 'application/json' },
        body: JSON.stringify({ company_id: 'acme', agent_id: 'support', user_id: 'alice', expires_in_seconds: 60 }),
      });
      assert.equal(minted.status, 200);
      assert.equal(await proc.stop(), 0);
    } finally {
      if (proc.child.exitCode === null) proc.child.kill('SIGKILL');
    }
  });

  test('with a token key the operator set, the printed URL carries a placeholder, not a token minted under that key', { timeout: 20_000 }, async () => {
    const proc = new GatewayProcess({ NODE_ENV: 'development', PORT: '0', ADMIN_PORT: '0', GRPC_PORT: '0', TOKEN_AES_KEY: 'ab'.repeat(32) });
    try {
      await waitFor(() => proc.child.exitCode !== null || proc.stdoutLines.some((l) => l.includes('&token=')), SPAWN_DEADLINE_MS, 'the development instructions');
      assert.ok(proc.stdout.includes('&token=<token>'), proc.stdout);
      assert.equal(await proc.stop(), 0);
    } finally {
      if (proc.child.exitCode === null) proc.child.kill('SIGKILL');
    }
  });
});

function parseJson(line: string): Record<string, unknown> | undefined {
  try {
    const value = JSON.parse(line) as unknown;
    return value !== null && typeof value === 'object' ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined; // The instruction lines are plain text.
  }
}

describe('health and readiness', () => {
  let gw: TestGateway | undefined;
  after(async () => {
    await gw?.stop();
  });

  test('/ready and /health answer 200 on the public port once started', async () => {
    gw = await startGateway();
    const ready = await fetch(`${gw.httpBase}/ready`);
    assert.equal(ready.status, 200);
    assert.deepEqual(await ready.json(), { status: 'ready' });
    const health = await fetch(`${gw.httpBase}/health`);
    assert.equal(health.status, 200);
    assert.deepEqual(await health.json(), { status: 'ok' });
  });
});

describe('graceful stop', () => {
  test('SIGTERM closes every user and admin connection with 1001, exits 0 and refuses new connections', { timeout: 20_000 }, async () => {
    const gw = await startGateway();
    const clients: TestClient[] = [];
    try {
      clients.push(
        await gw.connectUser('acme', 'support', 'alice'),
        await gw.connectUser('acme', 'support', 'bob'),
        await gw.connectUser('globex', 'sales', 'carol'),
        await gw.connectAdmin('root'),
        await gw.connectAdmin('scoped', { subscribed_company_id: 'acme', subscribed_agent_id: 'support' }),
      );
      const closes = clients.map((c) => c.closeInfo(SPAWN_DEADLINE_MS));
      const { wsBase, httpBase } = gw;

      const code = await gw.stop();
      assert.equal(code, 0, gw.stderr.join(''));
      const infos = await Promise.all(closes);
      for (const info of infos) assert.equal(info.code, 1001, JSON.stringify(infos));
      assert.ok(infos.every((i) => i.reason === 'going-away'), JSON.stringify(infos));
      assert.equal(gw.logLines((l) => l['msg'] === 'gateway stopped').length, 1);

      await assert.rejects(openClient(`${wsBase}/ws/acme/support?user=dave`), (err: NodeJS.ErrnoException) => {
        assert.equal(err.code, 'ECONNREFUSED');
        return true;
      });
      await assert.rejects(fetch(`${httpBase}/health`), (err: Error & { cause?: NodeJS.ErrnoException }) => {
        assert.equal(err.cause?.code, 'ECONNREFUSED');
        return true;
      });
    } finally {
      for (const c of clients) c.close();
      await gw.stop();
    }
  });

  test('while it drains, the pod answers /health 200 and /ready 503, and refuses new connections with 1013 and publishes with 503', { timeout: 20_000 }, async () => {
    // 60 connections closed one by one over 3 s: the probes below land mid-drain.
    const gw = await startGateway({ DRAIN_WINDOW_MS: '3000' });
    const clients = await Promise.all(Array.from({ length: 60 }, (_, i) => gw.connectUser('drain', 'desk', `u${i}`)));
    let closed = 0;
    const closes = clients.map(async (client) => {
      const info = await client.closeInfo(10_000);
      closed++;
      return info;
    });
    const lateUrl = await gw.userUrl('drain', 'desk', 'late');
    try {
      gw.child.kill('SIGTERM');
      await Promise.race(closes);
      const [health, ready] = await Promise.all([fetch(`${gw.httpBase}/health`), fetch(`${gw.httpBase}/ready`)]);
      const late = await openClient(lateUrl);
      const refused = await late.closeInfo();
      const publish = await gw.admin('POST', '/admin/publish', gw.keys.adminSecretToken, { subject: 'websocket.drain.desk.chats', payload: { seq: 1 } });
      assert.ok(closed < clients.length, `the drain was still going (${closed} of ${clients.length} closed)`);
      assert.equal(health.status, 200, 'the process is alive: a liveness probe must not fail');
      assert.equal(ready.status, 503, 'not ready while draining');
      assert.equal(refused.code, 1013, 'a new connection is told to try again later');
      assert.equal(publish.status, 503, `a publish is told to go elsewhere: ${JSON.stringify(publish.body)}`);
      assert.ok((await Promise.all(closes)).every((info) => info.code === 1001), 'every old connection got 1001');
      assert.equal(await gw.exited, 0);
    } finally {
      for (const c of clients) c.close();
      await gw.stop();
    }
  });
});

describe('flags', () => {
  test('--log-level debug is accepted and wins over LOG_LEVEL=info', { timeout: 20_000 }, async () => {
    const gw = await startGateway({ LOG_LEVEL: 'info' }, randomKeys(), ['--log-level', 'debug']);
    try {
      const client = await gw.connectUser('acme', 'support', 'alice');
      await gw.publish('websocket.acme.support.chats', { event_id: 'flag-1' });
      await client.expect('event');
      // Dispatch logs deliveries at debug level only.
      await waitFor(() => gw.logLines((l) => l['level'] === 'debug').length > 0, 5000, 'a debug log line');
      client.close();
    } finally {
      assert.equal(await gw.stop(), 0);
    }
  });
});
