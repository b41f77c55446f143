import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formerKeyForms } from './command.js';
import { headerText, utf8ReadAsLatin1 } from './headerText.js';

/** A header's bytes as Node hands them over: one Latin-1 character per byte. */
const asNodeReadsIt = (bytes: Buffer) => bytes.toString('latin1');

describe('headerText', () => {
  it('reads UTF-8 bytes as the text they encode', () => {
    assert.equal(headerText(asNodeReadsIt(Buffer.from('ключ', 'utf8'))), 'ключ');
    assert.equal(headerText(asNodeReadsIt(Buffer.from('till-7/🔑/café', 'utf8'))), 'till-7/🔑/café');
    assert.equal(headerText(utf8ReadAsLatin1('ключ')), 'ключ');
  });
  it('leaves ASCII as it is', () => {
    assert.equal(headerText('till1-0001'), 'till1-0001');
    assert.equal(headerText(''), '');
  });
  it('leaves bytes that are not UTF-8 as Latin-1: café sent as the byte E9 is café', () => {
    assert.equal(headerText(asNodeReadsIt(Buffer.from([0x63, 0x61, 0x66, 0xe9]))), 'café');
    // Never a U+FFFD in place of bytes it cannot read: the whole value stays Latin-1.
    assert.equal(headerText(asNodeReadsIt(Buffer.from([0xd0, 0xba, 0xff]))), '\u00d0\u00ba\u00ff');
    // An encoded surrogate (ED A0 80) or an overlong form (C0 AF) is not UTF-8.
    assert.equal(headerText('\u00ed\u00a0\u0080'), '\u00ed\u00a0\u0080');
    assert.equal(headerText('\u00c0\u00af'), '\u00c0\u00af');
  });
  it('keeps a leading U+FEFF as part of the key, as a JSON string does', () => {
    assert.equal(headerText(asNodeReadsIt(Buffer.from('\ufeffk', 'utf8'))), '\ufeffk');
  });
  it('leaves a text that did not come from bytes as it is', () => {
    assert.equal(headerText('ключ'), 'ключ');
  });
});

describe('formerKeyForms', () => {
  it('is the key in UTF-8 read as Latin-1, as a header carrying it was kept before', () => {
    assert.deepEqual(formerKeyForms('ключ'), ['ÐºÐ»Ñ\u008eÑ\u0087']);
    assert.deepEqual(formerKeyForms('café'), ['cafÃ©']);
  });
  it('is none for an ASCII key (read alike) or one whose former form was over 255 characters (then refused)', () => {
    assert.deepEqual(formerKeyForms('till1-0001'), []);
    assert.deepEqual(formerKeyForms('я'.repeat(127)), ['Ñ\u008f'.repeat(127)]);
    assert.deepEqual(formerKeyForms('я'.repeat(128)), []);
  });
});
