import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, mock, test } from 'node:test';
import { Pacer } from '../../src/Pacer.js';

describe('Pacer', () => {
  let runs: number[];
  let pacer: Pacer;

  beforeEach(() => {
    mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_000_000 });
    runs = [];
    pacer = new Pacer(10, () => runs.push(Date.now()));
  });

  afterEach(() => mock.timers.reset());

  test('runs at once when it has not run for an interval', () => {
    pacer.request();
    assert.deepEqual(runs, [1_000_000]);
    mock.timers.tick(25);
    pacer.request();
    assert.deepEqual(runs, [1_000_000, 1_000_025]);
  });

  test('requests within the interval share one run at its end', () => {
    pacer.request();
    mock.timers.tick(3);
    pacer.request();
    mock.timers.tick(2);
    pacer.request();
    assert.deepEqual(runs, [1_000_000]);
    mock.timers.tick(5);
    assert.deepEqual(runs, [1_000_000, 1_000_010]);
    mock.timers.tick(50);
    assert.deepEqual(runs, [1_000_000, 1_000_010]);
  });

  test('a cancelled run does not happen, and the next request is paced from the last real run', () => {
    pacer.request();
    mock.timers.tick(4);
    pacer.request();
    pacer.cancel();
    mock.timers.tick(20);
    assert.deepEqual(runs, [1_000_000]);
    pacer.request();
    assert.deepEqual(runs, [1_000_000, 1_000_024]);
  });
});
