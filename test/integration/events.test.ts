import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import { connect as http2Connect } from 'node:http2';
import { AckPolicy, headers as natsHeaders, nanos, type NatsConnection } from 'nats';
import { loadForwarderService, type PushReply, type PushRequest } from '../../src/forwarder/wire.js';
import { RECOVERING_KEY } from '../../src/routes/RedisPods.js';
import type { TestClient } from '../support/client.js';
import { randomKeys, startGateway, type TestGateway } from '../support/gateway.js';
import { NatsServer } from '../support/nats.js';
import { RedisServer } from '../support/redis.js';
import { TcpGate } from '../support/tcpGate.js';
import { waitFor } from '../support/wait.js';

const LEASE_MS = 3000;

/** Short leases, deadlines and nak delays, so failures and recoveries show within a test. */
function podEnv(redis: RedisServer, nats: NatsServer | undefined, extra: Record<string, string> = {}): Record<string, string> {
  return {
    REDIS_URL: redis.url,
    ...(nats === undefined ? {} : { NATS_URL: nats.url }),
    LEASE_TTL_MS: String(LEASE_MS),
    LEASE_RENEW_INTERVAL_MS: '1000',
    REDIS_COMMAND_TIMEOUT_MS: '300',
    NATS_ACK_WAIT_MS: '2000',
    NATS_NAK_DELAY_MS: '200',
    NATS_MAX_DELIVER: '200',
    GRPC_DEADLINE_MS: '300',
    BREAKER_RESET_MS: '500',
    ...extra,
  };
}

/** Sequence numbers of the events a client received so far (the test payloads carry `seq`). */
function seqs(client: TestClient): number[] {
  return client.raw
    .map((text) => JSON.parse(text) as { type: string; payload?: { seq?: number } })
    .filter((frame) => frame.type === 'event' && typeof frame.payload?.seq === 'number')
    .map((frame) => frame.payload?.seq ?? -1);
}

/** The same in ascending order, repeats kept: an event that arrived twice shows twice. */
function sortedSeqs(client: TestClient): number[] {
  return seqs(client).sort((x, y) => x - y);
}

async function publish(nc: NatsConnection, subject: string, payload: Record<string, unknown>, requestId?: string): Promise<void> {
  const h = natsHeaders();
  if (requestId !== undefined) h.set('X-Request-ID', requestId);
  await nc.jetstream().publish(subject, JSON.stringify(payload), { headers: h });
}

/** Publishes `{ seq }` events 0, 1, 2… to `subject` until stopped, `pauseMs` apart. */
class SteadyPublisher {
  #published = 0;
  #running = true;
  readonly #loop: Promise<void>;

  constructor(nc: NatsConnection, subject: string, pauseMs: number) {
    this.#loop = (async () => {
      while (this.#running) {
        await publish(nc, subject, { seq: this.#published++ });
        if (pauseMs > 0) await new Promise((resolve) => setTimeout(resolve, pauseMs));
      }
    })();
  }

  /** Events published so far. */
  get published(): number {
    return this.#published;
  }

  /** Stops publishing; resolves with how many events were published. Safe to call twice. */
  async stop(): Promise<number> {
    this.#running = false;
    await this.#loop;
    return this.#published;
  }
}

async function consumerExists(nc: NatsConnection): Promise<boolean> {
  const jsm = await nc.jetstreamManager();
  return jsm.consumers.info('wa_stream', 'ws_fanout').then(
    () => true,
    () => false,
  );
}

/** True once the shared consumer has no event out unacked. */
async function allAcked(nc: NatsConnection): Promise<boolean> {
  return (await (await nc.jetstreamManager()).consumers.info('wa_stream', 'ws_fanout')).num_ack_pending === 0;
}

/** True once every pod has a pull set up on the consumer. */
async function everyPodPulling(pods: readonly TestGateway[]): Promise<boolean> {
  return (await Promise.all(pods.map((pod) => pod.metric('switchboard_nats_consuming')))).every((up) => up === 1);
}

/** Waits out the pods' reading of the consumer's ack floor (every 5 s), where a consumer they remake starts. */
async function pastPodsAckFloorRead(): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, 5500));
}

/** Events the pods pulled from NATS for the first time, all pods together. */
async function firstPulls(pods: readonly TestGateway[]): Promise<number> {
  const counts = await Promise.all(
    pods.map(async (pod) => (await pod.metric('switchboard_events_in_total{source="nats"}')) - (await pod.metric('switchboard_events_redelivered_total'))),
  );
  return counts.reduce((sum, n) => sum + n, 0);
}

