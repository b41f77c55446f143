import { sql } from 'kysely';
import { all, type Tx } from './db.js';
import { assert } from './errors.js';
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
  const idOf = new Map<string, string>();
  // An item skipped as a duplicate whose open item is no longer there (it was
  // resolved between the two statements) is inserted again: otherwise the
  // problem was left with no open item and the caller with the id of an item
  // that never existed.
  let pending = rows;
  for (let round = 1; pending.length > 0; round++) {
    assert(round <= 5, 'review items neither opened nor found open after 5 rounds');
    const inserted = await all(
      tx,
      sql<{ id: string }>`
        INSERT INTO review_items (tenant_id, id, kind, severity, subject_type, subject_id, store_id, other_store_id, detail, dedupe_key, op_id)
        SELECT ${tenantId}, i.id, i.kind, i.severity, i.subject_type, i.subject_id, i.store_id, i.other_store_id, i.detail, i.dedupe_key, i.op_id
        FROM ROWS FROM (jsonb_to_recordset(${JSON.stringify(pending)}::jsonb)
               AS (id uuid, kind text, severity text, subject_type text, subject_id text, store_id uuid, other_store_id uuid, detail jsonb, dedupe_key text, op_id uuid))
             WITH ORDINALITY AS i(id, kind, severity, subject_type, subject_id, store_id, other_store_id, detail, dedupe_key, op_id, position)
        ORDER BY i.position
        ON CONFLICT (tenant_id, dedupe_key) WHERE status = 'open' AND dedupe_key IS NOT NULL DO NOTHING
        RETURNING id`,
    );
    for (const { id } of inserted) idOf.set(id, id);
    const skipped = pending.filter((row) => !idOf.has(row.id));
    if (skipped.length === 0) break;
    // Skipped: an open item with the same key exists. A later statement (a new
    // snapshot) sees it even if a concurrent transaction just committed it.
    const existing = await all(
      tx,
      sql<{ id: string; dedupe_key: string }>`
        SELECT id, dedupe_key FROM review_items WHERE tenant_id = ${tenantId} AND status = 'open' AND dedupe_key = ANY(${skipped.map((row) => row.dedupe_key!)}::text[])`,
    );
    const byKey = new Map(existing.map((row) => [row.dedupe_key, row.id]));
    for (const row of skipped) {
      const found = byKey.get(row.dedupe_key!);
      if (found !== undefined) idOf.set(row.id, found);
    }
    pending = skipped.filter((row) => !idOf.has(row.id));
  }
  return rows.map((row) => idOf.get(row.id)!);
}

/**
 * Opens an item, or — when an open item has the same dedupe key — counts the
 * problem as seen again on that item (`seen_count` + 1, `last_seen_at`,
 * `last_seen_op`), leaving what it is about (kind, subject, detail: the first
 * occurrence) as it was. One statement on the open-dedupe unique index: two
 * transactions doing this at once leave one open item seen twice (the second
 * waits for the first, then counts on its item); if the open item is resolved
 * meanwhile, the insert is retried by PostgreSQL and opens a new one.
 */
export async function openOrCountReviewItem(
  tx: Tx,
  tenantId: string,
  opId: string,
  input: ReviewItemInput & { dedupeKey: string },
): Promise<{ id: string; created: boolean }> {
  const [row] = await all(
    tx,
    sql<{ id: string; created: boolean }>`
      INSERT INTO review_items (tenant_id, id, kind, severity, subject_type, subject_id, store_id, other_store_id, detail, dedupe_key, op_id)
      VALUES (${tenantId}, ${newId()}, ${input.kind}, ${input.severity ?? 'warning'}, ${input.subjectType ?? null}, ${input.subjectId ?? null},
              ${input.storeId ?? null}, ${input.otherStoreId ?? null}, ${JSON.stringify(input.detail)}::jsonb, ${input.dedupeKey}, ${opId})
      ON CONFLICT (tenant_id, dedupe_key) WHERE status = 'open' AND dedupe_key IS NOT NULL
      DO UPDATE SET seen_count = review_items.seen_count + 1, last_seen_at = now(), last_seen_op = EXCLUDED.op_id
      RETURNING id, (xmax = 0) AS created`,
  );
  assert(row !== undefined, 'review item neither opened nor counted');
  return row;
}
