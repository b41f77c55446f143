import { sql } from 'kysely';
import type { Command } from '../core/command.js';
import { all, maybeOne } from '../core/db.js';
import { AppError, assert, notFound } from '../core/errors.js';
import { inStoreScope } from '../core/auth.js';
import { lockPiecesForUpdate, releaseExpiredReservations, updatePieces } from './pieceRows.js';
import type { PieceRow } from './pieces.table.js';
import { assertPiecesUsable } from './usable.js';

export interface ReserveInput {
  piece_ids: string[];
  expires_in_seconds: number;
}

/**
 * Reserves pieces for this operation until an expiry. Reserved pieces can only
 * be used by a cut, combine or sale that names this reservation (`reservation_op_id`);
 * expired reservations are released lazily by the next command that locks the
 * pieces, and by the sweep (sweepExpiredPieceReservations).
 */
export async function reservePieces(cmd: Command, input: ReserveInput): Promise<{ op_id: string; reserved_until: Date; pieces: PieceRow[] }> {
  const principal = cmd.principal;
  assert(principal.kind === 'token', 'pieces are reserved by tenant tokens');
  const ids = [...new Set(input.piece_ids)];
  const locked = await releaseExpiredReservations(cmd, await lockPiecesForUpdate(cmd.tx, cmd.tenantId, ids));
  assertPiecesUsable(principal, ids, locked);
  const first = locked[0];
  assert(first, 'locked pieces');
  if (locked.some((piece) => piece.store_id !== first.store_id)) throw new AppError('unprocessable', 'a reservation holds pieces of one store');
  cmd.storeId = first.store_id;
  // From when the pieces are taken (this statement runs after their locks were
  // granted), not from the transaction's start (now()): a reservation that
  // waited for a piece's lock was shortened by the wait, or born expired.
  const pieces = await updatePieces(
    cmd,
    locked,
    'piece.reserved',
    sql`status = 'reserved', reserved_by_op = ${cmd.opId}, reserved_until = statement_timestamp() + make_interval(secs => ${input.expires_in_seconds})`,
  );
  const until = pieces[0]?.reserved_until;
  assert(until, 'reserved until');
  return { op_id: cmd.opId, reserved_until: until, pieces };
}

/** Releases what is still reserved under a reservation operation (consumed pieces stay consumed). */
export async function releaseReservation(cmd: Command, reservationOpId: string): Promise<{ op_id: string; reservation_op_id: string; released: PieceRow[] }> {
  const principal = cmd.principal;
  assert(principal.kind === 'token', 'reservations are released by tenant tokens');
  const reservation = await maybeOne(cmd.tx, sql<{ type: string; store_id: string | null }>`SELECT type, store_id FROM operations WHERE tenant_id = ${cmd.tenantId} AND id = ${reservationOpId}`);
  if (!reservation || reservation.type !== 'piece.reserve' || (reservation.store_id !== null && !inStoreScope(principal, reservation.store_id))) throw notFound('reservation');
  cmd.storeId = reservation.store_id ?? undefined;
  const released = await releaseReservedBy(cmd, reservationOpId);
  return { op_id: cmd.opId, reservation_op_id: reservationOpId, released };
}

/**
 * Locks and releases the pieces still reserved by an operation. Pieces whose
 * reservation is past its expiry are no longer held by it (reads already show
 * them in stock): like any command that locks them, this records their expiry
 * (`piece.reservation_expired`) and does not count them as released.
 */
export async function releaseReservedBy(cmd: Command, reservationOpId: string): Promise<PieceRow[]> {
  // Until no piece is left that the reservation holds: a cut or combine under
  // it that held one of the listed pieces when they were read, and committed
  // while this waited for the piece's lock, made new pieces the reservation
  // holds (heldByOf) — not in the list read before it committed. Each round's
  // read is a new statement, so it sees what the commands waited for left.
  const released: PieceRow[] = [];
  const listed = new Set<string>();
  for (;;) {
    const held = (await all(cmd.tx, sql<{ id: string }>`SELECT id FROM pieces WHERE tenant_id = ${cmd.tenantId} AND reserved_by_op = ${reservationOpId}`))
      .map((row) => row.id)
      .filter((id) => !listed.has(id));
    if (held.length === 0) return released;
    for (const id of held) listed.add(id);
    const locked = (await releaseExpiredReservations(cmd, await lockPiecesForUpdate(cmd.tx, cmd.tenantId, held))).filter(
      (piece) => piece.status === 'reserved' && piece.reserved_by_op === reservationOpId,
    );
    released.push(...(await updatePieces(cmd, locked, 'piece.released', sql`status = 'in_stock', reserved_by_op = NULL, reserved_until = NULL`)));
  }
}
