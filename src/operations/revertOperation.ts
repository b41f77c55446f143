import { sql } from 'kysely';
import { AlreadyDone, type Command } from '../core/command.js';
import { all, maybeOne, type Tx } from '../core/db.js';
import { AppError, assert, notFound } from '../core/errors.js';
import { assertSecondPersonToUndo } from '../tenancy/secondApprover.js';
import { operationInScope } from './getOperation.js';

/** The operation being reverted, locked by revertOperation. */
export interface RevertTarget {
  id: string;
  type: string;
  store_id: string | null;
}

/**
 * Reverts one operation type: finds exactly the rows the target operation
 * created and consumed BY ITS ID, restores them (reversing entries, soft
 * deletes; never a hard delete), and refuses with 409 operation_already_used
 * when a later operation used its outputs. Runs inside the revert command.
 */
export type RevertHandler = (cmd: Command, target: RevertTarget) => Promise<void>;

export interface RevertResult {
  op_id: string;
  reverted_op_id: string;
  reverted_type: string;
  /** Every row the revert changed, with its state before and after. */
  changes: Array<{ type: string; subject_type: string; subject_id: string; before: unknown; after: unknown }>;
}

/**
 * FOR NO KEY UPDATE, the lock the `reverted_by` update itself takes: two
 * reverts of one operation still queue up, but a command that inserts rows
 * referencing the operation (a cut or combine under a reservation makes pieces
 * with reserved_by_op = it; the foreign key check takes KEY SHARE) is not
 * blocked by it. With FOR UPDATE, a revert of a reservation waiting for a piece
 * such a cut held, while the cut waited for the reservation's row, deadlocked.
 */
async function lockOperationForUpdate(tx: Tx, tenantId: string, opId: string): Promise<(RevertTarget & { reverted_by: string | null }) | undefined> {
  return maybeOne(
    tx,
    sql<RevertTarget & { reverted_by: string | null }>`
      SELECT id, type, store_id, reverted_by FROM operations WHERE tenant_id = ${tenantId} AND id = ${opId} FOR NO KEY UPDATE`,
  );
}

/** What a revert operation changed, read back from its audit events (for a replay). */
async function loadRevertResult(tx: Tx, tenantId: string, target: RevertTarget, revertOpId: string): Promise<RevertResult> {
  const changes = await all(
    tx,
    sql<RevertResult['changes'][number]>`
      SELECT type, subject_type, subject_id, before, after FROM events
      WHERE tenant_id = ${tenantId} AND op_id = ${revertOpId} AND subject_type IS NOT NULL ORDER BY id`,
  );
  return { op_id: revertOpId, reverted_op_id: target.id, reverted_type: target.type, changes };
}

/**
 * The revert command: locks the target operation row (two reverts of one
 * operation queue up here), dispatches to the handler of its type, and marks
 * it `reverted_by` this operation. Reverting a reverted operation replays the
 * first revert's result (AlreadyDone: nothing new is written). With the
 * tenant's require_second_approver_for_reversals on, the token that made the
 * operation may not revert it (403 second_approver_required, before the
 * replay: assertSecondPersonToUndo).
 */
export async function revertOperation(cmd: Command, opId: string, handlers: Readonly<Record<string, RevertHandler>>): Promise<RevertResult> {
  const principal = cmd.principal;
  assert(principal.kind === 'token', 'operations are reverted by tenant tokens');
  const target = await lockOperationForUpdate(cmd.tx, cmd.tenantId, opId);
  // Visible as GET /v1/operations/{id} sees it (404, type not named).
  if (!target || !(await operationInScope(cmd.tx, principal, target))) throw notFound('operation');
  cmd.storeId = target.store_id ?? undefined;
  // Four-eyes (tenant setting): not the token that made it — reverted already or not.
  await assertSecondPersonToUndo(cmd, target.id, `operation ${target.id}`, 'revert');

  if (target.reverted_by !== null) throw new AlreadyDone(await loadRevertResult(cmd.tx, cmd.tenantId, target, target.reverted_by), target.reverted_by);
  const handler = handlers[target.type];
  if (!handler) {
    // A receipt's goods may have been sold or moved since: a purchase is corrected by a return to the supplier instead.
    const instead = target.type === 'stock.receive' ? ': goods of a purchase go back to the supplier with POST /v1/purchases/{id}/returns' : '';
    throw new AppError('unprocessable', `operations of type ${target.type} cannot be reverted${instead}`, { extra: { operation_type: target.type } });
  }

  await handler(cmd, target);
  const marked = await sql`UPDATE operations SET reverted_by = ${cmd.opId} WHERE tenant_id = ${cmd.tenantId} AND id = ${target.id} AND reverted_by IS NULL`.execute(cmd.tx);
  assert(marked.numAffectedRows === 1n, 'operation locked and not reverted');
  cmd.touch('operations', target.id, 'updated');
  cmd.audit({ type: 'operation.reverted', subjectType: 'operation', subjectId: target.id, before: { reverted_by: null }, after: { reverted_by: cmd.opId } });

  // JSON round trip: the same shape a replay reads back from the events.
  const changes = JSON.parse(
    JSON.stringify(
      cmd.events.map((event) => ({ type: event.type ?? cmd.type, subject_type: event.subjectType, subject_id: event.subjectId, before: event.before ?? null, after: event.after ?? null })),
    ),
  ) as RevertResult['changes'];
  return { op_id: cmd.opId, reverted_op_id: target.id, reverted_type: target.type, changes };
}
