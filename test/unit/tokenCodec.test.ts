import assert from 'node:assert/strict';
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { TokenCodec, TokenError, parseAesKeys, rfc3339ToEpochMs, type TokenFailure } from '../../src/auth/tokenCodec.js';

const NOW = Date.UTC(2026, 4, 24, 9, 0, 0);
const LATER = NOW + 3_600_000;
const [keyA, keyB, keyC] = [newKey(), newKey(), newKey()] as [Buffer, Buffer, Buffer];

function newKey(): Buffer {
  return randomBytes(32);
}

/** Seals arbitrary plaintext the way the Go service does, independently of the codec under test. */
function sealRaw(key: Buffer, plaintext: string): string {
  const nonce = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, nonce);
  const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
  return encode(Buffer.concat([nonce, body, cipher.getAuthTag()]));
}

function openRaw(key: Buffer, token: string): unknown {
  const bytes = decode(token);
  const decipher = createDecipheriv('aes-256-gcm', key, bytes.subarray(0, 12));
  decipher.setAuthTag(bytes.subarray(bytes.length - 16));
  return JSON.parse(Buffer.concat([decipher.update(bytes.subarray(12, bytes.length - 16)), decipher.final()]).toString('utf8'));
}

function encode(bytes: Buffer): string {
  const raw = bytes.toString('base64url');
  return raw + '='.repeat((4 - (raw.length % 4)) % 4);
}

function decode(token: string): Buffer {
  return Buffer.from(token.replace(/=+$/, ''), 'base64url');
}

function flipBit(token: string, byteIndex: (length: number) => number): string {
  const bytes = decode(token);
  const i = byteIndex(bytes.length);
  bytes[i] = bytes[i]! ^ 0x01;
  return encode(bytes);
}

function assertFails(fn: () => unknown, failure: TokenFailure, token?: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof TokenError, `expected TokenError, got ${String(err)}`);
    assert.equal(err.failure, failure, err.message);
    if (token !== undefined && token.length > 0) assert.ok(!err.message.includes(token), 'message must not include the token');
    return true;
  });
}

const user = { companyId: 'company-1', agentId: 'agent-1', userId: 'user-1', expiresAtMs: LATER };
const admin = { adminId: 'admin-1', companyIdRestriction: 'company-1', subscribedCompanyId: 'company-2', subscribedAgentId: 'agent-2', expiresAtMs: LATER };

describe('TokenCodec round trips', () => {
  test('a minted user token verifies with the same claims', () => {
    const codec = new TokenCodec([keyA]);
    assert.deepEqual(codec.verifyUser(codec.mintUser(user), NOW), user);
  });

  test('a minted admin token verifies with the same claims', () => {
    const codec = new TokenCodec([keyA]);
    assert.deepEqual(codec.verifyAdmin(codec.mintAdmin(admin), NOW), admin);
  });

  test('absent optional admin fields verify as empty strings and are omitted from the JSON', () => {
    const codec = new TokenCodec([keyA]);
    const token = codec.mintAdmin({ adminId: 'admin-1', subscribedAgentId: '', expiresAtMs: LATER });
    assert.deepEqual(codec.verifyAdmin(token, NOW), {
      adminId: 'admin-1',
      companyIdRestriction: '',
      subscribedCompanyId: '',
      subscribedAgentId: '',
      expiresAtMs: LATER,
    });
    assert.deepEqual(openRaw(keyA, token), { admin_id: 'admin-1', expires_at: new Date(LATER).toISOString() });
  });

  test('a minted token is padded base64url of nonce, ciphertext and tag, with the Go field names', () => {
    const token = new TokenCodec([keyA]).mintUser(user);
    assert.match(token, /^[A-Za-z0-9_-]+={0,2}$/);
    assert.equal(token.length % 4, 0);
    const json = JSON.stringify({ company_id: 'company-1', agent_id: 'agent-1', user_id: 'user-1', expires_at: new Date(LATER).toISOString() });
    assert.equal(decode(token).length, 12 + Buffer.byteLength(json) + 16);
    assert.deepEqual(openRaw(keyA, token), JSON.parse(json));
  });

  test('every mint uses a fresh nonce', () => {
    const codec = new TokenCodec([keyA]);
    assert.notDeepEqual(decode(codec.mintUser(user)).subarray(0, 12), decode(codec.mintUser(user)).subarray(0, 12));
  });

  test('an unpadded token is accepted', () => {
    const codec = new TokenCodec([keyA]);
    let stripped = 0;
    for (const userId of ['u', 'uu', 'uuu']) {
      const token = codec.mintUser({ ...user, userId });
      const unpadded = token.replace(/=+$/, '');
      if (unpadded !== token) stripped += 1;
      assert.deepEqual(codec.verifyUser(unpadded, NOW), { ...user, userId });
    }
    assert.equal(stripped, 2);
  });

  test('minting refuses empty required fields and unrepresentable expiries', () => {
    const codec = new TokenCodec([keyA]);
    assert.throws(() => codec.mintUser({ ...user, userId: '' }), TypeError);
    assert.throws(() => codec.mintAdmin({ adminId: '', expiresAtMs: LATER }), TypeError);
    assert.throws(() => codec.mintUser({ ...user, expiresAtMs: Number.NaN }), RangeError);
    assert.throws(() => codec.mintUser({ ...user, expiresAtMs: Date.UTC(10000, 0, 1) }), RangeError);
  });
});

