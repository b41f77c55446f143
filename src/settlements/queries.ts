import { sql } from 'kysely';
import { all, maybeOne, one, type Tx } from '../core/db.js';
import type { DrawerMovements } from './settlementMath.js';
import type { SettlementRow } from './settlements.table.js';

export const SETTLEMENT_COLUMNS = sql`
  id, store_id, business_date, status, version, float_amount, cash_sales, cash_voids, payments_in, payments_out, other_cash,
  expected_cash, declared_cash, variance, note, submitted_by, decided_by, decided_at, decision_note, op_id, created_at`;

export async function findSettlement(tx: Tx, tenantId: string, id: string): Promise<SettlementRow | undefined> {
  return maybeOne(tx, sql<SettlementRow>`SELECT ${SETTLEMENT_COLUMNS} FROM settlements WHERE tenant_id = ${tenantId} AND id = ${id}`);
}

export async function listSettlements(
  tx: Tx,
  tenantId: string,
  storeIds: readonly string[] | null,
  filter: { storeId?: string | undefined; businessDate?: string | undefined },
  before: string | undefined,
  limit: number,
): Promise<SettlementRow[]> {
  return all(
    tx,
    sql<SettlementRow>`
      SELECT ${SETTLEMENT_COLUMNS} FROM settlements
      WHERE tenant_id = ${tenantId}
        AND (${storeIds === null}::boolean OR store_id = ANY(${storeIds ?? []}::uuid[]))
        AND (${filter.storeId ?? null}::uuid IS NULL OR store_id = ${filter.storeId ?? null}::uuid)
        AND (${filter.businessDate ?? null}::date IS NULL OR business_date = ${filter.businessDate ?? null}::date)
        AND (${before ?? null}::uuid IS NULL OR id < ${before ?? null}::uuid)
      ORDER BY id DESC LIMIT ${limit}`,
  );
}

/**
 * The day's movements of a store's cash drawer account, from the ledger, by
 * the kind of entry that moved them (one aggregate query). Every cash sale,
 * cash void and cash payment of the store posts to this account with the
 * entry's business date, so the ledger is the one source of the figures.
 */
export async function drawerMovements(tx: Tx, tenantId: string, storeId: string, businessDate: string): Promise<Omit<DrawerMovements, 'float'>> {
  return one(
    tx,
    sql<Omit<DrawerMovements, 'float'>>`
      SELECT coalesce(sum(p.amount) FILTER (WHERE e.kind = 'sale'), 0)::bigint AS "cashSales",
             coalesce(-sum(p.amount) FILTER (WHERE e.kind = 'sale_void'), 0)::bigint AS "cashVoids",
             coalesce(sum(p.amount) FILTER (WHERE e.kind = 'payment' AND p.amount > 0), 0)::bigint AS "paymentsIn",
             coalesce(-sum(p.amount) FILTER (WHERE e.kind = 'payment' AND p.amount < 0), 0)::bigint AS "paymentsOut",
             coalesce(sum(p.amount) FILTER (WHERE e.kind NOT IN ('sale', 'sale_void', 'payment')), 0)::bigint AS "otherCash"
      FROM journal_entries e
      JOIN postings p ON p.tenant_id = e.tenant_id AND p.entry_id = e.id
      JOIN accounts a ON a.tenant_id = p.tenant_id AND a.id = p.account_id
      WHERE e.tenant_id = ${tenantId} AND e.store_id = ${storeId} AND e.business_date = ${businessDate}::date
        AND a.key = ${`store/${storeId}/cash_drawer`}`,
  );
}
