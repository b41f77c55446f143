import { sql } from 'kysely';
import { inStoreScope } from '../core/auth.js';
import type { Command } from '../core/command.js';
import { all, one, readClientMoment, type Tx } from '../core/db.js';
import { openReviewItem, type ReviewItemInput } from '../core/review.js';
import { AppError, assert, notFound } from '../core/errors.js';
import { newId } from '../core/ids.js';
import { changeStock, correctCountedGiveBacks, touchStockMoves } from '../inventory/changeStock.js';
import { lockPiecesForUpdate, updatePieces } from '../pieces/pieceRows.js';
import { postSaleReturn } from '../money/postSale.js';
import { assertSecondPersonToUndo } from '../tenancy/secondApprover.js';
import { lockSaleForUpdate } from './getSale.js';
import { piecesToLock, planReturn, remainingOf, type RemainingOfSku, type ReturnableLine, type ReturnedPieceState, type ReturnRequestItem } from './returnPlan.js';
import { balanceKey, saleAccountKeys } from './saleRows.js';
import { VOID_MOMENT_SQL, type SaleReturnView, type SaleView } from './sale.table.js';

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

/** The review item an after-void return opens: someone checks the till's cash. */
export const AFTER_VOID_REVIEW_KIND = 'sale_return_after_void';

/**
 * Refuses (409 invalid_transition) a return of a voided sale unless the till
 * made it before the void: sent with `client_created_at`, strictly before the
 * void's moment (VOID_MOMENT_SQL) — compared by the database, to the
 * microsecond, as the integrity check compares it. Called under the sale's
 * lock, so the void it compares with is the sale's only one.
 */
async function assertMadeBeforeVoid(cmd: Command, sale: SaleView, tillTime: string | null): Promise<void> {
  if (tillTime === null) throw new AppError('invalid_transition', `sale ${sale.id} is voided: nothing is left to return`);
  const { before, moment } = await one(
    cmd.tx,
    sql<{ before: boolean; moment: Date }>`
      SELECT ${tillTime}::timestamptz < ${sql.raw(VOID_MOMENT_SQL)} AS before, ${sql.raw(VOID_MOMENT_SQL)} AS moment
      FROM sales s WHERE s.tenant_id = ${cmd.tenantId} AND s.id = ${sale.id}`,
  );
  if (!before) {
    throw new AppError(
      'invalid_transition',
      `sale ${sale.id} is voided (at ${moment.toISOString()}${sale.void_client_created_at === null ? '' : ", the till's time of the void"}) and the till made this return at ${tillTime}, not before it: nothing is left to return`,
    );
  }
}

/** The named pieces as they are now, not locked (after a void: only their quantities are read). */
async function readPieces(tx: Tx, tenantId: string, ids: readonly string[]): Promise<ReturnedPieceState[]> {
  if (ids.length === 0) return [];
  return all(tx, sql<ReturnedPieceState>`SELECT id, quantity, status, sold_by_op, deleted_by_op FROM pieces WHERE tenant_id = ${tenantId} AND id = ANY(${ids}::uuid[])`);
}

/** The review item of a return recorded after its sale's void (the integrity check sale_return_after_void_matches_review_item). */
export function afterVoidReviewItem(sale: SaleView, saleReturn: SaleReturnView): ReviewItemInput {
  return {
    kind: AFTER_VOID_REVIEW_KIND,
    severity: 'warning',
    subjectType: 'sale_return',
    subjectId: saleReturn.id,
    storeId: sale.store_id,
    dedupeKey: `${AFTER_VOID_REVIEW_KIND}:${saleReturn.id}`,
    detail: {
      sale_id: sale.id,
      receipt_number: sale.receipt_number,
      return_id: saleReturn.id,
      return_number: saleReturn.return_number,
      payment_method: sale.payment_method,
      refund_total: saleReturn.refund_total,
      client_created_at: saleReturn.client_created_at,
      voided_at: sale.voided_at,
      void_client_created_at: sale.void_client_created_at,
      voided_by_op: sale.voided_by_op,
      message:
        `the till refunded ${saleReturn.refund_total} minor units (${sale.payment_method}) for return ${saleReturn.return_number} of receipt ${sale.receipt_number}, ` +
        `taken back on the till before the sale was voided and recorded after the sale was voided: the void had already reversed the sale's money and stock, ` +
        `so this refund is in no journal entry and moved no stock — check the till's cash`,
    },
  };
}

