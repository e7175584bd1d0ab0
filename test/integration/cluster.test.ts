import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, afterEach, before, describe, test } from 'node:test';
import { parseAesKeys, TokenCodec } from '../../src/auth/tokenCodec.js';
import { expectReplaced, openClient, UpgradeRefused, type TestClient } from '../support/client.js';
import { randomKeys, startGateway, type TestGateway } from '../support/gateway.js';
import { freePort } from '../support/ports.js';
import { RedisServer } from '../support/redis.js';
import { TcpGate } from '../support/tcpGate.js';
import { waitFor } from '../support/wait.js';

const LEASE_MS = 3000;
const RENEW_MS = 1000;

/** Env for a pod of the test cluster: short leases so lease behaviour shows within a test. */
function clusterEnv(redis: RedisServer, extra: Record<string, string> = {}): Record<string, string> {
  return { REDIS_URL: redis.url, LEASE_TTL_MS: String(LEASE_MS), LEASE_RENEW_INTERVAL_MS: String(RENEW_MS), REDIS_COMMAND_TIMEOUT_MS: '300', ...extra };
}

describe('cluster on Redis', () => {
  let redis: RedisServer;
  let pods: TestGateway[] = [];
  const clients: TestClient[] = [];
  const keys = randomKeys();

  before(async () => {
    redis = await RedisServer.start();
    pods = await Promise.all([0, 1, 2].map(() => startGateway(clusterEnv(redis), keys)));
  });
  afterEach(() => {
    for (const client of clients.splice(0)) client.close();
  });
  after(async () => {
    await Promise.all(pods.map((pod) => pod.stop()));
    await redis.stop();
  });
  const track = (client: TestClient) => {
    clients.push(client);
    return client;
  };
  const [a, b, c] = [() => pods[0]!, () => pods[1]!, () => pods[2]!];
  /** After a test paused Redis: the pods take connections again once their probe sees it back. */
  const everyPodReady = () =>
    waitFor(async () => (await Promise.all(pods.map((pod) => fetch(`${pod.httpBase}/ready`)))).every((res) => res.status === 200), 5000, 'every pod ready again');

  test('a login on another pod closes the first connection with 4402; the new one is ready', async () => {
    const first = track(await a().connectUser('acme', 'support', 'alice'));
    const second = track(await b().connectUser('acme', 'support', 'alice'));
    await expectReplaced(first);
    assert.ok(second.isOpen);
    const members = await redis.client.zrange('session:acme:support:alice', '0', '-1');
    assert.equal(members.length, 1);
    assert.match(members[0] ?? '', new RegExp(`\\|${b().podId.replace(/\./g, '\\.')}\\|`));
  });

  test('12 simultaneous connects of one identity over three pods leave exactly one live socket, 20 rounds', async () => {
    for (let round = 0; round < 20; round++) {
      const user = `racer-${round}`;
      const urls = await Promise.all(Array.from({ length: 12 }, (_, i) => pods[i % 3]!.userUrl('acme', 'support', user)));
      const racers = (await Promise.all(urls.map((url) => openClient(url)))).map(track);
      await waitFor(() => racers.filter((r) => r.isOpen).length <= 1, 5000, `round ${round}: at most one survivor`);
      // Give late kill messages time to arrive: the survivor must stay the only one.
      await new Promise((resolve) => setTimeout(resolve, 100));
      const open = racers.filter((r) => r.isOpen);
      assert.equal(open.length, 1, `round ${round}: exactly one live socket`);
      assert.equal(open[0]?.raw[0], '{"type":"ready"}');
      for (const loser of racers.filter((r) => !r.isOpen)) assert.equal((await loser.closeInfo()).code, 4402, `round ${round}: ${loser.error?.message}`);
      assert.equal((await redis.client.zrange(`session:acme:support:${user}`, '0', '-1')).length, 1);
    }
  });

  test('cluster-wide admin: sessions and pods from any pod; disconnect reaches the pod that holds the session', async () => {
    const onB = track(await b().connectUser('acme', 'support', 'bob'));
    const adminOnC = track(await c().connectAdmin('root'));
    const sessions = await a().admin('GET', '/admin/sessions', keys.adminSecretToken);
    const rows = (sessions.body as { sessions: Array<{ user_id?: string; admin_id?: string; pod_id: string }> }).sessions;
    assert.equal(rows.find((s) => s.user_id === 'bob')?.pod_id, b().podId);
    assert.equal(rows.find((s) => s.admin_id === 'root')?.pod_id, c().podId);
    const podList = await a().admin('GET', '/admin/pods', keys.adminSecretToken);
    assert.deepEqual(
      (podList.body as { pods: Array<{ pod_id: string }> }).pods.map((p) => p.pod_id).sort(),
      pods.map((p) => p.podId).sort(),
    );
    const res = await a().admin('POST', '/admin/disconnect', keys.adminSecretToken, { company_id: 'acme', agent_id: 'support', user_id: 'bob' });
    assert.equal(res.status, 200);
    assert.equal((await onB.closeInfo()).code, 1000);
    assert.equal((await a().admin('POST', '/admin/disconnect', keys.adminSecretToken, { admin_id: 'root' })).status, 200);
    assert.equal((await adminOnC.closeInfo()).code, 1000);
    assert.equal((await a().admin('POST', '/admin/disconnect', keys.adminSecretToken, { admin_id: 'root' })).status, 404);
  });

  test('an admin disconnect of a session whose only leases have lapsed or name a dead pod answers 404', async () => {
    const key = 'session:acme:support:ghost';
    await redis.client.zadd(key, '1', `000000000000001|${a().podId}|lapsed`, String(Date.now() + 60_000), '000000000000002|10.9.9.9:50051|on-a-dead-pod');
    const res = await a().admin('POST', '/admin/disconnect', keys.adminSecretToken, { company_id: 'acme', agent_id: 'support', user_id: 'ghost' });
    assert.equal(res.status, 404, 'no live session to disconnect');
    assert.equal(await redis.client.exists(key), 0, 'the dead leases are gone');
  });

  test('an admin disconnect the holding pod did not hear (its Redis connection was down) closes the session at its next renewal', async () => {
    const gate = await TcpGate.start(redis.port);
    // A longer lease, so the pod keeps its session through the outage and has to decide at renewal.
    const away = await startGateway(clusterEnv(redis, { REDIS_URL: gate.redisUrl, LEASE_TTL_MS: '6000' }), keys);
    try {
      const client = track(await away.connectUser('acme', 'support', 'dora'));
      gate.shut();
      const res = await a().admin('POST', '/admin/disconnect', keys.adminSecretToken, { company_id: 'acme', agent_id: 'support', user_id: 'dora' });
      assert.equal(res.status, 200);
      await new Promise((resolve) => setTimeout(resolve, 500));
      assert.ok(client.isOpen, 'the kill message went unheard');
      gate.open();
      assert.equal((await client.closeInfo(5000)).code, 1000, 'closed as an admin disconnect');
      assert.equal(await redis.client.zcard('session:acme:support:dora'), 0, 'the renewal did not bring the session back');
    } finally {
      await away.stop();
      await gate.stop();
    }
  });

  test('a replacement the holding pod did not hear, whose newer connection has already left, still closes the old one with 4402', async () => {
    const gate = await TcpGate.start(redis.port);
    const away = await startGateway(clusterEnv(redis, { REDIS_URL: gate.redisUrl, LEASE_TTL_MS: '6000' }), keys);
    try {
      const client = track(await away.connectUser('acme', 'support', 'ivo'));
      gate.shut();
      const newer = await a().connectUser('acme', 'support', 'ivo');
      await new Promise((resolve) => setTimeout(resolve, 300));
      assert.ok(client.isOpen, 'the kill message went unheard');
      newer.close();
      await waitFor(async () => (await redis.client.zcard('session:acme:support:ivo')) === 0, 2000, 'the newer connection to release its lease');
      gate.open();
      // The place is free again: without the replacement's marker the renewal would re-assert the old lease.
      assert.equal((await client.closeInfo(5000)).code, 4402, 'closed as replaced');
      assert.equal(await redis.client.zcard('session:acme:support:ivo'), 0, 'the renewal did not bring the session back');
    } finally {
      await away.stop();
      await gate.stop();
    }
  });

  test('a handshake Redis answers only after SIGTERM is refused with 1013 instead of joining a drain that has started', async () => {
    // 60 connections closed over 3 s keep the drain going while Redis answers the late handshake.
    const pod = await startGateway(clusterEnv(redis, { REDIS_COMMAND_TIMEOUT_MS: '5000', DRAIN_WINDOW_MS: '3000', SHUTDOWN_TIMEOUT_MS: '8000' }), keys);
    const early = await Promise.all(Array.from({ length: 60 }, (_, i) => pod.connectUser('acme', 'drain', `u${i}`)));
    const lateUrl = await pod.userUrl('acme', 'drain', 'late');
    let late: TestClient | undefined;
    redis.pause();
    try {
      late = await openClient(lateUrl);
      // Its session acquire now waits on Redis.
      await new Promise((resolve) => setTimeout(resolve, 200));
      pod.child.kill('SIGTERM');
      await Promise.race(early.map((client) => client.closeInfo(5000)));
    } finally {
      redis.resume();
    }
    try {
      const refused = await late.closeInfo(5000);
      assert.equal(refused.code, 1013, `closed with ${refused.code}, after ${JSON.stringify(late.raw)}`);
      assert.equal((JSON.parse(late.raw[0] ?? '{}') as { type?: string }).type, 'error', 'refused, never ready');
      assert.equal(await pod.exited, 0);
    } finally {
      late.close();
      for (const client of early) client.close();
      await pod.stop();
    }
    await everyPodReady();
  });

  test('Redis refusing writes (out of memory): a renewal counts as failed, not as done', async () => {
    track(await a().connectUser('acme', 'support', 'oom'));
    const renewals = (outcome: string) => a().metric(`switchboard_redis_op_duration_seconds_count{op="session_renew",outcome="${outcome}"}`);
    const before = await renewals('error');
    await redis.client.config('SET', 'maxmemory', '1');
    try {
      await waitFor(async () => (await renewals('error')) > before, RENEW_MS * 3, 'a renewal Redis refused, counted as an error');
      const [failed, done] = [await renewals('error'), await renewals('ok')];
      await waitFor(async () => (await renewals('error')) > failed, RENEW_MS * 3, 'the next renewal, refused too');
      assert.equal(await renewals('ok'), done, 'no refused renewal counted as done');
    } finally {
      await redis.client.config('SET', 'maxmemory', '0');
    }
  });

  test('a chat selected while the pod had lost Redis is in Redis once it is back, not a renewal later', async () => {
    const gate = await TcpGate.start(redis.port);
    const pod = await startGateway(clusterEnv(redis, { REDIS_URL: gate.redisUrl, LEASE_TTL_MS: '12000', LEASE_RENEW_INTERVAL_MS: '4000' }), keys);
    try {
      const client = track(await pod.connectUser('acme', 'sel', 'u1'));
      // Just after one of the pod's renewals (the agent route's TTL jumps back up) the next is 4 s away.
      const agentRoute = 'route:acme:sel:chats';
      let ttl = await redis.client.pttl(agentRoute);
      await waitFor(
        async () => {
          const now = await redis.client.pttl(agentRoute);
          const renewed = now > ttl + 1000;
          ttl = now;
          return renewed;
        },
        6000,
        'a renewal of the agent route',
      );
      gate.shut();
      try {
        // The pod's Redis connection is down: the chat route's write fails at once.
        await client.selectChat('k9');
        await new Promise((resolve) => setTimeout(resolve, 300));
      } finally {
        gate.open();
      }
      await waitFor(async () => (await redis.client.smembers('route:acme:sel:messages:k9')).includes(pod.podId), 2000, 'the chat route in Redis');
    } finally {
      await pod.stop();
      await gate.stop();
    }
  });

  test('a connect whose session acquire timed out leaves no lease behind once Redis catches up', async () => {
    const url = await a().userUrl('acme', 'ghost', 'u1');
    redis.pause();
    try {
      const refused = track(await openClient(url));
      // Past REDIS_COMMAND_TIMEOUT_MS the pod gives up; the acquire waits in Redis's socket.
      assert.equal((await refused.closeInfo(3000)).code, 1013);
    } finally {
      redis.resume();
    }
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.deepEqual(await redis.client.zrange('session:acme:ghost:u1', '0', '-1'), [], 'the acquire ran late, and its lease was removed');
    await everyPodReady();
  });

  test('route keys follow connect, select_chat and disconnect', async () => {
    const onA = track(await a().connectUser('routes', 'desk', 'u1'));
    const alsoA = track(await a().connectUser('routes', 'desk', 'u2'));
    const onB = track(await b().connectUser('routes', 'desk', 'u3'));
    const chats = 'route:routes:desk:chats';
    assert.deepEqual((await redis.client.smembers(chats)).sort(), [a().podId, b().podId].sort());
    // select_chat registers its route in the background: wait for Redis rather than race it.
    const members = (key: string) => redis.client.smembers(key);
    const settles = async (key: string, expected: string[], what: string) =>
      waitFor(async () => JSON.stringify((await members(key)).sort()) === JSON.stringify(expected), 2000, what);
    await onA.selectChat('c1');
    await alsoA.selectChat('c1');
    await settles('route:routes:desk:messages:c1', [a().podId], 'pod A on chat c1');
    await onA.selectChat('c2');
    await settles('route:routes:desk:messages:c2', [a().podId], 'pod A on chat c2');
    assert.deepEqual(await members('route:routes:desk:messages:c1'), [a().podId], 'still held by the other connection');
    alsoA.close();
    await waitFor(async () => (await redis.client.exists('route:routes:desk:messages:c1')) === 0, 2000, 'c1 to leave with its last connection');
    onA.close();
    await waitFor(async () => (await redis.client.smembers(chats)).join() === b().podId, 2000, 'pod A to leave the chats route');
    const ttl = await redis.client.pttl(chats);
    assert.ok(ttl > 0 && ttl <= LEASE_MS, `route entries carry the lease as TTL (${ttl})`);
    onB.close();
    await waitFor(async () => (await redis.client.exists(chats)) === 0, 2000, 'the route to go with its last pod');
  });

  test('FLUSHALL with live connections: sessions, routes and heartbeats are back within one renewal period, nobody is closed', async () => {
    const users = await Promise.all(pods.map((pod, i) => pod.connectUser('flush', 'desk', `u${i}`)));
    users.forEach(track);
    await users[0]!.selectChat('c9');
    const admin = track(await b().connectAdmin('flush-admin'));
    await redis.client.flushall();
    const expected = [
      'session:flush:desk:u0',
      'session:flush:desk:u1',
      'session:flush:desk:u2',
      'session:admin:flush-admin',
      'route:flush:desk:chats',
      'route:flush:desk:messages:c9',
      'route:admins',
      ...pods.map((p) => `pod:${p.podId}`),
    ];
    const flushedAt = Date.now();
    const restored = async () =>
      (await redis.client.exists(...expected)) === expected.length && (await redis.client.scard('route:flush:desk:chats')) === 3;
    await waitFor(restored, RENEW_MS * 3, 'every key to be re-asserted');
    const took = Date.now() - flushedAt;
    // One renewal period, plus slack for timers on a busy 2-core machine.
    assert.ok(took <= RENEW_MS + 500, `re-asserted within one renewal period (took ${took} ms)`);
    await new Promise((resolve) => setTimeout(resolve, RENEW_MS));
    for (const client of [...users, admin]) assert.ok(client.isOpen, 'no connection was closed');
  });

  test('a token verified on one pod is cached for at most 30 s and accepted meanwhile by a pod whose keys cannot verify it', async () => {
    // Also when that pod answers auth failures before the upgrade: the answer then waits for the cache.
    for (const rejectBeforeUpgrade of ['false', 'true']) {
      const stranger = await startGateway(clusterEnv(redis, { REJECT_BEFORE_UPGRADE: rejectBeforeUpgrade }), { ...keys, tokenAesKeys: randomKeys().tokenAesKeys });
      try {
        const user = `gina-${rejectBeforeUpgrade}`;
        const token = await a().mintUserToken('cache', 'desk', user);
        const query = (pod: TestGateway, t: string) => `${pod.wsBase}/ws/cache/desk?user=${user}&x-api-key=${keys.secretToken}&token=${encodeURIComponent(t)}`;
        const unknownUrl = query(stranger, await a().mintUserToken('cache', 'desk', user));
        if (rejectBeforeUpgrade === 'true') {
          await assert.rejects(openClient(unknownUrl), (err: unknown) => err instanceof UpgradeRefused && err.status === 403);
        } else {
          const neverVerified = track(await openClient(unknownUrl));
          await neverVerified.expect('error');
          assert.equal((await neverVerified.closeInfo()).code, 4403);
        }
        await track(await openClient(query(a(), token))).expect('ready');
        const cacheKey = `token_cache:${createHash('sha256').update(token).digest('hex')}`;
        await waitFor(async () => (await redis.client.exists(cacheKey)) === 1, 2000, 'the verified token in the cache');
        const ttl = await redis.client.pttl(cacheKey);
        assert.ok(ttl > 0 && ttl <= 30_000, `cached for at most 30 s (PTTL ${ttl})`);
        const cacheReads = () => stranger.metric('switchboard_redis_op_duration_seconds_count{op="token_cache_get",outcome="ok"}');
        const readsBefore = await cacheReads();
        const viaCache = track(await openClient(query(stranger, token)));
        await viaCache.expect('ready');
        // Answering before the upgrade, the pod hands what the cache said on to the handshake.
        assert.equal(await cacheReads(), readsBefore + 1, 'one cache read for the connect');
      } finally {
        await stranger.stop();
      }
    }
  });

  test('only a token that does not decrypt here is looked up in the token cache: an expired one or garbage costs no Redis read', async () => {
    const cacheReads = () => a().metric('switchboard_redis_op_duration_seconds_count{op="token_cache_get",outcome="ok"}');
    const query = (token: string) => `${a().wsBase}/ws/cache/desk?user=hana&x-api-key=${keys.secretToken}&token=${encodeURIComponent(token)}`;
    const refused = async (token: string) => {
      const client = track(await openClient(query(token)));
      await client.expect('error');
      assert.equal((await client.closeInfo()).code, 4403);
    };
    const readsBefore = await cacheReads();
    await refused(new TokenCodec(parseAesKeys(keys.tokenAesKeys)).mintUser({ companyId: 'cache', agentId: 'desk', userId: 'hana', expiresAtMs: Date.now() - 1000 }));
    await refused('not a token');
    assert.equal(await cacheReads(), readsBefore, 'no cache read for tokens that fail on every pod');
    await refused(new TokenCodec(parseAesKeys(randomKeys().tokenAesKeys)).mintUser({ companyId: 'cache', agentId: 'desk', userId: 'hana', expiresAtMs: Date.now() + 60_000 }));
    assert.equal(await cacheReads(), readsBefore + 1, 'a token under keys this pod lacks is looked up');
  });

  test('multi-device limits hold across pods', async () => {
    const multi = await Promise.all([0, 1].map(() => startGateway(clusterEnv(redis, { MULTI_DEVICE: 'true', MAX_DEVICES_PER_IDENTITY: '2' }), keys)));
    try {
      const first = track(await multi[0]!.connectUser('multi', 'desk', 'erin'));
      await new Promise((resolve) => setTimeout(resolve, 5));
      const second = track(await multi[1]!.connectUser('multi', 'desk', 'erin'));
      await first.expectSilence(100);
      assert.ok(first.isOpen && second.isOpen, 'two devices fit the limit');
      const third = track(await multi[0]!.connectUser('multi', 'desk', 'erin'));
      await expectReplaced(first);
      assert.ok(second.isOpen && third.isOpen);
      assert.equal((await redis.client.zrange('session:multi:desk:erin', '0', '-1')).length, 2);
    } finally {
      await Promise.all(multi.map((pod) => pod.stop()));
    }
  });
});