describe('TokenCodec key rotation', () => {
  test('mints with the first key and accepts a token that opens under any key', () => {
    const token = new TokenCodec([keyA, keyB]).mintUser(user);
    assert.deepEqual(new TokenCodec([keyB, keyA]).verifyUser(token, NOW), user);
    assert.equal((openRaw(keyA, token) as { user_id: string }).user_id, 'user-1');
    assertFails(() => new TokenCodec([keyB]).verifyUser(token, NOW), 'undecryptable', token);
  });

  test('a token from a removed key is undecryptable', () => {
    const token = new TokenCodec([keyA]).mintUser(user);
    assertFails(() => new TokenCodec([keyB, keyC]).verifyUser(token, NOW), 'undecryptable', token);
  });

  test('the constructor refuses an empty key list and keys that are not 32 bytes', () => {
    assert.throws(() => new TokenCodec([]), /at least one key/);
    assert.throws(() => new TokenCodec([keyA, randomBytes(16)]), /#2 must be 32 bytes/);
  });
});

describe('TokenCodec refuses damaged tokens', () => {
  const codec = new TokenCodec([keyA]);
  const token = codec.mintUser(user);

  test('a flipped bit in the nonce, ciphertext or tag makes it undecryptable', () => {
    for (const at of [() => 0, () => 11, () => 12, (n: number) => n - 17, (n: number) => n - 16, (n: number) => n - 1]) {
      const tampered = flipBit(token, at);
      assertFails(() => codec.verifyUser(tampered, NOW), 'undecryptable', tampered);
    }
  });

  test('a wrong key makes it undecryptable', () => {
    assertFails(() => new TokenCodec([keyB]).verifyUser(token, NOW), 'undecryptable', token);
  });

  test('a cut tag makes it undecryptable', () => {
    const cut = encode(decode(token).subarray(0, -1));
    assertFails(() => codec.verifyUser(cut, NOW), 'undecryptable', cut);
  });

  test('fewer than 28 bytes (nonce + tag) is malformed', () => {
    for (const length of [0, 1, 12, 27]) {
      const short = encode(decode(token).subarray(0, length));
      assertFails(() => codec.verifyUser(short, NOW), 'malformed', short);
    }
  });

  test('characters outside base64url and misplaced padding are malformed', () => {
    const body = token.replace(/=+$/, '');
    const bad = [
      '',
      body.slice(0, 4) + '+' + body.slice(5),
      body.slice(0, 4) + '/' + body.slice(5),
      body.slice(0, 4) + '.' + body.slice(5),
      body.slice(0, 4) + 'é' + body.slice(5),
      ` ${token}`,
      `${token}\n`,
      `${body.slice(0, 8)}==${body.slice(8)}`,
      `${body}===`,
      `${body.slice(0, body.length - (body.length % 4))}A`,
      `${body.slice(0, body.length - (body.length % 4))}A===`,
    ];
    for (const garbage of bad) assertFails(() => codec.verifyUser(garbage, NOW), 'malformed', garbage);
  });
});

describe('TokenCodec claims', () => {
  const codec = new TokenCodec([keyA]);

  test('an admin token is not accepted as a user token, nor a user token as an admin token', () => {
    const adminToken = codec.mintAdmin(admin);
    const userToken = codec.mintUser(user);
    assertFails(() => codec.verifyUser(adminToken, NOW), 'invalid-claims', adminToken);
    assertFails(() => codec.verifyAdmin(userToken, NOW), 'invalid-claims', userToken);
  });

  test('required fields must be non-empty strings and optional fields strings', () => {
    const exp = new Date(LATER).toISOString();
    const userDocs = [
      'not json',
      '[]',
      'null',
      '"text"',
      { agent_id: 'a', user_id: 'u', expires_at: exp },
      { company_id: '', agent_id: 'a', user_id: 'u', expires_at: exp },
      { company_id: 'c', agent_id: 'a', user_id: 7, expires_at: exp },
      { company_id: 'c', agent_id: 'a', user_id: 'u' },
      { company_id: 'c', agent_id: 'a', user_id: 'u', expires_at: LATER },
      { company_id: 'c', agent_id: 'a', user_id: 'u', admin_id: 'x', expires_at: exp },
    ];
    for (const doc of userDocs) {
      const token = sealRaw(keyA, typeof doc === 'string' ? doc : JSON.stringify(doc));
      assertFails(() => codec.verifyUser(token, NOW), 'invalid-claims', token);
    }
    const adminDocs = [{ admin_id: '', expires_at: exp }, { admin_id: 'x', subscribed_agent_id: 1, expires_at: exp }];
    for (const doc of adminDocs) {
      const token = sealRaw(keyA, JSON.stringify(doc));
      assertFails(() => codec.verifyAdmin(token, NOW), 'invalid-claims', token);
    }
  });

  test('a null optional admin field reads as empty, as Go decodes it', () => {
    const token = sealRaw(keyA, JSON.stringify({ admin_id: 'x', company_id_restriction: null, expires_at: new Date(LATER).toISOString() }));
    assert.equal(codec.verifyAdmin(token, NOW).companyIdRestriction, '');
  });
});

describe('TokenCodec expiry', () => {
  const codec = new TokenCodec([keyA]);

  test('a token whose expiry is in the past or exactly now is expired', () => {
    for (const expiresAtMs of [NOW - 1, NOW]) {
      const token = codec.mintUser({ ...user, expiresAtMs });
      assertFails(() => codec.verifyUser(token, NOW), 'expired', token);
    }
    assert.equal(codec.verifyUser(codec.mintUser({ ...user, expiresAtMs: NOW + 1 }), NOW).expiresAtMs, NOW + 1);
  });

  test('a +07:00 expiry that would still be valid read as UTC is expired', () => {
    // 15:30:45+07:00 is 08:30:45Z, half an hour before NOW (09:00Z).
    const token = sealRaw(keyA, JSON.stringify({ company_id: 'c', agent_id: 'a', user_id: 'u', expires_at: '2026-05-24T15:30:45.123456789+07:00' }));
    assertFails(() => codec.verifyUser(token, NOW), 'expired', token);
  });

  test('a -07:00 expiry that would be past read as UTC is still valid', () => {
    // 08:30:00-07:00 is 15:30Z, after NOW (09:00Z).
    const token = sealRaw(keyA, JSON.stringify({ admin_id: 'x', expires_at: '2026-05-24T08:30:00-07:00' }));
    assert.equal(codec.verifyAdmin(token, NOW).expiresAtMs, Date.UTC(2026, 4, 24, 15, 30));
  });
});

describe('rfc3339ToEpochMs', () => {
  test('parses fractions down to nanoseconds and numeric offsets exactly, truncating below the millisecond', () => {
    const cases: [string, number][] = [
      ['2026-05-24T15:30:45.123456789+07:00', Date.UTC(2026, 4, 24, 8, 30, 45, 123)],
      ['2026-05-24T15:30:45.999999999Z', Date.UTC(2026, 4, 24, 15, 30, 45, 999)],
      ['2026-05-24T15:30:45Z', Date.UTC(2026, 4, 24, 15, 30, 45)],
      ['2026-05-24T15:30:45.5Z', Date.UTC(2026, 4, 24, 15, 30, 45, 500)],
      ['2026-05-24T15:30:45.12-00:00', Date.UTC(2026, 4, 24, 15, 30, 45, 120)],
      ['2026-05-24T00:10:00-09:30', Date.UTC(2026, 4, 24, 9, 40)],
      ['2026-01-01T02:00:00+03:00', Date.UTC(2025, 11, 31, 23)],
      ['2024-02-29T23:59:59.0009+00:00', Date.UTC(2024, 1, 29, 23, 59, 59)],
      ['2099-05-24T15:30:45.123456789+07:00', Date.UTC(2099, 4, 24, 8, 30, 45, 123)],
      ['0001-01-01T00:00:00Z', -62135596800000],
    ];
    for (const [text, expected] of cases) assert.equal(rfc3339ToEpochMs(text), expected, text);
  });

  test('rejects anything that is not a strict RFC 3339 timestamp', () => {
    const bad = [
      '',
      '2026-05-24',
      '2026-05-24T15:30:45',
      '2026-05-24 15:30:45Z',
      '2026-05-24t15:30:45z',
      '2026-05-24T15:30Z',
      '2026-05-24T15:30:45.Z',
      '2026-05-24T15:30:45.1234567891Z',
      '2026-05-24T15:30:45+0700',
      '2026-05-24T15:30:45+07',
      '2026-13-01T00:00:00Z',
      '2026-00-01T00:00:00Z',
      '2026-02-29T00:00:00Z',
      '2026-04-31T00:00:00Z',
      '2026-05-24T24:00:00Z',
      '2026-05-24T23:60:00Z',
      '2026-05-24T23:59:60Z',
      '2026-05-24T15:30:45+24:00',
      '2026-05-24T15:30:45+07:60',
      '+02026-05-24T15:30:45Z',
      '２０２６-05-24T15:30:45Z',
      ' 2026-05-24T15:30:45Z',
      '1779636645000',
    ];
    for (const text of bad) assertFails(() => rfc3339ToEpochMs(text), 'invalid-claims');
  });
});

describe('parseAesKeys', () => {
  test('parses 64-hex-character keys in either case', () => {
    const keys = parseAesKeys([keyA.toString('hex'), keyB.toString('hex').toUpperCase()]);
    assert.deepEqual(keys, [keyA, keyB]);
  });

  test('names the position of a bad key without printing it', () => {
    const good = keyA.toString('hex');
    const bads = [good.slice(0, 62), `${good}00`, `${good.slice(0, 63)}g`, ` ${good.slice(1)}`, ''];
    for (const bad of bads) {
      assert.throws(
        () => parseAesKeys([good, bad]),
        (err: unknown) => err instanceof Error && /#2 of 2/.test(err.message) && (bad === '' || !err.message.includes(bad)) && !err.message.includes(good),
      );
    }
  });

  test('refuses an empty list', () => {
    assert.throws(() => parseAesKeys([]), /at least one AES key/);
  });
});
