/**
 * An invariant of DESIGN.md principle 7, as one SQL query that returns the
 * rows breaking it. Each part of the system declares its own checks in
 * `src/<part>/integrity.ts`; `registry.ts` lists them all.
 */
export interface IntegrityCheck {
  /** Stable snake_case name, e.g. `stock_ledger_matches_balance`. */
  name: string;
  severity: 'warning' | 'critical';
  /** One sentence: the invariant that must hold. */
  description: string;
  /**
   * Returns one row per finding with columns `tenant_id uuid, subject text,
   * detail jsonb`. `$1` is a tenant id or NULL for every tenant; the query
   * must filter with `($1::uuid IS NULL OR tenant_id = $1)`.
   */
  sql: string;
}

/**
 * The review items of one shortage kind (`offline_sale_shortage`,
 * `offline_consignment_shortage`), as the body of a CTE for a check that
 * matches them with the shortfalls recorded: each item's subject (or
 * `review_item:<id>` when it names none), status, subject type, store,
 * operation and detail, and its `shortages` normalised for comparing — SKU
 * ids lower-cased (a client may send them in capitals), in byte order, each
 * with `requested`, `available` and `shortfall` only. Filters by `$1` like
 * every check.
 */
export function shortageReviewItems(kind: 'offline_sale_shortage' | 'offline_consignment_shortage'): string {
  return `
        SELECT r.tenant_id, coalesce(r.subject_id, 'review_item:' || r.id) AS subject_id, r.id, r.status, r.subject_type, r.store_id, r.op_id, r.detail, named.shortages
        FROM review_items r
        CROSS JOIN LATERAL (
          SELECT jsonb_agg(jsonb_build_object('sku_id', lower(e ->> 'sku_id'), 'requested', e -> 'requested', 'available', e -> 'available', 'shortfall', e -> 'shortfall')
                           ORDER BY lower(e ->> 'sku_id') COLLATE "C") AS shortages
          FROM jsonb_array_elements(CASE jsonb_typeof(r.detail -> 'shortages') WHEN 'array' THEN r.detail -> 'shortages' ELSE '[]'::jsonb END) e
        ) named
        WHERE r.kind = '${kind}' AND ($1::uuid IS NULL OR r.tenant_id = $1)
      `;
}

/**
 * The latest day a sale's reversing entry — a void's `sale_void`, a partial
 * return's `sale_return` — may be booked on without a counted day behind it,
 * as SQL over three date expressions: the till's UTC day of the command
 * (null when it was not queued), the sale's entry's day and the UTC day it
 * was recorded. postSaleVoid and postSaleReturn ask for the same day (the
 * store's day of the till's moment, not before the sale's day; else the day
 * it was recorded), so both are held to the same bound: zone aside (a store's
 * day of a moment is within a day of its UTC day), never after that day plus
 * one — nor after the recorded day plus one, a till's clock ahead of ours
 * asking for a day that has not come. Later only past a counted day
 * (bookedPastLatestWithoutCount).
 */
export function reversalLatestWithoutCount(tillDay: string, saleDay: string, recordedDay: string): string {
  return `CASE WHEN ${tillDay} IS NULL THEN ${recordedDay} + 1 ELSE least(greatest(${tillDay} + 1, ${saleDay}), ${recordedDay} + 1) END`;
}

/**
 * The earliest day a sale's reversing entry — a void's `sale_void`, a partial
 * return's `sale_return` — may be booked on, as SQL over the same three date
 * expressions as reversalLatestWithoutCount (the till's UTC day, null when not
 * queued; the sale's entry's day; the UTC day it was recorded). postSaleVoid
 * and postSaleReturn ask for the store's day of the till's moment, not before
 * the sale's day (else of the moment it was recorded), moved only later, past
 * counted days: zone aside (a store's day of a moment is within a day of its
 * UTC day), never before the till's day less one unless the sale's day is
 * later — nor before the recorded day less one. A null sale's day (its entry
 * gone) leaves the till's day alone.
 */
export function reversalEarliest(tillDay: string, saleDay: string, recordedDay: string): string {
  return `CASE WHEN ${tillDay} IS NULL THEN ${recordedDay} - 1 ELSE least(greatest(${tillDay} - 1, ${saleDay}), ${recordedDay} - 1) END`;
}

/**
 * lineTotal (src/sales/lineTotal.ts) as SQL over a unit, a quantity in base
 * units and a price: a piece's quantity × price; grams or millimetres ×
 * price per 1,000, half up. Numeric, so no product overflows.
 */
export function lineTotalSql(unit: string, quantity: string, price: string): string {
  return `CASE WHEN ${unit} = 'piece' THEN (${quantity})::numeric * ${price} ELSE div((${quantity})::numeric * ${price} * 2 + 1000, 2000) END`;
}

/**
 * moneyBack (src/sales/takeBack.ts) as SQL: the money of a return's part of a
 * line, `quantity` taken back bringing the line's returns to `through` —
 * lineTotal(through) − lineTotal(through − quantity), nothing before being 0.
 */
export function moneyBackSql(unit: string, through: string, quantity: string, price: string): string {
  return `${lineTotalSql(unit, through, price)}
               - CASE WHEN ${through} - ${quantity} = 0 THEN 0 ELSE ${lineTotalSql(unit, `${through} - ${quantity}`, price)} END`;
}

/**
 * True when an entry of `store` is booked after `latest` (the latest day
 * without a count) and the day before it was not counted (a settlement of any
 * status: they are never deleted): open_business_date moves an entry past
 * counted days only. The settlement is looked up (settlements_store_idx) only
 * for entries past `latest`.
 */
export function bookedPastLatestWithoutCount(tenantId: string, storeId: string, businessDate: string, latest: string): string {
  return `(${businessDate} > ${latest}
               AND NOT EXISTS (SELECT 1 FROM settlements c WHERE c.tenant_id = ${tenantId} AND c.store_id = ${storeId}
                                                             AND c.business_date = ${businessDate} - 1))`;
}
