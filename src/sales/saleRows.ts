import { sql } from 'kysely';
import { all, maybeOne, one, utcMicros, utcMicrosWithinYears, type Tx } from '../core/db.js';
import { assert } from '../core/errors.js';
import { LockNotWaitedFor, PG, pgCode, pgConstraint } from '../core/pgErrors.js';
import { openReviewItems } from '../core/review.js';
import { accountKey } from '../money/journal.js';
import { storeAccountForMethod } from '../money/money.table.js';
import { postJournals } from '../money/postJournal.js';
import { amountErrors, lineTotal } from './lineTotal.js';
import type { CatalogSku, PlannedSale, SaleState } from './salePlan.js';
import { ledgerKey, shortageReviewItem } from './salePlan.js';
import type { SaleInput } from './sale.table.js';

/**
 * SKUs seen by this process (every tenant's). A SKU is never deleted and its
 * unit and tracks_pieces never change (enforced in the database), so once
 * seen it is not read again. Bounded: when full, what it knows becomes the
 * previous generation (consulted by `resolve` only) and it refills — so a
 * lookup that found a SKU known, and then awaited its statement while another
 * lane (another tenant) filled the cache, still resolves it (emptied
 * outright, the cache lost it and the sale was refused: 400 unknown SKU).
 */
export class SkuCatalogCache {
  private known = new Map<string, CatalogSku>();
  /** What was known before the cache last filled up: still resolved, no longer counted as known by `missing`. */
  private previous = new Map<string, CatalogSku>();
  constructor(private readonly limit = 100_000) {}

  /** The ids among `skuIds` to read from the database. */
  missing(tenantId: string, skuIds: readonly string[]): string[] {
    return skuIds.filter((id) => !this.known.has(`${tenantId}/${id}`));
  }

  /**
   * Every id of `skuIds` that exists, from what was known when `missing` was
   * asked plus what was then read — resolved BEFORE the cache may be emptied
   * to make room, and from the previous generation too, so a SKU known a
   * moment ago is not reported unknown when another lookup filled the cache
   * meanwhile (only a second filling-up — another `limit` SKUs read while
   * this lookup's statement runs — would lose it).
   */
  resolve(tenantId: string, skuIds: readonly string[], read: readonly CatalogSku[]): Map<string, CatalogSku> {
    const readById = new Map(read.map((sku) => [sku.id, sku]));
    const resolved = new Map(
      skuIds.flatMap((id) => {
        const key = `${tenantId}/${id}`;
        const sku = readById.get(id) ?? this.known.get(key) ?? this.previous.get(key);
        return sku ? [[id, sku] as const] : [];
      }),
    );
    if (this.known.size + read.length > this.limit) {
      this.previous = this.known;
      this.known = new Map();
    }
    for (const sku of read) this.known.set(`${tenantId}/${sku.id}`, sku);
    return resolved;
  }
}

const skuCache = new SkuCatalogCache();

/** A store's balance of a SKU as group commit keys held rows: `store/sku`, lowercase. */
export const balanceKey = (storeId: string, skuId: string): string => `${storeId}/${skuId}`.toLowerCase();

/**
 * Rows to lock without waiting (`FOR UPDATE SKIP LOCKED`): balances by
 * balanceKey, receipt counters by lowercase store id — or `all` of the rows
 * the sales need.
 */
export type LockWithoutWaiting = 'all' | { balances: ReadonlySet<string>; counters: ReadonlySet<string> };

/**
 * Everything sales are decided against, per store, in ONE statement for any
 * number of stores: the stores, the SKUs not cached yet, the named customers,
 * the tenant's bulk threshold, the sales' client_created_at as PostgreSQL
 * reads them (UTC, microseconds; one it cannot read is left out, one outside
 * the years 0001–9999 is null: validateSale refuses both, 400) and — with `lock` — each store's stock balances of the SKUs its
 * sales name and its receipt counter (absent before the store's first sale).
 * Locks are taken balances first (store, then SKU order), then counters
 * (store order) — every stock change locks balances before a counter — and
 * stay until the transaction ends, so the state is what the sales will find
 * when they write. Stores, SKUs, customers, the threshold and the
 * transaction time are shared by the returned states; stock and the last
 * receipt number are each store's own.
 *
 * `withoutWaiting` (group commit): rows another transaction is known to hold
 * (or, after a lock wait timed out, every row) are locked with SKIP LOCKED:
 * one still held is left unlocked and reported in its store's `held`, so the
 * sales needing it are answered at once instead of waiting, and the others
 * are decided as usual. The rows locked without waiting are taken after the
 * ones waited for of their kind (balances, then counters): a lock taken
 * without waiting cannot be waited for by a transaction this one then waits
 * for, as every writer locks balances before counters (so the lock order
 * stays deadlock-free).
 */
