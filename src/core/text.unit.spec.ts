import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { storableJson, storableText } from './text.js';

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

describe('storableJson', () => {
  it('keeps a value PostgreSQL can store as it is', () => {
    const value = { id: 'po_1', status: 'completed', n: 3, ok: true, none: null, list: [1, 'two', { three: '\u{1F69A}' }] };
    assert.deepEqual(storableJson(value), value);
  });

  it('cleans every string and member name, at any place', () => {
    assert.deepEqual(storableJson({ 'a\u0000': ['x\ud83d', { y: '\ude00' }] }), { 'a\ufffd': ['x\ufffd', { y: '\ufffd' }] });
    // a member named __proto__ stays a member
    assert.deepEqual(Object.keys(storableJson(JSON.parse('{"__proto__":{"polluted":1}}')) as object), ['__proto__']);
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
  });

  it('replaces what nests deeper than its limit, and writes as JSON however deep the value was', () => {
    const deep = JSON.parse(`${'['.repeat(50_000)}${']'.repeat(50_000)}`);
    const text = JSON.stringify(storableJson(deep));
    assert.equal(text.split('[').length - 1, 32);
    assert.match(text, /nested deeper than 32 levels/);
    assert.deepEqual(storableJson({ a: { b: {} } }, { maxDepth: 2 }), { a: { b: '(nested deeper than 2 levels)' } });
  });

  it('cuts a value whose JSON text is too long to the start of that text', () => {
    const cut = storableJson({ detail: 'x'.repeat(1000) }, { maxLength: 20 });
    assert.equal(cut, `{"detail":"xxxxxxxx…`);
    assert.deepEqual(storableJson({ detail: 'short' }, { maxLength: 20 }), { detail: 'short' });
  });
});
