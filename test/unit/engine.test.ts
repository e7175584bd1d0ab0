import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseAdminTokenRequest, parseDisconnectRequest, parsePublishRequest, parseUserTokenRequest } from '../../src/admin/requests.js';
import { LocalRoutes } from '../../src/engine/LocalRoutes.js';
import { LocalSessions } from '../../src/engine/LocalSessions.js';
import { LocalTokenCache } from '../../src/engine/LocalTokenCache.js';
import type { RevokeReason, SessionHolder } from '../../src/sessions/SessionStore.js';

function holder(id: string): SessionHolder & { revoked: RevokeReason[] } {
  const revoked: RevokeReason[] = [];
  return { connectionId: id, revoked, revoke: (reason) => revoked.push(reason) };
}

const alice = { kind: 'user', companyId: 'c', agentId: 'a', userId: 'alice' } as const;

describe('LocalSessions', () => {
  test('newest wins: the previous holder is revoked as replaced', async () => {
    const sessions = new LocalSessions('pod', { maxDevices: 1 });
    const [first, second] = [holder('1'), holder('2')];
    await sessions.acquire(alice, first);
    await sessions.acquire(alice, second);
    assert.deepEqual(first.revoked, ['replaced']);
    assert.deepEqual(second.revoked, []);
    assert.deepEqual((await sessions.list()).map((s) => s.connectionId), ['2']);
  });

  test('a stale release does not remove the newer holder', async () => {
    const sessions = new LocalSessions('pod', { maxDevices: 1 });
    const lease = await sessions.acquire(alice, holder('1'));
    await sessions.acquire(alice, holder('2'));
    await lease.release();
    await lease.release();
    assert.deepEqual((await sessions.list()).map((s) => s.connectionId), ['2']);
  });

  test('multi-device: up to the limit coexist; past it the oldest is replaced', async () => {
    const sessions = new LocalSessions('pod', { maxDevices: 2 });
    const devices = [holder('1'), holder('2'), holder('3')];
    for (const device of devices) await sessions.acquire(alice, device);
    assert.deepEqual(devices.map((d) => d.revoked), [['replaced'], [], []]);
  });

  test('disconnect revokes every holder of the identity and reports whether there was one', async () => {
    const sessions = new LocalSessions('pod', { maxDevices: 2 });
    const devices = [holder('1'), holder('2')];
    for (const device of devices) await sessions.acquire(alice, device);
    assert.equal(await sessions.disconnect(alice), true);
    assert.deepEqual(devices.map((d) => d.revoked), [['admin-disconnect'], ['admin-disconnect']]);
    assert.equal(await sessions.disconnect(alice), false);
  });
});

describe('LocalRoutes', () => {
  test('the pod owns a route until its last interested connection releases it', async () => {
    const routes = new LocalRoutes('pod-1');
    const route = { kind: 'chat', companyId: 'c', agentId: 'a', chatId: 'x' } as const;
    await routes.retain(route);
    await routes.retain(route);
    await routes.release(route);
    assert.deepEqual(await routes.owners(route), { pods: ['pod-1'], incompleteForMs: 0 });
    await routes.release(route);
    assert.deepEqual(await routes.owners(route), { pods: [], incompleteForMs: 0 });
  });
});

describe('LocalTokenCache', () => {
  test('entries expire and the oldest go first past the bound', async () => {
    const cache = new LocalTokenCache(2);
    const token = { kind: 'user', claims: { companyId: 'c', agentId: 'a', userId: 'u', expiresAtMs: Date.now() + 60_000 } } as const;
    await cache.set('a', token, 60_000);
    await cache.set('b', token, 60_000);
    await cache.set('c', token, 60_000);
    assert.equal(await cache.get('a'), undefined);
    assert.deepEqual(await cache.get('c'), token);
    await cache.set('d', token, -1);
    assert.equal(await cache.get('d'), undefined);
  });
});

