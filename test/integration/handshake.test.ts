import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { parseAesKeys, TokenCodec } from '../../src/auth/tokenCodec.js';
import { openClient, UpgradeRefused, type TestClient } from '../support/client.js';
import { randomKeys, startGateway, type TestGateway } from '../support/gateway.js';

/** The error frame a refused handshake must send, then the close code it must close with. */
async function expectRefusal(client: TestClient, code: string, closeCode: number): Promise<void> {
  const frame = await client.expect('error');
  assert.equal((frame.payload as { code: string }).code, code);
  assert.equal(typeof (frame.payload as { message: unknown }).message, 'string');
  const closed = await client.closeInfo();
  assert.equal(closed.code, closeCode);
}

describe('handshake', () => {
  const keys = { ...randomKeys(), tokenAesKeys: [randomBytes(32).toString('hex'), randomBytes(32).toString('hex')] };
  let gw: TestGateway;
  const userCodec = () => new TokenCodec(parseAesKeys(keys.tokenAesKeys));
  const adminCodec = () => new TokenCodec(parseAesKeys(keys.adminTokenAesKeys));
  const userPath = (company: string, agent: string, query: string) => `${gw.wsBase}/ws/${company}/${agent}?${query}`;

  before(async () => {
    gw = await startGateway({}, keys);
  });
  after(async () => {
    await gw.stop();
  });

  test('a valid user token gets ready and the json.v1 sub-protocol echoed', async () => {
    const client = await openClient(await gw.userUrl('acme', 'support', 'alice'), { protocols: ['json.v1'] });
    assert.equal(client.ws.protocol, 'json.v1');
    await client.expect('ready');
    client.close();
  });

  test('the API key may come in the x-api-key header, also beside empty x-api-key= and user= parameters', async () => {
    const token = await gw.mintUserToken('acme', 'support', 'bob');
    for (const extra of ['', '&x-api-key=&user=']) {
      const client = await openClient(userPath('acme', 'support', `token=${encodeURIComponent(token)}${extra}`), {
        headers: { 'x-api-key': keys.secretToken },
      });
      await client.expect('ready');
      client.close();
    }
  });

  test('a missing API key is refused with InvalidAPIKey and 4401', async () => {
    const token = await gw.mintUserToken('acme', 'support', 'carol');
    await expectRefusal(await openClient(userPath('acme', 'support', `token=${encodeURIComponent(token)}`)), 'InvalidAPIKey', 4401);
  });

  test('a wrong API key is refused with InvalidAPIKey and 4401; the admin key does not open user connections', async () => {
    const token = encodeURIComponent(await gw.mintUserToken('acme', 'support', 'carol'));
    await expectRefusal(await openClient(userPath('acme', 'support', `x-api-key=nope&token=${token}`)), 'InvalidAPIKey', 4401);
    await expectRefusal(
      await openClient(userPath('acme', 'support', `x-api-key=${keys.adminSecretToken}&token=${token}`)),
      'InvalidAPIKey',
      4401,
    );
  });

  test('a garbage, tampered or missing token is refused with InvalidToken and 4403', async () => {
    const good = await gw.mintUserToken('acme', 'support', 'dave');
    const tampered = `${good.slice(0, 20)}${good[20] === 'A' ? 'B' : 'A'}${good.slice(21)}`;
    for (const token of ['garbage', tampered, '']) {
      await expectRefusal(
        await openClient(userPath('acme', 'support', `x-api-key=${keys.secretToken}&token=${encodeURIComponent(token)}`)),
        'InvalidToken',
        4403,
      );
    }
  });

  test('an expired token is refused with InvalidToken and 4403', async () => {
    const expired = userCodec().mintUser({ companyId: 'acme', agentId: 'support', userId: 'erin', expiresAtMs: Date.now() - 1000 });
    await expectRefusal(
      await openClient(userPath('acme', 'support', `x-api-key=${keys.secretToken}&token=${encodeURIComponent(expired)}`)),
      'InvalidToken',
      4403,
    );
  });

  test('a token for another company, agent or user is refused with InvalidToken and 4403', async () => {
    const token = encodeURIComponent(await gw.mintUserToken('acme', 'support', 'frank'));
    const auth = `x-api-key=${keys.secretToken}&token=${token}`;
    await expectRefusal(await openClient(userPath('other', 'support', auth)), 'InvalidToken', 4403);
    await expectRefusal(await openClient(userPath('acme', 'sales', auth)), 'InvalidToken', 4403);
    await expectRefusal(await openClient(userPath('acme', 'support', `user=mallory&${auth}`)), 'InvalidToken', 4403);
  });

  test('a token minted with any configured key verifies (rotation); minting uses the first', async () => {
    const second = new TokenCodec(parseAesKeys([keys.tokenAesKeys[1]!]));
    const token = second.mintUser({ companyId: 'acme', agentId: 'support', userId: 'gina', expiresAtMs: Date.now() + 60_000 });
    const client = await openClient(userPath('acme', 'support', `x-api-key=${keys.secretToken}&token=${encodeURIComponent(token)}`));
    await client.expect('ready');
    client.close();
    const minted = await gw.mintUserToken('acme', 'support', 'gina');
    const firstOnly = new TokenCodec(parseAesKeys([keys.tokenAesKeys[0]!]));
    assert.equal(firstOnly.verifyUser(minted, Date.now()).userId, 'gina');
  });

  test('admins connect with an admin token and the admin key; a user token on /ws/admin is refused', async () => {
    const admin = await openClient(await gw.adminUrl('root'));
    await admin.expect('ready');
    admin.close();
    const userToken = encodeURIComponent(await gw.mintUserToken('acme', 'support', 'hank'));
    await expectRefusal(
      await openClient(`${gw.wsBase}/ws/admin?x-api-key=${keys.adminSecretToken}&token=${userToken}`),
      'InvalidToken',
      4403,
    );
    const adminToken = adminCodec().mintAdmin({ adminId: 'root', expiresAtMs: Date.now() + 60_000 });
    await expectRefusal(
      await openClient(`${gw.wsBase}/ws/admin?x-api-key=${keys.secretToken}&token=${encodeURIComponent(adminToken)}`),
      'InvalidAPIKey',
      4401,
    );
  });

  test('an admin token whose scope is "*" (which would read as every company) is refused', async () => {
    for (const scope of [{ companyIdRestriction: '*' }, { subscribedCompanyId: '*' }, { subscribedAgentId: 'a:b' }]) {
      const token = adminCodec().mintAdmin({ adminId: 'scoped', ...scope, expiresAtMs: Date.now() + 60_000 });
      await expectRefusal(await openClient(`${gw.wsBase}/ws/admin?x-api-key=${keys.adminSecretToken}&token=${encodeURIComponent(token)}`), 'InvalidToken', 4403);
    }
  });

  test('an admin token whose admin id could pass for a user identity (a ":" in it) is refused', async () => {
    // session:admin:{id} with id "support:ivan" would be the session key of user ivan of agent support of company "admin".
    const token = adminCodec().mintAdmin({ adminId: 'support:ivan', expiresAtMs: Date.now() + 60_000 });
    await expectRefusal(await openClient(`${gw.wsBase}/ws/admin?x-api-key=${keys.adminSecretToken}&token=${encodeURIComponent(token)}`), 'InvalidToken', 4403);
  });

  test('path segments that cannot be used as ids are refused with BadRequest and 4400', async () => {
    const token = encodeURIComponent(await gw.mintUserToken('acme', 'support', 'ivan'));
    await expectRefusal(await openClient(userPath('ac.me', 'support', `x-api-key=${keys.secretToken}&token=${token}`)), 'BadRequest', 4400);
  });

  test('auth failures are counted by stage and token type', async () => {
    const before = await gw.metric('switchboard_auth_failures_total{stage="api_key",token_type="user"}');
    const token = encodeURIComponent(await gw.mintUserToken('acme', 'support', 'judy'));
    await expectRefusal(await openClient(userPath('acme', 'support', `x-api-key=wrong&token=${token}`)), 'InvalidAPIKey', 4401);
    assert.equal(await gw.metric('switchboard_auth_failures_total{stage="api_key",token_type="user"}'), before + 1);
  });

  test('/health and /ready answer 200 on the public port; unknown paths 404', async () => {
    assert.equal((await fetch(`${gw.httpBase}/health`)).status, 200);
    assert.equal((await fetch(`${gw.httpBase}/ready`)).status, 200);
    assert.equal((await fetch(`${gw.httpBase}/nope`)).status, 404);
  });
});

