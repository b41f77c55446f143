import { sql } from 'kysely';
import { all, andIf, maybeOne, type Tx } from '../core/db.js';

export interface ReviewItemRow {
  id: string;
  kind: string;
  severity: 'info' | 'warning' | 'critical';
  subject_type: string | null;
  subject_id: string | null;
  store_id: string | null;
  /** A second store the item concerns (a transfer's source), or null. */
  other_store_id: string | null;
  detail: unknown;
  status: 'open' | 'resolved';
  op_id: string;
  created_at: Date;
  resolved_at: Date | null;
  resolved_by_op: string | null;
  resolution_note: string | null;
  /** Times the problem was seen while the item was open (1 when opened). */
  seen_count: number;
  last_seen_at: Date;
  /** The operation that last saw it again; null until then. */
  last_seen_op: string | null;
}

export const REVIEW_ITEM_COLUMNS = sql`id, kind, severity, subject_type, subject_id, store_id, other_store_id, detail, status, op_id, created_at, resolved_at, resolved_by_op, resolution_note, seen_count, last_seen_at, last_seen_op`;

export interface ReviewItemFilter {
  status?: 'open' | 'resolved' | undefined;
  kind?: string | undefined;
  /** null: every store (and items of no store); otherwise only items of these stores (either of an item's two). */
  storeIds: readonly string[] | null;
  /** Ids are UUIDv7 (time-ordered): newest first, keyset on id. */
  beforeId?: string | undefined;
  limit: number;
}

export async function listReviewItems(tx: Tx, tenantId: string, filter: ReviewItemFilter): Promise<ReviewItemRow[]> {
  return all(
    tx,
    sql<ReviewItemRow>`
      SELECT ${REVIEW_ITEM_COLUMNS} FROM review_items
      WHERE tenant_id = ${tenantId}
        ${andIf(filter.status, (status) => sql`status = ${status}`)}
        ${andIf(filter.kind, (kind) => sql`kind = ${kind}`)}
        ${andIf(filter.storeIds, (ids) => sql`(store_id = ANY(${ids}::uuid[]) OR other_store_id = ANY(${ids}::uuid[]))`)}
        ${andIf(filter.beforeId, (id) => sql`id < ${id}::uuid`)}
      ORDER BY id DESC
      LIMIT ${filter.limit}`,
  );
}

export async function findReviewItem(tx: Tx, tenantId: string, id: string): Promise<ReviewItemRow | undefined> {
  return maybeOne(tx, sql<ReviewItemRow>`SELECT ${REVIEW_ITEM_COLUMNS} FROM review_items WHERE tenant_id = ${tenantId} AND id = ${id}`);
}

/** The item's store in the caller's scope (its own, else the other it concerns), or undefined: not visible to a store-limited token. */
export function reviewItemStoreInScope(storeIds: readonly string[], item: Pick<ReviewItemRow, 'store_id' | 'other_store_id'>): string | undefined {
  return [item.store_id, item.other_store_id].find((storeId): storeId is string => storeId !== null && storeIds.includes(storeId));
}