describe('admin request parsing', () => {
  test('user and admin token requests', () => {
    assert.deepEqual(parseUserTokenRequest({ company_id: 'c', agent_id: 'a', user_id: 'u', expires_in_seconds: 5 }), {
      ok: true,
      value: { companyId: 'c', agentId: 'a', userId: 'u', expiresInSeconds: 5 },
    });
    assert.deepEqual(parseAdminTokenRequest({ admin_id: 'x', expires_in_seconds: 5 }), {
      ok: true,
      value: { adminId: 'x', expiresInSeconds: 5, subscribedCompanyId: '', subscribedAgentId: '', companyIdRestriction: '' },
    });
    assert.equal(parseUserTokenRequest({ company_id: 'c', agent_id: 'a', user_id: 'u', expires_in_seconds: 1e9 }).ok, false);
  });

  test('publish serializes the payload once and checks headers', () => {
    assert.deepEqual(parsePublishRequest({ subject: 's', payload: { a: 1 } }), { ok: true, value: { subject: 's', payload: '{"a":1}', headers: {} } });
    assert.equal(parsePublishRequest({ subject: 's', payload: { a: 1 }, headers: [] }).ok, false);
    assert.equal(parsePublishRequest({ subject: '', payload: {} }).ok, false);
  });

  test('publish spells the request id header one way, whatever case it came in', () => {
    const parsed = parsePublishRequest({ subject: 's', payload: {}, headers: { 'x-request-id': 'r-1', Trace: 't' } });
    assert.deepEqual(parsed, { ok: true, value: { subject: 's', payload: '{}', headers: { 'X-Request-ID': 'r-1', Trace: 't' } } });
  });

  test('disconnect takes a user identity or an admin id', () => {
    assert.deepEqual(parseDisconnectRequest({ admin_id: 'root' }), { ok: true, value: { kind: 'admin', adminId: 'root' } });
    assert.deepEqual(parseDisconnectRequest({ company_id: 'c', agent_id: 'a', user_id: 'u' }), {
      ok: true,
      value: { kind: 'user', companyId: 'c', agentId: 'a', userId: 'u' },
    });
    assert.equal(parseDisconnectRequest({ admin_id: '' }).ok, false);
  });

  test('a field no request takes is refused by name, so a misspelt one never goes unnoticed', () => {
    assert.deepEqual(parseAdminTokenRequest({ admin_id: 'x', expires_in_seconds: 5, company_restriction: 'acme' }), {
      ok: false,
      message: 'unknown field "company_restriction"; this request takes "admin_id", "expires_in_seconds", "subscribed_company_id", "subscribed_agent_id", "company_id_restriction"',
    });
    assert.match(messageOf(parseUserTokenRequest({ company_id: 'c', agent_id: 'a', user_id: 'u', expires_in_seconds: 5, user: 'u' })), /unknown field "user"/);
    assert.match(messageOf(parsePublishRequest({ subject: 's', payload: {}, header: {} })), /unknown field "header"/);
    assert.match(messageOf(parseDisconnectRequest({ user: 'u' })), /unknown field "user"/);
  });

  test('an admin token scoped to two different companies is refused: it would see nothing', () => {
    const scoped = { admin_id: 'x', expires_in_seconds: 5, company_id_restriction: 'acme' };
    assert.match(messageOf(parseAdminTokenRequest({ ...scoped, subscribed_company_id: 'globex' })), /"subscribed_company_id" must equal "company_id_restriction"/);
    assert.equal(parseAdminTokenRequest({ ...scoped, subscribed_company_id: 'acme' }).ok, true);
  });

  test('disconnect names exactly one session', () => {
    assert.match(messageOf(parseDisconnectRequest({})), /name a session: "company_id", "agent_id" and "user_id", or "admin_id"/);
    assert.match(messageOf(parseDisconnectRequest({ admin_id: 'root', user_id: 'u' })), /name one session: .* not both/);
  });

  test('publish refuses NATS control headers other than Nats-Msg-Id', () => {
    assert.match(messageOf(parsePublishRequest({ subject: 's', payload: {}, headers: { 'Nats-Expected-Stream': 'x' } })), /"Nats-Expected-Stream" is a NATS control header/);
    assert.match(messageOf(parsePublishRequest({ subject: 's', payload: {}, headers: { 'nats-rollup': 'all' } })), /"nats-rollup" is a NATS control header/);
    assert.deepEqual(parsePublishRequest({ subject: 's', payload: {}, headers: { 'Nats-Msg-Id': 'm-1' } }), { ok: true, value: { subject: 's', payload: '{}', headers: { 'Nats-Msg-Id': 'm-1' } } });
  });
});

/** The refusal's message; fails the test if the request was accepted. */
function messageOf(parsed: { readonly ok: true } | { readonly ok: false; readonly message: string }): string {
  assert.ok(!parsed.ok, 'refused');
  return parsed.message;
}