export async function loadSaleStates(
  tx: Tx,
  tenantId: string,
  sales: readonly SaleInput[],
  options: { lock: boolean; withoutWaiting?: LockWithoutWaiting },
): Promise<Map<string, SaleState>> {
  const storeIds = [...new Set(sales.map((sale) => sale.store_id))].sort();
  const skuIds = [...new Set(sales.flatMap((sale) => sale.items.map((item) => item.sku_id)))].sort();
  // The (store, SKU) pairs the sales touch: balances are found through the
  // primary key (stores × SKUs) and only these pairs are locked.
  const pairs = [...new Set(sales.flatMap((sale) => sale.items.map((item) => balanceKey(sale.store_id, item.sku_id))))];
  const skip = options.withoutWaiting ?? { balances: new Set<string>(), counters: new Set<string>() };
  const skipsBalance = (pair: string) => skip === 'all' || skip.balances.has(pair);
  const skipsCounter = (storeId: string) => skip === 'all' || skip.counters.has(storeId.toLowerCase());
  const balancesSkipping = pairs.filter(skipsBalance);
  const countersSkipping = storeIds.filter(skipsCounter);
  // Nothing to lock without waiting (the usual case): the statements that would are not run at all (one-time filters).
  const anySkipping = options.lock && balancesSkipping.length + countersSkipping.length > 0;
  const uncached = skuCache.missing(tenantId, skuIds);
  const customerIds = [...new Set(sales.flatMap((sale) => (sale.customer_id ? [sale.customer_id] : [])))];
  const clientTimes = [...new Set(sales.flatMap((sale) => (sale.client_created_at === undefined ? [] : [sale.client_created_at])))];
  // As the sales' client times are read (utcMicrosWithinYears), so planSale compares the two as text.
  const countedThrough = utcMicros(sql.ref('counted_through'));
  const row = await one(
    tx,
    sql<{
      now: Date;
      stores: string[];
      skus: CatalogSku[];
      customers: string[];
      bulk_threshold: string | null;
      client_times: Record<string, string>;
      stock: Array<[string, string, string, string | null, string | null]>;
      stock_skipping: Array<[string, string, string, string | null, string | null]>;
      counters: Record<string, string>;
      counters_skipping: Record<string, string>;
      to_skip: { balances: Array<[string, string]>; counters: string[] } | null;
    }>`
      WITH balances AS (
        SELECT store_id, sku_id, quantity, counted_through, counted_by FROM stock_balances
        WHERE ${options.lock} AND tenant_id = ${tenantId} AND store_id = ANY(${storeIds}::uuid[]) AND sku_id = ANY(${skuIds}::uuid[])
          AND store_id::text || '/' || sku_id::text = ANY(${pairs.filter((pair) => !skipsBalance(pair))}::text[])
        ORDER BY store_id, sku_id FOR UPDATE
      ), balances_skipping AS (
        SELECT store_id, sku_id, quantity, counted_through, counted_by FROM stock_balances
        WHERE ${options.lock && balancesSkipping.length > 0} AND tenant_id = ${tenantId} AND store_id = ANY(${storeIds}::uuid[]) AND sku_id = ANY(${skuIds}::uuid[])
          AND store_id::text || '/' || sku_id::text = ANY(${balancesSkipping}::text[])
        ORDER BY store_id, sku_id FOR UPDATE SKIP LOCKED
      ), counters AS (
        SELECT store_id, last_number FROM store_receipt_counters
        WHERE ${options.lock} AND tenant_id = ${tenantId} AND store_id = ANY(${storeIds.filter((id) => !skipsCounter(id))}::uuid[])
        ORDER BY store_id FOR UPDATE
      ), counters_skipping AS (
        SELECT store_id, last_number FROM store_receipt_counters
        WHERE ${options.lock && countersSkipping.length > 0} AND tenant_id = ${tenantId} AND store_id = ANY(${countersSkipping}::uuid[])
        ORDER BY store_id FOR UPDATE SKIP LOCKED
      )
      SELECT now() AS now,
             ARRAY(SELECT id FROM stores WHERE tenant_id = ${tenantId} AND id = ANY(${storeIds}::uuid[])) AS stores,
             (SELECT coalesce(jsonb_agg(jsonb_build_object('id', id, 'unit', unit, 'tracks_pieces', tracks_pieces)), '[]'::jsonb)
              FROM skus WHERE tenant_id = ${tenantId} AND id = ANY(${uncached}::uuid[])) AS skus,
             ARRAY(SELECT id FROM parties WHERE tenant_id = ${tenantId} AND id = ANY(${customerIds}::uuid[]) AND kind = 'customer') AS customers,
             (SELECT settings ->> 'bulk_sale_threshold' FROM tenants WHERE id = ${tenantId}) AS bulk_threshold,
             -- one PostgreSQL cannot read is left out (validateSale refuses it at its field): cast here, it failed the statement
             (SELECT coalesce(jsonb_object_agg(t, ${utcMicrosWithinYears(sql`read.at`)}), '{}'::jsonb)
              FROM unnest(${clientTimes}::text[]) AS t CROSS JOIN LATERAL (SELECT timestamptz_or_null(t) AS at) AS read
              WHERE read.at IS NOT NULL) AS client_times,
             -- balances before the counters: the same lock order as every stock change; of each kind, the rows
             -- waited for before the ones locked without waiting (evaluated in this order)
             -- with the balance's latest count (counted_by, counted_through), if any: see planSale
             (SELECT coalesce(jsonb_agg(jsonb_build_array(store_id, sku_id, quantity::text, counted_by, ${countedThrough})), '[]'::jsonb) FROM balances) AS stock,
             (SELECT coalesce(jsonb_agg(jsonb_build_array(store_id, sku_id, quantity::text, counted_by, ${countedThrough})), '[]'::jsonb) FROM balances_skipping) AS stock_skipping,
             (SELECT coalesce(jsonb_object_agg(store_id, last_number::text), '{}'::jsonb) FROM counters) AS counters,
             (SELECT coalesce(jsonb_object_agg(store_id, last_number::text), '{}'::jsonb) FROM counters_skipping) AS counters_skipping,
             -- the rows to lock without waiting that exist (read without a lock): those not locked above are held
             (SELECT jsonb_build_object(
                'balances', (SELECT coalesce(jsonb_agg(jsonb_build_array(store_id, sku_id)), '[]'::jsonb) FROM stock_balances
                             WHERE tenant_id = ${tenantId} AND store_id = ANY(${storeIds}::uuid[]) AND sku_id = ANY(${skuIds}::uuid[])
                               AND store_id::text || '/' || sku_id::text = ANY(${balancesSkipping}::text[])),
                'counters', (SELECT coalesce(jsonb_agg(store_id), '[]'::jsonb) FROM store_receipt_counters
                             WHERE tenant_id = ${tenantId} AND store_id = ANY(${countersSkipping}::uuid[])))
              WHERE ${anySkipping}) AS to_skip`,
  );
  // PostgreSQL answers with lowercase UUIDs; a request may name a store in capitals.
  const existing = new Set(row.stores);
  const shared = {
    now: row.now,
    skus: skuCache.resolve(tenantId, skuIds, row.skus),
    customers: new Set(row.customers),
    bulkThreshold: row.bulk_threshold === null ? null : Number(row.bulk_threshold),
    clientTimes: new Map(Object.entries(row.client_times)),
  };
  const counters = { ...row.counters, ...row.counters_skipping };
  const heldCounters = new Set((row.to_skip?.counters ?? []).filter((storeId) => row.counters_skipping[storeId] === undefined));
  const lockedSkipping = new Set(row.stock_skipping.map(([storeId, skuId]) => balanceKey(storeId, skuId)));
  const heldSkus = new Map(storeIds.map((storeId) => [storeId.toLowerCase(), new Set<string>()]));
  for (const [storeId, skuId] of row.to_skip?.balances ?? []) {
    if (!lockedSkipping.has(balanceKey(storeId, skuId))) heldSkus.get(storeId)!.add(skuId);
  }
  const states = new Map<string, SaleState>(
    storeIds.map((storeId) => [
      storeId,
      {
        ...shared,
        storeExists: existing.has(storeId.toLowerCase()),
        lastReceipt: Number(counters[storeId.toLowerCase()] ?? 0),
        stock: new Map<string, number>(),
        counted: new Map<string, { countId: string; through: string }>(),
        held: { skus: heldSkus.get(storeId.toLowerCase())!, counter: heldCounters.has(storeId.toLowerCase()) },
      },
    ]),
  );
  const byLowercase = new Map(storeIds.map((storeId) => [storeId.toLowerCase(), states.get(storeId)!]));
  for (const [storeId, skuId, quantity, countId, through] of [...row.stock, ...row.stock_skipping]) {
    const state = byLowercase.get(storeId)!;
    state.stock.set(skuId, Number(quantity));
    if (countId !== null && through !== null) state.counted.set(skuId, { countId, through });
  }
  return states;
}

