import { sql } from 'kysely';
import type { Command } from '../core/command.js';
import { all, maybeOne } from '../core/db.js';
import { AppError, assert } from '../core/errors.js';
import type { RevertHandler, RevertTarget } from '../operations/revertOperation.js';
import { lockPiecesForUpdate, moveStockForPieces, releaseExpiredReservations, updatePieces } from './pieceRows.js';
import { releaseReservedBy } from './reservePieces.js';

/**
 * Reverts a receive, cut or combine: the pieces it created (created_by_op) are
 * soft-deleted (deleted_by_op = the revert) and the pieces it consumed
 * (consumed_by_op) are back in stock — found by operation id, never by time.
 * If a later operation used an output (consumed, reserved or sold it), the
 * revert is refused naming that operation: revert that one first.
 */
async function revertPieceOperation(cmd: Command, target: RevertTarget): Promise<void> {
  const rows = await all(
    cmd.tx,
    sql<{ id: string }>`
      SELECT id FROM pieces WHERE tenant_id = ${cmd.tenantId} AND (created_by_op = ${target.id} OR consumed_by_op = ${target.id})`,
  );
  const locked = await releaseExpiredReservations(cmd, await lockPiecesForUpdate(cmd.tx, cmd.tenantId, rows.map((row) => row.id)));
  const outputs = locked.filter((piece) => piece.created_by_op === target.id);
  const inputs = locked.filter((piece) => piece.consumed_by_op === target.id);
  assert(outputs.length > 0, `operation ${target.id} created pieces`);

  for (const piece of outputs) {
    assert(piece.deleted_by_op === null, 'outputs of an operation that is not reverted are not deleted');
    const usedBy = piece.consumed_by_op ?? piece.reserved_by_op ?? piece.sold_by_op;
    if (usedBy !== null) {
      const user = await maybeOne(cmd.tx, sql<{ type: string }>`SELECT type FROM operations WHERE tenant_id = ${cmd.tenantId} AND id = ${usedBy}`);
      // (reserved: also the reservation the operation itself was made under, which keeps holding its outputs)
      const how = piece.consumed_by_op !== null ? 'was consumed' : piece.reserved_by_op !== null ? 'is held' : 'was sold';
      throw new AppError(
        'operation_already_used',
        `piece ${piece.id} made by this operation ${how} by operation ${usedBy} (${user?.type ?? 'unknown'}); revert that operation first`,
        { extra: { used_by_op_id: usedBy, used_by_op_type: user?.type ?? null, piece_id: piece.id } },
      );
    }
  }
  await updatePieces(cmd, inputs, 'piece.reverted', sql`status = 'in_stock', consumed_by_op = NULL`);
  await updatePieces(cmd, outputs, 'piece.reverted', sql`deleted_by_op = ${cmd.opId}`);
  await moveStockForPieces(cmd, inputs, outputs, 'piece_revert');
}

/** Reverting a reservation releases what it still holds. */
async function revertReservation(cmd: Command, target: RevertTarget): Promise<void> {
  await releaseReservedBy(cmd, target.id);
}

/** The pieces module's revert handlers, by operation type (see src/operations/revertRegistry.ts). */
export const pieceRevertHandlers: Record<string, RevertHandler> = {
  'piece.receive': revertPieceOperation,
  'piece.cut': revertPieceOperation,
  'piece.combine': revertPieceOperation,
  'piece.reserve': revertReservation,
};
