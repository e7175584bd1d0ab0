import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { errorFrame, eventFrame, parseClientFrame } from '../../src/acceptor/protocol.js';
import { TokenBucket } from '../../src/acceptor/TokenBucket.js';
import { parseSubject } from '../../src/dispatch/subject.js';
import { redactUrl } from '../../src/log.js';

describe('parseClientFrame', () => {
  test('accepts select_chat at the top level and inside payload', () => {
    assert.deepEqual(parseClientFrame('{"type":"select_chat","chat_id":"c1"}'), { ok: true, frame: { type: 'select_chat', chatId: 'c1' } });
    assert.deepEqual(parseClientFrame('{"type":"select_chat","payload":{"chat_id":"c2"}}'), { ok: true, frame: { type: 'select_chat', chatId: 'c2' } });
  });

  test('refuses with a message saying what is wrong', () => {
    const cases: Array<[string, RegExp]> = [
      ['', /not valid JSON/],
      ['{', /not valid JSON/],
      ['null', /JSON object/],
      ['[]', /JSON object/],
      ['"select_chat"', /JSON object/],
      ['{}', /"type"/],
      ['{"type":5}', /"type"/],
      ['{"type":"subscribe"}', /unknown message type "subscribe"/],
      ['{"type":"select_chat"}', /chat_id/],
      ['{"type":"select_chat","chat_id":""}', /chat_id/],
      ['{"type":"select_chat","chat_id":7}', /chat_id/],
      ['{"type":"select_chat","payload":"c1"}', /chat_id/],
      ['{"type":"select_chat","chat_id":"a.b"}', /chat_id must be/],
      ['{"type":"select_chat","chat_id":"a>"}', /chat_id must be/],
      [`{"type":"select_chat","chat_id":"${'x'.repeat(257)}"}`, /at most 256/],
    ];
    for (const [text, message] of cases) {
      const result = parseClientFrame(text);
      assert.equal(result.ok, false, text);
      if (!result.ok) assert.match(result.message, message, text);
    }
  });

  test('a very long unknown type is cut in the message', () => {
    const result = parseClientFrame(JSON.stringify({ type: 't'.repeat(1000) }));
    assert.ok(!result.ok && result.message.length < 100);
  });
});

describe('frames', () => {
  test('an event frame wraps the payload text without re-serializing it', () => {
    const payload = '{"event_id":"e","n":1.50}';
    assert.equal(eventFrame(payload), '{"type":"event","payload":{"event_id":"e","n":1.50}}');
  });

  test('an error frame carries code and message', () => {
    assert.deepEqual(JSON.parse(errorFrame({ code: 'BadRequest', message: 'm' })), { type: 'error', payload: { code: 'BadRequest', message: 'm' } });
  });
});

describe('TokenBucket', () => {
  test('allows a burst, then refills at the rate', () => {
    const bucket = new TokenBucket(3, 0);
    const take = (now: number) => bucket.take(now, 3, 2);
    assert.deepEqual([take(0), take(0), take(0), take(0)], [true, true, true, false]);
    assert.equal(take(400), false);
    assert.equal(take(500), true);
    assert.equal(take(500), false);
  });

  test('never holds more than its capacity', () => {
    const bucket = new TokenBucket(2, 0);
    const take = (now: number) => bucket.take(now, 2, 100);
    assert.deepEqual([take(60_000), take(60_000), take(60_000)], [true, true, false]);
  });

  test('a clock that goes backwards does not add tokens', () => {
    const bucket = new TokenBucket(1, 1000);
    assert.equal(bucket.take(1000, 1, 1), true);
    assert.equal(bucket.take(0, 1, 1), false);
  });

  test('new limits apply at the next take (a reload)', () => {
    const bucket = new TokenBucket(1, 0);
    assert.equal(bucket.take(0, 1, 1), true);
    assert.equal(bucket.take(100, 1, 1), false);
    assert.equal(bucket.take(110, 1, 100), true, 'a higher rate refills faster from then on');
  });
});

describe('parseSubject', () => {
  test('parses the three subject forms', () => {
    assert.deepEqual(parseSubject('websocket.acme.support.chats'), { kind: 'agent', companyId: 'acme', agentId: 'support' });
    assert.deepEqual(parseSubject('websocket.acme.support.agents'), { kind: 'admins', companyId: 'acme', agentId: 'support' });
    assert.deepEqual(parseSubject('websocket.acme.support.messages.c-9'), { kind: 'chat', companyId: 'acme', agentId: 'support', chatId: 'c-9' });
  });

  test('refuses anything else', () => {
    for (const subject of [
      '',
      'websocket',
      'websocket.acme.support',
      'websocket.acme.support.chats.x',
      'websocket.acme.support.messages',
      'websocket.acme.support.messages.c.d',
      'websocket.acme.support.other',
      'websocket..support.chats',
      'websocket.*.support.chats',
      'websocket.acme.>',
      'events.acme.support.chats',
    ]) {
      assert.equal(parseSubject(subject), undefined, subject);
    }
  });
});

describe('redactUrl', () => {
  test('masks token and x-api-key query values, whatever their case', () => {
    assert.equal(
      redactUrl('/ws/a/b?user=u&token=abc%3D&X-API-KEY=k1&x=1'),
      '/ws/a/b?user=u&token=[Redacted]&X-API-KEY=[Redacted]&x=1',
    );
  });

  test('masks them when their names are percent-encoded, as the handshake decodes names', () => {
    assert.equal(redactUrl('/ws/a/b?%74oken=secret1&x%2Dapi-key=secret2&user=u%2'), '/ws/a/b?%74oken=[Redacted]&x%2Dapi-key=[Redacted]&user=u%2');
    assert.equal(redactUrl('/ws/a/b'), '/ws/a/b');
  });
});