/** loadSaleStates for sales of one store: that store's state. */
export async function loadSaleState(tx: Tx, tenantId: string, storeId: string, sales: readonly SaleInput[], options: { lock: boolean }): Promise<SaleState> {
  assert(sales.every((sale) => sale.store_id === storeId), 'the sales of one store');
  return (await loadSaleStates(tx, tenantId, sales, options)).get(storeId)!;
}

/** The state a plan was made against moved under it (a store's first sales racing): run the transaction again. */
export class PlannedStateMoved extends Error {
  /** SQLSTATE serialization_failure: retried by group commit and runCommand like one. */
  readonly code = '40001';
}

/**
 * A row a sale needs — its store's balance of one of its SKUs, or its store's
 * receipt counter, or an account it posts to — was held by another
 * transaction when group commit locked it without waiting (loadSaleStates'
 * `withoutWaiting`), or found it so (heldRowsOf) for a sale, a void or a
 * partial return (Command.beforeLocking). Nothing of it was written. SQLSTATE lock_not_available, what PostgreSQL itself raises
 * when a lock is not to be waited for (NOWAIT) or waited for too long
 * (lock_timeout): answered the same way (503 service_unavailable, Retry-After)
 * — but, waited for by nobody, an expected refusal while the row is held (a
 * long count or receipt): counted and logged briefly, not reported as an
 * error (LockNotWaitedFor).
 */
