import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { retryDelayMs } from './backoff.js';

describe('retryDelayMs', () => {
  const policy = { baseMs: 100, maxMs: 5_000 };

  it('doubles the ceiling with every attempt', () => {
    assert.deepEqual([1, 2, 3, 4].map((attempt) => retryDelayMs(attempt, policy, () => 1)), [100, 200, 400, 800]);
  });

  it('jitters between half the ceiling and the ceiling', () => {
    assert.equal(retryDelayMs(3, policy, () => 0), 200);
    assert.equal(retryDelayMs(3, policy, () => 0.5), 300);
    for (let i = 0; i < 200; i++) {
      const delay = retryDelayMs(3, policy);
      assert.ok(delay >= 200 && delay <= 400, `delay ${delay} outside [200, 400]`);
    }
  });

  it('never exceeds the maximum, however many attempts', () => {
    assert.equal(retryDelayMs(12, policy, () => 1), 5_000);
    assert.equal(retryDelayMs(1_000, policy, () => 1), 5_000);
  });
});
