import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { breakerOpeningOnFirstFailure } from '../../src/forwarder/PeerForwarder.js';

describe('the per-peer circuit breaker', () => {
  test('opens on the first failure even after hundreds of successes, fails fast, and closes after a good trial', async () => {
    let healthy = true;
    const breaker = breakerOpeningOnFirstFailure(async (n: number) => {
      if (!healthy) throw new Error('peer hung');
      return n;
    }, 50);
    try {
      for (let i = 0; i < 500; i++) assert.equal(await breaker.fire(i), i);
      healthy = false;
      await assert.rejects(breaker.fire(0), /peer hung/);
      assert.ok(breaker.opened, 'open after one failure');
      await assert.rejects(breaker.fire(0), (err: { code?: string }) => err.code === 'EOPENBREAKER');
      healthy = true;
      await new Promise((resolve) => setTimeout(resolve, 80));
      assert.ok(breaker.halfOpen, 'half-open after the reset time');
      assert.equal(await breaker.fire(7), 7);
      assert.ok(breaker.closed, 'closed after a good trial');
    } finally {
      breaker.shutdown();
    }
  });
});
