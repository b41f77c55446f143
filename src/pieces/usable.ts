import type { TenantPrincipal } from '../core/auth.js';
import { inStoreScope } from '../core/auth.js';
import { AppError } from '../core/errors.js';
import type { PieceRow } from './pieces.table.js';

/** 404 for requested pieces that are not among `found` or are outside the caller's stores, like any record. */
export function assertPiecesVisible(principal: TenantPrincipal, requested: readonly string[], found: readonly Pick<PieceRow, 'id' | 'store_id'>[]): void {
  const byId = new Map(found.map((piece) => [piece.id, piece]));
  const missing = requested.filter((id) => {
    const piece = byId.get(id);
    return !piece || !inStoreScope(principal, piece.store_id);
  });
  if (missing.length > 0) throw new AppError('not_found', `piece ${missing.join(', ')} was not found`, { extra: { piece_ids: missing } });
}

/**
 * Refuses pieces a command may not use: missing or outside the caller's stores
 * (404, like any record), or not available — consumed, sold, deleted, or
 * reserved by another operation (409 piece_unavailable naming who holds them).
 * Pieces reserved under `reservationOpId` are usable by the command that names
 * that reservation. Expired reservations were already released by the caller.
 */
export function assertPiecesUsable(principal: TenantPrincipal, requested: readonly string[], locked: PieceRow[], reservationOpId?: string): void {
  assertPiecesVisible(principal, requested, locked);

  const unavailable = locked
    .filter((piece) => {
      if (piece.deleted_by_op !== null) return true;
      if (piece.status === 'in_stock') return false;
      return !(piece.status === 'reserved' && reservationOpId !== undefined && piece.reserved_by_op === reservationOpId);
    })
    .map((piece) => ({
      id: piece.id,
      status: piece.deleted_by_op !== null ? 'deleted' : piece.status,
      held_by_op: piece.deleted_by_op ?? piece.consumed_by_op ?? piece.reserved_by_op ?? piece.sold_by_op,
    }));
  if (unavailable.length > 0) {
    throw new AppError('piece_unavailable', `pieces are not available: ${unavailable.map((p) => `${p.id} (${p.status} by operation ${p.held_by_op})`).join(', ')}`, {
      extra: { pieces: unavailable },
    });
  }
}
