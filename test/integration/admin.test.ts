import assert from 'node:assert/strict';
import { request } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { parseAesKeys, TokenCodec } from '../../src/auth/tokenCodec.js';
import { openClient } from '../support/client.js';
import { startGateway, type TestGateway } from '../support/gateway.js';
import { waitFor } from '../support/wait.js';

function errorCode(body: unknown): string {
  return (body as { code?: string }).code ?? '';
}

describe('admin API', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await startGateway({ METRICS_PREFIX: 'sbtest_', LOG_LEVEL: 'debug' });
  });
  after(async () => {
    await gw.stop();
  });

  test('/metrics serves Prometheus text with the configured prefix, our metrics and the process defaults', async () => {
    const res = await gw.admin('GET', '/metrics', undefined);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /text\/plain/);
    const text = String(res.body);
    for (const name of [
      'sbtest_connections_active',
      'sbtest_session_replacements_total',
      'sbtest_auth_failures_total',
      'sbtest_events_fanned_out_total',
      'sbtest_connection_duration_seconds',
      'sbtest_event_delivery_latency_seconds',
      'sbtest_slow_consumer_closes_total',
      'sbtest_rate_limit_hits_total',
      'sbtest_process_resident_memory_bytes',
    ]) {
      assert.match(text, new RegExp(`^# TYPE ${name} `, 'm'), name);
    }
  });

  test('/generate-token mints a user token that verifies with the configured key', async () => {
    const res = await gw.admin('POST', '/generate-token', gw.keys.secretToken, {
      company_id: 'acme',
      agent_id: 'support',
      user_id: 'alice',
      expires_in_seconds: 60,
    });
    assert.equal(res.status, 200);
    const claims = new TokenCodec(parseAesKeys(gw.keys.tokenAesKeys)).verifyUser((res.body as { token: string }).token, Date.now());
    assert.deepEqual({ ...claims, expiresAtMs: 0 }, { companyId: 'acme', agentId: 'support', userId: 'alice', expiresAtMs: 0 });
    assert.ok(Math.abs(claims.expiresAtMs - (Date.now() + 60_000)) < 5000);
  });

  test('/admin/generate-token mints an admin token carrying its scope', async () => {
    const token = await gw.mintAdminToken({
      admin_id: 'root',
      expires_in_seconds: 60,
      subscribed_company_id: 'acme',
      subscribed_agent_id: 'support',
      company_id_restriction: 'acme',
    });
    const claims = new TokenCodec(parseAesKeys(gw.keys.adminTokenAesKeys)).verifyAdmin(token, Date.now());
    assert.equal(claims.adminId, 'root');
    assert.equal(claims.subscribedCompanyId, 'acme');
    assert.equal(claims.subscribedAgentId, 'support');
    assert.equal(claims.companyIdRestriction, 'acme');
  });

  test('a wrong or missing key answers 401 InvalidAPIKey; the user key does not open admin endpoints', async () => {
    const body = { company_id: 'acme', agent_id: 'support', user_id: 'alice', expires_in_seconds: 60 };
    for (const [path, key] of [
      ['/generate-token', undefined],
      ['/generate-token', 'wrong'],
      ['/generate-token', gw.keys.adminSecretToken],
      ['/admin/generate-token', gw.keys.secretToken],
      ['/admin/publish', gw.keys.secretToken],
      ['/admin/disconnect', undefined],
    ] as const) {
      const res = await gw.admin('POST', path, key, body);
      assert.equal(res.status, 401, `${path} with ${String(key)}`);
      assert.equal(errorCode(res.body), 'InvalidAPIKey');
    }
    for (const path of ['/admin/sessions', '/admin/pods']) {
      const res = await gw.admin('GET', path, 'wrong');
      assert.equal(res.status, 401, path);
    }
  });

  test('bad bodies answer 400 BadRequest with a message saying what to fix', async () => {
    const cases: Array<[string, string, unknown, RegExp]> = [
      ['/generate-token', gw.keys.secretToken, '{not json', /not valid JSON/],
      ['/generate-token', gw.keys.secretToken, [], /JSON object/],
      ['/generate-token', gw.keys.secretToken, { agent_id: 'a', user_id: 'u', expires_in_seconds: 60 }, /company_id/],
      ['/generate-token', gw.keys.secretToken, { company_id: 'c', agent_id: 'a', user_id: 'u', expires_in_seconds: 0 }, /expires_in_seconds/],
      ['/generate-token', gw.keys.secretToken, { company_id: 'c', agent_id: 'a', user_id: 'u', expires_in_seconds: '60' }, /expires_in_seconds/],
      ['/generate-token', gw.keys.secretToken, { company_id: 'c.x', agent_id: 'a', user_id: 'u', expires_in_seconds: 60 }, /company_id/],
      ['/admin/generate-token', gw.keys.adminSecretToken, { expires_in_seconds: 60 }, /admin_id/],
      ['/admin/generate-token', gw.keys.adminSecretToken, { admin_id: 'a', expires_in_seconds: 60, subscribed_agent_id: 5 }, /subscribed_agent_id/],
      ['/admin/publish', gw.keys.adminSecretToken, { subject: 'websocket.a.b.chats', payload: {}, headers: { x: 1 } }, /headers/],
      ['/admin/publish', gw.keys.adminSecretToken, { subject: 'websocket.a.b.chats', payload: {}, headers: { 'a b': 'x' } }, /"a b" must be a header name/],
      ['/admin/publish', gw.keys.adminSecretToken, { subject: 'websocket.a.b.chats', payload: {}, headers: { trace: 'x\r\ny: z' } }, /"trace" must be a header name .* one line/],
      ['/admin/publish', gw.keys.adminSecretToken, `{"subject":"websocket.a.b.chats","payload":{"p":${'['.repeat(100_000)}${']'.repeat(100_000)}}}`, /nested too deeply/],
      ['/admin/disconnect', gw.keys.adminSecretToken, { company_id: 'acme' }, /agent_id/],
      ['/admin/disconnect', gw.keys.adminSecretToken, { admin_id: 'root', company_id: 'acme' }, /not both/],
      ['/admin/generate-token', gw.keys.adminSecretToken, { admin_id: 'a', expires_in_seconds: 60, company_restriction: 'acme' }, /unknown field "company_restriction"/],
      ['/admin/generate-token', gw.keys.adminSecretToken, { admin_id: 'a', expires_in_seconds: 60, company_id_restriction: 'acme', subscribed_company_id: 'globex' }, /must equal/],
      ['/admin/publish', gw.keys.adminSecretToken, { subject: 'websocket.a.b.chats', payload: {}, headers: { 'Nats-Expected-Stream': 'x' } }, /NATS control header/],
    ];
    for (const [path, key, body, message] of cases) {
      const res = await gw.admin('POST', path, key, body);
      assert.equal(res.status, 400, `${path} ${JSON.stringify(body)}`);
      assert.equal(errorCode(res.body), 'BadRequest');
      assert.match((res.body as { message: string }).message, message);
    }
  });

  test('a body over 1 MiB answers 413', async () => {
    const res = await gw.admin('POST', '/admin/publish', gw.keys.adminSecretToken, { subject: 'websocket.a.b.chats', payload: { big: 'x'.repeat(1_100_000) } });
    assert.equal(res.status, 413);
    assert.match((res.body as { message: string }).message, /body over 1048576 bytes/);
  });

  test('a client still streaming a body far over the limit reads its 413; the connection is not reset under it', async () => {
    for (let attempt = 0; attempt < 5; attempt++) {
      const outcome = await streamBody(`${gw.adminBase}/admin/publish`, gw.keys.adminSecretToken, 16 * 1024 * 1024);
      assert.deepEqual(outcome, { status: 413, error: undefined }, `attempt ${attempt}`);
    }
  });

  test('a client that goes away in the middle of its body is not logged as an internal error', async () => {
    await new Promise<void>((resolve) => {
      const req = request(`${gw.adminBase}/admin/publish`, { method: 'POST', headers: { 'x-api-key': gw.keys.adminSecretToken, 'content-length': '100000' } });
      req.on('error', () => resolve());
      req.write('{"subject":', () => setTimeout(() => req.destroy(), 200));
    });
    await new Promise((resolve) => setTimeout(resolve, 500));
    assert.deepEqual(gw.logLines((l) => l['msg'] === 'admin request failed'), []);
  });

  test('a wrong method answers 405 with Allow; an unknown path 404', async () => {
    const wrong = await gw.admin('GET', '/generate-token', gw.keys.secretToken);
    assert.equal(wrong.status, 405);
    assert.equal(wrong.headers.get('allow'), 'POST');
    assert.equal((await gw.admin('POST', '/metrics', undefined, {})).status, 405);
    assert.equal((await gw.admin('GET', '/admin/nothing', gw.keys.adminSecretToken)).status, 404);
    // Paths a URL parser would read as a host: still a 404, not a 500.
    assert.equal((await gw.admin('GET', '//a:b', gw.keys.adminSecretToken)).status, 404);
    assert.equal((await gw.admin('GET', '//x/admin/pods', gw.keys.adminSecretToken)).status, 404);
  });

  test('/admin/publish answers 202 and the event reaches its connection', async () => {
    const client = await gw.connectUser('acme', 'support', 'bob');
    const res = await gw.admin('POST', '/admin/publish', gw.keys.adminSecretToken, {
      subject: 'websocket.acme.support.chats',
      payload: { event_id: 'e' },
      headers: { 'X-Request-ID': 'r-1' },
    });
    assert.equal(res.status, 202);
    assert.deepEqual((await client.expect('event')).payload, { event_id: 'e' });
    client.close();
  });

  test('logs never carry tokens or API keys', async () => {
    const token = await gw.mintUserToken('acme', 'support', 'carol');
    const client = await gw.connectUser('acme', 'support', 'carol');
    client.close();
    const refused = await openClient(`${gw.wsBase}/ws/acme/support?user=carol&x-api-key=${gw.keys.secretToken}&token=${encodeURIComponent(token)}x`);
    await refused.closeInfo();
    await waitFor(() => gw.logLines((l) => l['msg'] === 'handshake refused').length > 0, 2000, 'the refusal to be logged');
    assert.match(String(gw.logLines((l) => l['msg'] === 'handshake refused')[0]?.['url']), /token=\[Redacted\]/);
    const all = gw.logs.join('\n');
    assert.ok(!all.includes(token));
    assert.ok(!all.includes(gw.keys.secretToken));
    assert.ok(!all.includes(gw.keys.adminSecretToken));
    assert.ok(!all.includes(gw.keys.tokenAesKeys[0]!));
  });
});

/** POSTs `bytes` of body in 64 KiB writes, as a client uploading a big file does: the answer, or the socket error that cut it off. */
async function streamBody(url: string, apiKey: string, bytes: number): Promise<{ status: number | undefined; error: string | undefined }> {
  return new Promise((resolve) => {
    let status: number | undefined;
    let unfinished = 2;
    const finishedOne = () => {
      if (--unfinished === 0) resolve({ status, error: undefined });
    };
    const req = request(url, { method: 'POST', headers: { 'x-api-key': apiKey, 'content-type': 'application/json' } }, (res) => {
      status = res.statusCode;
      res.resume();
      res.on('end', finishedOne);
    });
    req.on('error', (err) => resolve({ status, error: err.message }));
    const chunk = Buffer.alloc(64 * 1024, 'x');
    let sent = 0;
    const pump = (): void => {
      while (sent < bytes) {
        sent += chunk.length;
        if (!req.write(chunk)) {
          req.once('drain', pump);
          return;
        }
      }
      req.end(finishedOne);
    };
    pump();
  });
}
