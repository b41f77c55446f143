import { sql } from 'kysely';
import type { Command } from '../core/command.js';
import { all, maybeOne, type Tx } from '../core/db.js';
import { AppError } from '../core/errors.js';
import { newId } from '../core/ids.js';
import { changeStock, type StockChange, touchStockMoves } from '../inventory/changeStock.js';
import { pieceState, type PieceRow } from './pieces.table.js';
import type { PieceKind } from './plan.js';

export const PIECE_COLUMNS = sql`id, store_id, sku_id, kind, quantity, status, version, original_piece_id, source_piece_ids, created_by_op,
  consumed_by_op, reserved_by_op, reserved_until, sold_by_op, deleted_by_op, created_at, updated_at`;

/**
 * Locks pieces for the rest of the transaction, always in id order, so two
 * commands over overlapping pieces queue up instead of deadlocking: the second
 * waits for the first to commit and then sees what it left (consumed pieces).
 * Returns the rows found (missing ids are simply absent).
 *
 * FOR NO KEY UPDATE, the lock an UPDATE of a piece takes (its id never
 * changes): two commands still exclude each other, but a command inserting
 * pieces whose original_piece_id is a locked piece (the foreign key check
 * takes KEY SHARE) is not blocked by it. With FOR UPDATE, a revert of a cut
 * holding the consumed roll and waiting for an output deadlocked with a cut
 * or combine of that output making pieces descended from the roll.
 */
export async function lockPiecesForUpdate(tx: Tx, tenantId: string, ids: readonly string[]): Promise<PieceRow[]> {
  const unique = [...new Set(ids)].sort();
  if (unique.length === 0) return [];
  return all(
    tx,
    sql<PieceRow>`SELECT ${PIECE_COLUMNS} FROM pieces WHERE tenant_id = ${tenantId} AND id = ANY(${unique}::uuid[]) ORDER BY id FOR NO KEY UPDATE`,
  );
}

/**
 * Releases, in this command, the expired reservations among locked pieces
 * (reservations expire lazily on access, and by the sweep). Returns the rows
 * as they are now. Expiry is decided by the database clock, to the
 * microsecond, as reads and the sweep decide it (compared as JavaScript
 * dates, in milliseconds, a reservation counted as over up to a millisecond
 * before its end) — and at the moment of deciding, once the pieces are
 * locked (`statement_timestamp()` of this statement, run after the lock was
 * granted), not at the start of the command's transaction (`now()`): a
 * command that began before a reservation's end and waited for the piece's
 * lock past it found the piece still reserved, while reads showed it in
 * stock — a sale was refused 409 and a synced offline sale recorded the
 * piece it sold as its shortfall, leaving it for sale again.
 */
export async function releaseExpiredReservations(cmd: Command, locked: PieceRow[]): Promise<PieceRow[]> {
  const reserved = locked.filter((piece) => piece.status === 'reserved').map((piece) => piece.id);
  if (reserved.length === 0) return locked;
  const over = await all(
    cmd.tx,
    sql<{ id: string }>`
      SELECT id FROM pieces
      WHERE tenant_id = ${cmd.tenantId} AND id = ANY(${reserved}::uuid[]) AND status = 'reserved' AND reserved_until <= statement_timestamp()`,
  );
  const overIds = new Set(over.map((row) => row.id));
  const expired = locked.filter((piece) => overIds.has(piece.id));
  if (expired.length === 0) return locked;
  const updated = await updatePieces(cmd, expired, 'piece.reservation_expired', sql`status = 'in_stock', reserved_by_op = NULL, reserved_until = NULL`);
  const byId = new Map(updated.map((piece) => [piece.id, piece]));
  return locked.map((piece) => byId.get(piece.id) ?? piece);
}

/** Applies one SET to locked pieces, recording a before/after event per piece. */
export async function updatePieces(cmd: Command, pieces: PieceRow[], eventType: string, set: ReturnType<typeof sql>): Promise<PieceRow[]> {
  if (pieces.length === 0) return [];
  const ids = pieces.map((piece) => piece.id);
  const rows = await all(
    cmd.tx,
    sql<PieceRow>`UPDATE pieces SET ${set} WHERE tenant_id = ${cmd.tenantId} AND id = ANY(${ids}::uuid[]) RETURNING ${PIECE_COLUMNS}`,
  );
  const byId = new Map(rows.map((row) => [row.id, row]));
  for (const before of pieces) {
    const after = byId.get(before.id);
    if (!after) throw new Error(`piece ${before.id} vanished under its lock`);
    cmd.touch('pieces', before.id, eventType === 'piece.reverted' && after.deleted_by_op ? 'deleted' : 'updated');
    cmd.audit({ type: eventType, subjectType: 'piece', subjectId: before.id, storeId: before.store_id, before: pieceState(before), after: pieceState(after) });
  }
  return ids.map((id) => byId.get(id) as PieceRow);
}

