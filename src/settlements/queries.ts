import { sql } from 'kysely';
import { all, andIf, maybeOne, one, type Tx } from '../core/db.js';
import type { DrawerMovements } from './settlementMath.js';
import type { SettlementRow } from './settlements.table.js';

export const SETTLEMENT_COLUMNS = sql`
  id, store_id, business_date, status, version, float_amount, cash_sales, cash_voids, cash_returns, payments_in, payments_out, other_cash,
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
        ${andIf(storeIds, (ids) => sql`store_id = ANY(${ids}::uuid[])`)}
        ${andIf(filter.storeId, (storeId) => sql`store_id = ${storeId}::uuid`)}
        ${andIf(filter.businessDate, (day) => sql`business_date = ${day}::date`)}
        ${andIf(before, (id) => sql`id < ${id}::uuid`)}
      ORDER BY id DESC LIMIT ${limit}`,
  );
}

/**
 * The day's movements of a store's cash drawer account, from the ledger, by
 * the kind of entry that moved them (one aggregate query). Every cash sale,
 * cash void, cash return and cash payment of the store posts to this account with the
 * entry's business date, so the ledger is the one source of the figures.
 * The SQL function drawer_movements (migration 0805) is the one definition,
 * shared with the integrity check settlement_matches_ledger.
 */
export async function drawerMovements(tx: Tx, tenantId: string, storeId: string, businessDate: string): Promise<Omit<DrawerMovements, 'float'>> {
  return one(
    tx,
    sql<Omit<DrawerMovements, 'float'>>`
      SELECT cash_sales AS "cashSales", cash_voids AS "cashVoids", cash_returns AS "cashReturns", payments_in AS "paymentsIn", payments_out AS "paymentsOut", other_cash AS "otherCash"
      FROM drawer_movements(${tenantId}::uuid, ${storeId}::uuid, ${businessDate}::date)`,
  );
}
