import { sql } from 'kysely';
import { one, type Tx } from '../core/db.js';
import { assert } from '../core/errors.js';
import { PG, pgCode, pgConstraint } from '../core/pgErrors.js';
import { openReviewItems } from '../core/review.js';
import { postJournals } from '../money/postJournal.js';
import type { CatalogSku, PlannedSale, SaleState } from './salePlan.js';
import { shortageReviewItem } from './salePlan.js';
import type { SaleInput } from './sale.table.js';

/**
 * SKUs seen by this process (every tenant's). A SKU is never deleted and its
 * unit and tracks_pieces never change (enforced in the database), so once
 * seen it is not read again. Bounded: when full it is emptied and refills.
 */
export class SkuCatalogCache {
  private readonly known = new Map<string, CatalogSku>();
  constructor(private readonly limit = 100_000) {}

  /** The ids among `skuIds` to read from the database. */
  missing(tenantId: string, skuIds: readonly string[]): string[] {
    return skuIds.filter((id) => !this.known.has(`${tenantId}/${id}`));
  }

  /**
   * Every id of `skuIds` that exists, from what was known when `missing` was
   * asked plus what was then read — resolved BEFORE the cache may be emptied
   * to make room, so a SKU known a moment ago is never reported unknown.
   */
  resolve(tenantId: string, skuIds: readonly string[], read: readonly CatalogSku[]): Map<string, CatalogSku> {
    const readById = new Map(read.map((sku) => [sku.id, sku]));
    const resolved = new Map(
      skuIds.flatMap((id) => {
        const sku = readById.get(id) ?? this.known.get(`${tenantId}/${id}`);
        return sku ? [[id, sku] as const] : [];
      }),
    );
    if (this.known.size + read.length > this.limit) this.known.clear();
    for (const sku of read) this.known.set(`${tenantId}/${sku.id}`, sku);
    return resolved;
  }
}

const skuCache = new SkuCatalogCache();

/**
 * Everything sales of one store are decided against, in ONE statement:
 * the store, the SKUs not cached yet, the named customers, the tenant's bulk
 * threshold, the sales' client_created_at as PostgreSQL reads them (UTC,
 * microseconds; a value it cannot read fails the statement — a 400) and —
 * with `lock` — the store's stock balances of those SKUs (locked in SKU
 * order) and its receipt counter (locked; absent before the store's first
 * sale). Both stay locked until the transaction ends, so the state is what
 * the sales will find when they write.
 */
export async function loadSaleState(tx: Tx, tenantId: string, storeId: string, sales: readonly SaleInput[], options: { lock: boolean }): Promise<SaleState> {
  const skuIds = [...new Set(sales.flatMap((sale) => sale.items.map((item) => item.sku_id)))].sort();
  const uncached = skuCache.missing(tenantId, skuIds);
  const customerIds = [...new Set(sales.flatMap((sale) => (sale.customer_id ? [sale.customer_id] : [])))];
  const clientTimes = [...new Set(sales.flatMap((sale) => (sale.client_created_at === undefined ? [] : [sale.client_created_at])))];
  const row = await one(
    tx,
    sql<{
      now: Date;
      store_exists: boolean;
      skus: CatalogSku[];
      customers: string[];
      bulk_threshold: string | null;
      client_times: Record<string, string>;
      stock: Record<string, string>;
      last_receipt: string | null;
    }>`
      WITH balances AS (
        SELECT sku_id, quantity FROM stock_balances
        WHERE ${options.lock} AND tenant_id = ${tenantId} AND store_id = ${storeId} AND sku_id = ANY(${skuIds}::uuid[])
        ORDER BY sku_id FOR UPDATE
      ), counter AS (
        SELECT last_number FROM store_receipt_counters
        WHERE ${options.lock} AND tenant_id = ${tenantId} AND store_id = ${storeId}
        FOR UPDATE
      )
      SELECT now() AS now,
             EXISTS (SELECT 1 FROM stores WHERE tenant_id = ${tenantId} AND id = ${storeId}) AS store_exists,
             (SELECT coalesce(jsonb_agg(jsonb_build_object('id', id, 'unit', unit, 'tracks_pieces', tracks_pieces)), '[]'::jsonb)
              FROM skus WHERE tenant_id = ${tenantId} AND id = ANY(${uncached}::uuid[])) AS skus,
             ARRAY(SELECT id FROM parties WHERE tenant_id = ${tenantId} AND id = ANY(${customerIds}::uuid[]) AND kind = 'customer') AS customers,
             (SELECT settings ->> 'bulk_sale_threshold' FROM tenants WHERE id = ${tenantId}) AS bulk_threshold,
             (SELECT coalesce(jsonb_object_agg(t, CASE WHEN t::timestamptz >= '0001-01-01 00:00:00+00' AND t::timestamptz < '10000-01-01 00:00:00+00' THEN to_char(t::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') END), '{}'::jsonb)
              FROM unnest(${clientTimes}::text[]) AS t) AS client_times,
             -- balances before the counter: the same lock order as every stock change
             (SELECT coalesce(jsonb_object_agg(sku_id, quantity::text), '{}'::jsonb) FROM balances) AS stock,
             (SELECT last_number FROM counter) AS last_receipt`,
  );
  return {
    now: row.now,
    storeExists: row.store_exists,
    skus: skuCache.resolve(tenantId, skuIds, row.skus),
    customers: new Set(row.customers),
    bulkThreshold: row.bulk_threshold === null ? null : Number(row.bulk_threshold),
    clientTimes: new Map(Object.entries(row.client_times)),
    lastReceipt: row.last_receipt === null ? 0 : Number(row.last_receipt),
    stock: new Map(Object.entries(row.stock).map(([skuId, quantity]) => [skuId, Number(quantity)])),
  };
}