/**
 * A partial return of a sale, in the command's transaction.
 *
 * The sale row is locked first (as a void locks it), so returns and a void of
 * one sale follow one another: each plans against what the ones before it
 * took back, and concurrent returns can never take back more than was sold.
 * Refused, nothing written: the token that made the sale when the tenant's
 * require_second_approver_for_reversals is on (403 second_approver_required,
 * assertSecondPersonToUndo), a voided sale (409 invalid_transition — but see
 * "after the void" below), a SKU the
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
 *
 * After the void: a return of a voided sale whose `clientCreatedAt` is
 * strictly before the void's moment (VOID_MOMENT_SQL: the till's time of a
 * queued void, else voided_at) was made on the till before the void — the
 * goods came back and the refund was handed out — and is recorded as a fact
 * (`after_void`, migration 1340): its row and lines, planned and validated
 * as any return (pieces read, not locked: the void put them back, and only
 * their being on the line and not taken back counts), and nothing else. The
 * void already gave back all the sale held and reversed all its money, so no
 * piece, stock, count correction, returned_total or journal entry moves; a
 * `sale_return_after_void` review item (afterVoidReviewItem) asks someone to
 * check the till's cash. Without the till's time, or with one at or after
 * the void's moment, it stays 409 invalid_transition.
 */
