import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AuthFailureLimiter } from './authFailures.js';

describe('AuthFailureLimiter', () => {
  it('blocks an address after `limit` failures in a window, until the window ends; other addresses are free', () => {
    let now = 1_000_000;
    const limiter = new AuthFailureLimiter(3, 60_000, () => now);
    for (let i = 0; i < 3; i++) {
      assert.equal(limiter.retryAfterSeconds('a'), 0);
      limiter.recordFailure('a');
    }
    assert.equal(limiter.retryAfterSeconds('a'), 60);
    assert.equal(limiter.retryAfterSeconds('b'), 0);
    now += 59_500;
    assert.equal(limiter.retryAfterSeconds('a'), 1);
    now += 500;
    assert.equal(limiter.retryAfterSeconds('a'), 0, 'a new window');
    limiter.recordFailure('a');
    assert.equal(limiter.retryAfterSeconds('a'), 0);
  });
});
