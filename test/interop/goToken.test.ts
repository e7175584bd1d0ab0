import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { TokenCodec, TokenError, type TokenFailure } from '../../src/auth/tokenCodec.js';

const run = promisify(execFile);

// Compiled to dist/test/interop/; the Go source lives in the source tree, three levels up.
const GO_SOURCE_DIR = fileURLToPath(new URL('../../../test/interop/gotoken/', import.meta.url));
const GO_ENV = {
  ...process.env,
  // A persistent cache under the temp dir keeps rebuilds fast and works where $HOME is unwritable.
  GOCACHE: process.env.GOCACHE ?? join(tmpdir(), 'switchboard-gocache'),
  GOPATH: process.env.GOPATH ?? join(tmpdir(), 'switchboard-gopath'),
  GOFLAGS: '',
};

const keyHex = '4f1c'.repeat(16);
const otherKeyHex = 'a0b1'.repeat(16);
const key = Buffer.from(keyHex, 'hex');
const GO_EXPIRY = '2099-05-24T15:30:45.123456789+07:00';
const GO_EXPIRY_MS = Date.UTC(2099, 4, 24, 8, 30, 45, 123);
const LATER = Date.UTC(2099, 0, 1, 12, 0, 0, 250);

let workDir = '';
let binary = '';

async function gotoken(...args: string[]): Promise<string> {
  const { stdout } = await run(binary, args, { env: GO_ENV });
  return stdout.trim();
}

async function goVerify(kind: 'user' | 'admin', hexKey: string, token: string): Promise<Record<string, string>> {
  return JSON.parse(await gotoken(`verify-${kind}`, hexKey, token)) as Record<string, string>;
}

function isTokenError(failure: TokenFailure): (err: unknown) => boolean {
  return (err) => err instanceof TokenError && err.failure === failure;
}

describe('token interop with the Go implementation', () => {
  before(
    async () => {
      try {
        await run('go', ['version'], { env: GO_ENV });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new Error('go not found: apt-get install golang-go (see .ci/run)');
        throw err;
      }
      workDir = await mkdtemp(join(tmpdir(), 'gotoken-'));
      binary = join(workDir, 'gotoken');
      await run('go', ['build', '-o', binary, '.'], { cwd: GO_SOURCE_DIR, env: GO_ENV });
    },
    { timeout: 180_000 },
  );

  after(async () => {
    if (workDir !== '') await rm(workDir, { recursive: true, force: true });
  });

  test('a Go-minted user token with a nanosecond +07:00 expiry verifies with exact claims', async () => {
    const token = await gotoken('mint-user', keyHex, JSON.stringify({ company_id: 'company-1', agent_id: 'agent-1', user_id: 'user-1' }));
    assert.deepEqual(new TokenCodec([key]).verifyUser(token, Date.now()), {
      companyId: 'company-1',
      agentId: 'agent-1',
      userId: 'user-1',
      expiresAtMs: GO_EXPIRY_MS,
    });
  });

  test('a Go-minted admin token verifies with exact claims, with and without optional fields', async () => {
    const codec = new TokenCodec([key]);
    const full = await gotoken(
      'mint-admin',
      keyHex,
      JSON.stringify({ admin_id: 'admin-1', company_id_restriction: 'c1', subscribed_company_id: 'c2', subscribed_agent_id: 'a2', expires_at: GO_EXPIRY }),
    );
    assert.deepEqual(codec.verifyAdmin(full, Date.now()), {
      adminId: 'admin-1',
      companyIdRestriction: 'c1',
      subscribedCompanyId: 'c2',
      subscribedAgentId: 'a2',
      expiresAtMs: GO_EXPIRY_MS,
    });
    const bare = await gotoken('mint-admin', keyHex, JSON.stringify({ admin_id: 'admin-2' }));
    assert.deepEqual(codec.verifyAdmin(bare, Date.now()), {
      adminId: 'admin-2',
      companyIdRestriction: '',
      subscribedCompanyId: '',
      subscribedAgentId: '',
      expiresAtMs: GO_EXPIRY_MS,
    });
  });

  test('a TS-minted user token verifies in Go', async () => {
    const token = new TokenCodec([key]).mintUser({ companyId: 'c-ü', agentId: 'a/1', userId: 'u"1', expiresAtMs: LATER });
    const claims = await goVerify('user', keyHex, token);
    assert.deepEqual(claims, { company_id: 'c-ü', agent_id: 'a/1', user_id: 'u"1', expires_at: '2099-01-01T12:00:00.25Z' });
  });

  test('a TS-minted admin token verifies in Go, empty optional fields omitted', async () => {
    const codec = new TokenCodec([key]);
    const full = codec.mintAdmin({ adminId: 'admin-1', companyIdRestriction: 'c1', subscribedCompanyId: 'c2', subscribedAgentId: 'a2', expiresAtMs: LATER });
    assert.deepEqual(await goVerify('admin', keyHex, full), {
      admin_id: 'admin-1',
      company_id_restriction: 'c1',
      subscribed_company_id: 'c2',
      subscribed_agent_id: 'a2',
      expires_at: '2099-01-01T12:00:00.25Z',
    });
    const bare = codec.mintAdmin({ adminId: 'admin-2', expiresAtMs: LATER });
    assert.deepEqual(await goVerify('admin', keyHex, bare), { admin_id: 'admin-2', expires_at: '2099-01-01T12:00:00.25Z' });
  });

  test('a TS token minted with the first of two rotation keys verifies in Go under that key only', async () => {
    const token = new TokenCodec([key, Buffer.from(otherKeyHex, 'hex')]).mintUser({ companyId: 'c', agentId: 'a', userId: 'u', expiresAtMs: LATER });
    assert.equal((await goVerify('user', keyHex, token)).user_id, 'u');
    await assert.rejects(goVerify('user', otherKeyHex, token), /message authentication failed/);
  });

  test('a Go-minted expired token is rejected in TS', async () => {
    const token = await gotoken('mint-user', keyHex, JSON.stringify({ company_id: 'c', agent_id: 'a', user_id: 'u', expires_at: '2020-01-01T06:59:59.999999999+07:00' }));
    assert.throws(() => new TokenCodec([key]).verifyUser(token, Date.now()), isTokenError('expired'));
    await assert.rejects(goVerify('user', keyHex, token), /token expired/);
  });

  test('a TS-minted token under a wrong key is rejected by Go', async () => {
    const token = new TokenCodec([Buffer.from(otherKeyHex, 'hex')]).mintUser({ companyId: 'c', agentId: 'a', userId: 'u', expiresAtMs: LATER });
    await assert.rejects(goVerify('user', keyHex, token), /message authentication failed/);
  });

  test('a Go-minted token under a wrong key is rejected in TS', async () => {
    const token = await gotoken('mint-user', otherKeyHex, JSON.stringify({ company_id: 'c', agent_id: 'a', user_id: 'u' }));
    assert.throws(() => new TokenCodec([key]).verifyUser(token, Date.now()), isTokenError('undecryptable'));
  });

  test('user and admin tokens are not interchangeable on either side', async () => {
    const goUser = await gotoken('mint-user', keyHex, JSON.stringify({ company_id: 'c', agent_id: 'a', user_id: 'u' }));
    assert.throws(() => new TokenCodec([key]).verifyAdmin(goUser, Date.now()), isTokenError('invalid-claims'));
    const tsAdmin = new TokenCodec([key]).mintAdmin({ adminId: 'x', expiresAtMs: LATER });
    await assert.rejects(goVerify('user', keyHex, tsAdmin), /missing claims/);
  });
});
