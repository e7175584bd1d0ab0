import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { fanoutRatio, type ScenarioResult } from '../../bench/fanoutReport.js';

/** A path swept once per round, where only each round's best rate matters. */
function swept(id: string, bestRateByRound: readonly number[]): ScenarioResult {
  return { id, label: id, fanout: { ok: false, reason: 'not needed here' }, bestRateByRound, latency: { ok: false, reason: 'not measured' } };
}

describe('fanoutRatio over rounds', () => {
  test('pairs each round with the reference of the same round, then takes the median ratio', () => {
    // Medians of the rates alone would give 375 / 600 = 0.63; paired by round the ratios are 0.5, 1.0, 1.0.
    assert.equal(fanoutRatio(swept('cross-pod', [300, 375, 750]), swept('bare', [600, 375, 750])), 1);
  });

  test('takes the lower middle of an even count, so noise does not flatter the path', () => {
    assert.equal(fanoutRatio(swept('cross-pod', [100, 200, 300, 400]), swept('bare', [400, 400, 400, 400])), 0.5);
  });

  test('leaves out rounds where the reference passed nothing, and counts rounds where the path passed nothing', () => {
    assert.equal(fanoutRatio(swept('cross-pod', [0, 200, 400]), swept('bare', [400, 0, 400])), 0);
    assert.equal(fanoutRatio(swept('cross-pod', [200]), swept('bare', [0])), undefined);
  });

  test('is undefined without a reference', () => {
    assert.equal(fanoutRatio(swept('cross-pod', [200]), undefined), undefined);
  });
});
