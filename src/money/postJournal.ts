import { sql } from 'kysely';
import { all, type Tx } from '../core/db.js';
import { assert } from '../core/errors.js';
import { newId } from '../core/ids.js';
import { balanceJournal, type PostingInput } from './journal.js';

export interface JournalEntryInput {
  /** What moved the money: `sale`, `sale_void`, `payment`, `consignment` … */
  kind: string;
  /** The store whose settlement the entry counts in (null for none). */
  storeId?: string | null;
  /**
   * When a till moved the money, for a command it queued offline (a synced
   * sale's, a payment's or a void's `client_created_at`): the entry is dated
   * on its day — the store's day of that moment in the store's time zone
   * (store_day, in postJournals) — instead of the day it reaches us — by
   * open_business_date like every entry, so never before the store's latest
   * count nor after today. Absent: today.
   */
  tillTime?: Date | string | null;
  /**
   * 'YYYY-MM-DD': the earliest day the entry may be booked on (a void's or a
   * partial return's: its sale's day), with a till's time or without: a day
   * after the store's today when the sale was booked there (its store's zone
   * moved back since: a sale booked on a Kiritimati day, the store now in
   * Pago Pago, whose today is a day or two earlier) — the refund is booked
   * with the sale, never before the cash came in. Such a day is not counted
   * (no count is after its store's today), and is locked like any day asked
   * for. It used to bound the till's day only: a void or a return sent
   * without one was booked today, before its sale's day.
   */
  notBefore?: string;
  subjectType?: string;
  subjectId?: string;
  memo?: string;
  postings: PostingInput[];
}

export interface PostedEntry {
  entryId: string;
  /** The day the entry was booked on ('YYYY-MM-DD'). */
  businessDate: string;
  postings: Array<{ account_id: string; amount: number }>;
}

/**
 * Writes journal entries, their postings and the balances of their accounts,
 * in the caller's transaction, in ONE statement (a group-commit batch posts
 * all its sales at once; postJournal is the same for one entry):
 *
 *   - the entry rows, each dated by open_business_date (called once per
 *     store and wanted day, not per entry);
 *   - one upsert per account, in account-key order, that moves `balance`,
 *     `debit_total` and `credit_total` relatively (`balance = balance + $1`)
 *     by the sum of that account's postings: no read-then-write, so
 *     concurrent entries each add their own amount; a store account is
 *     created by the first posting that names it;
 *   - the postings, in the entries' order.
 *
 * Unbalanced postings are a bug in the caller (assert); the database checks the
 * same rule again at commit (deferred constraint trigger `journal_entry_balanced`).
 * Party accounts must exist (created with the party): callers validate parties.
 */
