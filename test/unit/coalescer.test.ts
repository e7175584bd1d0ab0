import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, mock, test } from 'node:test';
import { Coalescer } from '../../src/Coalescer.js';

const INTERVAL_MS = 5;

describe('the coalescer that gathers acks, PINGs and replies', () => {
  let flushes: number[];
  let coalescer: Coalescer;

  beforeEach(() => {
    mock.timers.enable({ apis: ['setTimeout', 'setImmediate', 'Date'], now: 1_000_000 });
    flushes = [];
    coalescer = new Coalescer(INTERVAL_MS, () => flushes.push(Date.now()));
  });
  /** A flush at the start, then a request 1 ms later. */
  function requestOneMsAfterAFlush(): void {
    coalescer.request();
    mock.timers.tick(0);
    mock.timers.tick(1);
    coalescer.request();
  }

  afterEach(() => {
    coalescer.cancel();
    mock.timers.reset();
  });

  test('flushes once, at the end of the turn, for every request made in it', () => {
    coalescer.request();
    coalescer.request();
    coalescer.request();
    assert.deepEqual(flushes, [], 'not within the turn');
    mock.timers.tick(0);
    assert.deepEqual(flushes, [1_000_000]);
    mock.timers.tick(10 * INTERVAL_MS);
    assert.equal(flushes.length, 1, 'no timer left behind');
  });

  test('a request soon after a flush rides on the first request past the interval', () => {
    requestOneMsAfterAFlush();
    mock.timers.tick(0);
    assert.equal(flushes.length, 1, 'waits: the last flush was 1 ms ago');
    mock.timers.tick(INTERVAL_MS - 1);
    coalescer.request();
    mock.timers.tick(0);
    assert.deepEqual(flushes, [1_000_000, 1_000_000 + INTERVAL_MS]);
    mock.timers.tick(10 * INTERVAL_MS);
    assert.equal(flushes.length, 2, 'the timer for the waiting request went with the flush');
  });

  test('with no later request, a timer flushes twice the interval after the last flush', () => {
    requestOneMsAfterAFlush();
    mock.timers.tick(2 * INTERVAL_MS - 2);
    assert.equal(flushes.length, 1);
    mock.timers.tick(1);
    assert.deepEqual(flushes, [1_000_000, 1_000_000 + 2 * INTERVAL_MS]);
  });

  test('a wall clock stepped back delays a flush by no more than twice the interval', () => {
    coalescer.flushNow();
    mock.timers.setTime(1_000_000 - 60_000);
    coalescer.request();
    mock.timers.tick(2 * INTERVAL_MS);
    assert.equal(flushes.length, 2);
  });

  test('flushNow flushes at once, and cancel drops the flush scheduled, queued or timed', () => {
    coalescer.flushNow();
    assert.equal(flushes.length, 1);
    coalescer.request();
    coalescer.cancel();
    mock.timers.tick(10 * INTERVAL_MS);
    coalescer.request();
    coalescer.cancel();
    mock.timers.tick(10 * INTERVAL_MS);
    assert.equal(flushes.length, 1);
  });
});
