import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { TokenCodec, TokenError, rfc3339ToEpochMs } from '../../src/auth/tokenCodec.js';

// Compiled to dist/test/unit/, so the source tree is three levels up; the fixture is not copied by tsc.
const VECTORS_URL = new URL('../../../test/interop/gotoken/vectors.json', import.meta.url);

interface Vector {
  readonly kind: 'user' | 'admin';
  readonly key: string;
  readonly token: string;
  readonly claims: Readonly<Record<string, string>>;
  readonly expires_at_ms: number;
}

const vectors = JSON.parse(readFileSync(VECTORS_URL, 'utf8')) as Vector[];
const NOW = Date.UTC(2026, 0, 1);

function verify(vector: Vector, token: string, key: string): object {
  const codec = new TokenCodec([Buffer.from(key, 'hex')]);
  return vector.kind === 'user' ? codec.verifyUser(token, NOW) : codec.verifyAdmin(token, NOW);
}

function expectedClaims(vector: Vector): object {
  const c = vector.claims;
  return vector.kind === 'user'
    ? { companyId: c.company_id, agentId: c.agent_id, userId: c.user_id, expiresAtMs: vector.expires_at_ms }
    : {
        adminId: c.admin_id,
        companyIdRestriction: c.company_id_restriction ?? '',
        subscribedCompanyId: c.subscribed_company_id ?? '',
        subscribedAgentId: c.subscribed_agent_id ?? '',
        expiresAtMs: vector.expires_at_ms,
      };
}

test('the fixture holds user and admin vectors with nanosecond and offset expiries', () => {
  assert.ok(vectors.some((v) => v.kind === 'user') && vectors.some((v) => v.kind === 'admin'));
  assert.ok(vectors.some((v) => /\.\d{9}[+-]\d\d:\d\d$/.test(v.claims.expires_at ?? '')));
});

for (const [i, vector] of vectors.entries()) {
  test(`Go-minted ${vector.kind} vector #${i + 1} verifies with Go's claims and Go's reading of expires_at`, () => {
    assert.equal(rfc3339ToEpochMs(vector.claims.expires_at ?? ''), vector.expires_at_ms);
    assert.deepEqual(verify(vector, vector.token, vector.key), expectedClaims(vector));
    assert.deepEqual(verify(vector, vector.token.replace(/=+$/, ''), vector.key), expectedClaims(vector));
  });

  test(`Go-minted ${vector.kind} vector #${i + 1} is refused under another key`, () => {
    const otherKey = vector.key.replace(/^./, (c) => (c === '0' ? '1' : '0'));
    assert.throws(() => verify(vector, vector.token, otherKey), (err: unknown) => err instanceof TokenError && err.failure === 'undecryptable');
  });
}
