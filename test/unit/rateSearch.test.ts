import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { RateSearch } from '../../bench/rateSearch.js';

const SETTINGS = { firstRate: 50, maxRate: 3200, refineSteps: 3, minRate: 25 };

/** Runs a search against a path that passes every rate up to `capacity`; answers the rates tried. */
function trace(capacity: number, settings = SETTINGS): { tried: number[]; best: number | undefined } {
  const search = new RateSearch(settings);
  const tried: number[] = [];
  for (let rate = search.next; rate !== undefined; rate = search.next) {
    tried.push(rate);
    search.record(rate <= capacity);
  }
  return { tried, best: search.best };
}

describe('RateSearch', () => {
  test('doubles until a step fails, then bisects between the last pass and that failure', () => {
    assert.deepEqual(trace(1000), { tried: [50, 100, 200, 400, 800, 1600, 1200, 1000, 1100], best: 1000 });
  });

  test('halves below the first rate when it fails, then bisects', () => {
    assert.deepEqual(trace(30), { tried: [50, 25, 38, 32, 29], best: 29 });
  });

  test('ends with no best when even the lowest rate fails', () => {
    assert.deepEqual(trace(10), { tried: [50, 25], best: undefined });
  });

  test('stops at the highest rate when every step passes', () => {
    assert.deepEqual(trace(10_000), { tried: [50, 100, 200, 400, 800, 1600, 3200], best: 3200 });
  });

  test('without refine steps it reports the last doubling that passed', () => {
    assert.deepEqual(trace(500, { ...SETTINGS, firstRate: 200, maxRate: 800, refineSteps: 0 }), { tried: [200, 400, 800], best: 400 });
  });

  test('refuses a result once the search is over', () => {
    const search = new RateSearch({ ...SETTINGS, maxRate: 50 });
    search.record(true);
    assert.equal(search.next, undefined);
    assert.throws(() => search.record(true), /over/);
  });
});
