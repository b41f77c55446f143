import { sql } from 'kysely';
import { inStoreScope } from '../core/auth.js';
import { AlreadyDone, type Command } from '../core/command.js';
import { one, readClientMoment } from '../core/db.js';
import { assert, notFound } from '../core/errors.js';
import { changeStock, correctCountedGiveBacks, touchStockMoves } from '../inventory/changeStock.js';
import { postSaleVoid } from '../money/postSale.js';
import { returnSoldPieces } from '../pieces/sellPieces.js';
import { assertSecondPersonToUndo } from '../tenancy/secondApprover.js';
import { lockSaleForUpdate } from './getSale.js';
import { returnableLines } from './returnSale.js';
import { balanceKey, saleAccountKeys } from './saleRows.js';
import type { SaleView } from './sale.table.js';

/**
 * The operation type of a void: the only command that voids a sale. (The
 * daily sales rollup finds the voids since its last run by the voiding
 * transaction's id, `sales.voided_xid`, which a trigger stamps on the void's
 * UPDATE: migration 0900.)
 */
export const SALE_VOID_OP = 'sale.void';

/**
 * The in-transaction part of voiding a sale (other parts add their reversing
 * writes here, e.g. the money part's reversing postings).
 *
 * The sale row is locked first, so two voids of one sale serialize: the second
 * sees `voided` and answers the sale again (200, `Idempotent-Replayed: true`)
 * with no new effect — it is refused as a command (rolled back, nothing
 * written), not stored as a second operation. Stock comes back through new `void` ledger rows (what the sale
 * actually took: quantity minus any offline shortfall); the receipt number
 * stays with the voided sale and is never reused. Workshop pieces the sale
 * sold (sold_by_op = the sale's operation) are back in stock (`piece.returned`),
 * locked before the balances like every pieces command; the void's ledger rows
 * return exactly their sum (an offline line's unavailable pieces were its
 * shortfall and were never sold), so stock stays = Σ live pieces. After
 * partial returns (returnSale) the void brings back only what is left: the
 * pieces still sold by the sale (a piece a return took back has no
 * sold_by_op, or another sale's), the stock they did not take back, and the money they did not refund (the
 * reversing entry nets the sale's and its returns' postings, postSaleVoid).
 * Per SKU, the stock is what the sale took less what its returns put back,
 * never below 0: returns of an offline line that synced short may put back
 * more than the sale took (the customer had all of it), and then the void
 * gives none of that SKU back.
 *
 * With the tenant's require_second_approver_for_reversals on, the token whose
 * operation made the sale (sold it, or synced it from a till) may not void
 * it: 403 second_approver_required, checked under the sale's lock and before
 * the voided check, nothing written (assertSecondPersonToUndo).
 *
 * `clientCreatedAt`: when the till voided the sale, for a void it queued
 * offline. The reversing entry is booked on that day (postSaleVoid), the
 * time kept on the sale (`void_client_created_at`); a bad one is a 400
 * before anything is read or written. A SKU whose balance's latest stock
 * count has a counted_at at or after that time (counted_through) gets its
 * goods back once: the count saw them on the shelf, so a `count_correction`
 * row (reason `count <id>`) takes out what its `void` row gave back
 * (correctCountedGiveBacks). Without the time the void is "now".
 */
export async function recordVoid(cmd: Command, saleId: string, reason: string, clientCreatedAt?: string): Promise<SaleView> {
  const { tx, tenantId, opId } = cmd;
  const tillTime = clientCreatedAt === undefined ? null : await readClientMoment(tx, clientCreatedAt, { name: 'client_created_at', path: '/body/client_created_at' });
  const before = await lockSaleForUpdate(tx, tenantId, saleId);
  if (!before || (cmd.principal.kind === 'token' && !inStoreScope(cmd.principal, before.store_id))) throw notFound('sale');
  // Four-eyes (tenant setting): not the token that sold it — voided already or not, nothing is answered to it but 403.
  await assertSecondPersonToUndo(cmd, before.op_id, `sale ${saleId}`, 'void');
  if (before.status === 'voided') throw new AlreadyDone(before, before.voided_by_op);

  // Per SKU, what the sale took (quantity minus any offline shortfall), less what its partial returns already put
  // back, never below 0. A return puts back all it takes back, beyond what the sale took too: a line that synced
  // short is returned up to all it sold (the goods are on the shelf), so its returns may have put back more than
  // the sale took — then the void gives none back. Of a line of pieces, the sum of the pieces its returns took
  // back (no longer sold by the sale, so returnSoldPieces below leaves them alone): never more than it took.
  const returnedBefore = new Map((await returnableLines(tx, tenantId, saleId)).map((line) => [line.sale_item_id, line.returned_quantity]));
  const left = new Map<string, number>();
  for (const item of before.items) {
    left.set(item.sku_id, (left.get(item.sku_id) ?? 0) + item.quantity - item.shortfall_quantity - (returnedBefore.get(item.id) ?? 0));
  }
  const returned = new Map([...left].filter(([, quantity]) => quantity > 0));
  const changes = [...returned].map(([skuId, quantity]) => ({ storeId: before.store_id, skuId, quantityChange: quantity, kind: 'void', reason: `void of sale ${saleId}` }));
  // The rows the void locks after its pieces that a row held from outside may be among (a balance a long count
  // holds, an account): in the tenant's sale lane, one found held before and still held refuses it at once (503,
  // nothing written) instead of its waiting the lock wait again. The reversing entry posts to the sale's accounts
  // unless its returns refunded it all (or it moved no money).
  await cmd.beforeLocking({
    balances: changes.map((change) => balanceKey(change.storeId, change.skuId)),
    accounts: before.total - before.returned_total !== 0 ? saleAccountKeys(before) : [],
  });
  await returnSoldPieces(cmd, before.op_id);
  const stock = await changeStock(tx, tenantId, opId, changes);
  assert(stock.ok, 'returning stock always succeeds');
  // Voided on the till at or before a stock count of a SKU, sent after it: the count saw the goods on the shelf
  // (a count_correction row takes them out again, after the void row: net 0).
  const corrections = tillTime === null ? [] : await correctCountedGiveBacks(tx, tenantId, opId, tillTime, changes);

  const row = await one(
    tx,
    sql<{ voided_at: Date; void_client_created_at: Date | null }>`
      UPDATE sales SET status = 'voided', voided_by_op = ${opId}, voided_at = now(), void_reason = ${reason}, void_client_created_at = ${tillTime}
      WHERE tenant_id = ${tenantId} AND id = ${saleId} AND status = 'completed'
      RETURNING voided_at, void_client_created_at`,
  );
  // Reversing postings of the sale's journal entry, in this transaction (src/money/postSale.ts).
  const reversal = await postSaleVoid(tx, cmd, before, tillTime);
  if (reversal) cmd.touch('journal_entries', reversal.entryId, 'created');
  const after: SaleView = { ...before, status: 'voided', voided_by_op: opId, voided_at: row.voided_at, void_reason: reason, void_client_created_at: row.void_client_created_at };

  cmd.storeId = before.store_id;
  cmd.touch('sales', saleId, 'updated');
  touchStockMoves(cmd, stock.balances);
  for (const row of corrections) cmd.touch('stock_ledger', String(row.ledger_id), 'created'); // its balance is named above
  cmd.audit({ subjectType: 'sale', subjectId: saleId, before, after });
  return after;
}