export class RowHeldElsewhere extends LockNotWaitedFor {}

/** The refusal of a sale that needs a row its store's state says is held (see SaleState.held), or null. */
export function heldRowRefusal(state: SaleState, sale: SaleInput): RowHeldElsewhere | null {
  const skus = [...new Set(sale.items.map((item) => item.sku_id.toLowerCase()))].filter((skuId) => state.held.skus.has(skuId));
  if (skus.length === 0 && !state.held.counter) return null;
  const rows = [...skus.map((skuId) => `the stock balance of SKU ${skuId}`), ...(state.held.counter ? ['the receipt counter'] : [])];
  return new RowHeldElsewhere(`${rows.join(' and ')} of store ${sale.store_id.toLowerCase()} held by another transaction: the sale was not written`);
}

/**
 * The journal accounts a sale's entry posts to, as postJournals keys them
 * (accountKey), lowercase: where its money goes (its store's drawer or
 * clearing account, or its customer's receivable for a credit sale) and its
 * store's sales revenue (saleJournalEntry) — whether or not its total is 0.
 * Its returns' and its void's entries post to the same accounts.
 */
export function saleAccountKeys(sale: Pick<SaleInput, 'store_id' | 'payment_method'> & { customer_id?: string | null | undefined }): string[] {
  const kind = storeAccountForMethod(sale.payment_method);
  const debit = kind !== null ? accountKey({ storeId: sale.store_id, kind }) : sale.customer_id ? accountKey({ partyId: sale.customer_id }) : null;
  return [...(debit === null ? [] : [debit]), accountKey({ storeId: sale.store_id, kind: 'sales_revenue' })].map((key) => key.toLowerCase());
}