describe('cluster faults', () => {
  let redis: RedisServer;
  const keys = randomKeys();
  const started: TestGateway[] = [];
  before(async () => {
    redis = await RedisServer.start();
  });
  after(async () => {
    await Promise.all(started.map((pod) => pod.stop()));
    await redis.stop();
  });
  const pod = async (extra: Record<string, string> = {}) => {
    const gateway = await startGateway(clusterEnv(redis, extra), keys);
    started.push(gateway);
    return gateway;
  };

  test('kill -9 of the owning pod: the identity reconnects on another pod and is ready within 5 s; its routes are cleaned', async () => {
    const [doomed, survivor] = [await pod(), await pod()];
    const client = await doomed.connectUser('crash', 'desk', 'dora');
    await client.selectChat('c1');
    const listener = await survivor.connectUser('crash', 'desk', 'lena');
    doomed.child.kill('SIGKILL');
    await doomed.exited;
    const lost = await client.closeInfo();
    assert.equal(lost.code, 1006);
    const started = Date.now();
    const again = await survivor.connectUser('crash', 'desk', 'dora');
    assert.ok(Date.now() - started < 5000, 'ready within 5 s');
    // A lookup finds the dead pod's entry stale (no heartbeat once its lease ran out) and removes it.
    await waitFor(async () => (await redis.client.exists(`pod:${doomed.podId}`)) === 0, LEASE_MS + 1000, 'the dead pod heartbeat to lapse');
    await survivor.publish('websocket.crash.desk.chats', { event_id: 'after-crash' });
    assert.deepEqual((await listener.expect('event')).payload, { event_id: 'after-crash' });
    assert.deepEqual((await again.expect('event')).payload, { event_id: 'after-crash' });
    assert.ok(!(await redis.client.smembers('route:crash:desk:chats')).includes(doomed.podId), 'stale entry cleaned');
    again.close();
    listener.close();
  });

  test('a pod restarted under the same id (same POD_IP:GRPC_PORT) removes the routes its previous process held', async () => {
    // A long lease: the first process's heartbeat is still there when the second starts.
    const sameId = { GRPC_PORT: String(await freePort()), LEASE_TTL_MS: '12000', LEASE_RENEW_INTERVAL_MS: '4000' };
    const first = await pod(sameId);
    const other = await pod();
    const user = await first.connectUser('again', 'desk', 'u1');
    await user.selectChat('k1');
    const stay = await other.connectUser('again', 'desk', 'u2');
    await stay.selectChat('k1');
    first.child.kill('SIGKILL');
    await first.exited;
    const second = await pod(sameId);
    assert.equal(second.podId, first.podId);
    // The other pod keeps both routes alive: without the cleanup they would name the restarted pod for good.
    assert.deepEqual(await redis.client.smembers('route:again:desk:chats'), [other.podId]);
    assert.deepEqual(await redis.client.smembers('route:again:desk:messages:k1'), [other.podId]);
    assert.equal(second.logLines((l) => String(l['msg']).startsWith('a heartbeat under this pod id was already in Redis')).length, 1);
    stay.close();
    // Its long renewal period would stretch later tests' recoveries.
    await second.stop();
  });

  test('a pod with a shorter lease (a rollout changing LEASE_TTL_MS) does not cut short the lease of a route another pod holds', async () => {
    const longLease = await pod({ LEASE_TTL_MS: '12000', LEASE_RENEW_INTERVAL_MS: '4000' });
    const shortLease = await pod();
    const first = await longLease.connectUser('mixed', 'desk', 'u1');
    const second = await shortLease.connectUser('mixed', 'desk', 'u2');
    const ttl = await redis.client.pttl('route:mixed:desk:chats');
    assert.ok(ttl > LEASE_MS, `the route keeps the longer lease (PTTL ${ttl} ms)`);
    first.close();
    second.close();
    // Its long renewal period would stretch later tests' recoveries.
    await longLease.stop();
  });

  test('a chat left while the pod had lost Redis leaves its route once Redis is back, though another pod keeps the route alive', async () => {
    const gate = await TcpGate.start(redis.port);
    const leaving = await startGateway(clusterEnv(redis, { REDIS_URL: gate.redisUrl }), keys);
    const staying = await pod();
    try {
      const user = await leaving.connectUser('gone', 'desk', 'u1');
      await user.selectChat('k1');
      const other = await staying.connectUser('gone', 'desk', 'u2');
      await other.selectChat('k1');
      const chatRoute = 'route:gone:desk:messages:k1';
      await waitFor(async () => (await redis.client.scard(chatRoute)) === 2, 2000, 'both pods in the chat route');
      gate.shut();
      try {
        // The pod's Redis connection is down: leaving k1 fails to take the pod out of its route.
        await user.selectChat('k2');
        await new Promise((resolve) => setTimeout(resolve, 300));
      } finally {
        gate.open();
      }
      await waitFor(async () => !(await redis.client.smembers(chatRoute)).includes(leaving.podId), 3000, 'the pod to leave the chat route');
      assert.ok((await redis.client.smembers('route:gone:desk:messages:k2')).includes(leaving.podId), 'the chat selected meanwhile is in Redis');
      user.close();
      other.close();
    } finally {
      await leaving.stop();
      await gate.stop();
    }
  });

  test('a route whose write failed is written again for the next connection that needs it, not taken as written', async () => {
    const gate = await TcpGate.start(redis.port);
    const gateway = await startGateway(clusterEnv(redis, { REDIS_URL: gate.redisUrl }), keys);
    const failedWrites = () => gateway.metric('switchboard_redis_op_duration_seconds_count{op="route_add",outcome="error"}');
    try {
      const first = await gateway.connectUser('redo', 'desk', 'u1');
      const second = await gateway.connectUser('redo', 'desk', 'u2');
      gate.shut();
      try {
        await first.selectChat('k9');
        await waitFor(async () => (await failedWrites()) === 1, 2000, 'the first write of the route to fail');
        await second.selectChat('k9');
        await waitFor(async () => (await failedWrites()) === 2, 2000, 'the second connection to write the route again');
      } finally {
        gate.open();
      }
      first.close();
      second.close();
    } finally {
      await gateway.stop();
      await gate.stop();
    }
  });

  test('the subscriber connection lost while commands still work: not ready until it is back, then a takeover reaches the pod again', async () => {
    const [gateway, other] = [await pod(), await pod()];
    // Redis refuses new connections, so the subscriber cannot come back until the limit is lifted.
    await redis.client.call('CONFIG', 'SET', 'maxclients', '1');
    try {
      await redis.client.call('CLIENT', 'KILL', 'TYPE', 'pubsub');
      await waitFor(async () => (await fetch(`${gateway.httpBase}/ready`)).status === 503, 3000, '/ready to answer 503');
    } finally {
      await redis.client.call('CONFIG', 'SET', 'maxclients', '10000');
    }
    // The other pod's subscriber was cut off too.
    for (const pod of [gateway, other]) await waitFor(async () => (await fetch(`${pod.httpBase}/ready`)).status === 200, 5000, '/ready to answer 200 again');
    const first = await gateway.connectUser('subscriber', 'desk', 'sid');
    const second = await other.connectUser('subscriber', 'desk', 'sid');
    assert.equal((await first.closeInfo(2000)).code, 4402, 'the kill message reached the pod');
    second.close();
  });

  test('Redis paused: not ready, new connections refused with 1013, old ones closed with 1012 at lease expiry; recovers after SIGCONT', async () => {
    const gateway = await pod();
    const old = await gateway.connectUser('pause', 'desk', 'pat');
    redis.pause();
    try {
      await waitFor(async () => (await fetch(`${gateway.httpBase}/ready`)).status === 503, 3000, '/ready to answer 503');
      const refused = await openClient(await gateway.userUrl('pause', 'desk', 'newcomer'));
      const error = await refused.expect('error');
      assert.equal((error.payload as { code: string }).code, 'ServiceUnavailable');
      assert.equal((await refused.closeInfo()).code, 1013);
      const closed = await old.closeInfo(LEASE_MS + 2000);
      assert.equal(closed.code, 1012);
    } finally {
      redis.resume();
    }
    await waitFor(async () => (await fetch(`${gateway.httpBase}/ready`)).status === 200, 5000, '/ready to answer 200 again');
    // Renewals sent while Redis was hung ran when it woke; the closed connection's lease is gone all the same.
    assert.equal(await redis.client.zcard('session:pause:desk:pat'), 0, 'no lease left for the connection closed with 1012');
    const back = await gateway.connectUser('pause', 'desk', 'pat');
    assert.ok(back.isOpen);
    back.close();
  });

  test('while its handshake waits on a hung Redis, a client that sends more than 16 frames is closed with 4400, and one that waits hears nothing about Redis', async () => {
    // Commands wait this long on a hung Redis, and so does the handshake.
    const gateway = await pod({ REDIS_COMMAND_TIMEOUT_MS: '3000' });
    const [url, waitingUrl] = await Promise.all([gateway.userUrl('flood', 'desk', 'fred'), gateway.userUrl('flood', 'desk', 'wanda')]);
    redis.pause();
    try {
      const [client, waiting] = await Promise.all([openClient(url), openClient(waitingUrl)]);
      for (let i = 0; i < 200; i++) client.ws.send(JSON.stringify({ type: 'select_chat', chat_id: `c${i}` }));
      const closed = await client.closeInfo(2000);
      assert.equal(closed.code, 4400);
      const errors = client.raw.filter((text) => (JSON.parse(text) as { type: string }).type === 'error');
      assert.equal(errors.length, 1, 'one error frame, not one per frame past the limit');
      assert.match(errors[0] ?? '', /more than 16 frames before \\"ready\\"/);
      // The refusal comes after the acquire's timeout (3 s), not after the cleanup's as well.
      const refusal = await waiting.expect('error', 5000);
      assert.equal((refusal.payload as { code: string }).code, 'ServiceUnavailable');
      assert.deepEqual(Object.keys(refusal.payload as object).sort(), ['code', 'message'], 'no Redis command or error text in the frame');
    } finally {
      redis.resume();
    }
    await gateway.stop();
  });

  test('while its handshake waits on a hung Redis, a client that sends more than 64 KiB in frames is closed with 4400', async () => {
    const gateway = await pod({ REDIS_COMMAND_TIMEOUT_MS: '3000' });
    const url = await gateway.userUrl('bulk', 'desk', 'bo');
    redis.pause();
    try {
      const client = await openClient(url);
      // Each frame is under MAX_FRAME_BYTES (64 KiB); the two together are not.
      const frame = JSON.stringify({ type: 'select_chat', chat_id: 'c1', filler: 'x'.repeat(40 * 1024) });
      client.ws.send(frame);
      client.ws.send(frame);
      const closed = await client.closeInfo(2000);
      assert.equal(closed.code, 4400, `closed with ${closed.code}, after ${JSON.stringify(client.raw)}`);
      assert.match(client.raw[0] ?? '', /more than 65536 bytes before \\"ready\\"/);
    } finally {
      redis.resume();
    }
    await gateway.stop();
  });

  test('Redis restarted empty: every session, route and heartbeat is re-asserted and no connection is closed', async () => {
    const gateway = await pod();
    const user = await gateway.connectUser('restart', 'desk', 'rita');
    await user.selectChat('c7');
    await redis.restart();
    const expected = ['session:restart:desk:rita', 'route:restart:desk:chats', 'route:restart:desk:messages:c7', `pod:${gateway.podId}`];
    await waitFor(async () => (await redis.client.exists(...expected)) === expected.length, RENEW_MS * 3, 'the keys to be re-asserted');
    await waitFor(async () => (await fetch(`${gateway.httpBase}/ready`)).status === 200, 3000, '/ready to answer 200');
    assert.ok(user.isOpen, 'the connection survived the restart');
    // Until every pod has renewed once, a lookup may miss owners: publishes are refused meanwhile.
    await waitFor(async () => (await redis.client.exists('cluster:recovering')) === 0, RENEW_MS * 3, 'the recovery to end');
    await gateway.publish('websocket.restart.desk.messages.c7', { event_id: 'after-restart' });
    assert.deepEqual((await user.expect('event')).payload, { event_id: 'after-restart' });
    // The kill switch listens again: a second login still replaces the first.
    const again = await gateway.connectUser('restart', 'desk', 'rita');
    await expectReplaced(user);
    again.close();
  });

  test('while Redis recovers lost data, a publish without NATS is refused with 503 instead of missing owners', async () => {
    const gateway = await pod();
    const user = await gateway.connectUser('recover', 'desk', 'rosa');
    // What a pod that found its heartbeat gone sets: lookups may miss owners until it expires.
    await redis.client.set('cluster:recovering', 'test', 'PX', 10_000);
    try {
      await assert.rejects(gateway.publish('websocket.recover.desk.chats', { event_id: 'during' }), /publish answered 503: .*publish again in \d+ s.*"retry_after_ms":\d+/);
    } finally {
      await redis.client.del('cluster:recovering');
    }
    await gateway.publish('websocket.recover.desk.chats', { event_id: 'after' });
    assert.deepEqual((await user.expect('event')).payload, { event_id: 'after' });
    user.close();
  });

  test('clean shutdown leaves no session, route or heartbeat key of that pod behind', async () => {
    const gateway = await pod();
    const other = await pod();
    const user = await gateway.connectUser('bye', 'desk', 'u1');
    await user.selectChat('c1');
    const admin = await gateway.connectAdmin('bye-admin');
    const stay = await other.connectUser('bye', 'desk', 'u2');
    assert.equal(await gateway.stop(), 0);
    assert.equal((await user.closeInfo()).code, 1001);
    assert.equal((await admin.closeInfo()).code, 1001);
    assert.equal(await redis.client.exists('session:bye:desk:u1', 'session:admin:bye-admin', 'route:bye:desk:messages:c1', `pod:${gateway.podId}`), 0);
    assert.deepEqual(await redis.client.smembers('route:bye:desk:chats'), [other.podId]);
    assert.ok(!(await redis.client.smembers('route:admins')).includes(gateway.podId));
    stay.close();
  });

  test('on a hung Redis, a session renewal that outlasts its period is not joined by the next one', async () => {
    // 401 sessions renew in three calls, each waiting out a 1 s command timeout on the hung Redis:
    // one pass takes 3 s of a 1 s period. The long lease keeps every session open meanwhile.
    const gateway = await pod({ REDIS_COMMAND_TIMEOUT_MS: '1000', LEASE_TTL_MS: '20000', LEASE_RENEW_INTERVAL_MS: '1000' });
    const users = await Promise.all(Array.from({ length: 401 }, (_, i) => gateway.connectUser('renew', 'desk', `u${i}`)));
    const failedRenewals = () => gateway.metric('switchboard_redis_op_duration_seconds_count{op="session_renew",outcome="error"}');
    try {
      const before = await failedRenewals();
      redis.pause();
      try {
        await new Promise((resolve) => setTimeout(resolve, 5000));
      } finally {
        redis.resume();
      }
      // One pass at a time fails one call a second, so about 5 in 5 s; a pass starting every period beside it fails 9 or more.
      const failed = (await failedRenewals()) - before;
      assert.ok(failed >= 3 && failed <= 6, `${failed} renewal calls failed while Redis hung for 5 s`);
      assert.ok(users.every((user) => user.isOpen), 'every session outlived the outage');
    } finally {
      for (const user of users) user.close();
    }
  });

  test('a pod stopped while a handshake waits on a hung Redis removes the lease that handshake makes once Redis answers', async () => {
    // Commands wait this long on a hung Redis: past the moment the pod releases its sessions.
    const gateway = await pod({ REDIS_COMMAND_TIMEOUT_MS: '5000' });
    const url = await gateway.userUrl('late', 'desk', 'lee');
    redis.pause();
    let late: TestClient | undefined;
    try {
      late = await openClient(url);
      // Its session acquire now waits on Redis.
      await new Promise((resolve) => setTimeout(resolve, 200));
      gateway.child.kill('SIGTERM');
      // With no connection to drain, the pod closes its port and goes straight on to release its sessions.
      await waitFor(async () => !(await fetch(`${gateway.httpBase}/health`).then(() => true, () => false)), 3000, 'the pod to close its port');
      await new Promise((resolve) => setTimeout(resolve, 300));
    } finally {
      redis.resume();
    }
    try {
      assert.equal(await gateway.exited, 0);
      assert.equal(await redis.client.zcard('session:late:desk:lee'), 0, 'no lease left by the handshake that was out');
    } finally {
      late?.close();
    }
  });
});