describe('handshake with REJECT_BEFORE_UPGRADE and an origin allow-list', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await startGateway({ REJECT_BEFORE_UPGRADE: 'true', ALLOWED_ORIGINS: 'https://app.example,https://admin.example' });
  });
  after(async () => {
    await gw.stop();
  });

  test('auth failures answer the HTTP status instead of upgrading', async () => {
    const url = await gw.userUrl('acme', 'support', 'kim');
    const headers = { origin: 'https://app.example' };
    await assert.rejects(openClient(url.replace(/x-api-key=[^&]+/, 'x-api-key=wrong'), { headers }), (err: unknown) => {
      return err instanceof UpgradeRefused && err.status === 401;
    });
    await assert.rejects(openClient(url.replace(/token=[^&]+/, 'token=garbage'), { headers }), (err: unknown) => {
      return err instanceof UpgradeRefused && err.status === 403;
    });
  });

  test('an origin outside the allow-list is refused with 403; a listed one is accepted', async () => {
    const url = await gw.userUrl('acme', 'support', 'lee');
    await assert.rejects(openClient(url, { headers: { origin: 'https://evil.example' } }), (err: unknown) => {
      return err instanceof UpgradeRefused && err.status === 403;
    });
    const client = await openClient(url, { headers: { origin: 'https://admin.example' } });
    await client.expect('ready');
    client.close();
  });
});
