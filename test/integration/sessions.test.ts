import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { expectReplaced, openClient } from '../support/client.js';
import { startGateway, type TestGateway } from '../support/gateway.js';
import { waitFor } from '../support/wait.js';

interface SessionRow {
  readonly type: string;
  readonly company_id?: string;
  readonly agent_id?: string;
  readonly user_id?: string;
  readonly admin_id?: string;
  readonly connection_id: string;
  readonly pod_id: string;
}

async function sessions(gw: TestGateway): Promise<SessionRow[]> {
  const res = await gw.admin('GET', '/admin/sessions', gw.keys.adminSecretToken);
  assert.equal(res.status, 200);
  return (res.body as { sessions: SessionRow[] }).sessions;
}

describe('exclusive sessions (newest wins)', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await startGateway();
  });
  after(async () => {
    await gw.stop();
  });

  test('a second login of one identity closes the first with SessionConflict / 4402 session-replaced', async () => {
    const first = await gw.connectUser('acme', 'support', 'alice');
    const second = await gw.connectUser('acme', 'support', 'alice');
    await expectReplaced(first);
    await gw.publish('websocket.acme.support.chats', { event_id: 'after' });
    assert.deepEqual((await second.expect('event')).payload, { event_id: 'after' });
    const rows = (await sessions(gw)).filter((s) => s.user_id === 'alice');
    assert.equal(rows.length, 1);
    assert.equal(await gw.metric('switchboard_session_replacements_total{type="user"}'), 1);
    second.close();
  });

  test('many simultaneous connects of one identity leave exactly one live connection', async () => {
    const urls = await Promise.all(Array.from({ length: 12 }, () => gw.userUrl('acme', 'support', 'bob')));
    const clients = await Promise.all(urls.map((url) => openClient(url)));
    await waitFor(() => clients.filter((c) => c.isOpen).length === 1, 3000, 'one survivor');
    const survivor = clients.find((c) => c.isOpen)!;
    assert.equal(survivor.raw[0], '{"type":"ready"}');
    for (const loser of clients.filter((c) => c !== survivor)) assert.equal((await loser.closeInfo()).code, 4402);
    await waitFor(async () => (await sessions(gw)).filter((s) => s.user_id === 'bob').length === 1, 2000, 'one session row');
    survivor.close();
  });

  test('admin sessions are exclusive per admin id', async () => {
    const first = await gw.connectAdmin('root');
    const second = await gw.connectAdmin('root');
    await expectReplaced(first);
    assert.ok(second.isOpen);
    second.close();
  });

  test('/admin/disconnect closes a live session wherever it is and 404s when there is none', async () => {
    const client = await gw.connectUser('acme', 'support', 'carol');
    const admin = await gw.connectAdmin('ops');
    const res = await gw.admin('POST', '/admin/disconnect', gw.keys.adminSecretToken, { company_id: 'acme', agent_id: 'support', user_id: 'carol' });
    assert.equal(res.status, 200);
    const closed = await client.closeInfo();
    assert.equal(closed.code, 1000);
    assert.equal((await gw.admin('POST', '/admin/disconnect', gw.keys.adminSecretToken, { admin_id: 'ops' })).status, 200);
    assert.equal((await admin.closeInfo()).code, 1000);
    const again = await gw.admin('POST', '/admin/disconnect', gw.keys.adminSecretToken, { company_id: 'acme', agent_id: 'support', user_id: 'carol' });
    assert.equal(again.status, 404);
    await waitFor(async () => (await sessions(gw)).every((s) => s.user_id !== 'carol' && s.admin_id !== 'ops'), 2000, 'sessions released');
  });

  test('/admin/sessions lists live sessions with their pod; /admin/pods lists this pod with its connection count', async () => {
    const client = await gw.connectUser('acme', 'support', 'dave');
    const admin = await gw.connectAdmin('auditor');
    const rows = await sessions(gw);
    const dave = rows.find((s) => s.user_id === 'dave');
    assert.deepEqual(
      { type: dave?.type, company_id: dave?.company_id, agent_id: dave?.agent_id },
      { type: 'user', company_id: 'acme', agent_id: 'support' },
    );
    assert.ok(rows.some((s) => s.type === 'admin' && s.admin_id === 'auditor'));
    const pods = await gw.admin('GET', '/admin/pods', gw.keys.adminSecretToken);
    assert.equal(pods.status, 200);
    const list = (pods.body as { pods: Array<{ pod_id: string; connections: number }> }).pods;
    assert.equal(list.length, 1);
    assert.equal(list[0]?.pod_id, dave?.pod_id);
    assert.ok((list[0]?.connections ?? 0) >= 2);
    client.close();
    admin.close();
    await waitFor(async () => !(await sessions(gw)).some((s) => s.user_id === 'dave'), 2000, 'the closed session to leave the list');
  });
});

describe('multi-device mode', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await startGateway({ MULTI_DEVICE: 'true', MAX_DEVICES_PER_IDENTITY: '2' });
  });
  after(async () => {
    await gw.stop();
  });

  test('up to the limit, devices of one identity coexist and all receive events; past it the oldest is replaced', async () => {
    const phone = await gw.connectUser('acme', 'support', 'erin');
    const laptop = await gw.connectUser('acme', 'support', 'erin');
    await gw.publish('websocket.acme.support.chats', { event_id: 'both' });
    assert.deepEqual((await phone.expect('event')).payload, { event_id: 'both' });
    assert.deepEqual((await laptop.expect('event')).payload, { event_id: 'both' });
    const tablet = await gw.connectUser('acme', 'support', 'erin');
    await expectReplaced(phone);
    assert.ok(laptop.isOpen && tablet.isOpen);
    laptop.close();
    tablet.close();
  });
});
