import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { NatsServer } from '../support/nats.js';

/** A stream of this test's own: isolation by random names, never by wiping the server. */
function randomStream(): { name: string; subject: string } {
  const id = randomBytes(4).toString('hex');
  return { name: `support_${id}`, subject: `support.${id}.>` };
}

describe('test support: nats-server', () => {
  let nats: NatsServer;

  before(async () => {
    nats = await NatsServer.start();
  });
  after(async () => {
    await nats.stop();
  });

  test('a core publish to a subject of a JetStream stream is stored in that stream', async () => {
    const { name, subject } = randomStream();
    const nc = await nats.client();
    const jsm = await nc.jetstreamManager();
    await jsm.streams.add({ name, subjects: [subject] });
    const ack = await nc.jetstream().publish(subject.replace('>', 'one'), JSON.stringify({ event_id: 'e1' }));
    assert.equal(ack.stream, name);
    nc.publish(subject.replace('>', 'two'), '{}');
    await nc.flush();
    assert.equal((await jsm.streams.info(name)).state.messages, 2);
  });

  test('a restart keeps the stream and its messages on the same URL', async () => {
    const { name, subject } = randomStream();
    const nc = await nats.client();
    const jsm = await nc.jetstreamManager();
    await jsm.streams.add({ name, subjects: [subject] });
    const js = nc.jetstream();
    for (let i = 0; i < 5; i++) await js.publish(subject.replace('>', String(i)), '{}');
    const [urlBefore, pidBefore] = [nats.url, nats.pid];

    await nats.restart();

    assert.notEqual(nats.pid, pidBefore, 'a new nats-server process');
    assert.equal(nats.url, urlBefore);
    // The support client reconnects by itself; a JetStream request proves it is back.
    const info = await (await (await nats.client()).jetstreamManager()).streams.info(name);
    assert.equal(info.state.messages, 5);
  });
});
