import type { StoreAccountKind } from './money.table.js';

/**
 * An account named without a lookup: a store's account of a kind (created by
 * the first posting that needs it) or a party's account (created with the party).
 */
export type AccountRef = { storeId: string; kind: StoreAccountKind } | { partyId: string };

export interface PostingInput {
  account: AccountRef;
  /** Minor units; debit positive, credit negative. */
  amount: number;
}

export interface MergedPosting {
  key: string;
  account: AccountRef;
  amount: number;
  debit: number;
  credit: number;
}

export function accountKey(account: AccountRef): string {
  return 'partyId' in account ? `party/${account.partyId}` : `store/${account.storeId}/${account.kind}`;
}

export type JournalCheck = { ok: true; postings: MergedPosting[] } | { ok: false; reason: string };

/**
 * The double-entry rule as a pure function: integer amounts, at least two
 * accounts, summing to zero. Postings to the same account are merged (one
 * posting per account per entry), sorted by account key so every transaction
 * locks account rows in the same order (no deadlocks between two entries).
 */
export function balanceJournal(postings: PostingInput[]): JournalCheck {
  const merged = new Map<string, MergedPosting>();
  let total = 0;
  for (const posting of postings) {
    if (!Number.isSafeInteger(posting.amount)) return { ok: false, reason: `amount ${posting.amount} is not an integer of minor units` };
    total += posting.amount;
    const key = accountKey(posting.account);
    const existing = merged.get(key);
    if (existing) existing.amount += posting.amount;
    else merged.set(key, { key, account: posting.account, amount: posting.amount, debit: 0, credit: 0 });
  }
  if (total !== 0) return { ok: false, reason: `postings sum to ${total}, not 0` };
  const lines = [...merged.values()]
    .filter((posting) => posting.amount !== 0)
    .map((posting) => ({ ...posting, debit: Math.max(posting.amount, 0), credit: Math.max(-posting.amount, 0) }))
    .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  if (lines.length < 2) return { ok: false, reason: 'an entry needs non-zero postings on at least two accounts' };
  return { ok: true, postings: lines };
}