export interface NewPiece {
  storeId: string;
  skuId: string;
  kind: PieceKind;
  quantity: number;
  /** null: the piece is its own original (received). */
  originalPieceId: string | null;
  sourcePieceIds: string[];
}

/** A reservation that keeps holding what is made of the pieces it held. */
export interface HeldBy {
  opId: string;
  /** Its expiry as PostgreSQL prints it: to the microsecond (a JavaScript Date would cut it to the millisecond). */
  until: string;
}

/**
 * The reservation a cut or combine uses (named by `reservation_op_id` and
 * holding at least one of its locked inputs, not expired — call it before
 * the inputs are consumed): its outputs stay held by it until the same
 * expiry, so nothing the reservation held becomes free for another till by
 * being cut or combined. null when no input is reserved under it.
 */
export async function heldByOf(cmd: Command, inputs: readonly PieceRow[], reservationOpId: string | undefined): Promise<HeldBy | null> {
  const held = inputs.find((piece) => piece.status === 'reserved' && reservationOpId !== undefined && piece.reserved_by_op === reservationOpId);
  if (!held || reservationOpId === undefined) return null;
  const row = await maybeOne(cmd.tx, sql<{ until: string }>`SELECT reserved_until::text AS until FROM pieces WHERE tenant_id = ${cmd.tenantId} AND id = ${held.id}`);
  return row ? { opId: reservationOpId, until: row.until } : null;
}

/**
 * Inserts pieces created by this command, with a `piece.created` event each:
 * in stock, or reserved under `heldBy`.
 */
export async function insertPieces(cmd: Command, pieces: NewPiece[], detail: Record<string, unknown>, heldBy: HeldBy | null = null): Promise<PieceRow[]> {
  if (pieces.length === 0) return [];
  const input = pieces.map((piece) => {
    const id = newId();
    return { id, store_id: piece.storeId, sku_id: piece.skuId, kind: piece.kind, quantity: piece.quantity, original_piece_id: piece.originalPieceId ?? id, source_piece_ids: piece.sourcePieceIds };
  });
  const rows = await all(
    cmd.tx,
    sql<PieceRow>`
      INSERT INTO pieces (tenant_id, id, store_id, sku_id, kind, quantity, original_piece_id, source_piece_ids, op_id, created_by_op,
                          status, reserved_by_op, reserved_until)
      SELECT ${cmd.tenantId}, p.id, p.store_id, p.sku_id, p.kind, p.quantity, p.original_piece_id,
             ARRAY(SELECT jsonb_array_elements_text(p.source_piece_ids)::uuid), ${cmd.opId}, ${cmd.opId},
             ${heldBy === null ? 'in_stock' : 'reserved'}, ${heldBy?.opId ?? null}::uuid, ${heldBy?.until ?? null}::timestamptz
      FROM jsonb_to_recordset(${JSON.stringify(input)}::jsonb)
        AS p(id uuid, store_id uuid, sku_id uuid, kind text, quantity bigint, original_piece_id uuid, source_piece_ids jsonb)
      RETURNING ${PIECE_COLUMNS}`,
  );
  const byId = new Map(rows.map((row) => [row.id, row]));
  const ordered = input.map(({ id }) => byId.get(id) as PieceRow);
  for (const piece of ordered) {
    cmd.touch('pieces', piece.id, 'created');
    cmd.audit({ type: 'piece.created', subjectType: 'piece', subjectId: piece.id, storeId: piece.store_id, before: null, after: pieceState(piece), payload: detail });
  }
  return ordered;
}

/**
 * Keeps stock of piece-tracked SKUs equal to the sum of live pieces: the net
 * change per (store, SKU) goes through changeStock in the same transaction.
 * Cuts and combines net to zero and write no ledger row.
 */
export async function moveStockForPieces(cmd: Command, added: PieceRow[], removed: PieceRow[], kind: string): Promise<void> {
  const net = new Map<string, StockChange>();
  const add = (piece: PieceRow, sign: number) => {
    const key = `${piece.store_id}/${piece.sku_id}`;
    const current = net.get(key) ?? { storeId: piece.store_id, skuId: piece.sku_id, quantityChange: 0, kind, reason: `pieces ${cmd.type}` };
    current.quantityChange += sign * piece.quantity;
    net.set(key, current);
  };
  for (const piece of added) add(piece, 1);
  for (const piece of removed) add(piece, -1);
  const changes = [...net.values()].filter((change) => change.quantityChange !== 0);
  if (changes.length === 0) return;
  const moved = await changeStock(cmd.tx, cmd.tenantId, cmd.opId, changes);
  if (!moved.ok) {
    throw new AppError('insufficient_stock', 'the stock balance is below its pieces; see the integrity check piece_stock_matches_balance', {
      extra: { shortages: moved.shortages.map(({ sku_id, requested, available }) => ({ sku_id, requested, available })) },
    });
  }
  touchStockMoves(cmd, moved.balances);
}
