import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { headers as natsHeaders } from 'nats';
import { parseAesKeys, TokenCodec } from '../../src/auth/tokenCodec.js';
import { openssl, selfSignedCertificate } from '../support/certificates.js';
import { openClient, type TestClient } from '../support/client.js';
import { randomKeys, startGateway, type TestGateway } from '../support/gateway.js';
import { NatsServer } from '../support/nats.js';
import { RedisServer } from '../support/redis.js';
import { waitFor } from '../support/wait.js';

/** `count` ready clients of one agent, each its own user; tokens are minted here, not over HTTP. */
async function connectMany(gw: TestGateway, company: string, agent: string, count: number): Promise<TestClient[]> {
  const codec = new TokenCodec(parseAesKeys(gw.keys.tokenAesKeys));
  const clients: TestClient[] = [];
  for (let start = 0; start < count; start += 100) {
    const urls = Array.from({ length: Math.min(100, count - start) }, (_, i) => {
      const user = `u${start + i}`;
      const token = codec.mintUser({ companyId: company, agentId: agent, userId: user, expiresAtMs: Date.now() + 600_000 });
      return `${gw.wsBase}/ws/${company}/${agent}?user=${user}&x-api-key=${gw.keys.secretToken}&token=${encodeURIComponent(token)}`;
    });
    const opened = await Promise.all(urls.map((url) => openClient(url)));
    await Promise.all(opened.map((client) => client.expect('ready', 10_000)));
    clients.push(...opened);
  }
  return clients;
}

describe('SIGHUP reload', () => {
  const dir = mkdtempSync(join(tmpdir(), 'switchboard-reload-'));
  const file = join(dir, 'switchboard.yaml');
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('changes the log level and the rate limit, keeping connections', async () => {
    writeFileSync(file, 'log: { level: info }\nlimits: { messagesPerSecond: 5, messageBurst: 5 }\n');
    const gw = await startGateway({ CONFIG_FILE: file });
    try {
      const client = await gw.connectUser('hup', 'desk', 'u1');
      const burst = async (n: number) => {
        for (let i = 0; i < n; i++) client.send(JSON.stringify({ type: 'select_chat', chat_id: `c${i % 2}` }));
        await client.roundTrip();
      };
      await burst(8);
      assert.ok(client.raw.some((frame) => frame.includes('RateLimitExceeded')), 'the old limit applies');
      writeFileSync(file, 'log: { level: debug }\nlimits: { messagesPerSecond: 1000, messageBurst: 1000 }\n');
      const reloadedBefore = gw.logLines((l) => l['msg'] === 'configuration reloaded').length;
      gw.child.kill('SIGHUP');
      await waitFor(() => gw.logLines((l) => l['msg'] === 'configuration reloaded').length > reloadedBefore, 3000, 'the reload');
      const seen = client.raw.length;
      await new Promise((resolve) => setTimeout(resolve, 1100));
      await burst(40);
      assert.ok(!client.raw.slice(seen).some((frame) => frame.includes('RateLimitExceeded')), 'the new limit applies to the live connection');
      assert.ok(client.isOpen);
      const other = await gw.connectUser('hup', 'desk', 'u2');
      await waitFor(() => gw.logLines((l) => l['level'] === 'debug').length > 0, 3000, 'a debug line');
      other.close();
      client.close();
    } finally {
      await gw.stop();
    }
  });

  test('a bad file is refused and the running configuration stays', async () => {
    writeFileSync(file, 'log: { level: info }\n');
    const gw = await startGateway({ CONFIG_FILE: file });
    try {
      writeFileSync(file, 'log: { level: loud }\n');
      gw.child.kill('SIGHUP');
      await waitFor(() => gw.logLines((l) => l['msg'] === 'configuration reload refused; keeping the running configuration').length > 0, 3000, 'the refusal');
      const client = await gw.connectUser('hup', 'desk', 'u3');
      client.close();
    } finally {
      assert.equal(await gw.stop(), 0);
    }
  });
});