describe('events across pods', () => {
  let redis: RedisServer;
  let nats: NatsServer;
  let nc: NatsConnection;
  let pods: TestGateway[] = [];
  const keys = randomKeys();

  before(async () => {
    [redis, nats] = await Promise.all([RedisServer.start(), NatsServer.start()]);
    nc = await nats.client();
    pods = await Promise.all([0, 1, 2].map(() => startGateway(podEnv(redis, nats), keys)));
  });
  after(async () => {
    await Promise.all(pods.map((pod) => pod.stop()));
    await Promise.all([redis.stop(), nats.stop()]);
  });

  test('300 chats events reach the agent\'s clients on two pods, each exactly once', async () => {
    const [a, b] = [await pods[0]!.connectUser('fan', 'desk', 'u1'), await pods[1]!.connectUser('fan', 'desk', 'u2')];
    for (let seq = 0; seq < 300; seq++) await publish(nc, 'websocket.fan.desk.chats', { event_id: `e${seq}`, seq });
    const all = Array.from({ length: 300 }, (_, i) => i);
    await waitFor(() => seqs(a).length >= 300 && seqs(b).length >= 300, 15_000, 'every event on both clients');
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.deepEqual(sortedSeqs(a), all, 'pod A client: each event exactly once');
    assert.deepEqual(sortedSeqs(b), all, 'pod B client: each event exactly once');
    const forwarded = await Promise.all(pods.map((pod) => pod.metric('switchboard_events_fanned_out_total{outcome="forwarded"}')));
    assert.ok(forwarded.reduce((sum, n) => sum + n, 0) > 0, 'some events crossed pods over gRPC');
    a.close();
    b.close();
  });

  test('a pod that newly joins a route gets events published right after its client is ready, though other pods remember the old owners', async () => {
    for (let round = 0; round < 6; round++) {
      const agent = `join${round}`;
      const [first, joiner] = [pods[round % 3]!, pods[(round + 1) % 3]!];
      const early = await first.connectUser('co', agent, 'early');
      // Every pod handles some of these, and so remembers the route as owned by `first` alone.
      for (let seq = 0; seq < 15; seq++) await publish(nc, `websocket.co.${agent}.chats`, { event_id: `w${round}-${seq}`, seq });
      await waitFor(() => seqs(early).length >= 15, 10_000, 'the warm-up events');
      // Acked means their route confirms are done: a client ready within those few milliseconds
      // may get the event too (by design), so join only after them.
      await waitFor(() => allAcked(nc), 5000, 'the warm-up events acked');
      const late = await joiner.connectUser('co', agent, 'late');
      for (let seq = 15; seq < 45; seq++) await publish(nc, `websocket.co.${agent}.chats`, { event_id: `w${round}-${seq}`, seq });
      const expected = Array.from({ length: 30 }, (_, i) => i + 15);
      await waitFor(() => seqs(late).length >= 30, 10_000, `round ${round}: every event after ready on the joining pod`);
      assert.deepEqual(sortedSeqs(late), expected, `round ${round}: the joining pod's client got each event once`);
      early.close();
      late.close();
    }
  });

  test('thread events reach only the connection that selected the chat, on any pod', async () => {
    const selected = await pods[2]!.connectUser('thr', 'desk', 'u1');
    const other = await pods[0]!.connectUser('thr', 'desk', 'u2');
    await selected.selectChat('x');
    await other.selectChat('y');
    for (let seq = 0; seq < 20; seq++) await publish(nc, 'websocket.thr.desk.messages.x', { seq });
    await waitFor(() => seqs(selected).length >= 20, 10_000, 'the thread events');
    await other.expectSilence(200);
    assert.equal(seqs(other).length, 0);
    selected.close();
    other.close();
  });

  test('admin events reach admin connections by scope on any pod', async () => {
    const scoped = await pods[1]!.connectAdmin('adm-scoped', { subscribed_company_id: 'adm' });
    const elsewhere = await pods[2]!.connectAdmin('adm-other', { subscribed_company_id: 'other' });
    await publish(nc, 'websocket.adm.desk.agents', { seq: 1 });
    assert.deepEqual((await scoped.expect('event', 5000)).payload, { seq: 1 });
    await elsewhere.expectSilence(300);
    scoped.close();
    elsewhere.close();
  });

  test('/admin/publish goes through NATS and reaches a client on another pod', async () => {
    const client = await pods[2]!.connectUser('pub', 'desk', 'u1');
    await pods[0]!.publish('websocket.pub.desk.chats', { seq: 7 });
    assert.deepEqual((await client.expect('event', 5000)).payload, { seq: 7 });
    assert.ok((await pods[0]!.metric('switchboard_nats_op_duration_seconds_count{op="publish",outcome="ok"}')) >= 1, 'the publish was timed');
    client.close();
  });

  test('each pod serves grpc.health.v1 on its gRPC port', async () => {
    const definition = protoLoader.loadSync(healthProtoPath, { keepCase: true, enums: String });
    const { grpc: { health: { v1: { Health } } } } = grpc.loadPackageDefinition(definition) as unknown as {
      grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } };
    };
    const client = new Health(pods[0]!.podId, grpc.credentials.createInsecure()) as unknown as grpc.Client & {
      Check(request: { service: string }, callback: (err: grpc.ServiceError | null, reply?: { status: string }) => void): void;
    };
    try {
      for (const service of ['', 'switchboard.v1.Forwarder']) {
        const reply = await new Promise<{ status: string } | undefined>((resolve, reject) =>
          client.Check({ service }, (err, res) => (err === null ? resolve(res) : reject(err))),
        );
        assert.equal(reply?.status, 'SERVING', service);
      }
    } finally {
      client.close();
    }
  });

  test('batches pushed back to back are each answered once, in order, several to a reply', async () => {
    const client = await pods[0]!.connectUser('fw', 'desk', 'u1');
    const batches = 40;
    const requests: PushRequest[] = Array.from({ length: batches }, (_, i) => ({
      batch_id: i + 1,
      events: [{ subject: 'websocket.fw.desk.chats', payload: Buffer.from(JSON.stringify({ seq: i })), request_id: `fw-${i}`, published_at_ms: Date.now(), delivery_key: '', event_id: '' }],
    }));
    const replies = await pushInOneWrite(pods[0]!.podId, requests);
    assert.deepEqual(
      replies.flatMap((reply) => reply.batches.map((batch) => [batch.batch_id, [...batch.delivered]])),
      requests.map((request) => [request.batch_id, [1]]),
    );
    // One reply per batch would be 40: the pod answers together the batches that arrive while it writes a reply.
    assert.ok(replies.length < batches / 2, `${replies.length} replies for ${batches} batches`);
    await waitFor(() => seqs(client).length === batches, 5000, 'every pushed event at the client');
    assert.deepEqual(seqs(client), requests.map((_, i) => i));
    client.close();
  });

  test('poison events are acked once, counted and never redelivered', async () => {
    const rejected = async () => (await Promise.all(pods.map((pod) => pod.metric('switchboard_events_rejected_total{reason="payload"}')))).reduce((s, n) => s + n, 0);
    const badSubject = async () => (await Promise.all(pods.map((pod) => pod.metric('switchboard_events_rejected_total{reason="subject"}')))).reduce((s, n) => s + n, 0);
    const before = { payload: await rejected(), subject: await badSubject() };
    await nc.jetstream().publish('websocket.poison.desk.chats', 'not json');
    await nc.jetstream().publish('websocket.poison.unknown', '{}');
    await waitFor(async () => (await rejected()) === before.payload + 1 && (await badSubject()) === before.subject + 1, 5000, 'both poison events counted');
    // Well past the nak delay and the ack wait: a redelivered poison event would be counted again.
    await new Promise((resolve) => setTimeout(resolve, 2500));
    assert.equal(await rejected(), before.payload + 1);
    assert.equal(await badSubject(), before.subject + 1);
    const info = await (await nc.jetstreamManager()).consumers.info('wa_stream', 'ws_fanout');
    assert.equal(info.num_ack_pending, 0);
  });

  test('NATS restarted: the pods resume consuming and events published after it arrive', async () => {
    const client = await pods[1]!.connectUser('rst', 'desk', 'u1');
    await nats.restart();
    await waitFor(async () => (await fetch(`${pods[1]!.httpBase}/ready`)).status === 200, 10_000, 'the pod to be ready again');
    for (let seq = 0; seq < 20; seq++) await publish(nc, 'websocket.rst.desk.chats', { seq });
    await waitFor(() => seqs(client).length >= 20, 20_000, 'the events published after the restart');
    assert.deepEqual([...new Set(seqs(client))].sort((x, y) => x - y), Array.from({ length: 20 }, (_, i) => i));
    client.close();
  });

  test('the consumer deleted under the pods: they make it again after what it had acked, and no event published meanwhile is lost', async () => {
    const client = await pods[2]!.connectUser('gone', 'desk', 'u1');
    const jsm = await nc.jetstreamManager();
    await publish(nc, 'websocket.gone.desk.chats', { seq: 0 });
    await waitFor(() => seqs(client).length >= 1, 5000, 'the event before the deletion');
    await waitFor(() => allAcked(nc), 5000, 'the event acked');
    await pastPodsAckFloorRead();
    const pulledBefore = await firstPulls(pods);
    await jsm.consumers.delete('wa_stream', 'ws_fanout');
    for (let seq = 1; seq <= 5; seq++) await publish(nc, 'websocket.gone.desk.chats', { seq });
    await waitFor(() => consumerExists(nc), 15_000, 'a pod to make the consumer again');
    for (let seq = 6; seq <= 20; seq++) await publish(nc, 'websocket.gone.desk.chats', { seq });
    await waitFor(() => seqs(client).length >= 21, 15_000, 'the events published during the gap and after it');
    await waitFor(() => everyPodPulling(pods), 10_000, 'every pod pulling again');
    await new Promise((resolve) => setTimeout(resolve, 500));
    assert.deepEqual(sortedSeqs(client), Array.from({ length: 21 }, (_, i) => i), 'each event once');
    // Every pod skips an event it wrote recently, so a replayed history shows in what the pods pulled, not on the client.
    assert.equal((await firstPulls(pods)) - pulledBefore, 20, 'the remade consumer delivered the 20 new events and nothing of the stream\'s history');
    client.close();
  });

  test('NATS restarted with an empty store: the pods make the stream and consumer again, from the new stream\'s first event', async () => {
    const client = await pods[0]!.connectUser('wiped', 'desk', 'u1');
    const jsm = await nc.jetstreamManager();
    const publishRange = async (from: number, to: number) => {
      for (let seq = from; seq < to; seq++) await publish(nc, 'websocket.wiped.desk.chats', { seq });
    };
    await publishRange(0, 10);
    await waitFor(() => seqs(client).length >= 10, 5000, 'the events before the restart');
    await pastPodsAckFloorRead();
    await nats.restartEmpty();
    await waitFor(() => consumerExists(nc), 20_000, 'a pod to make the stream and consumer again');
    await publishRange(10, 30);
    await waitFor(() => seqs(client).length >= 30, 20_000, 'the events published after the restart');
    await pastPodsAckFloorRead();
    // Made again by someone else this time, with events in it before the pods make the consumer: the
    // new stream numbers them from 1, and a consumer made after the old stream's ack floor would skip them.
    await nats.restartEmpty();
    await jsm.streams.add({ name: 'wa_stream', subjects: ['websocket.>'] });
    await publishRange(30, 50);
    await waitFor(() => consumerExists(nc), 20_000, 'a pod to make the consumer again');
    await waitFor(() => seqs(client).length >= 50, 20_000, 'the events published to the new stream');
    assert.deepEqual(sortedSeqs(client), Array.from({ length: 50 }, (_, i) => i));
    await waitFor(() => everyPodPulling(pods), 10_000, 'every pod pulling again');
    client.close();
  });
});