/**
 * The refusal of a sale (valid: validateSale passed) whose journal entry
 * would post to an account found held by another transaction (`held`,
 * lowercase keys: a lock wait of its run timed out on it, see runSales in
 * groupCommit.ts), or null. A sale that moves no money (total 0) posts
 * nothing and is not refused; one whose amounts are out of range neither
 * (planSale refuses it for that).
 */
export function heldAccountRefusal(state: SaleState, sale: SaleInput, held: ReadonlySet<string>): RowHeldElsewhere | null {
  if (held.size === 0) return null;
  const keys = saleAccountKeys(sale).filter((key) => held.has(key));
  if (keys.length === 0) return null;
  const amounts = sale.items.map((item) => ({ unit: state.skus.get(item.sku_id)!.unit, quantity: item.quantity!, unit_price: item.unit_price }));
  if (amountErrors(amounts).length > 0 || amounts.every((line) => lineTotal(line.unit, line.quantity, line.unit_price) === 0)) return null;
  return new RowHeldElsewhere(`${keys.map((key) => `the account ${key}`).join(' and ')} held by another transaction: the sale was not written`);
}

/**
 * Of the journal accounts `keys` (lowercase, as saleAccountKeys keys them),
 * those another transaction holds now, found without waiting: each is
 * locked with SKIP LOCKED (FOR NO KEY UPDATE, what postJournals' update
 * takes; not hindered by the key-share locks of other postings' foreign
 * keys) in a savepoint of its own that is rolled back at once, giving back
 * the locks taken — so it is no lock of the caller's lock order. An account
 * that does not exist (or whose key is not lowercase) is not held.
 */
export async function heldAccountsOf(tx: Tx, tenantId: string, keys: readonly string[]): Promise<Set<string>> {
  return (await heldRowsOf(tx, tenantId, { accounts: keys })).accounts;
}

/** A row of the kinds group commit remembers held, keyed as it keys them (lowercase). */
export type HeldRowKey = { kind: 'balances'; key: string } | { kind: 'counters'; key: string } | { kind: 'accounts'; key: string };

/**
 * The row a lock wait that timed out (lock_not_available) was waiting for:
 * PostgreSQL names it in the error's context — `while locking tuple (0,3) in
 * relation "stock_balances"` (the tuple's place; the relation's name
 * whatever the server's language) — and, read by that place in a new
 * statement, the row is still there as this transaction sees it while its
 * holder has not committed. A stock balance (by balanceKey), a receipt
 * counter (by lowercase store id) or a journal account (by its lowercase
 * key); `other`: a row of another table; null: the error names no row (a
 * wait for a place in line behind another waiter of the same row has no
 * context), or the row is not the tenant's or was released meanwhile.
 */
export async function rowNamedBy(tx: Tx, tenantId: string, error: unknown): Promise<HeldRowKey | 'other' | null> {
  const where = typeof error === 'object' && error !== null ? (error as { where?: unknown }).where : undefined;
  const tuple = typeof where === 'string' ? /\((\d+),(\d+)\)/.exec(where) : null;
  if (tuple === null) return null;
  const relation = /\bstock_balances\b|\bstore_receipt_counters\b|\baccounts\b/.exec(where as string)?.[0];
  if (relation === undefined) return 'other';
  const ctid = `(${tuple[1]},${tuple[2]})`;
  if (relation === 'accounts') {
    const row = await maybeOne(tx, sql<{ key: string }>`SELECT key FROM accounts WHERE ctid = ${ctid}::tid AND tenant_id = ${tenantId}`);
    return row ? { kind: 'accounts', key: row.key.toLowerCase() } : null;
  }
  if (relation === 'stock_balances') {
    const row = await maybeOne(tx, sql<{ store_id: string; sku_id: string }>`SELECT store_id, sku_id FROM stock_balances WHERE ctid = ${ctid}::tid AND tenant_id = ${tenantId}`);
    return row ? { kind: 'balances', key: balanceKey(row.store_id, row.sku_id) } : null;
  }
  const row = await maybeOne(tx, sql<{ store_id: string }>`SELECT store_id FROM store_receipt_counters WHERE ctid = ${ctid}::tid AND tenant_id = ${tenantId}`);
  return row ? { kind: 'counters', key: row.store_id.toLowerCase() } : null;
}

