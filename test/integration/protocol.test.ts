import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { openClient, type TestClient } from '../support/client.js';
import { startGateway, type TestGateway } from '../support/gateway.js';
import { waitFor } from '../support/wait.js';

async function expectError(client: TestClient, code: string): Promise<string> {
  const frame = await client.expect('error');
  const payload = frame.payload as { code: string; message: string };
  assert.equal(payload.code, code);
  return payload.message;
}

describe('json.v1 protocol', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await startGateway({ MAX_FRAME_BYTES: '1024', BAD_FRAME_LIMIT: '5', RATE_LIMIT_PER_SECOND: '10', RATE_LIMIT_BURST: '20' });
  });
  after(async () => {
    await gw.stop();
  });

  test('select_chat works in both forms and the new selection replaces the old', async () => {
    const client = await gw.connectUser('acme', 'support', 'alice');
    await client.selectChat('c1', 'top-level');
    await gw.publish('websocket.acme.support.messages.c1', { n: 1 });
    assert.deepEqual((await client.expect('event')).payload, { n: 1 });
    await client.selectChat('c2', 'payload');
    await gw.publish('websocket.acme.support.messages.c2', { n: 2 });
    assert.deepEqual((await client.expect('event')).payload, { n: 2 });
    await gw.publish('websocket.acme.support.messages.c1', { n: 3 });
    await client.expectSilence(150);
    client.close();
  });

  test('malformed frames get BadRequest and the connection stays open', async () => {
    const client = await gw.connectUser('acme', 'support', 'bob');
    const bad: Array<[string | Buffer, boolean]> = [
      ['not json', false],
      ['[1,2]', false],
      ['{"type":"dance"}', false],
      ['{"type":"select_chat"}', false],
      [Buffer.from([1, 2, 3]), true],
    ];
    for (const [frame, binary] of bad) {
      client.send(frame, binary);
      await expectError(client, 'BadRequest');
    }
    assert.ok(client.isOpen);
    client.close();
  });

  test('repeated malformed frames close with 4400', async () => {
    const client = await gw.connectUser('acme', 'support', 'carol');
    for (let i = 0; i < 6; i++) client.send('{oops');
    for (let i = 0; i < 6; i++) await expectError(client, 'BadRequest');
    assert.equal((await client.closeInfo()).code, 4400);
  });

  test('messages over the rate limit get RateLimitExceeded; a client that keeps going is closed with 4429', async () => {
    const client = await gw.connectUser('acme', 'support', 'dave');
    const hitsBefore = await gw.metric('switchboard_rate_limit_hits_total');
    for (let i = 0; i < 21; i++) client.send(JSON.stringify({ type: 'select_chat', chat_id: `c${i}` }));
    assert.match(await expectError(client, 'RateLimitExceeded'), /messages per second/);
    assert.ok(client.isOpen);
    for (let i = 0; i < 25; i++) client.send(JSON.stringify({ type: 'select_chat', chat_id: 'c1' }));
    assert.equal((await client.closeInfo()).code, 4429);
    assert.ok((await gw.metric('switchboard_rate_limit_hits_total')) >= hitsBefore + 21);
  });

  test('a frame over MAX_FRAME_BYTES closes with 1009 and a reason', async () => {
    const client = await gw.connectUser('acme', 'support', 'erin');
    client.send(JSON.stringify({ type: 'select_chat', chat_id: 'x'.repeat(1100) }));
    const closed = await client.closeInfo();
    assert.equal(closed.code, 1009);
    assert.match(closed.reason, /1024/);
  });
});

describe('heartbeats', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await startGateway({ HEARTBEAT_INTERVAL_MS: '100' });
  });
  after(async () => {
    await gw.stop();
  });

  test('a client that stops answering pings is closed after two missed pongs; one that answers stays', async () => {
    const silent = await openClient(await gw.userUrl('acme', 'support', 'frank'), { autoPong: false });
    await silent.expect('ready');
    const lively = await gw.connectUser('acme', 'support', 'gina');
    const closed = await silent.closeInfo(2000);
    assert.equal(closed.code, 1008);
    assert.equal(closed.reason, 'heartbeat-timeout');
    await new Promise((resolve) => setTimeout(resolve, 400));
    assert.ok(lively.isOpen);
    lively.close();
  });
});

describe('back-pressure', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await startGateway({ SEND_BUFFER_BYTES: '65536' });
  });
  after(async () => {
    await gw.stop();
  });

  test('a client that stops reading is closed with 4408 once its send buffer passes the ceiling', async () => {
    const slow = await gw.connectUser('acme', 'support', 'slow');
    const fast = await gw.connectUser('acme', 'support', 'fast');
    slow.ws.pause();
    const big = 'x'.repeat(32 * 1024);
    let sent = 0;
    await waitFor(async () => {
      await gw.publish('websocket.acme.support.chats', { n: sent++, big });
      return (await gw.metric('switchboard_slow_consumer_closes_total')) >= 1;
    }, 20_000, 'the slow consumer to be closed');
    assert.ok(fast.isOpen, 'the client that reads is unaffected');
    slow.ws.resume();
    const closed = await slow.closeInfo(5000);
    assert.equal(closed.code, 4408);
    assert.equal(closed.reason, 'slow-consumer');
    // The reading client got every event.
    await waitFor(() => fast.pending.length >= sent, 5000, 'the fast client to receive every event');
    fast.close();
  });

  test('a client that stops reading the thread it selected is closed with 4408 as well', async () => {
    const closesBefore = await gw.metric('switchboard_slow_consumer_closes_total');
    const slow = await gw.connectUser('acme', 'support', 'thread-reader');
    await slow.selectChat('c1');
    slow.ws.pause();
    const big = 'x'.repeat(32 * 1024);
    let sent = 0;
    // Only thread events: the connection's agent topic stays quiet, so the check must find it as a member of the chat's.
    await waitFor(async () => {
      await gw.publish('websocket.acme.support.messages.c1', { n: sent++, big });
      return (await gw.metric('switchboard_slow_consumer_closes_total')) > closesBefore;
    }, 20_000, 'the thread reader to be closed');
    slow.ws.resume();
    const closed = await slow.closeInfo(5000);
    assert.equal(closed.code, 4408);
  });
});

describe('permessage-deflate', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await startGateway({ WS_COMPRESSION: 'true' });
  });
  after(async () => {
    await gw.stop();
  });

  test('is negotiated when enabled, and events arrive compressed and intact', async () => {
    const client = await openClient(await gw.userUrl('acme', 'support', 'zip'), { perMessageDeflate: true });
    await client.expect('ready');
    assert.match(client.ws.extensions, /permessage-deflate/);
    // ws keeps the TCP socket on a field it does not type: its byte count is what crossed the wire.
    const socket = (client.ws as unknown as { readonly _socket: Socket })._socket;
    const before = socket.bytesRead;
    const payload = { event_id: 'z', text: 'compressible '.repeat(500) };
    await gw.publish('websocket.acme.support.chats', payload);
    assert.deepEqual((await client.expect('event')).payload, payload);
    const onWire = socket.bytesRead - before;
    assert.ok(onWire < JSON.stringify(payload).length / 4, `a ${JSON.stringify(payload).length}-byte event took ${onWire} bytes on the wire`);
    client.close();
  });

  test('is not negotiated when disabled', async () => {
    const plain = await startGateway();
    try {
      const client = await openClient(await plain.userUrl('acme', 'support', 'zip'), { perMessageDeflate: true });
      await client.expect('ready');
      assert.equal(client.ws.extensions, '');
      client.close();
    } finally {
      await plain.stop();
    }
  });
});