/** The state a plan was made against moved under it (a store's first sales racing): run the transaction again. */
export class PlannedStateMoved extends Error {
  /** SQLSTATE serialization_failure: retried by group commit and runCommand like one. */
  readonly code = '40001';
}

/**
 * Writes planned sales of one store (planned in order against the state
 * loadSaleState locked in this transaction; their operation rows already
 * written): balances, stock ledger, receipt counter, sales and lines in ONE
 * statement, then their journal entries (postJournals, one statement) and any
 * review items. Returns each sale's stock ledger row ids by SKU.
 *
 * The balances and the counter are set to what the plans left, and the
 * statement checks that they moved from exactly what was locked: a plan made
 * against any other state fails the assertion and rolls everything back.
 */
export async function writeSales(tx: Tx, tenantId: string, storeId: string, plans: readonly PlannedSale[], locked: { lastReceipt: number }): Promise<Array<Map<string, number>>> {
  if (plans.length === 0) return [];
  const ledger = plans.flatMap((plan) => plan.ledger.map((row) => ({ ...row, op_id: plan.opId, reason: `sale ${plan.sale.id}` })));
  const finalStock = new Map<string, { change: number; after: number }>();
  for (const row of ledger) {
    finalStock.set(row.sku_id, { change: (finalStock.get(row.sku_id)?.change ?? 0) + row.quantity_change, after: row.quantity_after });
  }
  const balances = [...finalStock].map(([sku_id, { change, after }]) => ({ sku_id, change, after })).sort((a, b) => (a.sku_id < b.sku_id ? -1 : 1));
  const sales = plans.map(({ sale, clientCreatedAt }) => ({
    id: sale.id,
    receipt_number: sale.receipt_number,
    payment_method: sale.payment_method,
    sale_type: sale.sale_type,
    source: sale.source,
    customer_id: sale.customer_id,
    total: sale.total,
    client_created_at: clientCreatedAt,
    op_id: sale.op_id,
  }));
  const items = plans.flatMap(({ sale }) =>
    sale.items.map((item) => ({
      ...item,
      sale_id: sale.id,
      op_id: sale.op_id,
      piece_ids: `{${item.piece_ids.join(',')}}`,
    })),
  );
  const lastReceipt = plans[plans.length - 1]!.sale.receipt_number;
  assert(lastReceipt === locked.lastReceipt + plans.length, 'receipt numbers follow the locked counter without a gap');

  const statement = sql<{ ledger: Array<[string, string, number]> | null; balances_ok: boolean; counter_ok: boolean }>`
      WITH balance_input AS (
        SELECT * FROM jsonb_to_recordset(${JSON.stringify(balances)}::jsonb) AS b(sku_id uuid, change bigint, after bigint)
      ), moved AS (
        UPDATE stock_balances b SET quantity = b.quantity + i.change, updated_at = now()
        FROM balance_input i
        WHERE b.tenant_id = ${tenantId} AND b.store_id = ${storeId} AND b.sku_id = i.sku_id
        RETURNING b.sku_id, b.quantity = i.after AS as_planned
      ), ledger AS (
        INSERT INTO stock_ledger (tenant_id, store_id, sku_id, op_id, quantity_change, quantity_after, kind, reason)
        SELECT ${tenantId}, ${storeId}, l.sku_id, l.op_id, l.quantity_change, l.quantity_after, 'sale', l.reason
        FROM ROWS FROM (jsonb_to_recordset(${JSON.stringify(ledger)}::jsonb)
               AS (sku_id uuid, op_id uuid, quantity_change bigint, quantity_after bigint, reason text))
             WITH ORDINALITY AS l(sku_id, op_id, quantity_change, quantity_after, reason, position)
        ORDER BY l.position
        RETURNING id, op_id, sku_id
      ), counter AS (
        -- Locked by loadSaleState if it existed; created by the store's first sales.
        INSERT INTO store_receipt_counters AS c (tenant_id, store_id, last_number) VALUES (${tenantId}, ${storeId}, ${lastReceipt})
        ON CONFLICT (tenant_id, store_id) DO UPDATE SET last_number = EXCLUDED.last_number WHERE c.last_number = ${locked.lastReceipt}
        RETURNING last_number
      ), sale AS (
        INSERT INTO sales (tenant_id, id, store_id, receipt_number, payment_method, sale_type, source, customer_id, total, client_created_at, op_id)
        SELECT ${tenantId}, s.id, ${storeId}, s.receipt_number, s.payment_method, s.sale_type, s.source, s.customer_id, s.total, s.client_created_at, s.op_id
        FROM jsonb_to_recordset(${JSON.stringify(sales)}::jsonb)
          AS s(id uuid, receipt_number bigint, payment_method text, sale_type text, source text, customer_id uuid, total bigint,
               client_created_at timestamptz, op_id uuid)
        ORDER BY s.receipt_number
      ), lines AS (
        INSERT INTO sale_items (tenant_id, id, sale_id, line_number, sku_id, quantity, unit_price, line_total, shortfall_quantity, piece_ids, op_id)
        SELECT ${tenantId}, l.id, l.sale_id, l.line_number, l.sku_id, l.quantity, l.unit_price, l.line_total, l.shortfall_quantity, l.piece_ids::uuid[], l.op_id
        FROM jsonb_to_recordset(${JSON.stringify(items)}::jsonb)
          AS l(id uuid, sale_id uuid, line_number integer, sku_id uuid, quantity bigint, unit_price bigint, line_total bigint,
               shortfall_quantity bigint, piece_ids text, op_id uuid)
      )
      SELECT (SELECT jsonb_agg(jsonb_build_array(op_id, sku_id, id)) FROM ledger) AS ledger,
             (SELECT count(*) FILTER (WHERE as_planned) = ${balances.length} AND count(*) = ${balances.length} FROM moved) AS balances_ok,
             EXISTS (SELECT 1 FROM counter) AS counter_ok`;
  let written: { ledger: Array<[string, string, number]> | null; balances_ok: boolean; counter_ok: boolean };
  try {
    written = await one(tx, statement);
  } catch (error) {
    // Another transaction took these receipt numbers first: only possible for
    // a store's first sales, planned before its counter row existed.
    if (pgCode(error) === PG.UNIQUE_VIOLATION && pgConstraint(error) === 'sales_tenant_id_store_id_receipt_number_key') {
      throw new PlannedStateMoved('the store\'s first receipt numbers were taken by another transaction', { cause: error });
    }
    throw error;
  }
  assert(written.balances_ok, 'stock balances moved from exactly what the sales were planned against');
  if (!written.counter_ok) throw new PlannedStateMoved('the store\'s receipt counter was created by another transaction');

  const entries = plans.flatMap((plan) => (plan.entry ? [{ ...plan.entry, opId: plan.opId }] : []));
  await postJournals(tx, tenantId, entries);
  const reviews = plans.filter((plan) => plan.review !== null);
  if (reviews.length > 0) {
    await openReviewItems(tx, tenantId, reviews.map((plan) => ({ id: plan.review!.id, opId: plan.opId, ...shortageReviewItem(plan) })));
  }

  const ledgerIds = new Map(plans.map((plan) => [plan.opId, new Map<string, number>()]));
  for (const [opId, skuId, id] of written.ledger ?? []) ledgerIds.get(opId)!.set(skuId, Number(id));
  return plans.map((plan) => ledgerIds.get(plan.opId)!);
}