describe('drain', () => {
  test('SIGTERM closes 2,000 connections with 1001, spread over DRAIN_WINDOW_MS, and exits 0', async () => {
    const gw = await startGateway({ DRAIN_WINDOW_MS: '1500' });
    const clients = await connectMany(gw, 'drain', 'desk', 2000);
    const closedAt: number[] = [];
    const started = Date.now();
    const closes = clients.map(async (client) => {
      const info = await client.closeInfo(10_000);
      closedAt.push(Date.now() - started);
      return info.code;
    });
    gw.child.kill('SIGTERM');
    const codes = await Promise.all(closes);
    assert.ok(codes.every((code) => code === 1001), `every client got 1001 (${[...new Set(codes)].join(', ')})`);
    assert.ok(Math.max(...closedAt) - Math.min(...closedAt) >= 1000, 'closes were spread over the window');
    assert.equal(await gw.exited, 0);
  });

  describe('with events flowing', () => {
    let redis: RedisServer;
    let nats: NatsServer;
    before(async () => {
      [redis, nats] = await Promise.all([RedisServer.start(), NatsServer.start()]);
    });
    after(async () => {
      await Promise.all([redis.stop(), nats.stop()]);
    });

    test('2,000 clients get 1001 within the window while events flow, and no event is lost', async () => {
      const keys = randomKeys();
      const env = { REDIS_URL: redis.url, NATS_URL: nats.url, DRAIN_WINDOW_MS: '2000', NATS_ACK_WAIT_MS: '2000', NATS_NAK_DELAY_MS: '200' };
      const [draining, staying] = await Promise.all([startGateway(env, keys), startGateway(env, keys)]);
      const nc = await nats.client();
      let seq = 0;
      let publishing = false;
      let publisher: Promise<void> = Promise.resolve();
      try {
        const leaving = await connectMany(draining, 'flow', 'desk', 2000);
        const watcher = await staying.connectUser('flow', 'desk', 'watcher');
        publishing = true;
        publisher = (async () => {
          while (publishing) {
            const h = natsHeaders();
            await nc.jetstream().publish('websocket.flow.desk.chats', JSON.stringify({ seq: seq++ }), { headers: h });
            await new Promise((resolve) => setTimeout(resolve, 5));
          }
        })();
        await new Promise((resolve) => setTimeout(resolve, 300));
        const signalledAt = Date.now();
        draining.child.kill('SIGTERM');
        const closes = await Promise.all(leaving.map(async (client) => ({ code: (await client.closeInfo(10_000)).code, afterMs: Date.now() - signalledAt })));
        assert.ok(closes.every((close) => close.code === 1001), 'every client got 1001');
        // The window, plus the events in flight finishing first and a busy machine's slack.
        const last = Math.max(...closes.map((close) => close.afterMs));
        assert.ok(last < 2000 + 2000, `the last close came ${last} ms after SIGTERM`);
        assert.equal(await draining.exited, 0);
        await new Promise((resolve) => setTimeout(resolve, 300));
        publishing = false;
        await publisher;
        const total = seq;
        const received = () => new Set(watcher.raw.map((text) => (JSON.parse(text) as { payload?: { seq?: number } }).payload?.seq).filter((n) => n !== undefined));
        await waitFor(() => received().size === total, 15_000, `all ${total} events on the pod that stays`);
        watcher.close();
      } finally {
        publishing = false;
        await publisher.catch(() => undefined);
        await Promise.all([draining.stop(), staying.stop()]);
      }
    });
  });
});

describe('wss', () => {
  test('the public listener speaks TLS with TLS_CERT_FILE / TLS_KEY_FILE', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'switchboard-tls-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const { cert, key } = selfSignedCertificate(dir);
    const gw = await startGateway({ TLS_CERT_FILE: cert, TLS_KEY_FILE: key });
    try {
      const url = (await gw.userUrl('tls', 'desk', 'u1')).replace('ws://', 'wss://');
      const client = await openClient(url, { ca: readFileSync(cert) });
      await client.expect('ready');
      await gw.publish('websocket.tls.desk.chats', { seq: 1 });
      assert.deepEqual((await client.expect('event')).payload, { seq: 1 });
      client.close();
      await assert.rejects(openClient(url.replace('wss://', 'ws://')));
      const port = new URL(gw.httpBase).port;
      assert.equal(containerHealthCheck({ PORT: port, TLS_CERT_FILE: cert, TLS_KEY_FILE: key }), 0, 'the health check speaks TLS to a TLS pod');
      assert.equal(containerHealthCheck({ PORT: port }), 1, 'plain HTTP to a TLS pod is not health');
    } finally {
      await gw.stop();
    }
  });

  test('the container health check (deploy/Dockerfile) passes on a live plain pod and fails once it is gone', async () => {
    const gw = await startGateway();
    const port = new URL(gw.httpBase).port;
    try {
      assert.equal(containerHealthCheck({ PORT: port }), 0);
    } finally {
      await gw.stop();
    }
    assert.equal(containerHealthCheck({ PORT: port }), 1);
  });
});

