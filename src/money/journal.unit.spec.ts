import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { accountKey, balanceJournal } from './journal.js';

const STORE = '0190a000-0000-7000-8000-000000000001';
const PARTY = '0190a000-0000-7000-8000-000000000002';

describe('balanceJournal: the double-entry rule', () => {
  it('accepts postings that sum to zero and sorts them by account key', () => {
    const result = balanceJournal([
      { account: { storeId: STORE, kind: 'sales_revenue' }, amount: -500 },
      { account: { storeId: STORE, kind: 'cash_drawer' }, amount: 500 },
    ]);
    assert.ok(result.ok);
    assert.deepEqual(
      result.postings.map((p) => [p.key, p.amount, p.debit, p.credit]),
      [
        [`store/${STORE}/cash_drawer`, 500, 500, 0],
        [`store/${STORE}/sales_revenue`, -500, 0, 500],
      ],
    );
  });

  it('refuses postings that do not sum to zero', () => {
    const result = balanceJournal([
      { account: { storeId: STORE, kind: 'cash_drawer' }, amount: 500 },
      { account: { partyId: PARTY }, amount: -499 },
    ]);
    assert.deepEqual(result, { ok: false, reason: 'postings sum to 1, not 0' });
  });

  it('refuses non-integer amounts', () => {
    const result = balanceJournal([
      { account: { storeId: STORE, kind: 'cash_drawer' }, amount: 0.5 },
      { account: { partyId: PARTY }, amount: -0.5 },
    ]);
    assert.equal(result.ok, false);
  });

  it('merges postings to one account and refuses an entry that nets to fewer than two accounts', () => {
    const merged = balanceJournal([
      { account: { partyId: PARTY }, amount: 300 },
      { account: { partyId: PARTY }, amount: 200 },
      { account: { storeId: STORE, kind: 'bank' }, amount: -500 },
    ]);
    assert.ok(merged.ok);
    assert.deepEqual(merged.postings.map((p) => p.amount).sort(), [-500, 500]);
    assert.deepEqual(balanceJournal([{ account: { partyId: PARTY }, amount: 5 }, { account: { partyId: PARTY }, amount: -5 }]), {
      ok: false,
      reason: 'an entry needs non-zero postings on at least two accounts',
    });
    assert.equal(balanceJournal([]).ok, false);
  });

  it('names accounts by key', () => {
    assert.equal(accountKey({ partyId: PARTY }), `party/${PARTY}`);
    assert.equal(accountKey({ storeId: STORE, kind: 'bank' }), `store/${STORE}/bank`);
  });

  it('every random posting set it accepts sums to zero, with debit − credit = amount per account', () => {
    for (let round = 0; round < 500; round++) {
      const accounts = [{ partyId: PARTY }, { storeId: STORE, kind: 'cash_drawer' as const }, { storeId: STORE, kind: 'bank' as const }];
      const postings = Array.from({ length: 1 + Math.floor(Math.random() * 5) }, () => ({
        account: accounts[Math.floor(Math.random() * accounts.length)]!,
        amount: Math.floor(Math.random() * 2000) - 1000,
      }));
      const sum = postings.reduce((total, p) => total + p.amount, 0);
      postings.push({ account: accounts[round % 3]!, amount: -sum });
      const result = balanceJournal(postings);
      if (!result.ok) continue;
      assert.equal(result.postings.reduce((total, p) => total + p.amount, 0), 0);
      for (const p of result.postings) assert.equal(p.debit - p.credit, p.amount);
    }
  });
});
