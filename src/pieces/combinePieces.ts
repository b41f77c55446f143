import { sql } from 'kysely';
import type { Command } from '../core/command.js';
import { AppError, assert } from '../core/errors.js';
import { heldByOf, insertPieces, lockPiecesForUpdate, moveStockForPieces, releaseExpiredReservations, updatePieces } from './pieceRows.js';
import type { PieceRow } from './pieces.table.js';
import { planCombine } from './plan.js';
import { assertPiecesUsable } from './usable.js';

export interface CombineInput {
  piece_ids: string[];
  bundle_size: number;
  bundle_count: number;
  reservation_op_id?: string | undefined;
}

/**
 * Combines spare pieces (one store, one SKU) into `bundle_count` bundles of
 * `bundle_size`; what is left becomes one remainder spare piece. The inputs
 * are consumed. Two combines over overlapping pieces: the pieces are locked in
 * id order, so the second waits and then finds them consumed (409).
 * Combined under a reservation (`reservation_op_id`) that held any input, the
 * bundles and the remainder are held by that reservation (heldByOf).
 */
export async function combinePieces(cmd: Command, input: CombineInput): Promise<{ op_id: string; consumed: PieceRow[]; bundles: PieceRow[]; remainder: PieceRow | null }> {
  const principal = cmd.principal;
  assert(principal.kind === 'token', 'pieces are combined by tenant tokens');
  const ids = [...new Set(input.piece_ids)];
  if (ids.length !== input.piece_ids.length) throw new AppError('validation_failed', 'a piece is listed twice', { errors: [{ path: '/body/piece_ids', message: 'has duplicates' }] });
  const locked = await releaseExpiredReservations(cmd, await lockPiecesForUpdate(cmd.tx, cmd.tenantId, ids));
  assertPiecesUsable(principal, ids, locked, input.reservation_op_id);
  const first = locked[0];
  assert(first, 'locked pieces');
  cmd.storeId = first.store_id;

  const notSpare = locked.filter((piece) => piece.kind !== 'spare');
  if (notSpare.length > 0) throw new AppError('unprocessable', `only spare pieces are combined; ${notSpare.map((p) => `${p.id} is a ${p.kind}`).join(', ')}`);
  if (locked.some((piece) => piece.store_id !== first.store_id || piece.sku_id !== first.sku_id)) {
    throw new AppError('unprocessable', 'pieces to combine must be of one SKU in one store');
  }
  const plan = planCombine(locked.map((piece) => piece.quantity), input.bundle_size, input.bundle_count);
  if (!plan.ok) throw new AppError('unprocessable', plan.reason, { errors: [{ path: '/body/bundle_count', message: plan.reason }] });

  const heldBy = await heldByOf(cmd, locked, input.reservation_op_id);
  const consumed = await updatePieces(cmd, locked, 'piece.combined', sql`status = 'consumed', consumed_by_op = ${cmd.opId}, reserved_by_op = NULL, reserved_until = NULL`);
  const base = { storeId: first.store_id, skuId: first.sku_id, originalPieceId: first.original_piece_id, sourcePieceIds: locked.map((piece) => piece.id) };
  const created = await insertPieces(
    cmd,
    [...plan.bundles.map((quantity) => ({ ...base, kind: 'bundle' as const, quantity })), ...(plan.remainder > 0 ? [{ ...base, kind: 'spare' as const, quantity: plan.remainder }] : [])],
    { via: 'combine', from: locked.map((piece) => piece.id) },
    heldBy,
  );
  await moveStockForPieces(cmd, created, locked, 'piece_combine');
  return { op_id: cmd.opId, consumed, bundles: created.slice(0, plan.bundles.length), remainder: plan.remainder > 0 ? (created[plan.bundles.length] ?? null) : null };
}
