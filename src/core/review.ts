import { sql } from 'kysely';
import { maybeOne, type Tx } from './db.js';
import { newId } from './ids.js';

export interface ReviewItemInput {
  kind: string;
  severity?: 'info' | 'warning' | 'critical';
  subjectType?: string;
  subjectId?: string;
  storeId?: string;
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
  const id = newId();
  const inserted = await maybeOne(
    tx,
    sql<{ id: string }>`
      INSERT INTO review_items (tenant_id, id, kind, severity, subject_type, subject_id, store_id, detail, dedupe_key, op_id)
      VALUES (${tenantId}, ${id}, ${input.kind}, ${input.severity ?? 'warning'}, ${input.subjectType ?? null}, ${input.subjectId ?? null},
              ${input.storeId ?? null}, ${JSON.stringify(input.detail)}::jsonb, ${input.dedupeKey ?? null}, ${opId})
      ON CONFLICT (tenant_id, dedupe_key) WHERE status = 'open' AND dedupe_key IS NOT NULL DO NOTHING
      RETURNING id`,
  );
  if (inserted) return inserted.id;
  const existing = await maybeOne(
    tx,
    sql<{ id: string }>`SELECT id FROM review_items WHERE tenant_id = ${tenantId} AND dedupe_key = ${input.dedupeKey ?? null} AND status = 'open'`,
  );
  return existing?.id ?? id;
}
