import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { describeExpected, matchesExpected } from '../core/expectedVersions.js';
import { etagOf, versionsFromIfMatch } from './etag.js';

describe('versionsFromIfMatch', () => {
  it('reads one version: a strong tag, a weak echo of it, or a bare number', () => {
    assert.deepEqual(versionsFromIfMatch('"3"'), [3]);
    assert.deepEqual(versionsFromIfMatch('W/"12"'), [12]);
    assert.deepEqual(versionsFromIfMatch('7'), [7]);
    assert.deepEqual(versionsFromIfMatch(' "5" '), [5]);
    assert.deepEqual(versionsFromIfMatch(etagOf(4)), [4]);
  });
  it('reads a list of tags (RFC 9110: any of them may match), as two If-Match headers arrive joined', () => {
    assert.deepEqual(versionsFromIfMatch('"7", "1"'), [7, 1]);
    assert.deepEqual(versionsFromIfMatch('"7",W/"2" ,  "9"'), [7, 2, 9]);
    assert.deepEqual(versionsFromIfMatch('"7",,"8",'), [7, 8]);
    // A well-formed tag that is no version of ours matches nothing; the others still count.
    assert.deepEqual(versionsFromIfMatch('"abc", "4"'), [4]);
    assert.deepEqual(versionsFromIfMatch('"a,b", "4"'), [4]);
  });
  it('names no version when no member is one, or when the header is not a list of entity tags', () => {
    for (const header of ['"abc"', '*', '', '  ', '"3" "4"', '"3', 'W/3', '"-1"', '"3.0"', '"1234567890"', '"3"x', `${' '.repeat(16_000)}a b`, 'W/', ',"3']) {
      assert.equal(versionsFromIfMatch(header), null, header);
    }
  });
  it('matches when the current version is any of those named', () => {
    assert.equal(matchesExpected([7, 1], 1), true);
    assert.equal(matchesExpected([7, 1], 2), false);
    assert.equal(describeExpected([3]), '3');
    assert.equal(describeExpected([3, 5]), '3 or 5');
  });
});
