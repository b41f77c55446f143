import { sql } from 'kysely';
import { all, andIf, type Tx } from '../core/db.js';
import type { PartyKind } from './money.table.js';

export interface PartyBalance {
  party_id: string;
  name: string;
  code: string | null;
  /** Sum of the debits on the party's account, minor units. */
  debit_total: number;
  /** Sum of the credits on the party's account, minor units. */
  credit_total: number;
  /** What the customer owes us (debit − credit) / what we owe the supplier (credit − debit). */
  outstanding: number;
}

/** Keyset position: the last row's outstanding and party id. */
export interface BalanceCursor {
  outstanding: number;
  party_id: string;
}

/**
 * Supplier or customer balances, most outstanding first (ties by party id),
 * in ONE query, whatever the page.
 *
 * Why it reads the account rows rather than summing postings: every posting
 * moves its account's `debit_total`, `credit_total` and `balance` in the same
 * transaction (postJournal), so those columns ARE the per-party aggregate of
 * the postings, kept up to date incrementally — and the integrity check
 * `money_account_totals_match_postings` verifies it. Summing a million postings
 * per page would cost a full aggregate and sort on every request (and the
 * sort key, outstanding, is only known after the aggregate); reading the
 * maintained aggregate is a bounded top-N sort over the tenant's accounts of
 * one kind (no index on `balance`: it would make every balance update on the
 * hot sale path a non-HOT update — see migration 0304). Every party has its account from birth (created in the
 * same statement as the party), so parties without postings are listed with
 * zeros. The keyset (outstanding, party_id) makes pages stable: a row never
 * appears twice or is skipped between pages unless its balance moves.
 */
export async function listPartyBalances(
  tx: Tx,
  tenantId: string,
  kind: PartyKind,
  after: BalanceCursor | undefined,
  limit: number,
): Promise<PartyBalance[]> {
  if (kind === 'customer') {
    // outstanding = balance; order balance DESC, party_id ASC.
    return all(
      tx,
      sql<PartyBalance>`
        SELECT a.party_id, p.name, p.code, a.debit_total, a.credit_total, a.outstanding
        FROM (
          SELECT party_id, debit_total, credit_total, balance AS outstanding FROM accounts
          WHERE tenant_id = ${tenantId} AND party_id IS NOT NULL AND kind = 'receivable'
            ${andIf(after, (position) => sql`balance <= ${position.outstanding}::bigint AND (balance < ${position.outstanding}::bigint OR party_id > ${position.party_id}::uuid)`)}
          ORDER BY balance DESC, party_id
          LIMIT ${limit}
        ) a
        JOIN parties p ON p.tenant_id = ${tenantId} AND p.id = a.party_id
        ORDER BY a.outstanding DESC, a.party_id`,
    );
  }
  // outstanding = −balance; order balance ASC, party_id ASC.
  return all(
    tx,
    sql<PartyBalance>`
      SELECT a.party_id, p.name, p.code, a.debit_total, a.credit_total, -a.balance AS outstanding
      FROM (
        SELECT party_id, debit_total, credit_total, balance FROM accounts
        WHERE tenant_id = ${tenantId} AND party_id IS NOT NULL AND kind = 'payable'
          ${andIf(after, (position) => sql`(balance, party_id) > (${-position.outstanding}::bigint, ${position.party_id}::uuid)`)}
        ORDER BY balance, party_id
        LIMIT ${limit}
      ) a
      JOIN parties p ON p.tenant_id = ${tenantId} AND p.id = a.party_id
      ORDER BY a.balance, a.party_id`,
  );
}
