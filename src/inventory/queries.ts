import { sql, type RawBuilder } from 'kysely';
import { all, andIf, maybeOne, type Tx } from '../core/db.js';
import type { SkuRow, StoreRow } from './inventory.table.js';

/** A store's answer (StoreRow), as every statement reading or changing a store returns it. */
export const STORE_COLUMNS = sql.raw('id, code, name, time_zone, version, op_id, created_at');
/** A SKU's answer (SkuRow), as every statement reading or changing a SKU returns it. */
export const SKU_COLUMNS = sql.raw('id, code, name, unit, price, tracks_pieces, version, op_id, created_at');

export async function findStore(tx: Tx, tenantId: string, id: string): Promise<StoreRow | undefined> {
  return maybeOne(tx, sql<StoreRow>`SELECT ${STORE_COLUMNS} FROM stores WHERE tenant_id = ${tenantId} AND id = ${id}`);
}

/** Stores in code order; `storeIds` limits to a token's scope (null = all). */
export async function listStores(tx: Tx, tenantId: string, storeIds: readonly string[] | null, after: string | undefined, limit: number): Promise<StoreRow[]> {
  return all(
    tx,
    sql<StoreRow>`
      SELECT ${STORE_COLUMNS} FROM stores
      WHERE tenant_id = ${tenantId}
        ${andIf(storeIds, (ids) => sql`id = ANY(${ids}::uuid[])`)}
        ${andIf(after, (code) => sql`code > ${code}`)}
      ORDER BY code LIMIT ${limit}`,
  );
}

export async function findSku(tx: Tx, tenantId: string, id: string): Promise<SkuRow | undefined> {
  return maybeOne(
    tx,
    sql<SkuRow>`SELECT ${SKU_COLUMNS} FROM skus WHERE tenant_id = ${tenantId} AND id = ${id}`,
  );
}

/** What the SKU list is narrowed to: the SKU of exactly this code; the SKUs whose code or name contains `q` in any letter case. */
export interface SkuListFilter {
  code?: string | undefined;
  q?: string | undefined;
}

/** `text` as an ILIKE pattern that matches it anywhere, its `%`, `_` and `\` plain characters (ILIKE's default escape is `\`). */
export const containsPattern = (text: string): string => `%${text.replace(/[\\%_]/g, (character) => `\\${character}`)}%`;

/**
 * The tenant's SKUs by code, after a code. `code`: the unique (tenant_id,
 * code) entry. `q`: the function skus_matching (migration 1360) reads the
 * tenant's SKUs whose code or name holds the text, through the trigram
 * indexes on (tenant_id, code) and (tenant_id, name), then the page of them
 * by code — a page reads the tenant's SKUs that hold the text after the
 * cursor, not the others (nor other tenants').
 */
export async function listSkus(tx: Tx, tenantId: string, after: string | undefined, limit: number, filter: SkuListFilter = {}): Promise<SkuRow[]> {
  const { q } = filter;
  // With `q`, the rows are skus_matching's (migration 1360), the cursor applied inside it: as the app role, under
  // row-level security, ILIKE is no index condition and the search read every SKU of the table; and as one query
  // with ORDER BY code LIMIT, the planner walked the tenant's codes from the cursor until the page was full.
  const rows = q === undefined ? sql`skus` : sql`skus_matching(${containsPattern(q)}, ${after ?? null}) AS skus`;
  const start = q === undefined ? andIf(after, (code) => sql`code > ${code}`) : sql``;
  return all(
    tx,
    sql<SkuRow>`
      SELECT ${SKU_COLUMNS} FROM ${rows}
      WHERE tenant_id = ${tenantId} ${start}
        ${andIf(filter.code, (code) => sql`code = ${code}`)}
      ORDER BY code LIMIT ${limit}`,
  );
}

/** A page of a store's stock in SKU order: after a SKU id, at most `limit` rows (none given: all). */
export interface StockPage {
  after?: string | undefined;
  limit?: number | undefined;
  /** This SKU's balance only (GET …/stock/{sku_id}). */
  skuId?: string | undefined;
}

/**
 * The page's start in the balances' primary key (tenant_id, store_id, sku_id):
 * `AND <column> > after` only when there is a cursor. Written as
 * `(after IS NULL OR sku_id > after)` it was a range only in a plan made with
 * the values (as the service's unnamed statements are); a generic plan (a
 * prepared statement reused, plan_cache_mode = force_generic_plan) kept it as
 * a filter and read the store's balances from its first SKU on every page.
 */
export function stockPageStart(column: RawBuilder<unknown>, page: StockPage): RawBuilder<unknown> {
  return sql`${andIf(page.after, (after) => sql`${column} > ${after}::uuid`)} ${andIf(page.skuId, (skuId) => sql`${column} = ${skuId}::uuid`)}`;
}

export async function listStock(tx: Tx, tenantId: string, storeId: string, page: StockPage = {}): Promise<Array<{ sku_id: string; quantity: number; updated_at: Date }>> {
  return all(
    tx,
    sql<{ sku_id: string; quantity: number; updated_at: Date }>`
      SELECT sku_id, quantity, updated_at FROM stock_balances
      WHERE tenant_id = ${tenantId} AND store_id = ${storeId} ${stockPageStart(sql.ref('sku_id'), page)}
      ORDER BY sku_id LIMIT ${page.limit ?? null}`,
  );
}
