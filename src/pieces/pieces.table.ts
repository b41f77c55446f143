import type { PieceKind } from './plan.js';

export type PieceStatus = 'in_stock' | 'reserved' | 'consumed' | 'sold';

/** A row of `pieces` as the API returns it. */
export interface PieceRow {
  id: string;
  store_id: string;
  sku_id: string;
  kind: PieceKind;
  /** Millimetres (roll, cut) or pieces (spare, bundle). */
  quantity: number;
  status: PieceStatus;
  version: number;
  original_piece_id: string;
  source_piece_ids: string[];
  created_by_op: string;
  consumed_by_op: string | null;
  reserved_by_op: string | null;
  reserved_until: Date | null;
  sold_by_op: string | null;
  deleted_by_op: string | null;
  created_at: Date;
  updated_at: Date;
}

/** The part of a piece its history records before and after each step. */
export function pieceState(piece: PieceRow) {
  return {
    status: piece.status,
    version: piece.version,
    kind: piece.kind,
    quantity: piece.quantity,
    consumed_by_op: piece.consumed_by_op,
    reserved_by_op: piece.reserved_by_op,
    reserved_until: piece.reserved_until,
    sold_by_op: piece.sold_by_op,
    deleted_by_op: piece.deleted_by_op,
  };
}

/** A live piece counts in stock. */
export function isLive(piece: PieceRow): boolean {
  return piece.deleted_by_op === null && (piece.status === 'in_stock' || piece.status === 'reserved');
}
