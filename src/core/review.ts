import { sql } from 'kysely';
import { all, type Tx } from './db.js';
import { newId } from './ids.js';

export interface ReviewItemInput {
  kind: string;
  severity?: 'info' | 'warning' | 'critical';
  subjectType?: string;
  subjectId?: string;
  storeId?: string;
  /** A second store the item concerns (a transfer's source): its staff see and may resolve it too. */
  otherStoreId?: string;
  detail: Record<string, unknown>;
  /** An open item with the same key is the same problem: no second item is opened. */
  dedupeKey?: string;
}

/**
 * Opens an item in the review queue, inside the caller's transaction (so it
 * exists exactly when the thing it is about exists). Returns the item's id,
 * or the id of the open item with the same dedupe key.
 */
export async function openReviewItem(tx: Tx, tenantId: string, opId: string, input: ReviewItemInput): Promise<string> {
  const [id] = await openReviewItems(tx, tenantId, [{ ...input, opId }]);
  return id!;
}

/**
 * Opens several review items in one statement (a group-commit batch of sales
 * opens its shortages together). Returns each item's id: the new one, or that
 * of the open item with the same dedupe key.
 */
export async function openReviewItems(tx: Tx, tenantId: string, items: ReadonlyArray<ReviewItemInput & { opId: string; id?: string }>): Promise<string[]> {
  if (items.length === 0) return [];
  const rows = items.map((input) => ({
    id: input.id ?? newId(),
    kind: input.kind,
    severity: input.severity ?? 'warning',
    subject_type: input.subjectType ?? null,
    subject_id: input.subjectId ?? null,
    store_id: input.storeId ?? null,
    other_store_id: input.otherStoreId ?? null,
    detail: input.detail,
    dedupe_key: input.dedupeKey ?? null,
    op_id: input.opId,
  }));
  const inserted = await all(
    tx,
    sql<{ id: string }>`
      INSERT INTO review_items (tenant_id, id, kind, severity, subject_type, subject_id, store_id, other_store_id, detail, dedupe_key, op_id)
      SELECT ${tenantId}, i.id, i.kind, i.severity, i.subject_type, i.subject_id, i.store_id, i.other_store_id, i.detail, i.dedupe_key, i.op_id
      FROM ROWS FROM (jsonb_to_recordset(${JSON.stringify(rows)}::jsonb)
             AS (id uuid, kind text, severity text, subject_type text, subject_id text, store_id uuid, other_store_id uuid, detail jsonb, dedupe_key text, op_id uuid))
           WITH ORDINALITY AS i(id, kind, severity, subject_type, subject_id, store_id, other_store_id, detail, dedupe_key, op_id, position)
      ORDER BY i.position
      ON CONFLICT (tenant_id, dedupe_key) WHERE status = 'open' AND dedupe_key IS NOT NULL DO NOTHING
      RETURNING id`,
  );
  const insertedIds = new Set(inserted.map((row) => row.id));
  const skipped = rows.filter((row) => !insertedIds.has(row.id)).map((row) => row.dedupe_key!);
  // Skipped: an open item with the same key exists. A later statement (a new
  // snapshot) sees it even if a concurrent transaction just committed it.
  const existing =
    skipped.length === 0
      ? []
      : await all(
          tx,
          sql<{ id: string; dedupe_key: string }>`
            SELECT id, dedupe_key FROM review_items WHERE tenant_id = ${tenantId} AND status = 'open' AND dedupe_key = ANY(${skipped}::text[])`,
        );
  const byKey = new Map(existing.map((row) => [row.dedupe_key, row.id]));
  return rows.map((row) => (insertedIds.has(row.id) ? row.id : (byKey.get(row.dedupe_key!) ?? row.id)));
}
