import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { briefly } from './logger.js';

describe('briefly: an expected failure for the log, without its stack', () => {
  it("keeps an error's type, message and code", () => {
    const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
    assert.deepEqual(briefly(refused), { type: 'Error', message: 'connect ECONNREFUSED 127.0.0.1:5432', code: 'ECONNREFUSED' });
  });

  it('keeps what each of an AggregateError\'s errors says: Node gives no message of its own when every address of a host (::1 and 127.0.0.1) refused', () => {
    // What net.connect throws where `localhost` has both addresses (autoSelectFamily, Node 20's default).
    const each = ['connect ECONNREFUSED ::1:5432', 'connect ECONNREFUSED 127.0.0.1:5432'].map((message) => Object.assign(new Error(message), { code: 'ECONNREFUSED' }));
    const refused = Object.assign(new AggregateError(each), { code: 'ECONNREFUSED' });
    assert.deepEqual(briefly(refused), {
      type: 'AggregateError',
      message: '',
      code: 'ECONNREFUSED',
      errors: [
        { type: 'Error', message: 'connect ECONNREFUSED ::1:5432', code: 'ECONNREFUSED' },
        { type: 'Error', message: 'connect ECONNREFUSED 127.0.0.1:5432', code: 'ECONNREFUSED' },
      ],
    });
  });
});