/**
 * The row a lock wait that timed out was waiting for (rowNamedBy), among the
 * rows `sales` lock: their stores' balances of their SKUs, their stores'
 * receipt counters, and the journal accounts they post to (postJournals
 * locks those late in the run), keyed as saleAccountKeys keys them. Null
 * also when the row named is none of these sales' rows.
 */
export async function rowWaitedFor(tx: Tx, tenantId: string, error: unknown, sales: readonly SaleInput[]): Promise<HeldRowKey | 'other' | null> {
  const row = await rowNamedBy(tx, tenantId, error);
  if (row === null || row === 'other') return row;
  const theirs =
    row.kind === 'accounts'
      ? sales.some((sale) => saleAccountKeys(sale).includes(row.key))
      : row.kind === 'balances'
        ? sales.some((sale) => sale.items.some((item) => balanceKey(sale.store_id, item.sku_id) === row.key))
        : sales.some((sale) => sale.store_id.toLowerCase() === row.key);
  return theirs ? row : null;
}

/**
 * Of the rows `rows` (keyed as HeldRowKey keys them), those another
 * transaction holds now, found without waiting, in one statement: each is
 * locked with SKIP LOCKED — FOR NO KEY UPDATE, what the writes of a balance,
 * a counter or an account take (not hindered by the key-share locks of
 * foreign keys) — in a savepoint of its own that is rolled back at once,
 * giving back the locks taken, so it is no lock of the caller's lock order
 * and waits for nothing. A row that does not exist is not held. Each kind
 * not asked for costs nothing (its part reads no row).
 */
export async function heldRowsOf(
  tx: Tx,
  tenantId: string,
  rows: { balances?: readonly string[]; counters?: readonly string[]; accounts?: readonly string[] },
): Promise<{ balances: Set<string>; counters: Set<string>; accounts: Set<string> }> {
  const balances = [...(rows.balances ?? [])];
  const pairs = balances.map((key) => key.split('/'));
  const storeIds = [...new Set(pairs.map(([storeId]) => storeId!))];
  const skuIds = [...new Set(pairs.map(([, skuId]) => skuId!))];
  const counters = [...(rows.counters ?? [])];
  const accounts = [...(rows.accounts ?? [])];
  await sql.raw('SAVEPOINT row_probe').execute(tx);
  const found = await all(
    tx,
    sql<{ kind: 'balances' | 'counters' | 'accounts'; key: string }>`
      WITH balances_free AS (
        SELECT store_id, sku_id FROM stock_balances
        WHERE ${balances.length > 0} AND tenant_id = ${tenantId} AND store_id = ANY(${storeIds}::uuid[]) AND sku_id = ANY(${skuIds}::uuid[])
          AND store_id::text || '/' || sku_id::text = ANY(${balances}::text[])
        FOR NO KEY UPDATE SKIP LOCKED
      ), counters_free AS (
        SELECT store_id FROM store_receipt_counters
        WHERE ${counters.length > 0} AND tenant_id = ${tenantId} AND store_id::text = ANY(${counters}::text[])
        FOR NO KEY UPDATE SKIP LOCKED
      ), accounts_free AS (
        SELECT key FROM accounts WHERE ${accounts.length > 0} AND tenant_id = ${tenantId} AND key = ANY(${accounts}::text[]) FOR NO KEY UPDATE SKIP LOCKED
      )
      SELECT 'balances' AS kind, store_id::text || '/' || sku_id::text AS key FROM stock_balances
      WHERE ${balances.length > 0} AND tenant_id = ${tenantId} AND store_id = ANY(${storeIds}::uuid[]) AND sku_id = ANY(${skuIds}::uuid[])
        AND store_id::text || '/' || sku_id::text = ANY(${balances}::text[])
        AND (store_id, sku_id) NOT IN (SELECT store_id, sku_id FROM balances_free)
      UNION ALL
      SELECT 'counters', store_id::text FROM store_receipt_counters
      WHERE ${counters.length > 0} AND tenant_id = ${tenantId} AND store_id::text = ANY(${counters}::text[]) AND store_id NOT IN (SELECT store_id FROM counters_free)
      UNION ALL
      SELECT 'accounts', key FROM accounts
      WHERE ${accounts.length > 0} AND tenant_id = ${tenantId} AND key = ANY(${accounts}::text[]) AND key NOT IN (SELECT key FROM accounts_free)`,
  );
  await sql.raw('ROLLBACK TO SAVEPOINT row_probe; RELEASE SAVEPOINT row_probe').execute(tx);
  const held = { balances: new Set<string>(), counters: new Set<string>(), accounts: new Set<string>() };
  for (const row of found) held[row.kind].add(row.key);
  return held;
}

