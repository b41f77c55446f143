import { sql } from 'kysely';
import { all, andIf, maybeOne, type Tx } from '../core/db.js';
import type { PieceRow } from './pieces.table.js';

// Reads show a reservation past its expiry as released (it is, lazily: the
// next command that locks the piece writes the release).
const EFFECTIVE_PIECE_COLUMNS = sql`id, store_id, sku_id, kind, quantity,
  CASE WHEN status = 'reserved' AND reserved_until <= now() THEN 'in_stock' ELSE status END AS status,
  version, original_piece_id, source_piece_ids, created_by_op, consumed_by_op,
  CASE WHEN status = 'reserved' AND reserved_until <= now() THEN NULL ELSE reserved_by_op END AS reserved_by_op,
  CASE WHEN status = 'reserved' AND reserved_until <= now() THEN NULL ELSE reserved_until END AS reserved_until,
  sold_by_op, deleted_by_op, created_at, updated_at`;

export async function findPiece(tx: Tx, tenantId: string, id: string): Promise<PieceRow | undefined> {
  return maybeOne(tx, sql<PieceRow>`SELECT ${EFFECTIVE_PIECE_COLUMNS} FROM pieces WHERE tenant_id = ${tenantId} AND id = ${id}`);
}

export interface PieceFilter {
  storeId?: string | undefined;
  skuId?: string | undefined;
  /** Default: live pieces only (in stock or reserved, not deleted). */
  includeGone?: boolean | undefined;
}

/** Pieces in id (creation) order, in the caller's stores. */
export async function listPieces(tx: Tx, tenantId: string, storeIds: readonly string[] | null, filter: PieceFilter, after: string | undefined, limit: number): Promise<PieceRow[]> {
  return all(
    tx,
    sql<PieceRow>`
      SELECT ${EFFECTIVE_PIECE_COLUMNS} FROM pieces
      WHERE tenant_id = ${tenantId}
        ${andIf(storeIds, (ids) => sql`store_id = ANY(${ids}::uuid[])`)}
        ${andIf(filter.storeId, (storeId) => sql`store_id = ${storeId}::uuid`)}
        ${andIf(filter.skuId, (skuId) => sql`sku_id = ${skuId}::uuid`)}
        ${filter.includeGone === true ? sql`` : sql`AND deleted_by_op IS NULL AND status IN ('in_stock', 'reserved')`}
        ${andIf(after, (id) => sql`id > ${id}::uuid`)}
      ORDER BY id LIMIT ${limit}`,
  );
}

export interface PieceHistoryItem {
  event_id: number;
  type: string;
  op_id: string;
  operation_type: string;
  actor: string;
  correlation_id: string;
  before: unknown;
  after: unknown;
  detail: unknown;
  created_at: Date;
}

/** The lifecycle of a piece, from the append-only event log, in order. */
export async function pieceHistory(tx: Tx, tenantId: string, pieceId: string, afterEventId: number | undefined, limit: number): Promise<PieceHistoryItem[]> {
  return all(
    tx,
    sql<PieceHistoryItem>`
      SELECT e.id AS event_id, e.type, e.op_id, o.type AS operation_type, e.actor, e.correlation_id, e.before, e.after, e.payload AS detail, e.created_at
      FROM events e JOIN operations o ON o.tenant_id = e.tenant_id AND o.id = e.op_id
      WHERE e.tenant_id = ${tenantId} AND e.subject_type = 'piece' AND e.subject_id = ${pieceId}
        ${andIf(afterEventId, (id) => sql`e.id > ${id}::bigint`)}
      ORDER BY e.id LIMIT ${limit}`,
  );
}
