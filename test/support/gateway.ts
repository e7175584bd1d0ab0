import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { openClient, type TestClient } from './client.js';
import { freePort } from './ports.js';
import { waitFor } from './wait.js';

const MAIN = fileURLToPath(new URL('../../src/main.js', import.meta.url));

/** Keys a test gateway runs with; tests mint tokens with them. */
export interface TestKeys {
  readonly secretToken: string;
  readonly adminSecretToken: string;
  readonly tokenAesKeys: readonly string[];
  readonly adminTokenAesKeys: readonly string[];
}

/** A gateway process started for a test, listening on free ports. */
export class TestGateway {
  readonly logs: string[] = [];
  readonly stderr: string[] = [];
  readonly exited: Promise<number | null>;
  publicPort = 0;
  adminPort = 0;
  podId = '';

  constructor(
    readonly child: ChildProcess,
    readonly keys: TestKeys,
  ) {
    this.exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
    let partial = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      const lines = (partial + chunk.toString()).split('\n');
      partial = lines.pop() ?? '';
      this.logs.push(...lines);
    });
    child.stderr?.on('data', (chunk: Buffer) => this.stderr.push(chunk.toString()));
  }

  get wsBase(): string {
    return `ws://127.0.0.1:${this.publicPort}`;
  }

  get httpBase(): string {
    return `http://127.0.0.1:${this.publicPort}`;
  }

  get adminBase(): string {
    return `http://127.0.0.1:${this.adminPort}`;
  }

  /** The URL of a user connection with the right API key and a freshly minted token. */
  async userUrl(companyId: string, agentId: string, userId: string): Promise<string> {
    const token = await this.mintUserToken(companyId, agentId, userId);
    return `${this.wsBase}/ws/${companyId}/${agentId}?user=${userId}&x-api-key=${this.keys.secretToken}&token=${encodeURIComponent(token)}`;
  }

  /** The URL of an admin connection with a freshly minted admin token. */
  async adminUrl(adminId: string, scope: Record<string, string> = {}): Promise<string> {
    const token = await this.mintAdminToken({ admin_id: adminId, expires_in_seconds: 600, ...scope });
    return `${this.wsBase}/ws/admin?x-api-key=${this.keys.adminSecretToken}&token=${encodeURIComponent(token)}`;
  }

  /** Connects a user and waits for `ready`. */
  async connectUser(companyId: string, agentId: string, userId: string): Promise<TestClient> {
    const client = await openClient(await this.userUrl(companyId, agentId, userId));
    await client.expect('ready');
    return client;
  }

  /** Connects an admin and waits for `ready`. */
  async connectAdmin(adminId: string, scope: Record<string, string> = {}): Promise<TestClient> {
    const client = await openClient(await this.adminUrl(adminId, scope));
    await client.expect('ready');
    return client;
  }

  async mintUserToken(companyId: string, agentId: string, userId: string, expiresInSeconds = 600): Promise<string> {
    const res = await this.admin('POST', '/generate-token', this.keys.secretToken, {
      company_id: companyId,
      agent_id: agentId,
      user_id: userId,
      expires_in_seconds: expiresInSeconds,
    });
    if (res.status !== 200) throw new Error(`generate-token answered ${res.status}: ${JSON.stringify(res.body)}`);
    return (res.body as { token: string }).token;
  }

  async mintAdminToken(body: Record<string, unknown>): Promise<string> {
    const res = await this.admin('POST', '/admin/generate-token', this.keys.adminSecretToken, body);
    if (res.status !== 200) throw new Error(`admin/generate-token answered ${res.status}: ${JSON.stringify(res.body)}`);
    return (res.body as { token: string }).token;
  }

  /** Publishes through the admin API. */
  async publish(subject: string, payload: Record<string, unknown>): Promise<void> {
    const res = await this.admin('POST', '/admin/publish', this.keys.adminSecretToken, { subject, payload });
    if (res.status !== 202) throw new Error(`publish answered ${res.status}: ${JSON.stringify(res.body)}`);
  }

  /** Calls the admin API; `body` is sent as JSON (a string is sent as it is). */
  async admin(method: string, path: string, apiKey: string | undefined, body?: unknown): Promise<{ status: number; body: unknown; headers: Headers }> {
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (apiKey !== undefined) headers['x-api-key'] = apiKey;
    const res = await fetch(`${this.adminBase}${path}`, {
      method,
      headers,
      ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
    });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      // Non-JSON bodies (the metrics text) are returned as text.
    }
    return { status: res.status, body: parsed, headers: res.headers };
  }

  /** The current value of a metric sample line (name with labels as Prometheus prints it), or 0. */
  async metric(sample: string): Promise<number> {
    const res = await fetch(`${this.adminBase}/metrics`);
    const text = await res.text();
    const line = text.split('\n').find((l) => l.startsWith(`${sample} `));
    return line === undefined ? 0 : Number(line.slice(sample.length + 1));
  }

  /** Parsed JSON log lines that match `predicate`. */
  logLines(predicate: (line: Record<string, unknown>) => boolean): Record<string, unknown>[] {
    return this.logs.flatMap((line) => {
      try {
        const parsed = JSON.parse(line) as Record<string, unknown>;
        return predicate(parsed) ? [parsed] : [];
      } catch {
        return [];
      }
    });
  }

  /** Sends SIGTERM and waits for the exit code. */
  async stop(): Promise<number | null> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }
}

