import { sql } from 'kysely';
import { AlreadyDone, type Command } from '../core/command.js';
import { maybeOne } from '../core/db.js';
import { AppError, notFound } from '../core/errors.js';
import { madeByCaller } from '../tenancy/secondApprover.js';
import { findReviewItem, REVIEW_ITEM_COLUMNS, reviewItemStoreInScope, type ReviewItemRow } from './listReviewItems.js';

/**
 * Marks an open review item resolved, with the note saying what was done.
 * A conditional update (`WHERE status = 'open'`): two people resolving at once
 * cannot both win; the loser gets 409 invalid_transition — unless it wrote the
 * same note: the same resolution, answered with it as already done
 * (AlreadyDone, nothing written), as is the same resolution repeated after
 * its key expired. Nothing else is changed: a person fixes the data through
 * the normal commands.
 */
export async function resolveReviewItem(cmd: Command, id: string, note: string): Promise<ReviewItemRow> {
  const principal = cmd.principal;
  const before = await findReviewItem(cmd.tx, cmd.tenantId, id);
  const limited = principal.kind === 'token' && principal.storeIds !== null;
  // A store-limited token resolves an item of one of its stores (either store of a two-store item), acting in that store.
  const actingStore = before === undefined ? undefined : limited ? reviewItemStoreInScope(principal.storeIds!, before) : (before.store_id ?? undefined);
  if (before === undefined || (limited && actingStore === undefined)) throw notFound('review item');
  // Separation of duties: whoever's operation opened an item (the receipt that
  // declared a transfer short, the sync that sold stock that was not there)
  // does not close it; a second person looks. The owner may: a shop run by one
  // person has nobody else. Items the worker, a webhook or the operator opened
  // have no token behind them. Only an open item: a resolved one is answered
  // below as to anyone (the same resolution already done, another note 409).
  if (before.status === 'open' && principal.kind === 'token' && principal.role !== 'owner' && (await madeByCaller(cmd, before.op_id))) {
    throw new AppError('forbidden', 'this review item was opened by an operation of this token: another person must resolve it (an owner may resolve its own)', {
      extra: { reason: 'second_resolver_required' },
    });
  }
  const after = await maybeOne(
    cmd.tx,
    sql<ReviewItemRow>`
      UPDATE review_items SET status = 'resolved', resolved_at = now(), resolved_by_op = ${cmd.opId}, resolution_note = ${note}
      WHERE tenant_id = ${cmd.tenantId} AND id = ${id} AND status = 'open'
      RETURNING ${REVIEW_ITEM_COLUMNS}`,
  );
  if (!after) {
    // Resolved already (by another command that held the row, or long ago). The
    // same note is the same resolution — a device repeating it after its key
    // expired, or two people writing the same words at once — answered as done;
    // another note was not recorded and must be told so.
    const now = await findReviewItem(cmd.tx, cmd.tenantId, id);
    if (now?.status === 'resolved' && now.resolved_by_op !== null && now.resolution_note === note) throw new AlreadyDone(now, now.resolved_by_op);
    throw new AppError('invalid_transition', 'the review item is already resolved (with another note); nothing of this request was recorded', { extra: { current_status: 'resolved' } });
  }
  if (actingStore) cmd.storeId = actingStore;
  cmd.touch('review_items', id, 'updated');
  cmd.audit({ subjectType: 'review_item', subjectId: id, before: { status: before.status }, after: { status: after.status, resolution_note: note } });
  return after;
}
