import { sql } from 'kysely';
import { inStoreScope } from '../core/auth.js';
import type { Command } from '../core/command.js';
import { all, one, readClientMoment, type Tx } from '../core/db.js';
import { AppError, assert, notFound } from '../core/errors.js';
import { newId } from '../core/ids.js';
import { changeStock, correctCountedGiveBacks, touchStockMoves } from '../inventory/changeStock.js';
import { lockPiecesForUpdate, updatePieces } from '../pieces/pieceRows.js';
import { postSaleReturn } from '../money/postSale.js';
import { assertSecondPersonToUndo } from '../tenancy/secondApprover.js';
import { lockSaleForUpdate } from './getSale.js';
import { piecesToLock, planReturn, remainingOf, type RemainingOfSku, type ReturnableLine, type ReturnRequestItem } from './returnPlan.js';
import type { SaleReturnView } from './sale.table.js';

/** The operation type of a partial return of a sale. */
export const SALE_RETURN_OP = 'sale.return';

export interface ReturnInput {
  items: ReturnRequestItem[];
  reason: string;
  client_created_at?: string | undefined;
}

/** The answer of POST /v1/sales/{id}/returns: the return, and what the sale has left. */
export interface ReturnAnswer extends SaleReturnView {
  sale_returned_total: number;
  remaining: RemainingOfSku[];
}

/**
 * The sale's lines with their SKU's unit and what earlier returns took back
 * from each, and of a line of workshop pieces the pieces the sale still holds
 * (sold_by_op = its operation: only a return or a void of the sale clears
 * it, each after locking the sale row): read after the sale row is locked,
 * so no other return of the sale can change them before this one commits.
 */
export async function returnableLines(tx: Tx, tenantId: string, saleId: string): Promise<ReturnableLine[]> {
  return all(
    tx,
    sql<ReturnableLine>`
      SELECT i.id AS sale_item_id, i.line_number, i.sku_id, k.unit, i.quantity, i.unit_price, i.line_total, i.shortfall_quantity,
             i.piece_ids::text[] AS piece_ids, r.returned_quantity,
             ARRAY(SELECT jsonb_array_elements_text(x) FROM jsonb_array_elements(r.returned_pieces) AS x) AS returned_piece_ids,
             -- the line's pieces by their primary key (a line names at most 500), only on a line of pieces
             ARRAY(SELECT p.id::text FROM pieces p
                   WHERE cardinality(i.piece_ids) > 0 AND p.tenant_id = i.tenant_id AND p.id = ANY (i.piece_ids) AND p.sold_by_op = s.op_id
                   ORDER BY p.id) AS held_piece_ids
      FROM sale_items i JOIN skus k ON k.tenant_id = i.tenant_id AND k.id = i.sku_id
      JOIN sales s ON s.tenant_id = i.tenant_id AND s.id = i.sale_id
      -- by the sale (sale_return_items_sale_idx), once per line for both sums: by the line alone, no index served it, and
      -- every return and every void read all of the tenant's return lines once per line of its sale (returnPlans.int.spec.ts)
      CROSS JOIN LATERAL (
        SELECT coalesce(sum(ri.quantity), 0)::bigint AS returned_quantity,
               coalesce(jsonb_agg(ri.piece_ids) FILTER (WHERE cardinality(ri.piece_ids) > 0), '[]'::jsonb) AS returned_pieces
        FROM sale_return_items ri
        WHERE ri.tenant_id = i.tenant_id AND ri.sale_id = i.sale_id AND ri.sale_item_id = i.id
      ) r
      WHERE i.tenant_id = ${tenantId} AND i.sale_id = ${saleId}
      ORDER BY i.line_number`,
  );
}