/** Fresh random keys for one gateway. */
export function randomKeys(): TestKeys {
  return {
    secretToken: randomBytes(12).toString('hex'),
    adminSecretToken: randomBytes(12).toString('hex'),
    tokenAesKeys: [randomBytes(32).toString('hex')],
    adminTokenAesKeys: [randomBytes(32).toString('hex')],
  };
}

/** Runs the compiled gateway with `env` on top of test defaults (port 0, quiet logs); resolves when ready. */
/** The settings that give a gateway process these keys. */
export function keyEnv(keys: TestKeys): Record<string, string> {
  return {
    SECRET_TOKEN: keys.secretToken,
    ADMIN_SECRET_TOKEN: keys.adminSecretToken,
    TOKEN_AES_KEY: keys.tokenAesKeys.join(','),
    ADMIN_TOKEN_AES_KEY: keys.adminTokenAesKeys.join(','),
  };
}

export async function startGateway(
  env: Record<string, string> = {},
  keys: TestKeys = randomKeys(),
  args: string[] = [],
  nodeArgs: string[] = [],
): Promise<TestGateway> {
  const child = spawn(process.execPath, [...nodeArgs, MAIN, ...args], {
    env: {
      PATH: process.env['PATH'] ?? '',
      NODE_ENV: 'test',
      PORT: '0',
      ADMIN_PORT: '0',
      // The pod id is POD_IP:GRPC_PORT, so pods of one test cluster need distinct ports.
      GRPC_PORT: String(await freePort()),
      HOST: '127.0.0.1',
      ADMIN_HOST: '127.0.0.1',
      ...keyEnv(keys),
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const gateway = new TestGateway(child, keys);
  let exitCode: number | null | undefined;
  void gateway.exited.then((code) => {
    exitCode = code;
  });
  try {
    await waitFor(
      () => exitCode !== undefined || gateway.logLines((l) => l['msg'] === 'gateway ready').length > 0,
      10_000,
      'the gateway to log "gateway ready"',
    );
  } catch (err) {
    // A gateway that never got ready is not handed to the test, so nothing else would stop it.
    child.kill('SIGKILL');
    throw err;
  }
  if (exitCode !== undefined) throw new Error(`gateway exited with ${exitCode}: ${gateway.stderr.join('')}`);
  const ready = gateway.logLines((l) => l['msg'] === 'gateway ready')[0] ?? {};
  gateway.publicPort = Number(ready['port']);
  gateway.adminPort = Number(ready['admin_port']);
  gateway.podId = String(ready['pod_id']);
  return gateway;
}
