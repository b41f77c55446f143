import { sql } from 'kysely';
import type { Command } from '../core/command.js';
import { all } from '../core/db.js';
import { AppError, type FieldError } from '../core/errors.js';
import { lockPiecesForUpdate, releaseExpiredReservations, updatePieces } from './pieceRows.js';
import type { PieceRow } from './pieces.table.js';

/** A sale line of a piece-tracked SKU: the pieces it names (`index` is its position in the sale). */
export interface PieceSaleLine {
  index: number;
  skuId: string;
  pieceIds: string[];
  /** The quantity the client sent, if any: it must equal the sum of the named pieces. */
  quantity?: number | undefined;
}

export interface UnavailablePiece {
  id: string;
  status: string;
  held_by_op: string | null;
}

export interface PieceSaleLineResult {
  index: number;
  /** Σ quantity of every piece the line names. */
  quantity: number;
  /** The pieces that can be sold (in stock), locked. */
  available: PieceRow[];
  /** Named pieces that are sold, consumed, deleted or reserved. */
  unavailable: UnavailablePiece[];
  /** Σ quantity of the unavailable pieces. */
  unavailableQuantity: number;
}

const unavailableOf = (piece: PieceRow): UnavailablePiece => ({
  id: piece.id,
  status: piece.deleted_by_op !== null ? 'deleted' : piece.status,
  held_by_op: piece.deleted_by_op ?? piece.consumed_by_op ?? piece.reserved_by_op ?? piece.sold_by_op,
});

/** At most this many pieces in one sale (they are all locked in its transaction). */
export const MAX_PIECES_PER_SALE = 500;

/** A piece named twice in one sale (on one line or two) is a bad request. Pure. */
export function duplicatePieceErrors(lines: ReadonlyArray<{ index: number; pieceIds: readonly string[] }>): FieldError[] {
  const seen = new Set<string>();
  const errors: FieldError[] = [];
  for (const line of lines) {
    line.pieceIds.forEach((id, position) => {
      if (seen.has(id)) errors.push({ path: `/body/items/${line.index}/piece_ids/${position}`, message: 'piece is named twice in this sale' });
      seen.add(id);
    });
  }
  return errors;
}

/**
 * Locks (in id order, like every pieces command) the pieces a sale's lines
 * name and checks them: each must exist and be a piece of the line's SKU in
 * the sale's store, else 400 validation_failed (a piece of another store —
 * in the caller's scope or not — or of another SKU is reported exactly like a
 * missing one); a line's `quantity`, if sent, must equal the sum of its pieces.
 * Expired reservations among them are released first (as everywhere).
 * Available: in stock, or reserved under `reservationOpId` (the sale names
 * the reservation it completes — no release first, so no moment in which
 * another till could take the piece). Availability is returned, not thrown:
 * an online sale refuses unavailable pieces (409), an offline one records
 * them as a shortfall.
 */
export async function lockPiecesForSale(cmd: Command, storeId: string, lines: PieceSaleLine[], reservationOpId?: string): Promise<PieceSaleLineResult[]> {
  const count = lines.reduce((sum, line) => sum + line.pieceIds.length, 0);
  if (count > MAX_PIECES_PER_SALE) {
    throw new AppError('validation_failed', `a sale names at most ${MAX_PIECES_PER_SALE} pieces`, {
      errors: [{ path: '/body/items', message: `names ${count} pieces; at most ${MAX_PIECES_PER_SALE} per sale` }],
    });
  }
  const duplicates = duplicatePieceErrors(lines);
  if (duplicates.length > 0) throw new AppError('validation_failed', 'a piece may be sold once per sale', { errors: duplicates });

  const locked = await releaseExpiredReservations(cmd, await lockPiecesForUpdate(cmd.tx, cmd.tenantId, lines.flatMap((line) => line.pieceIds)));
  const byId = new Map(locked.map((piece) => [piece.id, piece]));
  const errors: FieldError[] = [];
  for (const line of lines) {
    line.pieceIds.forEach((id, position) => {
      const piece = byId.get(id);
      if (!piece || piece.store_id !== storeId || piece.sku_id !== line.skuId) {
        errors.push({ path: `/body/items/${line.index}/piece_ids/${position}`, message: "no such piece of this line's SKU in the sale's store" });
      }
    });
  }
  if (errors.length > 0) throw new AppError('validation_failed', 'pieces that are not pieces of their SKU in this store', { errors });

  return lines.map((line) => {
    const pieces = line.pieceIds.map((id) => byId.get(id) as PieceRow);
    const quantity = pieces.reduce((sum, piece) => sum + Number(piece.quantity), 0);
    if (line.quantity !== undefined && line.quantity !== quantity) {
      throw new AppError('validation_failed', `quantity ${line.quantity} is not the sum of the named pieces (${quantity})`, {
        errors: [{ path: `/body/items/${line.index}/quantity`, message: `must equal the sum of the pieces' quantities (${quantity})` }],
      });
    }
    const isAvailable = (piece: PieceRow) =>
      piece.deleted_by_op === null && (piece.status === 'in_stock' || (piece.status === 'reserved' && reservationOpId !== undefined && piece.reserved_by_op === reservationOpId));
    const gone = pieces.filter((piece) => !isAvailable(piece));
    return {
      index: line.index,
      quantity,
      available: pieces.filter(isAvailable),
      unavailable: gone.map(unavailableOf),
      unavailableQuantity: gone.reduce((sum, piece) => sum + Number(piece.quantity), 0),
    };
  });
}

export function pieceUnavailable(pieces: UnavailablePiece[]): AppError {
  return new AppError('piece_unavailable', `pieces are not available: ${pieces.map((p) => `${p.id} (${p.status} by operation ${p.held_by_op})`).join(', ')}`, {
    extra: { pieces },
  });
}

/**
 * Marks locked, available pieces sold by this command (`piece.sold` event
 * each); a reserved one leaves its reservation (like a cut that names it).
 * Stock is moved by the caller.
 */
export async function markPiecesSold(cmd: Command, pieces: PieceRow[]): Promise<PieceRow[]> {
  return updatePieces(cmd, pieces, 'piece.sold', sql`status = 'sold', sold_by_op = ${cmd.opId}, reserved_by_op = NULL, reserved_until = NULL`);
}

/**
 * Returns to stock the pieces a sale's operation sold (found by that operation
 * id, locked in id order): `piece.returned` event each. Stock is moved by the
 * caller (the void's ledger rows).
 */
export async function returnSoldPieces(cmd: Command, saleOpId: string): Promise<PieceRow[]> {
  const held = await all(cmd.tx, sql<{ id: string }>`SELECT id FROM pieces WHERE tenant_id = ${cmd.tenantId} AND sold_by_op = ${saleOpId}`);
  const locked = (await lockPiecesForUpdate(cmd.tx, cmd.tenantId, held.map((row) => row.id))).filter(
    (piece) => piece.status === 'sold' && piece.sold_by_op === saleOpId,
  );
  return updatePieces(cmd, locked, 'piece.returned', sql`status = 'in_stock', sold_by_op = NULL`);
}
