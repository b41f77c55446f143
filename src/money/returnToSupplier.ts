import { sql } from 'kysely';
import { inStoreScope } from '../core/auth.js';
import type { Command } from '../core/command.js';
import { all, maybeOne, one, type Tx } from '../core/db.js';
import { AppError, assert, notFound } from '../core/errors.js';
import { newId } from '../core/ids.js';
import { changeStock, touchStockMoves } from '../inventory/changeStock.js';
import { postJournal } from './postJournal.js';
import {
  planPurchaseReturn,
  purchaseRemainingOf,
  type PlannedPurchaseReturnLine,
  type PurchaseReturnRequestItem,
  type ReturnablePurchaseLine,
} from './purchaseReturnPlan.js';

/** The operation type of a return of goods to their supplier. */
export const PURCHASE_RETURN_OP = 'purchase.return';

/** The stock ledger kind of goods sent back to their supplier. */
export const SUPPLIER_RETURN_STOCK_KIND = 'supplier_return';

export interface PurchaseReturnInput {
  items: PurchaseReturnRequestItem[];
  reason: string;
  reference?: string | undefined;
}

/** A return to the supplier as the API shows it (POST's answer, and each of GET /v1/purchases/{id}'s `returns`). */
export interface PurchaseReturnView {
  id: string;
  op_id: string;
  purchase_id: string;
  store_id: string;
  supplier_id: string;
  return_number: number;
  reason: string;
  reference: string | null;
  credit_total: number;
  /** The `purchase_return` journal entry; null for a credit of 0 (no money moves). */
  entry_id: string | null;
  /** The day the entry is booked on; null without an entry. */
  business_date: string | null;
  created_at: Date | string;
  lines: PlannedPurchaseReturnLine[];
}

/** The answer of POST /v1/purchases/{id}/returns: the return, and what the purchase has left. */
export interface PurchaseReturnAnswer extends PurchaseReturnView {
  purchase_returned_total: number;
  remaining: Array<{ sku_id: string; purchased: number; returned: number; returnable: number }>;
}

interface LockedPurchase {
  id: string;
  store_id: string;
  supplier_id: string;
  total: number;
  returned_total: number;
}

/** Where a purchase belongs (for the scope check before its command), or undefined. */
export async function findPurchaseStore(tx: Tx, tenantId: string, purchaseId: string): Promise<string | undefined> {
  return (await maybeOne(tx, sql<{ store_id: string }>`SELECT store_id FROM purchases WHERE tenant_id = ${tenantId} AND id = ${purchaseId}`))?.store_id;
}

/**
 * The purchase's lines with their SKU's unit and what earlier returns sent
 * back from each (purchase_return_lines_purchase_idx): read after the
 * purchase row is locked, so no other return of the purchase can change them
 * before this one commits.
 */
export async function returnablePurchaseLines(tx: Tx, tenantId: string, purchaseId: string): Promise<ReturnablePurchaseLine[]> {
  return all(
    tx,
    sql<ReturnablePurchaseLine>`
      SELECT l.line_number, l.sku_id, k.unit, l.quantity, l.unit_cost, l.line_total,
             coalesce((SELECT sum(rl.quantity) FROM purchase_return_lines rl
                       WHERE rl.tenant_id = l.tenant_id AND rl.purchase_id = l.purchase_id AND rl.line_number = l.line_number), 0)::bigint AS returned_quantity
      FROM purchase_lines l JOIN skus k ON k.tenant_id = l.tenant_id AND k.id = l.sku_id
      WHERE l.tenant_id = ${tenantId} AND l.purchase_id = ${purchaseId}
      ORDER BY l.line_number`,
  );
}

/**
 * Goods of a purchase sent back to its supplier, in the command's transaction.
 *
 * The purchase row is locked first (FOR NO KEY UPDATE), so the returns of one
 * purchase follow one another: each plans against what the ones before it
 * sent back, and concurrent returns can never send back more than was
 * bought. Refused, nothing written: an unknown purchase or one outside the
 * token's stores (404), a SKU the purchase did not buy (400 at its line),
 * more than is left (409 return_exceeds_purchase, with every requested SKU's
 * returnable quantity), less stock in the store than is sent back (409
 * insufficient_stock, with the shortages: the goods were sold meanwhile).
 *
 * Written: stock out of the purchase's store through `supplier_return`
 * ledger rows (one conditional decrement per SKU: changeStock), the return
 * and its lines (per purchase line, credited at its unit cost by the
 * cumulative rule), the purchase's returned_total, and — for a credit above
 * 0 — a `purchase_return` journal entry (subject the return) debiting the
 * supplier's payable and crediting the store's inventory: the purchase's
 * entry, for that part, reversed. Dated like every store entry.
 */