export async function postJournals(
  tx: Tx,
  tenantId: string,
  entries: ReadonlyArray<JournalEntryInput & { id?: string; opId: string }>,
): Promise<PostedEntry[]> {
  if (entries.length === 0) return [];
  const entryRows = entries.map((input, position) => ({
    id: input.id ?? newId(),
    kind: input.kind,
    store_id: input.storeId ?? null,
    till_time: input.tillTime === undefined || input.tillTime === null ? null : input.tillTime,
    not_before: input.notBefore ?? null,
    subject_type: input.subjectType ?? null,
    subject_id: input.subjectId ?? null,
    memo: input.memo ?? null,
    op_id: input.opId,
    position,
  }));
  const lines = entries.flatMap((input, index) => {
    const checked = balanceJournal(input.postings);
    assert(checked.ok, `journal entry ${input.kind} is not double-entry: ${checked.ok ? '' : checked.reason}`);
    return checked.postings.map((posting) => ({
      entry_id: entryRows[index]!.id,
      op_id: input.opId,
      key: posting.key,
      kind: 'partyId' in posting.account ? null : posting.account.kind,
      store_id: 'partyId' in posting.account ? null : posting.account.storeId,
      party_id: 'partyId' in posting.account ? posting.account.partyId : null,
      amount: posting.amount,
      debit: posting.debit,
      credit: posting.credit,
    }));
  });
  // One row per account: new accounts get an id, existing ones move by the sum.
  const accounts = new Map<string, { new_id: string; key: string; kind: string | null; store_id: string | null; party_id: string | null; amount: number; debit: number; credit: number; op_id: string }>();
  for (const line of lines) {
    const account = accounts.get(line.key);
    if (account) {
      account.amount += line.amount;
      account.debit += line.debit;
      account.credit += line.credit;
    } else {
      accounts.set(line.key, { new_id: newId(), key: line.key, kind: line.kind, store_id: line.store_id, party_id: line.party_id, amount: line.amount, debit: line.debit, credit: line.credit, op_id: line.op_id });
    }
  }
  const rows = await all(
    tx,
    sql<{ entry_id: string; account_id: string; amount: number; business_date: string }>`
      WITH entry_input AS (
        SELECT * FROM jsonb_to_recordset(${JSON.stringify(entryRows)}::jsonb)
          AS e(id uuid, kind text, store_id uuid, till_time timestamptz, not_before date, subject_type text, subject_id uuid, memo text, op_id uuid, position integer)
      ), wanted AS (
        -- The day a till's time asks for: the store's day of that moment in
        -- its time zone (store_day; UTC without a store), not before
        -- not_before; no till time: today (null). The zone is read here,
        -- once per store of the batch, with the entries. Never before
        -- 0001-01-01: a till time early on that day in UTC (accepted) is
        -- still 1 BC in a zone west of UTC, a day the API cannot name
        -- ('0001-12-31 BC' answered as a business_date) nor count.
        SELECT e.id, e.store_id, coalesce(st.time_zone, 'UTC') AS time_zone, e.not_before,
               CASE WHEN e.till_time IS NOT NULL
                    THEN greatest(store_day(coalesce(st.time_zone, 'UTC'), e.till_time), e.not_before, DATE '0001-01-01') END AS wanted
        FROM entry_input e LEFT JOIN stores st ON st.tenant_id = ${tenantId} AND st.id = e.store_id
      ), days AS (
        -- With a not_before (a void's or a return's sale day), both the day
        -- asked for (today without a till time) and today are raised to it:
        -- open_business_date_on never books after the today it is given, and
        -- the store's today is before the sale's day when its zone moved back
        -- since the sale. Without one (every sale), as open_business_date.
        SELECT d.store_id, d.wanted, d.not_before,
               CASE WHEN d.not_before IS NULL THEN open_business_date(${tenantId}::uuid, d.store_id, d.wanted, d.time_zone)
                    ELSE open_business_date_on(${tenantId}::uuid, d.store_id, greatest(coalesce(d.wanted, n.today), d.not_before), greatest(n.today, d.not_before)) END
                 AS business_date
        FROM (SELECT DISTINCT store_id, wanted, not_before, time_zone FROM wanted) d
        -- the store's today, once per day asked for (as open_business_date reads it)
        CROSS JOIN LATERAL (SELECT store_day(d.time_zone, clock_timestamp()) AS today) n
      ), entry AS (
        INSERT INTO journal_entries (tenant_id, id, kind, store_id, business_date, subject_type, subject_id, memo, op_id)
        SELECT ${tenantId}, e.id, e.kind, e.store_id, days.business_date, e.subject_type, e.subject_id, e.memo, e.op_id
        FROM entry_input e JOIN wanted w ON w.id = e.id
        JOIN days ON days.store_id IS NOT DISTINCT FROM e.store_id AND days.wanted IS NOT DISTINCT FROM w.wanted
                 AND days.not_before IS NOT DISTINCT FROM w.not_before
        ORDER BY e.position
        RETURNING id, business_date
      ), account_input AS (
        SELECT * FROM jsonb_to_recordset(${JSON.stringify([...accounts.values()])}::jsonb)
          AS a(new_id uuid, key text, kind text, store_id uuid, party_id uuid, amount bigint, debit bigint, credit bigint, op_id uuid)
      ), moved AS (
        INSERT INTO accounts AS a (tenant_id, id, key, kind, store_id, party_id, balance, debit_total, credit_total, op_id)
        SELECT ${tenantId}, i.new_id, i.key,
               coalesce(i.kind, CASE p.kind WHEN 'customer' THEN 'receivable' WHEN 'supplier' THEN 'payable' END),
               i.store_id, i.party_id, i.amount, i.debit, i.credit, i.op_id
        FROM account_input i LEFT JOIN parties p ON p.tenant_id = ${tenantId} AND p.id = i.party_id
        ORDER BY i.key
        ON CONFLICT (tenant_id, key) DO UPDATE
          SET balance = a.balance + EXCLUDED.balance,
              debit_total = a.debit_total + EXCLUDED.debit_total,
              credit_total = a.credit_total + EXCLUDED.credit_total,
              updated_at = now()
        RETURNING a.id, a.key
      ), posted AS (
        INSERT INTO postings (tenant_id, entry_id, account_id, amount, op_id)
        SELECT ${tenantId}, l.entry_id, moved.id, l.amount, e.op_id
        FROM ROWS FROM (jsonb_to_recordset(${JSON.stringify(lines)}::jsonb) AS (entry_id uuid, key text, amount bigint))
               WITH ORDINALITY AS l(entry_id, key, amount, position)
        JOIN moved ON moved.key = l.key
        JOIN entry_input e ON e.id = l.entry_id
        ORDER BY l.position
        RETURNING entry_id, account_id, amount
      )
      SELECT posted.entry_id, posted.account_id, posted.amount, entry.business_date
      FROM posted JOIN entry ON entry.id = posted.entry_id`,
  );
  assert(rows.length === lines.length, 'every posting found its account');
  return entryRows.map((entry) => {
    const own = rows.filter((row) => row.entry_id === entry.id);
    return { entryId: entry.id, businessDate: own[0]!.business_date, postings: own.map(({ account_id, amount }) => ({ account_id, amount })) };
  });
}

/** One journal entry (see postJournals). */
export async function postJournal(tx: Tx, cmd: { tenantId: string; opId: string }, input: JournalEntryInput): Promise<PostedEntry> {
  const [posted] = await postJournals(tx, cmd.tenantId, [{ ...input, opId: cmd.opId }]);
  return posted!;
}