/**
 * A partial return of a sale, in the command's transaction.
 *
 * The sale row is locked first (as a void locks it), so returns and a void of
 * one sale follow one another: each plans against what the ones before it
 * took back, and concurrent returns can never take back more than was sold.
 * Refused, nothing written: the token that made the sale when the tenant's
 * require_second_approver_for_reversals is on (403 second_approver_required,
 * assertSecondPersonToUndo), a voided sale (409 invalid_transition), a SKU the
 * sale did not sell, a SKU sold as workshop pieces without its pieces named
 * or pieces named for one that was not, a piece named twice, a piece line's
 * quantity that is not its pieces' sum (400), a named piece the sale did not
 * sell (on an offline line that synced short, the pieces missing then) or an
 * earlier return took back (409 piece_not_returnable, every such piece
 * listed), more than is left (409 return_exceeds_sale, with every requested
 * SKU's returnable quantity).
 *
 * Workshop pieces: the pieces named that are on the sale's lines and not
 * yet taken back are locked after the sale row, in id order, before any
 * balance — the order of a void (returnSoldPieces) — and each must still be
 * sold by the sale (sold_by_op = its operation). They go back to `in_stock`
 * (sold_by_op cleared, `piece.returned` event, as a void does), and the
 * return line of their sale line records them (sale_return_items.piece_ids)
 * with their sum as its quantity; a later void returns only the pieces the
 * sale still holds, and the stock its returns did not take back.
 *
 * An offline sale's line that synced short (shortfall_quantity) is returned
 * like any other, up to all it sold: the goods are back on the shelf, so
 * the `return` row puts back all the return takes back, beyond what the
 * sale took from stock too; a later void gives back only what the sale took
 * and its returns did not put back, never below 0 (recordVoid). Its
 * offline_sale_shortage review item stays as it is.
 *
 * Written: the return and its lines (per sale line), stock back through
 * `return` ledger rows, the sale's returned_total, and — for a refund above
 * 0 — a `sale_return` journal entry (postSaleReturn), dated like a void's:
 * today, or the till's day of `clientCreatedAt`, never before the sale's day.
 * With `clientCreatedAt` at or before the counted_at of a SKU's latest stock
 * count (its balance's counted_through), the count saw the goods on the
 * shelf: a `count_correction` row (reason `count <id>`) after the `return`
 * row takes them out again (net 0; correctCountedGiveBacks). Without it the
 * return is "now".
 */