/** Runs the image's HEALTHCHECK command with only `env` (as the container has it); answers its exit status. */
function containerHealthCheck(env: Record<string, string>): number | null {
  const script = fileURLToPath(new URL('../../src/healthcheck.js', import.meta.url));
  return spawnSync(process.execPath, [script], { env, stdio: 'ignore', timeout: 10_000 }).status;
}

describe('pod-to-pod gRPC: mTLS and IPv6', () => {
  let redis: RedisServer;
  let dir: string;
  before(async () => {
    redis = await RedisServer.start();
    dir = mkdtempSync(join(tmpdir(), 'switchboard-mtls-'));
  });
  after(async () => {
    await redis.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** A CA and a certificate it signs for 127.0.0.1, as PEM files in `dir` named after `name`. */
  async function authority(name: string): Promise<Record<string, string>> {
    const file = (suffix: string) => join(dir, `${name}-${suffix}`);
    openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', file('ca.key'), '-out', file('ca.pem'), '-days', '1', '-subj', `/CN=${name}-ca`]);
    openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', file('pod.key'), '-out', file('pod.csr'), '-subj', '/CN=pod']);
    writeFileSync(file('ext.cnf'), 'subjectAltName=IP:127.0.0.1\n');
    openssl(['x509', '-req', '-in', file('pod.csr'), '-CA', file('ca.pem'), '-CAkey', file('ca.key'), '-CAcreateserial', '-out', file('pod.pem'), '-days', '1', '-extfile', file('ext.cnf')]);
    return { GRPC_TLS_CA_FILE: file('ca.pem'), GRPC_TLS_CERT_FILE: file('pod.pem'), GRPC_TLS_KEY_FILE: file('pod.key') };
  }

  test('pods with certificates from one CA forward events; a pod from another CA is refused', async () => {
    const [trusted, stranger] = [await authority('trusted'), await authority('stranger')];
    const keys = randomKeys();
    // The first push to a peer includes the TLS handshake: leave it time on a busy machine.
    const env = { REDIS_URL: redis.url, GRPC_DEADLINE_MS: '3000' };
    const [owner, sender, intruder] = await Promise.all([
      startGateway({ ...env, ...trusted }, keys),
      startGateway({ ...env, ...trusted }, keys),
      startGateway({ ...env, ...stranger }, keys),
    ]);
    try {
      const client = await owner.connectUser('mtls', 'desk', 'u1');
      await sender.publish('websocket.mtls.desk.chats', { seq: 1 });
      assert.deepEqual((await client.expect('event', 5000)).payload, { seq: 1 });
      // Without NATS nothing redelivers, so the publisher hears that the owner missed the event.
      const refused = await intruder.admin('POST', '/admin/publish', keys.adminSecretToken, { subject: 'websocket.mtls.desk.chats', payload: { seq: 2 } });
      assert.equal(refused.status, 503);
      const text = String((await intruder.admin('GET', '/metrics', undefined)).body);
      assert.match(text, new RegExp(`grpc_forward_errors_total\\{peer="${owner.podId.replace(/\./g, '\\.')}",reason="[a-z-]+"\\} [1-9]`));
      await client.expectSilence(300);
      client.close();
    } finally {
      await Promise.all([owner.stop(), sender.stop(), intruder.stop()]);
    }
  });

  test('pods on an IPv6 POD_IP (an IPv6-only cluster) get bracketed pod ids and forward events to each other', async () => {
    const keys = randomKeys();
    const env = { REDIS_URL: redis.url, POD_IP: '::1' };
    const [owner, sender] = await Promise.all([startGateway(env, keys), startGateway(env, keys)]);
    try {
      assert.match(owner.podId, /^\[::1\]:\d+$/);
      const client = await owner.connectUser('six', 'desk', 'u1');
      await sender.publish('websocket.six.desk.chats', { seq: 1 });
      assert.deepEqual((await client.expect('event', 5000)).payload, { seq: 1 });
      client.close();
    } finally {
      await Promise.all([owner.stop(), sender.stop()]);
    }
  });
});