describe('events under pod faults', () => {
  let redis: RedisServer;
  let nats: NatsServer;
  let nc: NatsConnection;
  const started: TestGateway[] = [];
  const keys = randomKeys();
  before(async () => {
    [redis, nats] = await Promise.all([RedisServer.start(), NatsServer.start()]);
    nc = await nats.client();
  });
  after(async () => {
    await Promise.all(started.map((pod) => pod.stop()));
    await Promise.all([redis.stop(), nats.stop()]);
  });
  const pod = async (extra: Record<string, string> = {}, consumes = true) => {
    const gateway = await startGateway(podEnv(redis, consumes ? nats : undefined, extra), keys);
    started.push(gateway);
    return gateway;
  };

  test('the request id and event id of an event appear in the logs of both pods it crossed', async () => {
    const consumer = await pod({ LOG_LEVEL: 'debug' });
    const owner = await pod({ LOG_LEVEL: 'debug' }, false);
    const client = await owner.connectUser('rid', 'desk', 'u1');
    await publish(nc, 'websocket.rid.desk.chats', { seq: 1, event_id: 'evt-42' }, 'req-7f3a');
    await client.expect('event', 5000);
    const mentions = (gw: TestGateway) =>
      gw.logLines((l) => l['request_id'] === 'req-7f3a' && l['event_id'] === 'evt-42' && l['company'] === 'rid' && l['agent'] === 'desk').length;
    await waitFor(() => mentions(consumer) > 0 && mentions(owner) > 0, 3000, 'the request id, event id, company and agent in both logs');
    // Without the header, the id is the event's place in the stream: the same on every delivery of it.
    await publish(nc, 'websocket.rid.desk.chats', { seq: 2, event_id: 'evt-43' });
    await client.expect('event', 5000);
    const idsOf = (gw: TestGateway) => new Set(gw.logLines((l) => l['event_id'] === 'evt-43').map((l) => l['request_id']));
    await waitFor(() => idsOf(consumer).size > 0 && idsOf(owner).size > 0, 3000, 'the second event in both logs');
    const ids = new Set([...idsOf(consumer), ...idsOf(owner)]);
    assert.equal(ids.size, 1, `one request id on both pods: ${[...ids].join(', ')}`);
    assert.match(String([...ids][0]), /^wa_stream:\d+$/);
    client.close();
    await Promise.all([consumer.stop(), owner.stop()]);
  });

  test('a hung peer: the others still get every event, its circuit opens, and it gets its events after SIGCONT', async () => {
    // Leases longer than the hang: a pod paused past its lease is rightly treated as gone.
    const longLease = { LEASE_TTL_MS: '15000', LEASE_RENEW_INTERVAL_MS: '5000' };
    const [a, b, hung] = [await pod(longLease), await pod(longLease), await pod(longLease)];
    const [ca, cb, ch] = [await a.connectUser('hang', 'desk', 'u1'), await b.connectUser('hang', 'desk', 'u2'), await hung.connectUser('hang', 'desk', 'u3')];
    hung.child.kill('SIGSTOP');
    try {
      for (let seq = 0; seq < 30; seq++) await publish(nc, 'websocket.hang.desk.chats', { seq });
      const all = Array.from({ length: 30 }, (_, i) => i);
      const received = (client: TestClient) => [...new Set(seqs(client))].sort((x, y) => x - y);
      await waitFor(() => received(ca).length === 30 && received(cb).length === 30, 10_000, 'every event on the healthy pods');
      assert.deepEqual(received(ca), all);
      assert.deepEqual(received(cb), all);
      const breakerOpen = async (gw: TestGateway) => (await gw.metric(`switchboard_breaker_state{peer="${hung.podId}"}`)) > 0;
      assert.ok((await breakerOpen(a)) || (await breakerOpen(b)), 'a circuit to the hung pod is open or half-open');
    } finally {
      hung.child.kill('SIGCONT');
    }
    await waitFor(() => new Set(seqs(ch)).size === 30, 20_000, 'the hung pod\'s client to get every event after SIGCONT');
    for (const client of [ca, cb, ch]) client.close();
    await Promise.all([a.stop(), b.stop(), hung.stop()]);
  });

  test('an owner slow to answer a push: a pod that joins the route meanwhile does not get the event published before its client was ready', async () => {
    // The silence limit is well past the pause: the slow owner is slow, not hung.
    const slow = { GRPC_DEADLINE_MS: '3000' };
    const consumer = await pod(slow);
    const [owner, joiner] = [await pod(slow, false), await pod(slow, false)];
    const early = await owner.connectUser('slowack', 'desk', 'u1');
    // The consumer looks the route up once and keeps a copy: the owner alone.
    for (let seq = 0; seq < 3; seq++) await publish(nc, 'websocket.slowack.desk.chats', { seq });
    await waitFor(() => seqs(early).length === 3, 5000, 'the warm-up events');
    owner.child.kill('SIGSTOP');
    let late: TestClient;
    try {
      await publish(nc, 'websocket.slowack.desk.chats', { seq: 3 });
      // The consumer has pushed the event to the paused owner and waits for its answer; the joiner's
      // client becomes ready after the event was published.
      await new Promise((resolve) => setTimeout(resolve, 100));
      late = await joiner.connectUser('slowack', 'desk', 'u2');
    } finally {
      owner.child.kill('SIGCONT');
    }
    await waitFor(() => seqs(early).includes(3), 5000, 'the event at the owner once it answers');
    await late.expectSilence(500);
    assert.deepEqual(seqs(late), [], 'the joining client got no event published before it was ready');
    for (const client of [early, late]) client.close();
    await Promise.all([consumer.stop(), owner.stop(), joiner.stop()]);
  });

  test('kill -9 of the pod owning a selected chat: after reconnecting elsewhere, every event from the gap on arrives', async () => {
    const [survivor, doomed] = [await pod(), await pod()];
    const first = await doomed.connectUser('gap', 'desk', 'u1');
    await first.selectChat('k');
    const publisher = new SteadyPublisher(nc, 'websocket.gap.desk.messages.k', 20);
    let killedAt: number;
    let second: TestClient;
    try {
      await waitFor(() => seqs(first).length >= 10, 5000, 'events before the crash');
      killedAt = publisher.published;
      doomed.child.kill('SIGKILL');
      await first.closeInfo();
      second = await survivor.connectUser('gap', 'desk', 'u1');
      await second.selectChat('k');
      await new Promise((resolve) => setTimeout(resolve, 1500));
    } finally {
      await publisher.stop();
    }
    const last = publisher.published;
    const expected = Array.from({ length: last - killedAt }, (_, i) => killedAt + i);
    await waitFor(() => expected.every((n) => seqs(second).includes(n)), 45_000, 'every event from the crash on');
    second.close();
    await survivor.stop();
  });

  test('NATS hung past two consumer heartbeats: the pod logs a consumer notice, and consumes again after SIGCONT', async () => {
    const consumer = await pod();
    const client = await consumer.connectUser('hb', 'desk', 'u1');
    const notices = () => consumer.logLines((l) => l['msg'] === 'nats consumer notice' && l['notice'] === 'heartbeats_missed').length;
    nats.pause();
    try {
      await waitFor(() => notices() > 0, 15_000, 'the missed heartbeats to be logged');
    } finally {
      nats.resume();
    }
    for (let seq = 0; seq < 10; seq++) await publish(nc, 'websocket.hb.desk.chats', { seq });
    await waitFor(() => seqs(client).length >= 10, 15_000, 'the events published after the hang');
    client.close();
    await consumer.stop();
  });

  test('Redis hung while events flow: events still reach both pods from the route copy at once, and after SIGCONT each has arrived once and is acked', async () => {
    // Leases longer than the hang, so the connections outlive it.
    const longLease = { LEASE_TTL_MS: '15000', LEASE_RENEW_INTERVAL_MS: '5000' };
    const consumer = await pod(longLease);
    const owner = await pod(longLease, false);
    const [local, remote] = [await consumer.connectUser('rhang', 'desk', 'u1'), await owner.connectUser('rhang', 'desk', 'u2')];
    const all = Array.from({ length: 21 }, (_, i) => i);
    try {
      // The first event makes the consuming pod look the route up and keep a copy of its owners.
      await publish(nc, 'websocket.rhang.desk.chats', { seq: 0 });
      await waitFor(() => seqs(local).length === 1 && seqs(remote).length === 1, 5000, 'the first event on both pods');
      const retriedBefore = await consumer.metric('switchboard_events_redelivered_total');
      redis.pause();
      try {
        for (let seq = 1; seq < all.length; seq++) await publish(nc, 'websocket.rhang.desk.chats', { seq });
        await waitFor(() => new Set(seqs(local)).size === all.length && new Set(seqs(remote)).size === all.length, 5000, 'every event on both pods while Redis is hung');
        // The copy could not be confirmed, so the events are not acked but retried.
        await waitFor(async () => (await consumer.metric('switchboard_events_redelivered_total')) > retriedBefore, 5000, 'unconfirmed events to be retried');
      } finally {
        redis.resume();
      }
      await everyEventAcked(nc, 'once Redis answers');
      // Retries reached pods that already had the event: each skipped it.
      assert.deepEqual(sortedSeqs(local), all, "the consuming pod's client got each event once");
      assert.deepEqual(sortedSeqs(remote), all, "the other pod's client got each event once");
    } finally {
      local.close();
      remote.close();
      await Promise.all([consumer.stop(), owner.stop()]);
    }
  });

  test('Redis restarted empty while events flow: events wait for the pods to re-assert their routes instead of being dropped', async () => {
    const consumer = await pod();
    const owner = await pod({}, false);
    const [local, remote] = [await consumer.connectUser('rlost', 'desk', 'u1'), await owner.connectUser('rlost', 'desk', 'u2')];
    const all = Array.from({ length: 30 }, (_, i) => i);
    try {
      await redis.restart();
      // Published at once and over the next renewal period, while the routes are gone from Redis
      // and come back pod by pod.
      for (const seq of all) {
        await publish(nc, 'websocket.rlost.desk.chats', { seq });
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      await waitFor(() => new Set(seqs(local)).size === all.length && new Set(seqs(remote)).size === all.length, 10_000, 'every event on both pods');
      await everyEventAcked(nc, 'after the recovery');
      assert.deepEqual(sortedSeqs(local), all, "the consuming pod's client got each event once");
      assert.deepEqual(sortedSeqs(remote), all, "the other pod's client got each event once");
      assert.equal(await consumer.metric('switchboard_events_fanned_out_total{outcome="dropped"}'), 0, 'no event was dropped for want of an owner');
      assert.ok((await consumer.metric('switchboard_events_fanned_out_total{outcome="deferred"}')) > 0, 'events waited for the recovery');
    } finally {
      local.close();
      remote.close();
      await Promise.all([consumer.stop(), owner.stop()]);
    }
  });

  test('Redis restarted empty, one pod back later than the other: it re-asserts its routes at once and the recovery waits for it', async () => {
    // Renewals every 2 s: a pod that waited for its next renewal would leave its routes missing
    // well past a recovery that began when the first pod found the loss.
    const lease = { LEASE_TTL_MS: '6000', LEASE_RENEW_INTERVAL_MS: '2000' };
    const windowMs = 3000;
    const gate = await TcpGate.start(redis.port);
    const consumer = await pod(lease);
    const owner = await pod({ ...lease, REDIS_URL: gate.redisUrl }, false);
    const [local, remote] = [await consumer.connectUser('late', 'desk', 'u1'), await owner.connectUser('late', 'desk', 'u2')];
    const publisher = new SteadyPublisher(nc, 'websocket.late.desk.chats', 50);
    try {
      await waitFor(() => seqs(remote).length >= 5, 5000, 'events before the restart');
      gate.shut();
      await redis.restart();
      await waitFor(async () => (await redis.client.pttl(RECOVERING_KEY)) > 0, 5000, 'the consuming pod to mark a recovery');
      await new Promise((resolve) => setTimeout(resolve, 800));
      gate.open();
      await waitFor(async () => (await redis.client.exists(`pod:${owner.podId}`)) === 1, 5000, 'the late pod to beat again');
      await waitFor(
        async () => {
          const [members, leftMs] = await Promise.all([redis.client.smembers('route:late:desk:chats'), redis.client.pttl(RECOVERING_KEY)]);
          return members.includes(owner.podId) && leftMs > windowMs - 500;
        },
        500,
        "the late pod's route back, and the recovery running a whole window from its return",
      );
      await new Promise((resolve) => setTimeout(resolve, 1000));
      const published = await publisher.stop();
      const all = Array.from({ length: published }, (_, i) => i);
      await waitFor(() => new Set(seqs(local)).size === published && new Set(seqs(remote)).size === published, 15_000, 'every event on both pods');
      await everyEventAcked(nc, 'after the recovery');
      assert.deepEqual(sortedSeqs(local), all, "the consuming pod's client got each event once");
      assert.deepEqual(sortedSeqs(remote), all, "the late pod's client got each event once");
      assert.equal(await consumer.metric('switchboard_events_fanned_out_total{outcome="dropped"}'), 0, 'no event was dropped for want of an owner');
    } finally {
      await publisher.stop();
      local.close();
      remote.close();
      await Promise.all([consumer.stop(), owner.stop()]);
      await gate.stop();
    }
  });

  test("an event whose only missing owner was killed is retried once that pod's lease has run out, not counted dead", async () => {
    // Three deliveries 100 ms apart would all fall within the killed pod's lease (3 s).
    const env = { NATS_MAX_DELIVER: '3', NATS_NAK_DELAY_MS: '100' };
    const consumer = await pod(env);
    const owner = await pod(env, false);
    const [local, remote] = [await consumer.connectUser('gone', 'desk', 'u1'), await owner.connectUser('gone', 'desk', 'u2')];
    try {
      await publish(nc, 'websocket.gone.desk.chats', { seq: 0 });
      await waitFor(() => seqs(local).length === 1 && seqs(remote).length === 1, 5000, 'the first event on both pods');
      owner.child.kill('SIGKILL');
      await owner.exited;
      await new Promise((resolve) => setTimeout(resolve, 300));
      await publish(nc, 'websocket.gone.desk.chats', { seq: 1 });
      await waitFor(() => seqs(local).length === 2, 5000, 'the second event on the live pod');
      await everyEventAcked(nc, "once the killed pod's lease ran out");
      assert.equal(await consumer.metric('switchboard_events_fanned_out_total{outcome="dead"}'), 0, 'no event counted dead');
      assert.deepEqual(sortedSeqs(local), [0, 1], "the live pod's client got each event once");
    } finally {
      local.close();
      await consumer.stop();
    }
  });

  test('events too big to travel to a peer together go in several batches, none refused', async () => {
    // A batch of megabytes takes this machine longer than the other tests' 300 ms to answer, and a
    // burst of them overfills the default send buffer.
    const env = { GRPC_DEADLINE_MS: '5000', SEND_BUFFER_BYTES: String(64 * 1024 * 1024) };
    const owner = await pod(env, false);
    const client = await owner.connectUser('big', 'desk', 'u1');
    let consumer: TestGateway | undefined;
    try {
      // A backlog in the stream before the consuming pod starts: it handles these all at once.
      await (await nc.jetstreamManager()).streams.add({ name: 'wa_stream', subjects: ['websocket.>'] });
      const padding = 'x'.repeat(900_000);
      const all = Array.from({ length: 40 }, (_, i) => i);
      for (const seq of all) await publish(nc, 'websocket.big.desk.chats', { seq, padding });
      consumer = await pod(env);
      await waitFor(() => new Set(seqs(client)).size === all.length, 20_000, 'every big event on the owner');
      assert.equal(await consumer.metric('switchboard_events_redelivered_total'), 0, 'no event needed a retry');
      assert.deepEqual(sortedSeqs(client), all);
    } finally {
      client.close();
      await Promise.all([consumer?.stop(), owner.stop()]);
    }
  });

  test('a pod started after Redis restarted empty, before the other pods reconnected: its events wait for their routes instead of missing them', async () => {
    const gate = await TcpGate.start(redis.port);
    const owner = await pod({ REDIS_URL: gate.redisUrl }, false);
    const remote = await owner.connectUser('gap', 'desk', 'u1');
    let consumer: TestGateway | undefined;
    try {
      // The owner is cut off from Redis as it restarts, and reconnects a second later: until then,
      // nothing in Redis says a cluster lived there a moment ago.
      gate.shut();
      await redis.restart();
      const restartedAt = Date.now();
      const all = Array.from({ length: 10 }, (_, i) => i);
      // In the stream before the new pod starts (the stream is the pods' own, made here if no pod has yet).
      await (await nc.jetstreamManager()).streams.add({ name: 'wa_stream', subjects: ['websocket.>'] });
      for (const seq of all) await publish(nc, 'websocket.gap.desk.chats', { seq });
      const reconnecting = new Promise((resolve) => setTimeout(resolve, 1000 - (Date.now() - restartedAt))).then(() => gate.open());
      consumer = await pod();
      await reconnecting;
      await waitFor(() => new Set(seqs(remote)).size === all.length, 10_000, 'every event on the owner once it is back');
      await everyEventAcked(nc, 'after the recovery');
      assert.deepEqual(sortedSeqs(remote), all, "the owner's client got each event once");
      assert.equal(await consumer.metric('switchboard_events_fanned_out_total{outcome="dropped"}'), 0, 'no event was dropped for want of an owner');
    } finally {
      remote.close();
      await Promise.all([consumer?.stop(), owner.stop()]);
      await gate.stop();
    }
  });
});

/** Waits until the shared consumer has nothing left to deliver and no delivery awaiting its ack. */
async function everyEventAcked(nc: NatsConnection, when: string): Promise<void> {
  const jsm = await nc.jetstreamManager();
  await waitFor(
    async () => {
      const info = await jsm.consumers.info('wa_stream', 'ws_fanout');
      return info.num_pending === 0 && info.num_ack_pending === 0;
    },
    10_000,
    `every event to be acked ${when}`,
  );
}

/**
 * Pushes `requests` to a pod's Forwarder in one HTTP/2 write, as a busy peer's stream would deliver
 * them, and collects the replies until the pod has answered every batch. Raw HTTP/2: grpc-js writes
 * one message per socket write, so through it the pod would see the batches one by one.
 */
async function pushInOneWrite(podId: string, requests: readonly PushRequest[]): Promise<PushReply[]> {
  const method = loadForwarderService().service['Push']!;
  const frames = requests.map((request) => grpcFrame(method.requestSerialize(request)));
  const session = http2Connect(`http://${podId}`);
  try {
    const stream = session.request({ ':method': 'POST', ':path': method.path, 'content-type': 'application/grpc', te: 'trailers' });
    stream.write(Buffer.concat(frames));
    const replies: PushReply[] = [];
    let buffered = Buffer.alloc(0);
    await new Promise<void>((resolve, reject) => {
      stream.on('error', reject);
      stream.on('data', (chunk: Buffer) => {
        buffered = Buffer.concat([buffered, chunk]);
        // A gRPC frame: a compression flag byte, a 4-byte big-endian length, the message.
        while (buffered.length >= 5 && buffered.length >= 5 + buffered.readUInt32BE(1)) {
          const length = buffered.readUInt32BE(1);
          replies.push(method.responseDeserialize(buffered.subarray(5, 5 + length)) as PushReply);
          buffered = buffered.subarray(5 + length);
        }
        if (replies.reduce((sum, reply) => sum + reply.batches.length, 0) >= requests.length) resolve();
      });
      setTimeout(() => reject(new Error(`answered ${replies.length} replies, not every batch, within 5 s`)), 5000).unref();
    });
    stream.close();
    return replies;
  } finally {
    session.close();
  }
}

function grpcFrame(message: Buffer): Buffer {
  const header = Buffer.alloc(5);
  header.writeUInt32BE(message.length, 1);
  return Buffer.concat([header, message]);
}

/**
 * Publishes `{ seq }` events to `subject` one after another (seq from 0); once 200 have reached
 * `client`, stops a pod with `stop` while they keep coming, then stops publishing. Answers how many
 * were published.
 */
async function publishUntilStopped(nc: NatsConnection, subject: string, client: TestClient, stop: () => Promise<unknown>): Promise<number> {
  const publisher = new SteadyPublisher(nc, subject, 0);
  try {
    await waitFor(() => seqs(client).length >= 200, 10_000, 'events flowing to the client');
    await stop();
  } finally {
    await publisher.stop();
  }
  return publisher.published;
}

/** A Redis and a NATS of the enclosing describe's own: started before its tests, stopped after them. */
function ownServers(): { redis: RedisServer; nats: NatsServer; nc: NatsConnection } {
  const servers = {} as { redis: RedisServer; nats: NatsServer; nc: NatsConnection };
  before(async () => {
    [servers.redis, servers.nats] = await Promise.all([RedisServer.start(), NatsServer.start()]);
    servers.nc = await servers.nats.client();
  });
  after(async () => {
    await Promise.all([servers.redis.stop(), servers.nats.stop()]);
  });
  return servers;
}

describe('the stream deleted and made again', () => {
  const servers = ownServers();

  test('its new events, whose sequence numbers start over, are not taken for the old ones already delivered', async () => {
    const keys = randomKeys();
    const owner = await startGateway(podEnv(servers.redis, servers.nats), keys);
    const client = await owner.connectUser('again', 'desk', 'u1');
    let successor: TestGateway | undefined;
    try {
      for (const seq of [0, 1, 2]) await publish(servers.nc, 'websocket.again.desk.chats', { seq });
      await waitFor(() => seqs(client).length === 3, 5000, 'the first events');
      await (await servers.nc.jetstreamManager()).streams.delete('wa_stream');
      // A pod that starts now makes the stream and consumer again; events it pushes to the owner
      // carry stream sequences 1, 2, 3 once more.
      successor = await startGateway(podEnv(servers.redis, servers.nats), keys);
      for (const seq of [3, 4, 5]) await publish(servers.nc, 'websocket.again.desk.chats', { seq });
      await waitFor(() => seqs(client).length === 6, 10_000, 'the events published after the stream was made again');
      assert.deepEqual(sortedSeqs(client), [0, 1, 2, 3, 4, 5]);
    } finally {
      client.close();
      await Promise.all([owner.stop(), successor?.stop()]);
    }
  });
});

describe('a publish larger than the stream takes', () => {
  const servers = ownServers();

  test('is refused with 400, not 503 "try again later"', async () => {
    await (await servers.nc.jetstreamManager()).streams.add({ name: 'wa_stream', subjects: ['websocket.>'], max_msg_size: 1024 });
    const pod = await startGateway(podEnv(servers.redis, servers.nats), randomKeys());
    try {
      const big = await pod.admin('POST', '/admin/publish', pod.keys.adminSecretToken, { subject: 'websocket.big.desk.chats', payload: { text: 'x'.repeat(4096) } });
      assert.equal(big.status, 400);
      assert.match((big.body as { message: string }).message, /larger than NATS takes/);
      const small = await pod.admin('POST', '/admin/publish', pod.keys.adminSecretToken, { subject: 'websocket.big.desk.chats', payload: { text: 'x' } });
      assert.equal(small.status, 202);
    } finally {
      await pod.stop();
    }
  });
});

describe('a consuming pod stopping', () => {
  const servers = ownServers();

  test('SIGTERM: every event the pod handled is acked before it exits', async () => {
    const pod = await startGateway(podEnv(servers.redis, servers.nats), randomKeys());
    const client = await pod.connectUser('stop', 'desk', 'u1');
    await publishUntilStopped(servers.nc, 'websocket.stop.desk.chats', client, () => pod.stop());
    // One subject on a fresh stream: event `seq` is stream sequence seq + 1. Every event up to the
    // last one the client got was handled, so none of them may wait for a redelivery.
    const lastHandled = Math.max(...seqs(client)) + 1;
    const info = await (await servers.nc.jetstreamManager()).consumers.info('wa_stream', 'ws_fanout');
    assert.ok(info.ack_floor.stream_seq >= lastHandled, `acked up to ${info.ack_floor.stream_seq}, handled up to ${lastHandled}`);
  });

  test('SIGTERM while events flow: what NATS sent the stopping pod reaches the client at once, not after the ack wait', async () => {
    const keys = randomKeys();
    // A consumer of its own, so this ack wait is the one it is created with: an event left with
    // the stopping pod would reach the client only after it. Pulls of four make the pod ask for
    // more every few events, so it is asking while it stops.
    const env = podEnv(servers.redis, servers.nats, { NATS_CONSUMER: 'strand_check', NATS_ACK_WAIT_MS: '60000', NATS_MAX_IN_FLIGHT: '4' });
    const stopping = await startGateway(env, keys);
    const staying = await startGateway(env, keys);
    try {
      const client = await staying.connectUser('strand', 'desk', 'u1');
      const published = await publishUntilStopped(servers.nc, 'websocket.strand.desk.chats', client, () => stopping.stop());
      await waitFor(() => new Set(seqs(client)).size >= published, 10_000, `all ${published} events, well within the 60 s ack wait`);
      client.close();
    } finally {
      await Promise.all([stopping.stop(), staying.stop()]);
    }
  });

  test('NATS hung: SIGTERM still closes connections with 1001 and exits 0 within the shutdown timeout', async () => {
    const pod = await startGateway(podEnv(servers.redis, servers.nats, { DRAIN_WINDOW_MS: '500', SHUTDOWN_TIMEOUT_MS: '8000' }), randomKeys());
    const client = await pod.connectUser('hung', 'desk', 'u1');
    servers.nats.pause();
    try {
      const startedAt = Date.now();
      const [code, closed] = await Promise.all([pod.stop(), client.closeInfo(8000)]);
      const tookMs = Date.now() - startedAt;
      assert.equal(code, 0, `exited after ${tookMs} ms`);
      // The product's own deadline (SHUTDOWN_TIMEOUT_MS), not a performance figure.
      assert.ok(tookMs < 8000, `exited within the shutdown timeout (took ${tookMs} ms)`);
      assert.equal(closed.code, 1001);
    } finally {
      servers.nats.resume();
    }
  });

  test('NATS hung while the pod remakes a lost consumer: SIGTERM does not wait for its requests, and the pod exits 0 within the shutdown timeout', async () => {
    const pod = await startGateway(podEnv(servers.redis, servers.nats, { NATS_CONSUMER: 'remake_check', DRAIN_WINDOW_MS: '500', SHUTDOWN_TIMEOUT_MS: '5000' }), randomKeys());
    try {
      await (await servers.nc.jetstreamManager()).consumers.delete('wa_stream', 'remake_check');
      // At once when the pull hears of the deletion, or within two missed heartbeats (5 s) and a lookup.
      await waitFor(() => pod.logLines((l) => l['msg'] === 'stopped pulling from the JetStream consumer; making sure it exists and pulling again').length > 0, 15_000, 'the pod to notice');
      // Hung before the first retry (1 s later): its requests then wait out their 5 s timeouts.
      servers.nats.pause();
      try {
        await new Promise((resolve) => setTimeout(resolve, 1500));
        const startedAt = Date.now();
        const code = await pod.stop();
        assert.equal(code, 0, `exited after ${Date.now() - startedAt} ms`);
      } finally {
        servers.nats.resume();
      }
    } finally {
      await pod.stop();
    }
  });
});

describe('a drain window that leaves no time for the rest of the shutdown', () => {
  const servers = ownServers();

  test('DRAIN_WINDOW_MS close to SHUTDOWN_TIMEOUT_MS: the drain ends 2 s before the deadline, every connection gets 1001, and sessions are released', async () => {
    const pod = await startGateway(podEnv(servers.redis, servers.nats, { DRAIN_WINDOW_MS: '5500', SHUTDOWN_TIMEOUT_MS: '6000' }), randomKeys());
    // Twice as many connections as the window has 50 ms steps: spreading their closes would take all of it.
    const clients = await Promise.all(Array.from({ length: 220 }, (_, i) => pod.connectUser('short', 'desk', `u${i}`)));
    const startedAt = Date.now();
    const [code, closedAfterMs] = await Promise.all([
      pod.stop(),
      Promise.all(clients.map(async (client) => ((await client.closeInfo(8000)).code === 1001 ? Date.now() - startedAt : Number.NaN))),
    ]);
    assert.equal(code, 0);
    assert.ok(closedAfterMs.every((ms) => !Number.isNaN(ms)), 'every connection closed with 1001');
    // The product's own deadline: 6 s, less the 2 s kept for the steps after the drain (with slack for this machine).
    const last = Math.max(...closedAfterMs);
    assert.ok(last < 4600, `the last connection closed ${last} ms after SIGTERM`);
    assert.equal(await servers.redis.client.exists('session:short:desk:u0', 'session:short:desk:u219'), 0, 'the sessions were released, not left to lapse');
  });
});

describe("an operator's consumer without a delivery limit", () => {
  const servers = ownServers();

  test('its events are retried past NATS_MAX_DELIVER and reach a peer that was hung, never buried as dead', async () => {
    const jsm = await servers.nc.jetstreamManager();
    await jsm.streams.add({ name: 'wa_stream', subjects: ['websocket.>'] });
    await jsm.consumers.add('wa_stream', { durable_name: 'ws_fanout', ack_policy: AckPolicy.Explicit, ack_wait: nanos(2000), max_deliver: -1, filter_subject: 'websocket.>' });
    // Leases longer than the hang, so the hung pod stays an owner; a pod limit the consumer overrides.
    const env = { LEASE_TTL_MS: '15000', LEASE_RENEW_INTERVAL_MS: '5000', NATS_MAX_DELIVER: '3', NATS_NAK_DELAY_MS: '50' };
    const keys = randomKeys();
    const consumer = await startGateway(podEnv(servers.redis, servers.nats, env), keys);
    const owner = await startGateway(podEnv(servers.redis, undefined, env), keys);
    const client = await owner.connectUser('unl', 'desk', 'u1');
    try {
      owner.child.kill('SIGSTOP');
      try {
        await publish(servers.nc, 'websocket.unl.desk.chats', { seq: 1 });
        await waitFor(async () => (await consumer.metric('switchboard_events_redelivered_total')) > 3, 10_000, 'more redeliveries than the pod limit');
        assert.equal(await consumer.metric('switchboard_events_fanned_out_total{outcome="dead"}'), 0, 'not buried at the pod limit');
      } finally {
        owner.child.kill('SIGCONT');
      }
      assert.deepEqual((await client.expect('event', 10_000)).payload, { seq: 1 });
    } finally {
      client.close();
      await Promise.all([consumer.stop(), owner.stop()]);
    }
  });
});

describe('Redis unreachable for longer than the delivery limit of fixed retries', () => {
  const servers = ownServers();

  test('retries back off, so events delivered from the route copy are acked when Redis is back, not buried as dead', async () => {
    // Eight deliveries 100 ms apart (each also waiting out two 300 ms Redis timeouts) would all be
    // used up in about 6 s of outage; backing off, they span more than 15 s. Leases outlast it.
    const env = { LEASE_TTL_MS: '30000', LEASE_RENEW_INTERVAL_MS: '10000', NATS_MAX_DELIVER: '8', NATS_NAK_DELAY_MS: '100' };
    const gw = await startGateway(podEnv(servers.redis, servers.nats, env), randomKeys());
    const client = await gw.connectUser('outage', 'desk', 'u1');
    try {
      // The first event makes the pod keep a copy of the route's owners.
      await publish(servers.nc, 'websocket.outage.desk.chats', { seq: 0 });
      await client.expect('event', 5000);
      servers.redis.pause();
      try {
        await publish(servers.nc, 'websocket.outage.desk.chats', { seq: 1 });
        assert.deepEqual((await client.expect('event', 5000)).payload, { seq: 1 }, 'delivered from the copy at once');
        await new Promise((resolve) => setTimeout(resolve, 9000));
      } finally {
        servers.redis.resume();
      }
      await everyEventAcked(servers.nc, 'once Redis is back');
      assert.equal(await gw.metric('switchboard_events_fanned_out_total{outcome="dead"}'), 0, 'no event was buried');
      await client.expectSilence(300);
    } finally {
      client.close();
      await gw.stop();
    }
  });
});
