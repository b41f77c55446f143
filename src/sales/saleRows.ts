import { sql } from 'kysely';
import { one, type Tx } from '../core/db.js';
import { assert } from '../core/errors.js';
import { openReviewItems } from '../core/review.js';
import { postJournals } from '../money/postJournal.js';
import type { CatalogSku, PlannedSale, SaleState } from './salePlan.js';
import { shortageReviewItem } from './salePlan.js';
import type { SaleInput } from './sale.table.js';

// Stores and SKUs are never deleted and a SKU's unit and tracks_pieces never
// change (enforced in the database), so once seen a SKU is cached for the
// process and the statement below does not read it again.
const knownSkus = new Map<string, CatalogSku>();
const CACHE_LIMIT = 100_000;

/**
 * Everything sales of one store are decided against, in ONE statement:
 * the store, the SKUs not cached yet, the named customers, the tenant's bulk
 * threshold and — with `lock` — the store's stock balances of those SKUs
 * (locked in SKU order) and its receipt counter (created at 0 if missing,
 * locked). Both stay locked until the transaction ends, so the state is what
 * the sales will find when they write.
 */
export async function loadSaleState(tx: Tx, tenantId: string, storeId: string, sales: readonly SaleInput[], options: { lock: boolean }): Promise<SaleState> {
  const skuIds = [...new Set(sales.flatMap((sale) => sale.items.map((item) => item.sku_id)))].sort();
  const uncached = skuIds.filter((id) => !knownSkus.has(`${tenantId}/${id}`));
  const customerIds = [...new Set(sales.flatMap((sale) => (sale.customer_id ? [sale.customer_id] : [])))];
  const row = await one(
    tx,
    sql<{
      now: Date;
      store_exists: boolean;
      skus: CatalogSku[];
      customers: string[];
      bulk_threshold: string | null;
      stock: Record<string, string>;
      last_receipt: string | null;
    }>`
      WITH store AS (
        SELECT id FROM stores WHERE tenant_id = ${tenantId} AND id = ${storeId}
      ), balances AS (
        SELECT sku_id, quantity FROM stock_balances
        WHERE ${options.lock} AND tenant_id = ${tenantId} AND store_id = ${storeId} AND sku_id = ANY(${skuIds}::uuid[])
        ORDER BY sku_id FOR UPDATE
      ), counter AS (
        INSERT INTO store_receipt_counters AS c (tenant_id, store_id, last_number)
        SELECT ${tenantId}, id, 0 FROM store WHERE ${options.lock}
        ON CONFLICT (tenant_id, store_id) DO UPDATE SET last_number = c.last_number
        RETURNING last_number
      )
      SELECT now() AS now,
             EXISTS (SELECT 1 FROM store) AS store_exists,
             (SELECT coalesce(jsonb_agg(jsonb_build_object('id', id, 'unit', unit, 'tracks_pieces', tracks_pieces)), '[]'::jsonb)
              FROM skus WHERE tenant_id = ${tenantId} AND id = ANY(${uncached}::uuid[])) AS skus,
             ARRAY(SELECT id FROM parties WHERE tenant_id = ${tenantId} AND id = ANY(${customerIds}::uuid[]) AND kind = 'customer') AS customers,
             (SELECT settings ->> 'bulk_sale_threshold' FROM tenants WHERE id = ${tenantId}) AS bulk_threshold,
             -- balances before the counter: the same lock order as every stock change
             (SELECT coalesce(jsonb_object_agg(sku_id, quantity::text), '{}'::jsonb) FROM balances) AS stock,
             (SELECT last_number FROM counter) AS last_receipt`,
  );
  if (knownSkus.size > CACHE_LIMIT) knownSkus.clear();
  for (const sku of row.skus) knownSkus.set(`${tenantId}/${sku.id}`, sku);
  const skus = new Map(skuIds.flatMap((id) => {
    const sku = knownSkus.get(`${tenantId}/${id}`) ?? row.skus.find((found) => found.id === id);
    return sku ? [[id, sku] as const] : [];
  }));
  return {
    now: row.now,
    storeExists: row.store_exists,
    skus,
    customers: new Set(row.customers),
    bulkThreshold: row.bulk_threshold === null ? null : Number(row.bulk_threshold),
    lastReceipt: row.last_receipt === null ? 0 : Number(row.last_receipt),
    stock: new Map(Object.entries(row.stock).map(([skuId, quantity]) => [skuId, Number(quantity)])),
  };
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
  const sales = plans.map(({ sale }) => ({
    id: sale.id,
    receipt_number: sale.receipt_number,
    payment_method: sale.payment_method,
    sale_type: sale.sale_type,
    source: sale.source,
    customer_id: sale.customer_id,
    total: sale.total,
    client_created_at: sale.client_created_at,
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

  const written = await one(
    tx,
    sql<{ ledger: Array<[string, string, number]> | null; balances_ok: boolean; counter_ok: boolean }>`
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
        UPDATE store_receipt_counters SET last_number = ${lastReceipt}
        WHERE tenant_id = ${tenantId} AND store_id = ${storeId} AND last_number = ${locked.lastReceipt}
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
             EXISTS (SELECT 1 FROM counter) AS counter_ok`,
  );
  assert(written.balances_ok, 'stock balances moved from exactly what the sales were planned against');
  assert(written.counter_ok, 'the receipt counter moved from exactly what the sales were planned against');

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
