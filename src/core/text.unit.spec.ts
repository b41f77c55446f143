import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { storableText } from './text.js';

describe('storableText', () => {
  it('keeps text PostgreSQL can store as it is, cut to the length', () => {
    assert.equal(storableText('provider said 500'), 'provider said 500');
    assert.equal(storableText('abcdef', 3), 'abc');
    assert.equal(storableText('a\u{1F600}b', 3), 'a\u{1F600}');
  });

  it('never cuts between the two halves of a character', () => {
    assert.equal(storableText('ab\u{1F600}cd', 3), 'ab');
    assert.equal(storableText('\u{1F600}', 1), '');
  });

  it('replaces a NUL and an unpaired surrogate already in the text', () => {
    assert.equal(storableText('a\u0000b'), 'a\ufffdb');
    assert.equal(storableText('a\ud83d"}'), 'a\ufffd"}');
    assert.equal(storableText('\ude00x'), '\ufffdx');
    // what reaches jsonb is then valid
    assert.doesNotMatch(JSON.stringify(storableText('x\ud83d\u0000')), /\\ud83d|\\u0000/);
  });
});
