import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { TestClient } from '../support/client.js';
import { startGateway, type TestGateway } from '../support/gateway.js';

describe('dispatch on the in-process engine', () => {
  let gw: TestGateway;
  const open: TestClient[] = [];
  before(async () => {
    gw = await startGateway();
  });
  after(async () => {
    for (const client of open) client.close();
    await gw.stop();
  });
  const user = async (company: string, agent: string, id: string) => {
    const client = await gw.connectUser(company, agent, id);
    open.push(client);
    return client;
  };
  const admin = async (id: string, scope: Record<string, string> = {}) => {
    const client = await gw.connectAdmin(id, scope);
    open.push(client);
    return client;
  };

  test('a chats event reaches every connection of that agent, unchanged, and no other agent', async () => {
    const [a1, a2, other, otherCompany] = [
      await user('acme', 'support', 'u1'),
      await user('acme', 'support', 'u2'),
      await user('acme', 'sales', 'u3'),
      await user('globex', 'support', 'u4'),
    ];
    const event = {
      event_id: 'e-1',
      event_time: '2026-11-24T10:00:00.123456789+07:00',
      company_id: 'acme',
      agent_id: 'support',
      chat_id: 'c9',
      message_id: 'm1',
      event_type: 'chat_updated',
      row_data: { nested: [1, 'two', null, { ünïcode: '✓' }], big: 12345678901234 },
    };
    await gw.publish('websocket.acme.support.chats', event);
    assert.deepEqual((await a1.expect('event')).payload, event);
    assert.deepEqual((await a2.expect('event')).payload, event);
    await other.expectSilence(100);
    await otherCompany.expectSilence(0);
  });

  test('a messages event reaches only the connections that selected that chat', async () => {
    const [selected, elsewhere, none] = [await user('acme', 'ops', 'u5'), await user('acme', 'ops', 'u6'), await user('acme', 'ops', 'u7')];
    await selected.selectChat('chat-1');
    await elsewhere.selectChat('chat-2');
    await gw.publish('websocket.acme.ops.messages.chat-1', { event_id: 'm' });
    assert.deepEqual((await selected.expect('event')).payload, { event_id: 'm' });
    await elsewhere.expectSilence(100);
    await none.expectSilence(0);
  });

  test('agents events reach admin connections whose scope covers the company and agent', async () => {
    const all = await admin('a-all');
    const company = await admin('a-company', { subscribed_company_id: 'acme' });
    const agent = await admin('a-agent', { subscribed_company_id: 'acme', subscribed_agent_id: 'support' });
    const otherAgent = await admin('a-other-agent', { subscribed_company_id: 'acme', subscribed_agent_id: 'sales' });
    const otherCompany = await admin('a-other-company', { subscribed_company_id: 'globex' });
    const restricted = await admin('a-restricted', { company_id_restriction: 'acme' });
    const restrictedElsewhere = await admin('a-restricted-elsewhere', { company_id_restriction: 'globex' });
    const agentUser = await user('acme', 'support', 'u8');

    await gw.publish('websocket.acme.support.agents', { event_id: 'adm' });
    for (const client of [all, company, agent, restricted]) assert.deepEqual((await client.expect('event')).payload, { event_id: 'adm' });
    for (const client of [otherAgent, otherCompany, restrictedElsewhere, agentUser]) await client.expectSilence(50);
  });

  test('user connections never receive admin events and admins never receive chats events', async () => {
    const admins = await admin('a-quiet');
    const agentUser = await user('initech', 'desk', 'u9');
    await gw.publish('websocket.initech.desk.chats', { event_id: 'c' });
    assert.deepEqual((await agentUser.expect('event')).payload, { event_id: 'c' });
    await admins.expectSilence(100);
  });

  test('events with a bad subject or payload are refused with 400; nothing is delivered', async () => {
    const listener = await user('acme', 'qa', 'u10');
    for (const body of [
      { subject: 'websocket.acme.qa', payload: {} },
      { subject: 'websocket.acme.qa.chats.extra', payload: {} },
      { subject: 'websocket.acme.*.chats', payload: {} },
      { subject: 'other.acme.qa.chats', payload: {} },
      { subject: 'websocket.acme.qa.chats', payload: [1] },
      { subject: 'websocket.acme.qa.chats', payload: 'text' },
      { subject: 'websocket.acme.qa.chats' },
    ]) {
      const res = await gw.admin('POST', '/admin/publish', gw.keys.adminSecretToken, body);
      assert.equal(res.status, 400, JSON.stringify(body));
      assert.equal((res.body as { code: string }).code, 'BadRequest');
    }
    await listener.expectSilence(100);
  });

  test('delivery is counted and its latency observed', async () => {
    const before = await gw.metric('switchboard_events_fanned_out_total{outcome="local"}');
    const latencyBefore = await gw.metric('switchboard_event_delivery_latency_seconds_count');
    const inBefore = await gw.metric('switchboard_events_in_total{source="admin_api"}');
    const client = await user('acme', 'metrics', 'u11');
    await gw.publish('websocket.acme.metrics.chats', { event_id: 'x' });
    await client.expect('event');
    assert.equal(await gw.metric('switchboard_events_fanned_out_total{outcome="local"}'), before + 1);
    assert.equal(await gw.metric('switchboard_event_delivery_latency_seconds_count'), latencyBefore + 1);
    assert.equal(await gw.metric('switchboard_events_in_total{source="admin_api"}'), inBefore + 1);
    const dropped = await gw.metric('switchboard_events_fanned_out_total{outcome="dropped"}');
    await gw.publish('websocket.nobody.here.chats', { event_id: 'y' });
    assert.equal(await gw.metric('switchboard_events_fanned_out_total{outcome="dropped"}'), dropped + 1);
  });
});