export async function recordReturn(cmd: Command, saleId: string, input: ReturnInput): Promise<ReturnAnswer> {
  const { tx, tenantId, opId } = cmd;
  const tillTime = input.client_created_at === undefined ? null : await readClientMoment(tx, input.client_created_at, { name: 'client_created_at', path: '/body/client_created_at' });
  const sale = await lockSaleForUpdate(tx, tenantId, saleId);
  if (!sale || (cmd.principal.kind === 'token' && !inStoreScope(cmd.principal, sale.store_id))) throw notFound('sale');
  // Four-eyes (tenant setting): the refund is not handed out by the token that sold it.
  await assertSecondPersonToUndo(cmd, sale.op_id, `sale ${saleId}`, 'take goods back from');
  if (sale.status === 'voided') throw new AppError('invalid_transition', `sale ${saleId} is voided: nothing is left to return`);

  const lines = await returnableLines(tx, tenantId, saleId);
  const pieces = await lockPiecesForUpdate(tx, tenantId, piecesToLock(lines, input.items));
  const plan = planReturn(lines, input.items, { saleOpId: sale.op_id, locked: new Map(pieces.map((piece) => [piece.id, piece])) });
  if (!plan.ok) {
    if (plan.kind === 'invalid') throw new AppError('validation_failed', 'a returned line does not match the sale', { errors: plan.errors });
    if (plan.kind === 'pieces') {
      throw new AppError(
        'piece_not_returnable',
        `pieces this sale did not sell or an earlier return took back; nothing was returned: ${plan.pieces.map((piece) => `${piece.id} (${piece.reason})`).join(', ')}`,
        {
          extra: { pieces: plan.pieces.map(({ id, sku_id, reason }) => ({ id, sku_id, reason })) },
          errors: plan.pieces.map((piece) => ({ path: piece.path, message: piece.reason === 'already_returned' ? 'an earlier return of this sale took this piece back' : "is not a piece this sale sold of the line's SKU" })),
        },
      );
    }
    throw new AppError('return_exceeds_sale', 'more would be returned than the sale sold minus what earlier returns took back; nothing was returned', {
      extra: { returnable: plan.returnable },
    });
  }

  const returnedPieceIds = new Set(plan.lines.flatMap((line) => line.piece_ids));
  await updatePieces(cmd, pieces.filter((piece) => returnedPieceIds.has(piece.id)), 'piece.returned', sql`status = 'in_stock', sold_by_op = NULL`);
  const changes = plan.stock.map((line) => ({ storeId: sale.store_id, skuId: line.sku_id, quantityChange: line.quantity, kind: 'return', reason: `return of sale ${saleId}` }));
  const stock = await changeStock(tx, tenantId, opId, changes);
  assert(stock.ok, 'returning stock always succeeds');
  // Taken back on the till at or before a stock count of a SKU, sent after it: the count saw the goods on the shelf
  // (a count_correction row takes them out again, after the return row: net 0).
  const corrections = tillTime === null ? [] : await correctCountedGiveBacks(tx, tenantId, opId, tillTime, changes);

  const returnId = newId();
  const itemRows = plan.lines.map((line) => ({ id: newId(), ...line }));
  const written = await one(
    tx,
    sql<{ return_number: number; created_at: Date; client_created_at: Date | null; sale_returned_total: number; item_rows: number }>`
      WITH numbered AS (
        SELECT coalesce(max(return_number), 0) + 1 AS return_number FROM sale_returns WHERE tenant_id = ${tenantId} AND sale_id = ${saleId}
      ), r AS (
        INSERT INTO sale_returns (tenant_id, id, sale_id, store_id, return_number, reason, refund_total, client_created_at, op_id)
        SELECT ${tenantId}, ${returnId}, ${saleId}, ${sale.store_id}, numbered.return_number, ${input.reason}, ${plan.refund_total}, ${tillTime}, ${opId}
        FROM numbered
        RETURNING return_number, created_at, client_created_at
      ), items AS (
        INSERT INTO sale_return_items (tenant_id, id, return_id, sale_id, sale_item_id, sku_id, quantity, refund, piece_ids, op_id)
        SELECT ${tenantId}, l.id, ${returnId}, ${saleId}, l.sale_item_id, l.sku_id, l.quantity, l.refund,
               ARRAY(SELECT jsonb_array_elements_text(l.piece_ids)::uuid), ${opId}
        FROM jsonb_to_recordset(${JSON.stringify(itemRows)}::jsonb) AS l(id uuid, sale_item_id uuid, sku_id uuid, quantity bigint, refund bigint, piece_ids jsonb)
        RETURNING id
      ), sale AS (
        UPDATE sales SET returned_total = returned_total + ${plan.refund_total}, returned_at = now()
        WHERE tenant_id = ${tenantId} AND id = ${saleId} AND status = 'completed'
        RETURNING returned_total
      )
      SELECT r.return_number, r.created_at, r.client_created_at, sale.returned_total AS sale_returned_total,
             (SELECT count(*) FROM items)::int AS item_rows
      FROM r, sale`,
  );
  assert(written.item_rows === itemRows.length, 'every return line was written');
  const entry = await postSaleReturn(tx, cmd, sale, { id: returnId, refund: plan.refund_total }, tillTime);
  assert((entry !== null) === plan.refund_total > 0, 'a return that refunds money has its entry');

  const answer: ReturnAnswer = {
    id: returnId,
    op_id: opId,
    sale_id: saleId,
    return_number: written.return_number,
    reason: input.reason,
    refund_total: plan.refund_total,
    client_created_at: written.client_created_at,
    created_at: written.created_at,
    lines: plan.lines,
    sale_returned_total: written.sale_returned_total,
    remaining: remainingOf(lines, plan.lines),
  };

  cmd.storeId = sale.store_id;
  cmd.touch('sale_returns', returnId, 'created');
  for (const row of itemRows) cmd.touch('sale_return_items', row.id, 'created');
  touchStockMoves(cmd, stock.balances);
  for (const row of corrections) cmd.touch('stock_ledger', String(row.ledger_id), 'created'); // its balance is named above
  cmd.touch('sales', saleId, 'updated');
  if (entry) cmd.touch('journal_entries', entry.entryId, 'created');
  const { remaining: _remaining, sale_returned_total: _total, ...saleReturn } = answer;
  cmd.audit({
    subjectType: 'sale',
    subjectId: saleId,
    before: { returned_total: sale.returned_total ?? 0 },
    after: { returned_total: written.sale_returned_total, return: saleReturn },
  });
  return answer;
}