/**
 * Writes planned sales (of any number of stores; planned in order against
 * the states loadSaleStates locked in this transaction; their operation rows
 * already written): balances, stock ledger, receipt counters, sales and
 * lines in ONE statement, then their journal entries (postJournals, one
 * statement) and any review items. Returns each sale's stock ledger row ids
 * by kind and SKU (ledgerKey).
 *
 * The balances and counters are set to what the plans left, and the
 * statement checks that they moved from exactly what was locked
 * (`locked`: each store's last receipt number when its state was loaded): a
 * plan made against any other state fails the assertion and rolls
 * everything back.
 */
export async function writeSales(tx: Tx, tenantId: string, plans: readonly PlannedSale[], locked: ReadonlyMap<string, number>): Promise<Array<Map<string, number>>> {
  if (plans.length === 0) return [];
  // A count_correction row names the count that already took the goods out (see planSale).
  const ledger = plans.flatMap((plan) =>
    plan.ledger.map((row) => ({
      sku_id: row.sku_id,
      quantity_change: row.quantity_change,
      quantity_after: row.quantity_after,
      kind: row.kind,
      store_id: plan.sale.store_id,
      op_id: plan.opId,
      reason: row.kind === 'sale' ? `sale ${plan.sale.id}` : `count ${row.count_id}`,
    })),
  );
  const finalStock = new Map<string, { store_id: string; sku_id: string; change: number; after: number }>();
  for (const row of ledger) {
    const key = `${row.store_id}/${row.sku_id}`;
    finalStock.set(key, { store_id: row.store_id, sku_id: row.sku_id, change: (finalStock.get(key)?.change ?? 0) + row.quantity_change, after: row.quantity_after });
  }
  const balances = [...finalStock.values()];
  // Per store: the receipt numbers its plans took, which must follow its locked counter without a gap.
  const counters = [...locked].map(([storeId, lastReceipt]) => {
    const numbers = plans.filter((plan) => plan.sale.store_id === storeId).map((plan) => plan.sale.receipt_number);
    assert(
      numbers.every((number, index) => number === lastReceipt + index + 1),
      'receipt numbers follow the locked counter without a gap',
    );
    return { store_id: storeId, expected: lastReceipt, last: lastReceipt + numbers.length };
  });
  assert(
    counters.reduce((sum, counter) => sum + counter.last - counter.expected, 0) === plans.length,
    'every planned sale belongs to a store whose counter was locked',
  );
  const sales = plans.map(({ sale, clientCreatedAt }) => ({
    id: sale.id,
    store_id: sale.store_id,
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
  const moving = counters.filter((counter) => counter.last > counter.expected);

  const statement = sql<{ ledger: Array<[string, string, number, 'sale' | 'count_correction']> | null; balances_ok: boolean; counters_ok: boolean }>`
      WITH balance_input AS (
        SELECT * FROM jsonb_to_recordset(${JSON.stringify(balances)}::jsonb) AS b(store_id uuid, sku_id uuid, change bigint, after bigint)
      ), moved AS (
        UPDATE stock_balances b SET quantity = b.quantity + i.change, updated_at = now()
        FROM balance_input i
        WHERE b.tenant_id = ${tenantId} AND b.store_id = i.store_id AND b.sku_id = i.sku_id
        RETURNING b.store_id, b.sku_id, b.quantity = i.after AS as_planned
      ), ledger AS (
        INSERT INTO stock_ledger (tenant_id, store_id, sku_id, op_id, quantity_change, quantity_after, kind, reason)
        SELECT ${tenantId}, l.store_id, l.sku_id, l.op_id, l.quantity_change, l.quantity_after, l.kind, l.reason
        FROM ROWS FROM (jsonb_to_recordset(${JSON.stringify(ledger)}::jsonb)
               AS (store_id uuid, sku_id uuid, op_id uuid, quantity_change bigint, quantity_after bigint, kind text, reason text))
             WITH ORDINALITY AS l(store_id, sku_id, op_id, quantity_change, quantity_after, kind, reason, position)
        ORDER BY l.position
        RETURNING id, op_id, sku_id, kind
      ), counter_input AS (
        SELECT * FROM jsonb_to_recordset(${JSON.stringify(moving)}::jsonb) AS c(store_id uuid, expected bigint, last bigint)
      ), counter_moved AS (
        -- Locked by loadSaleStates where it existed.
        UPDATE store_receipt_counters c SET last_number = i.last
        FROM counter_input i
        WHERE c.tenant_id = ${tenantId} AND c.store_id = i.store_id AND c.last_number = i.expected
        RETURNING c.store_id
      ), counter_created AS (
        -- A store's first sales create its counter; if another transaction
        -- created it meanwhile, nothing is inserted and the check below fails.
        INSERT INTO store_receipt_counters (tenant_id, store_id, last_number)
        SELECT ${tenantId}, i.store_id, i.last FROM counter_input i WHERE i.expected = 0
        ON CONFLICT (tenant_id, store_id) DO NOTHING
        RETURNING store_id
      ), sale AS (
        INSERT INTO sales (tenant_id, id, store_id, receipt_number, payment_method, sale_type, source, customer_id, total, client_created_at, op_id)
        SELECT ${tenantId}, s.id, s.store_id, s.receipt_number, s.payment_method, s.sale_type, s.source, s.customer_id, s.total, s.client_created_at, s.op_id
        FROM jsonb_to_recordset(${JSON.stringify(sales)}::jsonb)
          AS s(id uuid, store_id uuid, receipt_number bigint, payment_method text, sale_type text, source text, customer_id uuid, total bigint,
               client_created_at timestamptz, op_id uuid)
        ORDER BY s.store_id, s.receipt_number
      ), lines AS (
        INSERT INTO sale_items (tenant_id, id, sale_id, line_number, sku_id, quantity, unit_price, line_total, shortfall_quantity, piece_ids, op_id)
        SELECT ${tenantId}, l.id, l.sale_id, l.line_number, l.sku_id, l.quantity, l.unit_price, l.line_total, l.shortfall_quantity, l.piece_ids::uuid[], l.op_id
        FROM jsonb_to_recordset(${JSON.stringify(items)}::jsonb)
          AS l(id uuid, sale_id uuid, line_number integer, sku_id uuid, quantity bigint, unit_price bigint, line_total bigint,
               shortfall_quantity bigint, piece_ids text, op_id uuid)
      )
      SELECT (SELECT jsonb_agg(jsonb_build_array(op_id, sku_id, id, kind)) FROM ledger) AS ledger,
             (SELECT count(*) FILTER (WHERE as_planned) = ${balances.length} AND count(*) = ${balances.length} FROM moved) AS balances_ok,
             (SELECT count(*) FROM counter_moved) + (SELECT count(*) FROM counter_created) = ${moving.length} AS counters_ok`;
  let written: { ledger: Array<[string, string, number, 'sale' | 'count_correction']> | null; balances_ok: boolean; counters_ok: boolean };
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
  if (!written.counters_ok) throw new PlannedStateMoved('a store\'s receipt counter was created by another transaction');

  const entries = plans.flatMap((plan) => (plan.entry ? [{ ...plan.entry, opId: plan.opId }] : []));
  await postJournals(tx, tenantId, entries);
  const reviews = plans.filter((plan) => plan.review !== null);
  if (reviews.length > 0) {
    await openReviewItems(tx, tenantId, reviews.map((plan) => ({ id: plan.review!.id, opId: plan.opId, ...shortageReviewItem(plan) })));
  }

  const ledgerIds = new Map(plans.map((plan) => [plan.opId, new Map<string, number>()]));
  for (const [opId, skuId, id, kind] of written.ledger ?? []) ledgerIds.get(opId)!.set(ledgerKey(kind, skuId), Number(id));
  return plans.map((plan) => ledgerIds.get(plan.opId)!);
}