export async function recordReturn(cmd: Command, saleId: string, input: ReturnInput): Promise<ReturnAnswer> {
  const { tx, tenantId, opId } = cmd;
  const tillTime = input.client_created_at === undefined ? null : await readClientMoment(tx, input.client_created_at, { name: 'client_created_at', path: '/body/client_created_at' });
  const sale = await lockSaleForUpdate(tx, tenantId, saleId);
  if (!sale || (cmd.principal.kind === 'token' && !inStoreScope(cmd.principal, sale.store_id))) throw notFound('sale');
  // Four-eyes (tenant setting): the refund is not handed out by the token that sold it.
  await assertSecondPersonToUndo(cmd, sale.op_id, `sale ${saleId}`, 'take goods back from');
  // A voided sale takes a return only as a fact of the past: one the till made before the void (afterVoid).
  const afterVoid = sale.status === 'voided';
  if (afterVoid) await assertMadeBeforeVoid(cmd, sale, tillTime);

  const lines = await returnableLines(tx, tenantId, saleId);
  // After the void the sale holds no piece (the void put them back in stock, and they may be sold again): they
  // are read, not locked, for their quantities; the plan holds them to the sale's lines and its earlier returns.
  const toLock = piecesToLock(lines, input.items);
  const pieces = afterVoid ? [] : await lockPiecesForUpdate(tx, tenantId, toLock);
  const named: ReturnedPieceState[] = afterVoid ? await readPieces(tx, tenantId, toLock) : pieces;
  const plan = planReturn(lines, input.items, { saleOpId: sale.op_id, locked: new Map(named.map((piece) => [piece.id, piece])), afterVoid });
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

  // The rows the return locks after its pieces that a row held from outside may be among (as a void's): in the
  // tenant's sale lane, one found held before and still held refuses it at once (503, nothing written).
  await cmd.beforeLocking({
    balances: afterVoid ? [] : plan.stock.map((line) => balanceKey(sale.store_id, line.sku_id)),
    accounts: afterVoid || plan.refund_total === 0 ? [] : saleAccountKeys(sale),
  });
  const returnedPieceIds = new Set(plan.lines.flatMap((line) => line.piece_ids));
  await updatePieces(cmd, pieces.filter((piece) => returnedPieceIds.has(piece.id)), 'piece.returned', sql`status = 'in_stock', sold_by_op = NULL`);
  const changes = afterVoid ? [] : plan.stock.map((line) => ({ storeId: sale.store_id, skuId: line.sku_id, quantityChange: line.quantity, kind: 'return', reason: `return of sale ${saleId}` }));
  const stock = await changeStock(tx, tenantId, opId, changes);
  assert(stock.ok, 'returning stock always succeeds');
  // Taken back on the till at or before a stock count of a SKU, sent after it: the count saw the goods on the shelf
  // (a count_correction row takes them out again, after the return row: net 0).
  const corrections = tillTime === null || changes.length === 0 ? [] : await correctCountedGiveBacks(tx, tenantId, opId, tillTime, changes);

  const returnId = newId();
  const itemRows = plan.lines.map((line) => ({ id: newId(), ...line }));
  const written = await one(
    tx,
    sql<{ return_number: number; created_at: Date; client_created_at: Date | null; sale_returned_total: number; item_rows: number }>`
      WITH numbered AS (
        SELECT coalesce(max(return_number), 0) + 1 AS return_number FROM sale_returns WHERE tenant_id = ${tenantId} AND sale_id = ${saleId}
      ), r AS (
        INSERT INTO sale_returns (tenant_id, id, sale_id, store_id, return_number, reason, refund_total, client_created_at, after_void, op_id)
        SELECT ${tenantId}, ${returnId}, ${saleId}, ${sale.store_id}, numbered.return_number, ${input.reason}, ${plan.refund_total}, ${tillTime}, ${afterVoid}, ${opId}
        FROM numbered
        RETURNING return_number, created_at, client_created_at
      ), items AS (
        INSERT INTO sale_return_items (tenant_id, id, return_id, sale_id, sale_item_id, sku_id, quantity, refund, piece_ids, op_id)
        SELECT ${tenantId}, l.id, ${returnId}, ${saleId}, l.sale_item_id, l.sku_id, l.quantity, l.refund,
               ARRAY(SELECT jsonb_array_elements_text(l.piece_ids)::uuid), ${opId}
        FROM jsonb_to_recordset(${JSON.stringify(itemRows)}::jsonb) AS l(id uuid, sale_item_id uuid, sku_id uuid, quantity bigint, refund bigint, piece_ids jsonb)
        RETURNING id
      ), sale AS (
        ${
          afterVoid
            ? // the void reversed the sale: its returned_total stays what the returns before the void refunded
              sql`SELECT returned_total FROM sales WHERE tenant_id = ${tenantId} AND id = ${saleId} AND status = 'voided'`
            : sql`UPDATE sales SET returned_total = returned_total + ${plan.refund_total}, returned_at = now()
                  WHERE tenant_id = ${tenantId} AND id = ${saleId} AND status = 'completed'
                  RETURNING returned_total`
        }
      )
      SELECT r.return_number, r.created_at, r.client_created_at, sale.returned_total AS sale_returned_total,
             (SELECT count(*) FROM items)::int AS item_rows
      FROM r, sale`,
  );
  assert(written.item_rows === itemRows.length, 'every return line was written');
  const entry = afterVoid ? null : await postSaleReturn(tx, cmd, sale, { id: returnId, refund: plan.refund_total }, tillTime);
  assert((entry !== null) === (plan.refund_total > 0 && !afterVoid), 'a return that refunds money has its entry, unless the void reversed it');

  const answer: ReturnAnswer = {
    id: returnId,
    op_id: opId,
    sale_id: saleId,
    return_number: written.return_number,
    reason: input.reason,
    refund_total: plan.refund_total,
    client_created_at: written.client_created_at,
    created_at: written.created_at,
    after_void: afterVoid,
    lines: plan.lines,
    sale_returned_total: written.sale_returned_total,
    remaining: remainingOf(lines, plan.lines),
  };

  cmd.storeId = sale.store_id;
  cmd.touch('sale_returns', returnId, 'created');
  for (const row of itemRows) cmd.touch('sale_return_items', row.id, 'created');
  touchStockMoves(cmd, stock.balances);
  for (const row of corrections) cmd.touch('stock_ledger', String(row.ledger_id), 'created'); // its balance is named above
  if (!afterVoid) cmd.touch('sales', saleId, 'updated');
  if (entry) cmd.touch('journal_entries', entry.entryId, 'created');
  if (afterVoid) {
    const itemId = await openReviewItem(tx, tenantId, opId, afterVoidReviewItem(sale, answer));
    cmd.touch('review_items', itemId, 'created');
  }
  const { remaining: _remaining, sale_returned_total: _total, ...saleReturn } = answer;
  cmd.audit({
    subjectType: 'sale',
    subjectId: saleId,
    before: { returned_total: sale.returned_total ?? 0 },
    after: { returned_total: written.sale_returned_total, return: saleReturn },
  });
  return answer;
}