export async function returnToSupplier(cmd: Command, purchaseId: string, input: PurchaseReturnInput): Promise<PurchaseReturnAnswer> {
  const { tx, tenantId, opId } = cmd;
  const purchase = await maybeOne(
    tx,
    sql<LockedPurchase>`
      SELECT id, store_id, supplier_id, total, returned_total FROM purchases
      WHERE tenant_id = ${tenantId} AND id = ${purchaseId}
      FOR NO KEY UPDATE`,
  );
  if (!purchase || (cmd.principal.kind === 'token' && !inStoreScope(cmd.principal, purchase.store_id))) throw notFound('purchase');

  const lines = await returnablePurchaseLines(tx, tenantId, purchaseId);
  const plan = planPurchaseReturn(lines, input.items);
  if (!plan.ok) {
    if (plan.kind === 'invalid') throw new AppError('validation_failed', 'a returned SKU is not on the purchase', { errors: plan.errors });
    throw new AppError('return_exceeds_purchase', 'more would be sent back than the purchase bought minus what earlier returns sent back; nothing was returned', {
      extra: { returnable: plan.returnable },
    });
  }

  const stock = await changeStock(
    tx,
    tenantId,
    opId,
    plan.stock.map((line) => ({ storeId: purchase.store_id, skuId: line.sku_id, quantityChange: -line.quantity, kind: SUPPLIER_RETURN_STOCK_KIND, reason: input.reason })),
  );
  if (!stock.ok) {
    throw new AppError('insufficient_stock', 'the store does not hold the goods to send back; nothing was returned', {
      extra: { shortages: stock.shortages.map(({ sku_id, requested, available }) => ({ sku_id, requested, available })) },
    });
  }

  const returnId = newId();
  const reference = input.reference ?? null;
  const entry =
    plan.credit_total === 0
      ? null
      : await postJournal(tx, cmd, {
          kind: 'purchase_return',
          storeId: purchase.store_id,
          subjectType: 'purchase_return',
          subjectId: returnId,
          ...(reference === null ? {} : { memo: reference }),
          postings: [
            { account: { partyId: purchase.supplier_id }, amount: plan.credit_total },
            { account: { storeId: purchase.store_id, kind: 'inventory' }, amount: -plan.credit_total },
          ],
        });

  const written = await one(
    tx,
    sql<{ return_number: number; created_at: Date; purchase_returned_total: number; line_rows: number }>`
      WITH numbered AS (
        SELECT coalesce(max(return_number), 0) + 1 AS return_number FROM purchase_returns WHERE tenant_id = ${tenantId} AND purchase_id = ${purchaseId}
      ), r AS (
        INSERT INTO purchase_returns (tenant_id, id, purchase_id, store_id, supplier_id, return_number, reason, reference, credit_total, entry_id, op_id)
        SELECT ${tenantId}, ${returnId}, ${purchaseId}, ${purchase.store_id}, ${purchase.supplier_id}, numbered.return_number, ${input.reason}, ${reference},
               ${plan.credit_total}, ${entry?.entryId ?? null}, ${opId}
        FROM numbered
        RETURNING return_number, created_at
      ), lines AS (
        INSERT INTO purchase_return_lines (tenant_id, return_id, purchase_id, line_number, sku_id, quantity, unit_cost, line_total, op_id)
        SELECT ${tenantId}, ${returnId}, ${purchaseId}, l.line_number, l.sku_id, l.quantity, l.unit_cost, l.line_total, ${opId}
        FROM jsonb_to_recordset(${JSON.stringify(plan.lines)}::jsonb) AS l(line_number integer, sku_id uuid, quantity bigint, unit_cost bigint, line_total bigint)
        RETURNING line_number
      ), purchase AS (
        UPDATE purchases SET returned_total = returned_total + ${plan.credit_total}, returned_at = now()
        WHERE tenant_id = ${tenantId} AND id = ${purchaseId}
        RETURNING returned_total
      )
      SELECT r.return_number, r.created_at, purchase.returned_total AS purchase_returned_total, (SELECT count(*) FROM lines)::int AS line_rows
      FROM r, purchase`,
  );
  assert(written.line_rows === plan.lines.length, 'every return line was written');

  const answer: PurchaseReturnAnswer = {
    id: returnId,
    op_id: opId,
    purchase_id: purchaseId,
    store_id: purchase.store_id,
    supplier_id: purchase.supplier_id,
    return_number: written.return_number,
    reason: input.reason,
    reference,
    credit_total: plan.credit_total,
    entry_id: entry?.entryId ?? null,
    business_date: entry?.businessDate ?? null,
    created_at: written.created_at,
    lines: plan.lines,
    purchase_returned_total: written.purchase_returned_total,
    remaining: purchaseRemainingOf(lines, plan.lines),
  };

  cmd.storeId = purchase.store_id;
  touchStockMoves(cmd, stock.balances);
  cmd.touch('purchase_returns', returnId, 'created');
  for (const line of plan.lines) cmd.touch('purchase_return_lines', `${returnId}/${line.line_number}`, 'created');
  cmd.touch('purchases', purchaseId, 'updated');
  if (entry) cmd.touch('journal_entries', entry.entryId, 'created');
  const { remaining: _remaining, purchase_returned_total: _total, ...purchaseReturn } = answer;
  cmd.audit({
    subjectType: 'purchase',
    subjectId: purchaseId,
    payload: input,
    before: { returned_total: purchase.returned_total },
    after: { returned_total: written.purchase_returned_total, return: purchaseReturn },
  });
  return answer;
}
