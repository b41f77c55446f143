import { sql } from 'kysely';
import { stockPageStart, type StockPage } from './queries.js';
import { all, readClientMoment, type Tx } from '../core/db.js';

/**
 * The moment an `as_of` names, as PostgreSQL reads it (`::timestamptz`: any
 * offset form, a leap second as the next minute, microseconds kept), in UTC
 * with microseconds (`…T10:00:00.123456Z`) — what stockAsOf takes. Read by
 * PostgreSQL, not by a JS Date, whose milliseconds would miss a ledger row
 * stamped within the same millisecond after them. A value PostgreSQL cannot
 * read (year 0, `23:59:60.5`, an offset beyond ±15:59…) or one outside the
 * years 0001–9999 in UTC (`0001-01-01T00:00:00+01:00` is 1 BC) is a 400.
 */
export async function readAsOf(tx: Tx, asOf: string): Promise<string> {
  return readClientMoment(tx, asOf, { name: 'as_of', path: '/querystring/as_of' });
}

/**
 * Stock of every SKU of a store at a moment (`asOf` as readAsOf returns it):
 * the pair's latest daily snapshot that ended at or before `asOf`, plus the
 * ledger rows from the end of that day up to `asOf` (inclusive, to the
 * microsecond). Both are index lookups
 * (stock_snapshots primary key, stock_ledger_history_idx), so the cost depends
 * on the rows since the last snapshot, not on the size of the ledger. A pair
 * without any snapshot yet is summed from its first ledger row.
 *
 * The ledger's lower bound is a CASE, not `coalesce(s.ended_at, '-infinity')`:
 * the service reads as the app role, under row-level security, and there
 * PostgreSQL takes a condition as an index condition only if it cannot leak
 * rows before the policy is checked — it trusts CASE, not COALESCE — so with
 * COALESCE the bound was a filter and every ledger row of each pair was read
 * (the whole tenant's ledger, in a sequential scan). stockHistoryPlans.int.spec.ts.
 */
export async function stockAsOf(tx: Tx, tenantId: string, storeId: string, asOf: string, page: StockPage = {}): Promise<Array<{ sku_id: string; quantity: number }>> {
  return all(
    tx,
    sql<{ sku_id: string; quantity: number }>`
      SELECT b.sku_id,
             (coalesce(s.quantity, 0) + coalesce(delta.change, 0))::bigint AS quantity
      FROM stock_balances b
      LEFT JOIN LATERAL (
        SELECT quantity, (snapshot_date + 1)::timestamp AT TIME ZONE 'UTC' AS ended_at
        FROM stock_snapshots
        WHERE tenant_id = b.tenant_id AND store_id = b.store_id AND sku_id = b.sku_id
          AND snapshot_date <= ((${asOf}::timestamptz AT TIME ZONE 'UTC')::date - 1)
        ORDER BY snapshot_date DESC LIMIT 1
      ) s ON true
      LEFT JOIN LATERAL (
        SELECT sum(l.quantity_change) AS change
        FROM stock_ledger l
        WHERE l.tenant_id = b.tenant_id AND l.store_id = b.store_id AND l.sku_id = b.sku_id
          AND l.created_at >= CASE WHEN s.ended_at IS NULL THEN '-infinity'::timestamptz ELSE s.ended_at END
          AND l.created_at <= ${asOf}::timestamptz
      ) delta ON true
      WHERE b.tenant_id = ${tenantId} AND b.store_id = ${storeId} ${stockPageStart(sql.ref('b.sku_id'), page)}
      ORDER BY b.sku_id LIMIT ${page.limit ?? null}`,
  );
}
