import { sql } from 'kysely';
import type { Command } from '../core/command.js';
import { maybeOne } from '../core/db.js';
import { AppError, notFound } from '../core/errors.js';
import { findReviewItem, REVIEW_ITEM_COLUMNS, reviewItemStoreInScope, type ReviewItemRow } from './listReviewItems.js';

/**
 * Marks an open review item resolved, with the note saying what was done.
 * A conditional update (`WHERE status = 'open'`): two people resolving at once
 * cannot both win; the loser gets 409 invalid_transition. Nothing else is
 * changed: a person fixes the data through the normal commands.
 */
export async function resolveReviewItem(cmd: Command, id: string, note: string): Promise<ReviewItemRow> {
  const principal = cmd.principal;
  const before = await findReviewItem(cmd.tx, cmd.tenantId, id);
  const limited = principal.kind === 'token' && principal.storeIds !== null;
  // A store-limited token resolves an item of one of its stores (either store of a two-store item), acting in that store.
  const actingStore = before === undefined ? undefined : limited ? reviewItemStoreInScope(principal.storeIds!, before) : (before.store_id ?? undefined);
  if (before === undefined || (limited && actingStore === undefined)) throw notFound('review item');
  const after = await maybeOne(
    cmd.tx,
    sql<ReviewItemRow>`
      UPDATE review_items SET status = 'resolved', resolved_at = now(), resolved_by_op = ${cmd.opId}, resolution_note = ${note}
      WHERE tenant_id = ${cmd.tenantId} AND id = ${id} AND status = 'open'
      RETURNING ${REVIEW_ITEM_COLUMNS}`,
  );
  if (!after) throw new AppError('invalid_transition', 'the review item is already resolved', { extra: { current_status: 'resolved' } });
  if (actingStore) cmd.storeId = actingStore;
  cmd.touch('review_items', id, 'updated');
  cmd.audit({ subjectType: 'review_item', subjectId: id, before: { status: before.status }, after: { status: after.status, resolution_note: note } });
  return after;
}
