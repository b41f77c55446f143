import { sql } from 'kysely';
import type { Command } from '../core/command.js';
import { maybeOne } from '../core/db.js';
import { AppError } from '../core/errors.js';
import { assertStoreExists } from '../inventory/receiveStock.js';
import { insertPieces, moveStockForPieces } from './pieceRows.js';
import type { PieceRow } from './pieces.table.js';
import { kindFitsUnit, type PieceKind } from './plan.js';

export interface ReceivePiecesInput {
  store_id: string;
  sku_id: string;
  pieces: Array<{ kind: PieceKind; quantity: number }>;
}

/** Checks a SKU is piece-tracked and its unit fits the kinds asked for. */
export async function assertPieceSku(cmd: Command, skuId: string, kinds: PieceKind[]): Promise<void> {
  const sku = await maybeOne(cmd.tx, sql<{ unit: string; tracks_pieces: boolean }>`SELECT unit, tracks_pieces FROM skus WHERE tenant_id = ${cmd.tenantId} AND id = ${skuId}`);
  if (!sku) throw new AppError('validation_failed', 'unknown SKU', { errors: [{ path: '/body/sku_id', message: 'SKU does not exist' }] });
  if (!sku.tracks_pieces) throw new AppError('validation_failed', 'the SKU does not track pieces', { errors: [{ path: '/body/sku_id', message: 'SKU is not piece-tracked' }] });
  const wrong = kinds.findIndex((kind) => !kindFitsUnit(kind, sku.unit));
  if (wrong >= 0) {
    const message = `a ${kinds[wrong]} does not fit a SKU counted in ${sku.unit === 'metre' ? 'millimetres (rolls, cut pieces)' : sku.unit === 'piece' ? 'pieces (spare pieces, bundles)' : sku.unit}`;
    throw new AppError('validation_failed', message, { errors: [{ path: `/body/pieces/${wrong}/kind`, message }] });
  }
}

/** Receives new pieces (rolls of a length, spare pieces with a count …) into a store; stock rises by their sum. */
export async function receivePieces(cmd: Command, input: ReceivePiecesInput): Promise<{ op_id: string; pieces: PieceRow[] }> {
  await assertStoreExists(cmd.tx, cmd.tenantId, input.store_id);
  await assertPieceSku(cmd, input.sku_id, input.pieces.map((piece) => piece.kind));
  const created = await insertPieces(
    cmd,
    input.pieces.map((piece) => ({ storeId: input.store_id, skuId: input.sku_id, kind: piece.kind, quantity: piece.quantity, originalPieceId: null, sourcePieceIds: [] })),
    { via: 'receive' },
  );
  await moveStockForPieces(cmd, created, [], 'piece_receipt');
  cmd.storeId = input.store_id;
  return { op_id: cmd.opId, pieces: created };
}
