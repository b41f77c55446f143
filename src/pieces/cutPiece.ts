import { describeExpected, matchesExpected, type ExpectedVersions } from '../core/expectedVersions.js';
import { sql } from 'kysely';
import type { Command } from '../core/command.js';
import { AppError, assert } from '../core/errors.js';
import { heldByOf, insertPieces, lockPiecesForUpdate, moveStockForPieces, releaseExpiredReservations, updatePieces } from './pieceRows.js';
import type { PieceRow } from './pieces.table.js';
import { cutOutputKind, planCut } from './plan.js';
import { assertPiecesUsable } from './usable.js';

export interface CutInput {
  piece_id: string;
  /** Millimetres for a roll or cut piece; a count for a spare piece. */
  parts: number[];
  reservation_op_id?: string | undefined;
}

/**
 * Cuts a roll (or cut piece) into the given lengths, or splits a spare piece
 * into the given counts. The input is consumed; each part and the remainder
 * become new pieces. Stock does not change (the outputs sum to the input).
 * A piece cut under its reservation (`reservation_op_id`) leaves new pieces
 * that reservation still holds (heldByOf).
 */
export async function cutPiece(cmd: Command, input: CutInput, expectedVersion?: ExpectedVersions): Promise<{ op_id: string; consumed: PieceRow; pieces: PieceRow[]; remainder: PieceRow | null }> {
  const principal = cmd.principal;
  assert(principal.kind === 'token', 'pieces are cut by tenant tokens');
  const found = await lockPiecesForUpdate(cmd.tx, cmd.tenantId, [input.piece_id]);
  const locked = await releaseExpiredReservations(cmd, found);
  assertPiecesUsable(principal, [input.piece_id], locked, input.reservation_op_id);
  // If-Match: the version the client saw (as stored before any lazy release just above).
  const seen = found[0]?.version;
  if (expectedVersion !== undefined && (seen === undefined || !matchesExpected(expectedVersion, seen))) {
    throw new AppError('version_conflict', `the piece is at version ${seen}, not ${describeExpected(expectedVersion)}`, { extra: { current_version: seen, version: seen } });
  }
  const piece = locked[0];
  assert(piece, 'locked piece');
  cmd.storeId = piece.store_id;

  const outputKind = cutOutputKind(piece.kind);
  if (outputKind === null) throw new AppError('unprocessable', 'a bundle cannot be cut', { errors: [{ path: '/body/piece_id', message: 'is a bundle' }] });
  const plan = planCut(piece.quantity, input.parts);
  if (!plan.ok) throw new AppError('unprocessable', plan.reason, { errors: [{ path: '/body/parts', message: plan.reason }] });

  const heldBy = await heldByOf(cmd, [piece], input.reservation_op_id);
  const [consumed] = await updatePieces(cmd, [piece], 'piece.cut', sql`status = 'consumed', consumed_by_op = ${cmd.opId}, reserved_by_op = NULL, reserved_until = NULL`);
  assert(consumed, 'consumed piece');
  const base = { storeId: piece.store_id, skuId: piece.sku_id, originalPieceId: piece.original_piece_id, sourcePieceIds: [piece.id] };
  const created = await insertPieces(
    cmd,
    [
      ...plan.parts.map((quantity) => ({ ...base, kind: outputKind, quantity })),
      ...(plan.remainder > 0 ? [{ ...base, kind: piece.kind, quantity: plan.remainder }] : []),
    ],
    { via: 'cut', from: piece.id },
    heldBy,
  );
  await moveStockForPieces(cmd, created, [piece], 'piece_cut');
  return { op_id: cmd.opId, consumed, pieces: created.slice(0, plan.parts.length), remainder: plan.remainder > 0 ? (created[plan.parts.length] ?? null) : null };
}
